#include "edgetrust/plugin/counters.h"

#include <numeric>

namespace edgetrust::plugin {

uint64_t Counters::denied_total() const {
  return std::accumulate(denied.begin(), denied.end(), uint64_t{0});
}

std::vector<std::pair<std::string, std::string>> Counters::Topics(size_t clients,
                                                                  size_t offline_sessions) const {
  std::vector<std::pair<std::string, std::string>> out;
  auto add = [&](std::string name, uint64_t v) { out.emplace_back(std::move(name), std::to_string(v)); };
  add("clients/connected", clients);
  add("clients/offline_sessions", offline_sessions);
  add("connect/allowed", allowed);
  add("connect/denied", denied_total());
  for (size_t i = 1; i < denied.size(); ++i) {
    add("connect/denied/" + std::string(DenyReasonName(static_cast<DenyReason>(i))), denied[i]);
  }
  add("sessions/kicked", kicked);
  add("sessions/expired", expired_sessions);
  add("acl/denied", acl_denied);
  add("acl/queued_for_offline", queued_for_offline);
  add("messages/stamped", messages_stamped);
  add("messages/forged_stamps_removed", forged_stamps_removed);
  add("control/commands", control_commands);
  add("revocations/applied", revocations_applied);
  add("policy/reloads", policy_reloads);
  add("policy/reload_failures", policy_reload_failures);
  add("ticks", ticks);
  return out;
}

nlohmann::json Counters::ToJson(size_t clients, size_t offline_sessions) const {
  nlohmann::json j = nlohmann::json::object();
  for (auto& [name, value] : Topics(clients, offline_sessions)) j[name] = std::stoull(value);
  return j;
}

}  // namespace edgetrust::plugin
