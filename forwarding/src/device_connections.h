// The per-device MQTT connections of one upstream, for clouds that authenticate each device
// (Azure IoT Hub; AWS IoT Core with `identity: device`). A device's connection opens on its
// first message, closes once it has been idle for a while with nothing in flight, and is
// reopened with fresh credentials when they are due; all on the one loop. Reopening reports the
// in-flight messages lost, so the Forwarder resends them on the new connection.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "edgetrust/forwarding/upstream.h"
#include "edgetrust/mqtt/uv_mqtt_client.h"
#include "tracked_client.h"
#include "upstream_limits.h"
#include "uv_timer.h"

namespace edgetrust::forwarding::internal {

// What one device's connection is opened with.
struct DeviceLink {
  mqtt::ClientOptions options;             // client id, credentials, reconnect back-off…
  std::vector<std::string> subscriptions;  // (re)subscribed after every connect
  int subscribe_qos = 1;
  double publishes_per_second = 0;         // per connection; 0 = unlimited
  uint64_t renew_after_ms = 0;             // reopen (credentials asked again) after this; 0 = never
};

class DeviceConnections {
 public:
  // Builds a device's link. kFailedPrecondition: the device may not connect (returned to every
  // Acquire, without back-off: nothing is retried). kUnavailable: not yet (its credentials are
  // being prepared; whoever prepares them wakes the Forwarder). Other errors back off like
  // reconnects.
  using Opener = std::function<Result<DeviceLink>(const std::string& device_id)>;
  using MessageHandler = std::function<void(const std::string& device_id, const mqtt::Message&)>;

  struct Device {
    std::unique_ptr<TrackedClient> client;
    uint64_t last_used_ms = 0;
    uint64_t renew_at_ms = 0;  // 0 = never
    PublishBucket bucket;
  };

  // `events` and `counters` must outlive this object.
  DeviceConnections(uv_loop_t* loop, std::string upstream, const UpstreamEvents* events,
                    UpstreamCounters* counters, const UpstreamTuning& tuning,
                    std::chrono::milliseconds idle, Opener opener, MessageHandler on_message);
  DeviceConnections(const DeviceConnections&) = delete;
  DeviceConnections& operator=(const DeviceConnections&) = delete;

  void Start();
  void Stop();
  bool closed() const;
  bool running() const { return started_ && !stopping_; }

  // The device's connection once it is up, its idle clock restarted. kUnavailable while it is
  // being opened or backs off after a failure; the opener's error when an attempt fails now.
  Result<Device*> Acquire(const std::string& device_id);

  // Closes the device's connection now (its in-flight messages reported lost) and forgets its
  // back-off; the next Acquire opens anew, asking the opener again.
  void Close(const std::string& device_id);

  // Devices with a connection object (connected or connecting).
  size_t size() const { return devices_.size(); }

 private:
  struct Backoff {
    uint64_t retry_at_ms = 0;
    uint64_t delay_ms = 0;
    bool announced = false;  // on_ready sent once the wait was over
  };

  Status Open(const std::string& device_id);
  void Failed(const std::string& device_id, const Error& error);
  void Retire(std::unique_ptr<TrackedClient> client);
  void Housekeeping();

  uv_loop_t* loop_;
  std::string upstream_;
  const UpstreamEvents* events_;
  UpstreamCounters* counters_;
  UpstreamTuning tuning_;
  std::chrono::milliseconds idle_;
  Opener opener_;
  MessageHandler on_message_;
  bool started_ = false;
  bool stopping_ = false;
  std::map<std::string, Device> devices_;
  std::map<std::string, Backoff> failed_;
  std::vector<std::unique_ptr<TrackedClient>> closing_;
  UvTimer housekeeping_;
};

}  // namespace edgetrust::forwarding::internal
