// MOSQ_EVT_RELOAD (SIGHUP): a new policy replaces the running one only if it loads whole.
// Returns MOSQ_ERR_PLUGIN_DEFER: in 2.0.11 anything else stops the broker's own reload
// (mosquitto_security_init returns before mosquitto_security_init_default).
#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "broker_log.h"
#include "events.h"

namespace edgetrust::plugin::internal {

int HandleReload(PluginState& state, void* /*event_data*/) {
  const std::string& path = state.options().policy_path;
  auto policy = LoadPolicySnapshot(path);
  if (!policy.ok()) {
    ++state.counters.policy_reload_failures;
    LogError("policy reload from " + path + " refused, keeping the running policy: " +
             policy.error().ToString());
    return MOSQ_ERR_PLUGIN_DEFER;
  }
  state.SetPolicy(std::move(policy).value());
  ++state.counters.policy_reloads;
  // Principals may have been removed, re-enrollment switched off: the tick re-decides sessions.
  state.recheck_all_sessions = true;
  state.poll_store_now = true;
  LogInfo("policy reloaded from " + path);
  return MOSQ_ERR_PLUGIN_DEFER;
}

}  // namespace edgetrust::plugin::internal
