#include "upstream_limits.h"

#include <algorithm>
#include <cstdio>
#include <string>

#include "topic_template.h"

namespace edgetrust::forwarding::internal {

Result<std::string> MessageTopic(std::string_view topic_template, std::string_view site,
                                 const storage::OutboxMessage& message, const DeviceContext& device) {
  return ExpandTopic(topic_template, {.site = site,
                                      .device = message.device_id,
                                      .channel = message.channel,
                                      .group = device.group,
                                      .model = device.model,
                                      .manufacturer = device.manufacturer});
}

int SendQos(const BrokerLimits& limits, int asked, int configured, const std::string& upstream,
            UpstreamCounters* counters, bool* warned) {
  if (asked > limits.max_qos) {
    counters->qos_downgraded++;
    if (!*warned) {
      *warned = true;
      std::fprintf(stderr,
                   "forwarding: upstream '%s' (%s) supports QoS <= %d; QoS %d messages are sent "
                   "with QoS %d\n",
                   upstream.c_str(), limits.kind.c_str(), limits.max_qos, asked, limits.max_qos);
    }
  }
  return std::min({asked, configured, limits.max_qos});
}

Status CheckMessageLimits(const BrokerLimits& limits, std::string_view topic, size_t payload_bytes,
                          UpstreamCounters* counters) {
  if (limits.max_payload_bytes > 0 && payload_bytes > limits.max_payload_bytes) {
    counters->limit_violations++;
    return MakeError(ErrorCode::kInvalidArgument,
                     limits.kind + ": payload of " + std::to_string(payload_bytes) +
                         " bytes exceeds " + std::to_string(limits.max_payload_bytes));
  }
  if (limits.max_topic_slashes >= 0 &&
      std::count(topic.begin(), topic.end(), '/') > limits.max_topic_slashes) {
    counters->limit_violations++;
    return MakeError(ErrorCode::kInvalidArgument,
                     limits.kind + ": topic '" + std::string(topic) + "' has more than " +
                         std::to_string(limits.max_topic_slashes) + " '/'");
  }
  if (limits.max_topic_bytes > 0 && topic.size() > limits.max_topic_bytes) {
    counters->limit_violations++;
    return MakeError(ErrorCode::kInvalidArgument,
                     limits.kind + ": topic longer than " + std::to_string(limits.max_topic_bytes) +
                         " bytes");
  }
  return OkStatus();
}

bool PublishBucket::Take(uint64_t now_ms) {
  if (rate_ <= 0) return true;
  if (now_ms > refilled_at_ms_) {
    tokens_ = std::min(rate_, tokens_ + rate_ * static_cast<double>(now_ms - refilled_at_ms_) / 1000.0);
    refilled_at_ms_ = now_ms;
  }
  if (tokens_ < 1.0) return false;
  tokens_ -= 1.0;
  return true;
}

}  // namespace edgetrust::forwarding::internal
