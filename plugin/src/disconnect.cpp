// MOSQ_EVT_DISCONNECT: fired from context__disconnect for every handle, authenticated or not,
// before the broker sends the will. Forgetting the client here also means a will is refused
// by the ACL check (no entry): a will could otherwise carry a forged et-cert-sha256 that
// MOSQ_EVT_MESSAGE never sees.
#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "events.h"

namespace edgetrust::plugin::internal {

int HandleDisconnect(PluginState& state, void* event_data) {
  auto* ev = static_cast<mosquitto_evt_disconnect*>(event_data);
  state.clients.Remove(ev->client);
  return MOSQ_ERR_SUCCESS;
}

}  // namespace edgetrust::plugin::internal
