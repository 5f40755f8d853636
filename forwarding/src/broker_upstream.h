// A pool of gateway-identity MQTT connections to one broker: the `mqtt` upstream kind, and the
// base of `aws-iot` (same connections plus AWS IoT Core's limits). A device always uses the same
// connection of the pool, so its messages stay in order.
#pragma once

#include <uv.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "edgetrust/forwarding/upstream.h"
#include "topic_template.h"
#include "tracked_client.h"
#include "upstream_limits.h"

namespace edgetrust::forwarding::internal {

class BrokerUpstream : public UpstreamConnection {
 public:
  static Result<std::unique_ptr<BrokerUpstream>> Create(const policies::Upstream& config,
                                                        std::string_view site, uv_loop_t* loop,
                                                        UpstreamEvents events,
                                                        UpstreamCounters* counters,
                                                        const UpstreamTuning& tuning,
                                                        BrokerLimits limits);
  ~BrokerUpstream() override;

  Status Start() override;
  void Stop() override;
  bool closed() const override;
  Result<Sent> Send(const storage::OutboxMessage& message, const DeviceContext& device) override;
  bool ready() const override;
  const std::string& name() const override { return name_; }

 private:
  struct Connection {
    std::unique_ptr<TrackedClient> client;
    PublishBucket bucket;
  };
  BrokerUpstream() = default;
  void OnMessage(const mqtt::Message& m);

  std::string name_;
  std::string site_;
  std::string topic_template_;
  int qos_ = 1;
  BrokerLimits limits_;
  uv_loop_t* loop_ = nullptr;
  UpstreamEvents events_;
  UpstreamCounters* counters_ = nullptr;
  std::optional<DownTopicMatcher> down_;
  std::vector<Connection> connections_;
  bool warned_qos_ = false;
};

// Reads a password file: its first line, without the line break.
Result<std::string> ReadSecretFile(const std::string& path);

}  // namespace edgetrust::forwarding::internal
