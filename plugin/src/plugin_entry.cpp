// The C shell: the only three symbols the module exports (see exports.map).
#include <exception>
#include <memory>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "broker_log.h"
#include "events.h"
#include "plugin_state.h"

namespace {

using edgetrust::plugin::internal::LogError;
using edgetrust::plugin::internal::LogInfo;
using edgetrust::plugin::internal::PluginState;

int Init(mosquitto_plugin_id_t* identifier, void** userdata, mosquitto_opt* options,
         int option_count) {
  namespace in = edgetrust::plugin::internal;
  auto opts = in::ParseOptions(options, option_count);
  if (!opts.ok()) {
    LogError(opts.error().message);
    return MOSQ_ERR_INVAL;
  }
  // No policy, no decisions: refusing to start is clearer than a broker that denies everyone.
  auto policy = edgetrust::plugin::LoadPolicySnapshot(opts->policy_path);
  if (!policy.ok()) {
    LogError("cannot load policy " + opts->policy_path + ": " + policy.error().ToString());
    return MOSQ_ERR_INVAL;
  }
  auto state = std::make_unique<PluginState>(identifier, std::move(opts).value(),
                                             std::move(policy).value());
  // An unreadable store is not fatal: the broker stays up and denies every client.
  state->TryOpenStore();
  int rc = in::RegisterEvents(*state);
  if (rc != MOSQ_ERR_SUCCESS) return rc;
  LogInfo("loaded: policy " + state->options().policy_path + " (site " +
          state->policy().policy.site + "), store " + state->options().store_path);
  *userdata = state.release();
  return MOSQ_ERR_SUCCESS;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int mosquitto_plugin_version(int supported_version_count,
                                                                    const int* supported_versions) {
  for (int i = 0; i < supported_version_count; ++i) {
    if (supported_versions[i] == 5) return 5;
  }
  return -1;
}

__attribute__((visibility("default"))) int mosquitto_plugin_init(mosquitto_plugin_id_t* identifier,
                                                                 void** userdata,
                                                                 mosquitto_opt* options,
                                                                 int option_count) {
  try {
    return Init(identifier, userdata, options, option_count);
  } catch (const std::exception& e) {
    LogError(std::string("init failed: ") + e.what());
  } catch (...) {
    LogError("init failed");
  }
  return MOSQ_ERR_UNKNOWN;
}

__attribute__((visibility("default"))) int mosquitto_plugin_cleanup(void* userdata,
                                                                    mosquitto_opt* /*options*/,
                                                                    int /*option_count*/) {
  try {
    std::unique_ptr<PluginState> state(static_cast<PluginState*>(userdata));
    if (state) edgetrust::plugin::internal::UnregisterEvents(*state);
  } catch (...) {
  }
  return MOSQ_ERR_SUCCESS;
}

}  // extern "C"
