// A cloud's per-connection limits, checked before sending because clouds answer a violation by
// dropping the whole connection. Used by every connection that has BrokerLimits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "edgetrust/common/result.h"
#include "edgetrust/forwarding/upstream.h"

namespace edgetrust::forwarding::internal {

struct BrokerLimits {
  std::string kind = "mqtt";       // for log lines
  int max_qos = 2;                 // higher requests are downgraded (warned once, counted)
  size_t max_payload_bytes = 0;    // 0 = no limit
  int max_topic_slashes = -1;      // -1 = no limit
  size_t max_topic_bytes = 0;      // 0 = no limit
  double publishes_per_second = 0; // per connection; 0 = no limit
  int max_in_flight = 128;         // QoS 1 publishes unacknowledged per connection (the forwarder's window)
};

// The topic an outbox message is published on, from the upstream's topic template.
Result<std::string> MessageTopic(std::string_view topic_template, std::string_view site,
                                 const storage::OutboxMessage& message, const DeviceContext& device);

// The QoS a message is sent with: the lowest of what it asked, what the upstream is configured
// for and what the kind allows. A message asking more than the kind allows is counted as
// downgraded; the first one of an upstream is also said on stderr (`*warned` remembers it).
int SendQos(const BrokerLimits& limits, int asked, int configured, const std::string& upstream,
            UpstreamCounters* counters, bool* warned);

// kInvalidArgument (counted as a limit violation) when a message of `payload_bytes` to `topic`
// can never be sent under `limits`.
Status CheckMessageLimits(const BrokerLimits& limits, std::string_view topic, size_t payload_bytes,
                          UpstreamCounters* counters);

// Publishes per second of one connection: full (`rate` tokens) at first, refilled continuously.
// A rate <= 0 is unlimited.
class PublishBucket {
 public:
  PublishBucket() = default;
  PublishBucket(double rate, uint64_t now_ms) : rate_(rate), tokens_(rate), refilled_at_ms_(now_ms) {}
  // False when the connection must wait.
  bool Take(uint64_t now_ms);

 private:
  double rate_ = 0;
  double tokens_ = 0;
  uint64_t refilled_at_ms_ = 0;
};

}  // namespace edgetrust::forwarding::internal
