// MOSQ_EVT_DISCONNECT: fired from context__disconnect for every handle, authenticated or not,
// before the broker sends the will. Forgetting the client here also means a will is refused
// by the ACL check (no entry): a will could otherwise carry a forged et-cert-sha256 that
// MOSQ_EVT_MESSAGE never sees. A session that stays (clean session off) keeps an offline
// entry, which lets the broker queue what the client may receive, and nothing else.
#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "events.h"

namespace edgetrust::plugin::internal {

int HandleDisconnect(PluginState& state, void* event_data) {
  auto* ev = static_cast<mosquitto_evt_disconnect*>(event_data);
  if (!mosquitto_client_clean_session(ev->client)) {
    state.clients.KeepOffline(ev->client, UnixNow());
  } else {
    state.clients.Remove(ev->client);
  }
  return MOSQ_ERR_SUCCESS;
}

}  // namespace edgetrust::plugin::internal
