// The `azure-iot-hub` upstream kind: IoT Hub authenticates each device, so every active device
// gets its own MQTT 3.1.1 connection (client id = device id, SAS token as password), opened on
// its first message and closed after an idle time, all on the one loop (DeviceConnections).
// Tokens are renewed by reconnecting with a fresh one; unacknowledged messages are still in the
// outbox and are resent.
#include <algorithm>
#include <memory>
#include <string>

#include "broker_upstream.h"
#include "device_connections.h"
#include "edgetrust/forwarding/azure_sas.h"

namespace edgetrust::forwarding::internal {
namespace {

inline constexpr std::string_view kApiVersion = "2021-04-12";

class AzureIotUpstream : public UpstreamConnection {
 public:
  AzureIotUpstream(const policies::Upstream& config, uv_loop_t* loop, UpstreamEvents events,
                   UpstreamCounters* counters, const UpstreamTuning& tuning)
      : config_(config),
        events_(std::move(events)),
        counters_(counters),
        tuning_(tuning),
        devices_(loop, config.name, &events_, counters, tuning, tuning.azure_idle,
                 [this](const std::string& id) { return Link(id); },
                 [this](const std::string& id, const mqtt::Message& m) { OnMessage(id, m); }) {}

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
    devices_.Start();
    return OkStatus();
  }
  void Stop() override { devices_.Stop(); }
  void CloseDevice(const std::string& device_id) override { devices_.Close(device_id); }
  bool closed() const override { return devices_.closed(); }
  bool ready() const override { return devices_.running(); }
  const std::string& name() const override { return config_.name; }

  Result<Sent> Send(const storage::OutboxMessage& message, const DeviceContext&) override {
    ET_ASSIGN_OR_RETURN(DeviceConnections::Device * d, devices_.Acquire(message.device_id));
    int qos = std::min<int>(std::min<int>(message.qos, config_.qos), 1);
    if (message.qos > 1) counters_->qos_downgraded++;
    // IoT Hub reads application properties from the topic's property bag.
    std::string topic = "devices/" + message.device_id + "/messages/events/";
    if (!message.channel.empty()) topic += "channel=" + UrlEncode(message.channel);
    ET_ASSIGN_OR_RETURN(int mid, d->client->Publish(topic, message.payload, qos, message.seq));
    return Sent{mid, qos > 0};
  }

 private:
  Result<std::string> DeviceKey(const std::string& device_id) {
    if (!group_key_.empty()) return DeriveDeviceKey(group_key_, device_id);
    return ReadSecretFile(config_.device_key_dir + "/" + device_id + ".key");
  }

  // Tokens are renewed by reconnecting with a fresh one.
  Result<DeviceLink> Link(const std::string& device_id) {
    ET_ASSIGN_OR_RETURN(std::string key, DeviceKey(device_id));
    const int64_t expiry = UnixNow() + static_cast<int64_t>(tuning_.azure_sas_ttl.count());
    ET_ASSIGN_OR_RETURN(std::string token,
                        MakeSasToken(config_.hostname + "/devices/" + device_id, key, expiry));
    DeviceLink link;
    mqtt::ClientOptions& o = link.options;
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
    link.subscriptions = {"devices/" + device_id + "/messages/devicebound/#"};
    link.subscribe_qos = 1;
    link.renew_after_ms = static_cast<uint64_t>(
        static_cast<double>(tuning_.azure_sas_ttl.count()) * 1000.0 * tuning_.azure_sas_renew_at);
    return link;
  }

  void OnMessage(const std::string& device_id, const mqtt::Message& m) {
    const std::string prefix = "devices/" + device_id + "/messages/devicebound/";
    auto channel = m.topic.starts_with(prefix)
                       ? DeviceboundChannel(std::string_view(m.topic).substr(prefix.size()))
                       : Result<std::string>(MakeError(ErrorCode::kInvalidArgument, "not devicebound"));
    if (!channel.ok()) {
      counters_->downlinks_refused++;
      return;
    }
    counters_->downlinks++;
    if (events_.on_downlink) events_.on_downlink(Downlink{device_id, std::move(*channel), m.payload});
  }

  policies::Upstream config_;
  UpstreamEvents events_;
  UpstreamCounters* counters_;
  UpstreamTuning tuning_;
  std::string group_key_;
  DeviceConnections devices_;
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
