// MOSQ_EVT_ACL_CHECK: every publish, subscribe, unsubscribe and delivery. An unknown client
// (no successful CONNECT decision on this handle) gets nothing. Mosquitto has already refused
// writes to $SYS and non-subscribe access to $share before calling us.
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "edgetrust/plugin/access_rules.h"
#include "events.h"

namespace edgetrust::plugin::internal {

int HandleAclCheck(PluginState& state, void* event_data) {
  auto* ev = static_cast<mosquitto_evt_acl_check*>(event_data);
  const ClientInfo* client = state.clients.Find(ev->client);
  Access access;
  switch (ev->access) {
    case MOSQ_ACL_WRITE: access = Access::kPublish; break;
    case MOSQ_ACL_READ: access = Access::kReceive; break;
    case MOSQ_ACL_SUBSCRIBE: access = Access::kSubscribe; break;
    case MOSQ_ACL_UNSUBSCRIBE: access = Access::kUnsubscribe; break;
    default: client = nullptr; access = Access::kPublish; break;
  }
  if (client != nullptr && ev->topic != nullptr &&
      MayAccess(*client, state.topic_prefix(), access, ev->topic)) {
    return MOSQ_ERR_SUCCESS;
  }
  // Queueing for a session whose client is away: receive rights only.
  if (client == nullptr && ev->access == MOSQ_ACL_READ && ev->topic != nullptr) {
    const char* id = mosquitto_client_id(ev->client);
    if (const OfflineSession* away = id ? state.clients.FindOffline(id) : nullptr) {
      if (MayAccess(away->role, id, state.topic_prefix(), Access::kReceive, ev->topic)) {
        ++state.counters.queued_for_offline;
        return MOSQ_ERR_SUCCESS;
      }
    }
  }
  ++state.counters.acl_denied;
  return MOSQ_ERR_ACL_DENIED;
}

}  // namespace edgetrust::plugin::internal
