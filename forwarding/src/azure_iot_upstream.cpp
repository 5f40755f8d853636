// The `azure-iot-hub` upstream kind: IoT Hub authenticates each device, so every active device
// gets its own MQTT 3.1.1 connection (client id = device id, SAS token as password), opened on
// its first message and closed after an idle time, all on the one loop. Tokens are renewed by
// reconnecting with a fresh one; unacknowledged messages are still in the outbox and are resent.
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "edgetrust/forwarding/azure_sas.h"
#include "tracked_client.h"
#include "broker_upstream.h"
#include "topic_template.h"
#include "uv_timer.h"

namespace edgetrust::forwarding::internal {
namespace {

inline constexpr std::string_view kApiVersion = "2021-04-12";

class AzureIotUpstream : public UpstreamConnection {
 public:
  AzureIotUpstream(const policies::Upstream& config, uv_loop_t* loop, UpstreamEvents events,
                   UpstreamCounters* counters, const UpstreamTuning& tuning)
      : config_(config),
        loop_(loop),
        events_(std::move(events)),
        counters_(counters),
        tuning_(tuning),
        housekeeping_(loop, [this] { Housekeeping(); }) {}

  Status Init() {
    if (!config_.group_key_file.empty()) {
      ET_ASSIGN_OR_RETURN(group_key_, ReadSecretFile(config_.group_key_file));
      // Fail now on a key that is not base64 rather than on every device later.
      ET_RETURN_IF_ERROR(DeriveDeviceKey(group_key_, "probe"));
    } else if (config_.device_key_dir.empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "upstream '" + config_.name + "': group_key_file or device_key_dir is required");
    }
    return OkStatus();
  }

  Status Start() override {
    started_ = true;
    const uint64_t period = std::max<uint64_t>(
        50, std::min<uint64_t>(1000, static_cast<uint64_t>(tuning_.azure_idle.count()) / 4));
    housekeeping_.Start(period, period);
    return OkStatus();
  }

  void Stop() override {
    stopping_ = true;
    housekeeping_.Close();
    for (auto& [id, d] : devices_) Retire(std::move(d.client));
    devices_.clear();
  }

  bool closed() const override {
    if (!stopping_) return false;
    for (const auto& c : closing_) {
      if (!c->closed()) return false;
    }
    return true;
  }

  bool ready() const override { return started_ && !stopping_; }
  const std::string& name() const override { return config_.name; }

  Result<Sent> Send(const storage::OutboxMessage& message, const DeviceContext&) override {
    if (!ready()) return MakeError(ErrorCode::kUnavailable, "not started");
    auto it = devices_.find(message.device_id);
    if (it == devices_.end()) {
      ET_RETURN_IF_ERROR(Open(message.device_id));
      return MakeError(ErrorCode::kUnavailable, "connecting " + message.device_id);
    }
    DeviceConnection& d = it->second;
    d.last_used_ms = uv_now(loop_);
    if (!d.client->connected()) return MakeError(ErrorCode::kUnavailable, "connecting");
    int qos = std::min<int>(std::min<int>(message.qos, config_.qos), 1);
    if (message.qos > 1) counters_->qos_downgraded++;
    // IoT Hub reads application properties from the topic's property bag.
    std::string topic = "devices/" + message.device_id + "/messages/events/";
    if (!message.channel.empty()) topic += "channel=" + UrlEncode(message.channel);
    ET_ASSIGN_OR_RETURN(int mid, d.client->Publish(topic, message.payload, qos, message.seq));
    return Sent{mid, qos > 0};
  }

 private:
  struct DeviceConnection {
    std::unique_ptr<TrackedClient> client;
    uint64_t last_used_ms = 0;
    uint64_t renew_at_ms = 0;
  };

  Result<std::string> DeviceKey(const std::string& device_id) {
    if (!group_key_.empty()) return DeriveDeviceKey(group_key_, device_id);
    return ReadSecretFile(config_.device_key_dir + "/" + device_id + ".key");
  }

  Status Open(const std::string& device_id) {
    ET_ASSIGN_OR_RETURN(std::string key, DeviceKey(device_id));
    const int64_t expiry = UnixNow() + static_cast<int64_t>(tuning_.azure_sas_ttl.count());
    ET_ASSIGN_OR_RETURN(std::string token,
                        MakeSasToken(config_.hostname + "/devices/" + device_id, key, expiry));
    mqtt::ClientOptions o;
    o.host = config_.host.empty() ? config_.hostname : config_.host;
    o.port = config_.port == 0 ? 8883 : config_.port;
    o.client_id = device_id;
    o.ca = config_.ca.empty() ? tuning_.default_ca : config_.ca;
    o.protocol = 4;
    o.keepalive = tuning_.keepalive;
    o.clean_start = true;
    o.username = config_.hostname + "/" + device_id + "/?api-version=" + std::string(kApiVersion);
    o.password = std::move(token);
    o.reconnect_min = tuning_.reconnect_min;
    o.reconnect_max = tuning_.reconnect_max;
    TrackedClientHooks hooks;
    hooks.on_ack = [this](uint64_t seq, bool accepted) {
      if (events_.on_ack) events_.on_ack(seq, accepted);
    };
    hooks.on_lost = [this](const std::vector<uint64_t>& seqs) {
      if (events_.on_lost) events_.on_lost(seqs);
    };
    hooks.on_connected = [this]() {
      if (events_.on_ready) events_.on_ready();
    };
    hooks.on_message = [this, device_id](const mqtt::Message& m) { OnMessage(device_id, m); };
    ET_ASSIGN_OR_RETURN(auto client,
                        TrackedClient::Create(loop_, std::move(o),
                                              {"devices/" + device_id + "/messages/devicebound/#"}, 1,
                                              std::move(hooks), counters_));
    ET_RETURN_IF_ERROR(client->Start());
    DeviceConnection d;
    d.client = std::move(client);
    d.last_used_ms = uv_now(loop_);
    d.renew_at_ms = uv_now(loop_) + static_cast<uint64_t>(
        static_cast<double>(tuning_.azure_sas_ttl.count()) * 1000.0 * tuning_.azure_sas_renew_at);
    devices_[device_id] = std::move(d);
    return OkStatus();
  }

  void OnMessage(const std::string& device_id, const mqtt::Message& m) {
    const std::string prefix = "devices/" + device_id + "/messages/devicebound/";
    if (m.topic.rfind(prefix, 0) != 0) return;
    std::string_view bag = std::string_view(m.topic).substr(prefix.size());
    std::string channel;
    while (!bag.empty()) {
      size_t amp = bag.find('&');
      std::string_view pair = bag.substr(0, amp);
      bag = amp == std::string_view::npos ? std::string_view{} : bag.substr(amp + 1);
      size_t eq = pair.find('=');
      if (eq == std::string_view::npos) continue;
      auto name = UrlDecode(pair.substr(0, eq));
      if (name.ok() && *name == "channel") {
        auto value = UrlDecode(pair.substr(eq + 1));
        if (value.ok()) channel = std::move(*value);
      }
    }
    counters_->downlinks++;
    if (events_.on_downlink) events_.on_downlink(Downlink{device_id, std::move(channel), m.payload});
  }

  void Retire(std::unique_ptr<TrackedClient> client) {
    client->Stop();
    closing_.push_back(std::move(client));
  }

  void Housekeeping() {
    const uint64_t now = uv_now(loop_);
    std::vector<std::string> renew;
    for (auto it = devices_.begin(); it != devices_.end();) {
      DeviceConnection& d = it->second;
      const bool idle = now - d.last_used_ms >= static_cast<uint64_t>(tuning_.azure_idle.count()) &&
                        d.client->in_flight() == 0;
      if (idle) {
        Retire(std::move(d.client));
        it = devices_.erase(it);
        continue;
      }
      if (now >= d.renew_at_ms) renew.push_back(it->first);
      ++it;
    }
    for (const auto& id : renew) {
      auto it = devices_.find(id);
      uint64_t last_used = it->second.last_used_ms;
      // Stopping reports in-flight messages lost; the Forwarder resends them on the new connection.
      Retire(std::move(it->second.client));
      devices_.erase(it);
      if (auto st = Open(id); !st.ok()) {
        std::fprintf(stderr, "forwarding: upstream '%s': cannot renew SAS token of %s: %s\n",
                     config_.name.c_str(), id.c_str(), st.error().ToString().c_str());
        continue;
      }
      devices_[id].last_used_ms = last_used;
    }
    std::erase_if(closing_, [](const std::unique_ptr<TrackedClient>& c) { return c->closed(); });
  }

  policies::Upstream config_;
  uv_loop_t* loop_;
  UpstreamEvents events_;
  UpstreamCounters* counters_;
  UpstreamTuning tuning_;
  std::string group_key_;
  bool started_ = false;
  bool stopping_ = false;
  std::map<std::string, DeviceConnection> devices_;
  std::vector<std::unique_ptr<TrackedClient>> closing_;
  UvTimer housekeeping_;
};

}  // namespace

Result<std::unique_ptr<UpstreamConnection>> MakeAzureIotUpstream(const policies::Upstream& config,
                                                                 std::string_view,
                                                                 uv_loop_t* loop,
                                                                 UpstreamEvents events,
                                                                 UpstreamCounters* counters,
                                                                 const UpstreamTuning& tuning) {
  if (config.hostname.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "upstream '" + config.name + "': azure-iot-hub needs a hostname");
  }
  auto up = std::make_unique<AzureIotUpstream>(config, loop, std::move(events), counters, tuning);
  ET_RETURN_IF_ERROR(up->Init());
  return std::unique_ptr<UpstreamConnection>(std::move(up));
}

}  // namespace edgetrust::forwarding::internal
