// What the plugin counts, published under $SYS/broker/edgetrust/ and answered to getStats.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "edgetrust/plugin/connect_decider.h"

namespace edgetrust::plugin {

struct Counters {
  uint64_t allowed = 0;
  std::array<uint64_t, kDenyReasonCount> denied{};  // by DenyReason
  uint64_t kicked = 0;
  uint64_t expired_sessions = 0;
  uint64_t acl_denied = 0;
  uint64_t messages_stamped = 0;
  uint64_t forged_stamps_removed = 0;
  uint64_t control_commands = 0;
  uint64_t revocations_applied = 0;  // revocation log entries read
  uint64_t policy_reloads = 0;
  uint64_t policy_reload_failures = 0;
  uint64_t ticks = 0;  // MOSQ_EVT_TICK calls: shows how often the broker gives us the loop
  uint64_t queued_for_offline = 0;  // messages let into the queue of a session whose client is away

  void CountDenied(DenyReason reason) { ++denied[static_cast<size_t>(reason)]; }
  uint64_t denied_total() const;

  // (topic below $SYS/broker/edgetrust/, decimal value); `clients` = connected right now,
  // `offline_sessions` = sessions kept for clients that are away.
  std::vector<std::pair<std::string, std::string>> Topics(size_t clients,
                                                          size_t offline_sessions) const;
  nlohmann::json ToJson(size_t clients, size_t offline_sessions) const;
};

}  // namespace edgetrust::plugin
