// The `aws-iot` upstream kind: AWS IoT Core over MQTT with mutual TLS to the account endpoint
// (libmosquitto sends the endpoint host as SNI, which AWS needs to pick the account's
// certificate). Two identities:
//   gateway  the site's thing certificate, a pool of `connections` with client ids <client_id>-<k>
//            (BrokerUpstream);
//   device   one connection per active device (client id = device id = thing name) with the
//            device's own cloud certificate from UpstreamTuning::cloud_identity, opened on its
//            first message and closed when idle (DeviceConnections); down-links per device.
// AWS's documented limits are enforced here, per connection, before sending, because AWS answers
// a violation by dropping the whole connection.
#include <algorithm>
#include <memory>
#include <optional>
#include <string>

#include "broker_upstream.h"
#include "device_connections.h"
#include "topic_template.h"
#include "upstream_limits.h"

namespace edgetrust::forwarding::internal {

// https://docs.aws.amazon.com/general/latest/gr/iot-core.html (message broker quotas)
inline constexpr size_t kAwsMaxPayloadBytes = 128 * 1024;
inline constexpr int kAwsMaxTopicSlashes = 7;
inline constexpr size_t kAwsMaxTopicBytes = 256;
// "Maximum inbound unacknowledged messages": 100 in flight per client; past it AWS stops reading.
inline constexpr int kAwsMaxInFlight = 100;

namespace {

BrokerLimits AwsLimits(const UpstreamTuning& tuning) {
  BrokerLimits limits;
  limits.kind = "aws-iot";
  limits.max_qos = 1;
  limits.max_payload_bytes = kAwsMaxPayloadBytes;
  limits.max_topic_slashes = kAwsMaxTopicSlashes;
  limits.max_topic_bytes = kAwsMaxTopicBytes;
  limits.publishes_per_second = tuning.aws_publishes_per_second;
  limits.max_in_flight = kAwsMaxInFlight;
  return limits;
}

class AwsDeviceUpstream : public UpstreamConnection {
 public:
  static Result<std::unique_ptr<AwsDeviceUpstream>> Create(const policies::Upstream& config,
                                                           std::string_view site, uv_loop_t* loop,
                                                           UpstreamEvents events,
                                                           UpstreamCounters* counters,
                                                           const UpstreamTuning& tuning) {
    if (!tuning.cloud_identity) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "upstream '" + config.name +
                           "': aws-iot identity device needs per-device cloud certificates, and "
                           "this process has no provider of them (the gateway issues them)");
    }
    if (config.host.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "upstream '" + config.name + "' has no endpoint");
    }
    std::unique_ptr<AwsDeviceUpstream> self(
        new AwsDeviceUpstream(config, site, loop, std::move(events), counters, tuning));
    // Catch a bad template now rather than on the first message.
    ET_RETURN_IF_ERROR(ExpandTopic(self->topic_template_, {}));
    if (!config.down_topic.empty()) {
      ET_ASSIGN_OR_RETURN(DownTopicMatcher m, DownTopicMatcher::Create(config.down_topic, site));
      self->down_ = std::move(m);
    }
    return self;
  }

  Status Start() override {
    devices_.Start();
    return OkStatus();
  }
  void Stop() override { devices_.Stop(); }
  void CloseDevice(const std::string& device_id) override { devices_.Close(device_id); }
  bool closed() const override { return devices_.closed(); }
  bool ready() const override { return devices_.running(); }
  const std::string& name() const override { return config_.name; }

  Result<Sent> Send(const storage::OutboxMessage& message, const DeviceContext& device) override {
    ET_ASSIGN_OR_RETURN(std::string topic, MessageTopic(topic_template_, site_, message, device));
    // Before opening anything: a message that can never be sent must not cost a connection.
    ET_RETURN_IF_ERROR(CheckMessageLimits(limits_, topic, message.payload.size(), counters_));
    auto d = devices_.Acquire(message.device_id);
    if (!d.ok()) {
      if (d.error().code == ErrorCode::kFailedPrecondition) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "no cloud identity for " + message.device_id + ": " + d.error().message);
      }
      return d.error();
    }
    if (!(*d)->bucket.Take(uv_now(loop_))) {
      return MakeError(ErrorCode::kResourceExhausted, "publish rate limit");
    }
    const int qos =
        SendQos(limits_, message.qos, config_.qos, config_.name, counters_, &warned_qos_);
    ET_ASSIGN_OR_RETURN(int mid, (*d)->client->Publish(topic, message.payload, qos, message.seq));
    return Sent{mid, qos > 0};
  }

 private:
  AwsDeviceUpstream(const policies::Upstream& config, std::string_view site, uv_loop_t* loop,
                    UpstreamEvents events, UpstreamCounters* counters, const UpstreamTuning& tuning)
      : config_(config),
        site_(site),
        topic_template_(config.topic.empty() ? "dt/{site}/{device}/{channel}" : config.topic),
        loop_(loop),
        events_(std::move(events)),
        counters_(counters),
        tuning_(tuning),
        limits_(AwsLimits(tuning)),
        devices_(loop, config.name, &events_, counters, tuning, tuning.aws_device_idle,
                 [this](const std::string& id) { return Link(id); },
                 [this](const std::string& id, const mqtt::Message& m) { OnMessage(id, m); }) {}

  Result<DeviceLink> Link(const std::string& device_id) {
    if (!IsValidDeviceId(device_id)) {
      return MakeError(ErrorCode::kFailedPrecondition, "'" + device_id + "' is not a device id");
    }
    ET_ASSIGN_OR_RETURN(CloudIdentity identity, tuning_.cloud_identity(config_.name, device_id));
    if (identity.cert_file.empty() || identity.key_file.empty()) {
      return MakeError(ErrorCode::kInternal, "the cloud identity of " + device_id + " names no files");
    }
    DeviceLink link;
    mqtt::ClientOptions& o = link.options;
    o.host = config_.host;
    o.port = config_.port == 0 ? 8883 : config_.port;
    o.client_id = device_id;  // AWS: the thing name, which JITP and ${iot:Connection.Thing.ThingName} use
    o.ca = config_.ca.empty() ? tuning_.default_ca : config_.ca;
    o.cert = std::move(identity.cert_file);
    o.key = std::move(identity.key_file);
    o.protocol = config_.protocol;
    o.keepalive = tuning_.keepalive;
    o.send_maximum = limits_.max_in_flight;
    o.clean_start = true;
    o.reconnect_min = tuning_.reconnect_min;
    o.reconnect_max = tuning_.reconnect_max;
    if (!config_.down_topic.empty()) {
      // This device's own down-links only: an AWS policy on the thing name allows no more.
      ET_ASSIGN_OR_RETURN(std::string filter,
                          ExpandTopic(config_.down_topic, {.site = site_,
                                                           .device = device_id,
                                                           .channel = "#",
                                                           .group = "+",
                                                           .model = "+",
                                                           .manufacturer = "+"}));
      link.subscriptions.push_back(std::move(filter));
    }
    link.subscribe_qos = std::min(config_.qos, limits_.max_qos);
    link.publishes_per_second = limits_.publishes_per_second;
    // Reopen now and then so a reissued certificate is used, and before this one expires.
    uint64_t renew_ms = static_cast<uint64_t>(tuning_.cloud_identity_recheck.count()) * 1000;
    if (identity.not_after > 0) {
      const int64_t left_s = std::max<int64_t>(60, identity.not_after - UnixNow());
      renew_ms = std::min(renew_ms, static_cast<uint64_t>(left_s) * 1000);
    }
    link.renew_after_ms = renew_ms;
    return link;
  }

  void OnMessage(const std::string& device_id, const mqtt::Message& m) {
    if (!down_) return;
    auto match = down_->Parse(m.topic);
    if (!match || match->device_id != device_id) {
      counters_->downlinks_refused++;
      return;
    }
    counters_->downlinks++;
    if (events_.on_downlink) {
      events_.on_downlink(Downlink{device_id, std::move(match->channel), m.payload});
    }
  }

  policies::Upstream config_;
  std::string site_;
  std::string topic_template_;
  uv_loop_t* loop_;
  UpstreamEvents events_;
  UpstreamCounters* counters_;
  UpstreamTuning tuning_;
  BrokerLimits limits_;
  std::optional<DownTopicMatcher> down_;
  bool warned_qos_ = false;
  DeviceConnections devices_;
};

}  // namespace

Result<std::unique_ptr<UpstreamConnection>> MakeAwsIotUpstream(const policies::Upstream& config,
                                                               std::string_view site,
                                                               uv_loop_t* loop,
                                                               UpstreamEvents events,
                                                               UpstreamCounters* counters,
                                                               const UpstreamTuning& tuning) {
  if (config.identity == policies::UpstreamIdentity::kDevice) {
    ET_ASSIGN_OR_RETURN(auto up, AwsDeviceUpstream::Create(config, site, loop, std::move(events),
                                                           counters, tuning));
    return std::unique_ptr<UpstreamConnection>(std::move(up));
  }
  if (config.cert.empty() || config.key.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "upstream '" + config.name + "': aws-iot needs cert and key (mutual TLS)");
  }
  policies::Upstream c = config;
  c.tls = true;
  c.username.clear();
  c.password_file.clear();
  ET_ASSIGN_OR_RETURN(auto up, BrokerUpstream::Create(c, site, loop, std::move(events), counters,
                                                       tuning, AwsLimits(tuning)));
  return std::unique_ptr<UpstreamConnection>(std::move(up));
}

}  // namespace edgetrust::forwarding::internal
