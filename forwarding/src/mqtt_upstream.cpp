// The `mqtt` upstream kind: any MQTT 3.1.1 / 5 broker, plain or TLS, with username/password or a
// client certificate, through a pool of `connections` gateway connections.
#include <algorithm>
#include <fstream>
#include <functional>
#include <sstream>

#include "broker_upstream.h"

namespace edgetrust::forwarding::internal {

Result<std::string> ReadSecretFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return MakeError(ErrorCode::kNotFound, "cannot read " + path);
  std::string line;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
  return line;
}

Result<std::unique_ptr<BrokerUpstream>> BrokerUpstream::Create(
    const policies::Upstream& config, std::string_view site, uv_loop_t* loop,
    UpstreamEvents events, UpstreamCounters* counters, const UpstreamTuning& tuning,
    BrokerLimits limits) {
  if (config.identity != policies::UpstreamIdentity::kGateway) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "upstream '" + config.name + "': only identity gateway is supported for kind " +
                         limits.kind);
  }
  if (config.host.empty() || config.port == 0) {
    return MakeError(ErrorCode::kInvalidArgument, "upstream '" + config.name + "' has no host:port");
  }
  std::unique_ptr<BrokerUpstream> self(new BrokerUpstream());
  self->name_ = config.name;
  self->site_ = std::string(site);
  self->topic_template_ = config.topic.empty() ? "{site}/{device}/{channel}" : config.topic;
  self->qos_ = config.qos;
  self->limits_ = std::move(limits);
  self->loop_ = loop;
  self->events_ = std::move(events);
  self->counters_ = counters;
  // Catch a bad template now rather than on the first message.
  ET_RETURN_IF_ERROR(ExpandTopic(self->topic_template_, {}));
  std::vector<std::string> subscriptions;
  if (!config.down_topic.empty()) {
    ET_ASSIGN_OR_RETURN(DownTopicMatcher m, DownTopicMatcher::Create(config.down_topic, site));
    subscriptions.push_back(m.filter());
    self->down_ = std::move(m);
  }

  mqtt::ClientOptions base;
  base.host = config.host;
  base.port = config.port;
  base.protocol = config.protocol;
  base.keepalive = tuning.keepalive;
  base.send_maximum = self->limits_.max_in_flight;
  base.clean_start = true;
  base.reconnect_min = tuning.reconnect_min;
  base.reconnect_max = tuning.reconnect_max;
  if (config.tls) {
    base.ca = config.ca.empty() ? tuning.default_ca : config.ca;
    base.cert = config.cert;
    base.key = config.key;
  }
  base.username = config.username;
  if (!config.password_file.empty()) {
    ET_ASSIGN_OR_RETURN(base.password, ReadSecretFile(config.password_file));
  }
  const std::string client_id = config.client_id.empty() ? std::string(site) : config.client_id;
  const int n = config.connections < 1 ? 1 : config.connections;
  BrokerUpstream* raw = self.get();
  for (int k = 0; k < n; ++k) {
    mqtt::ClientOptions o = base;
    o.client_id = n == 1 ? client_id : client_id + "-" + std::to_string(k);
    TrackedClientHooks hooks;
    hooks.on_ack = [raw](uint64_t seq, bool accepted) {
      if (raw->events_.on_ack) raw->events_.on_ack(seq, accepted);
    };
    hooks.on_lost = [raw](const std::vector<uint64_t>& seqs) {
      if (raw->events_.on_lost) raw->events_.on_lost(seqs);
    };
    hooks.on_connected = [raw]() {
      if (raw->events_.on_ready) raw->events_.on_ready();
    };
    // Down-link on the first connection only: every connection subscribing would deliver twice.
    if (k == 0) hooks.on_message = [raw](const mqtt::Message& m) { raw->OnMessage(m); };
    ET_ASSIGN_OR_RETURN(auto client,
                        TrackedClient::Create(loop, std::move(o),
                                              k == 0 ? subscriptions : std::vector<std::string>{},
                                              std::min(config.qos, raw->limits_.max_qos), std::move(hooks),
                                              counters));
    Connection c;
    c.client = std::move(client);
    c.bucket = PublishBucket(raw->limits_.publishes_per_second, uv_now(loop));
    self->connections_.push_back(std::move(c));
  }
  return self;
}

BrokerUpstream::~BrokerUpstream() = default;

Status BrokerUpstream::Start() {
  for (auto& c : connections_) ET_RETURN_IF_ERROR(c.client->Start());
  return OkStatus();
}

void BrokerUpstream::Stop() {
  for (auto& c : connections_) c.client->Stop();
}

bool BrokerUpstream::closed() const {
  for (const auto& c : connections_) {
    if (!c.client->closed()) return false;
  }
  return true;
}

bool BrokerUpstream::ready() const {
  for (const auto& c : connections_) {
    if (c.client->connected()) return true;
  }
  return false;
}

Result<UpstreamConnection::Sent> BrokerUpstream::Send(const storage::OutboxMessage& message, const DeviceContext& device) {
  ET_ASSIGN_OR_RETURN(std::string topic, MessageTopic(topic_template_, site_, message, device));
  ET_RETURN_IF_ERROR(CheckMessageLimits(limits_, topic, message.payload.size(), counters_));
  const int qos = SendQos(limits_, message.qos, qos_, name_, counters_, &warned_qos_);
  Connection& c = connections_[std::hash<std::string>{}(message.device_id) % connections_.size()];
  if (!c.client->connected()) return MakeError(ErrorCode::kUnavailable, "not connected");
  if (!c.bucket.Take(uv_now(loop_))) {
    return MakeError(ErrorCode::kResourceExhausted, "publish rate limit");
  }
  ET_ASSIGN_OR_RETURN(int mid, c.client->Publish(topic, message.payload, qos, message.seq));
  return Sent{mid, qos > 0};
}

void BrokerUpstream::OnMessage(const mqtt::Message& m) {
  if (!down_) return;
  auto match = down_->Parse(m.topic);
  if (!match) {
    counters_->downlinks_refused++;
    return;
  }
  counters_->downlinks++;
  if (events_.on_downlink) {
    events_.on_downlink(Downlink{std::move(match->device_id), std::move(match->channel), m.payload});
  }
}

}  // namespace edgetrust::forwarding::internal
