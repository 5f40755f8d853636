// One MQTT connection upstream that remembers which outbox message each in-flight message id
// carries, so acknowledgements and losses are reported by outbox seq. Shared by the three
// upstream kinds.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "edgetrust/forwarding/upstream.h"
#include "edgetrust/mqtt/uv_mqtt_client.h"

namespace edgetrust::forwarding::internal {

// How long an upstream connection leaves its socket unread after a read (see TrackedClient::Create).
inline constexpr std::chrono::milliseconds kUpstreamReadPause{5};
// libmosquitto's own limit on publishes in flight when none is set.
inline constexpr int kLibmosquittoSendMaximum = 20;

struct TrackedClientHooks {
  std::function<void(uint64_t seq, bool accepted)> on_ack;
  std::function<void(const std::vector<uint64_t>& seqs)> on_lost;
  std::function<void()> on_connected;
  std::function<void(int reason)> on_disconnected;
  std::function<void(const mqtt::Message&)> on_message;
  std::function<void()> on_closed;
};

class TrackedClient {
 public:
  // `subscriptions` are (re)subscribed after every successful connect.
  static Result<std::unique_ptr<TrackedClient>> Create(uv_loop_t* loop, mqtt::ClientOptions options,
                                                       std::vector<std::string> subscriptions,
                                                       int subscribe_qos, TrackedClientHooks hooks,
                                                       UpstreamCounters* counters);
  ~TrackedClient();

  Status Start() { return client_->Start(); }
  // Reports every in-flight message as lost, then closes gracefully.
  void Stop();
  bool connected() const { return client_->connected(); }
  bool closed() const { return client_->closed(); }
  size_t in_flight() const { return in_flight_.size(); }

  // kUnavailable when not connected. For qos > 0 the seq is reported by on_ack or on_lost.
  Result<int> Publish(const std::string& topic, ByteView payload, int qos, uint64_t seq);

 private:
  TrackedClient() = default;
  void LoseAll();

  std::unique_ptr<mqtt::UvMqttClient> client_;
  std::vector<std::string> subscriptions_;
  int subscribe_qos_ = 1;
  TrackedClientHooks hooks_;
  UpstreamCounters* counters_ = nullptr;
  std::unordered_map<int, uint64_t> in_flight_;  // mid -> seq
  bool was_connected_ = false;
};

}  // namespace edgetrust::forwarding::internal
