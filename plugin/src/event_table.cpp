#include <exception>
#include <string>

#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "broker_log.h"
#include "events.h"
#include "edgetrust/protocol/topics.h"

namespace edgetrust::plugin::internal {
namespace {

// A noexcept C callback around a handler: any exception becomes `kFailClosed`, so no C++
// exception ever unwinds through the broker.
template <int (*Handler)(PluginState&, void*), int kFailClosed>
int Trampoline(int event, void* event_data, void* userdata) noexcept {
  try {
    return Handler(*static_cast<PluginState*>(userdata), event_data);
  } catch (const std::exception& e) {
    try {
      LogError("event " + std::to_string(event) + " failed: " + e.what());
    } catch (...) {
    }
  } catch (...) {
    try {
      LogError("event " + std::to_string(event) + " failed with an unknown exception");
    } catch (...) {
    }
  }
  return kFailClosed;
}

struct EventEntry {
  int event;
  MOSQ_FUNC_generic_callback callback;
  const void* event_data;  // the control topic for MOSQ_EVT_CONTROL, else null
};

const std::string kControlTopic(protocol::kControlTopic);

const EventEntry kEvents[] = {
    {MOSQ_EVT_BASIC_AUTH, Trampoline<HandleBasicAuth, MOSQ_ERR_AUTH>, nullptr},
    {MOSQ_EVT_ACL_CHECK, Trampoline<HandleAclCheck, MOSQ_ERR_ACL_DENIED>, nullptr},
    {MOSQ_EVT_MESSAGE, Trampoline<HandleMessage, MOSQ_ERR_ACL_DENIED>, nullptr},
    {MOSQ_EVT_CONTROL, Trampoline<HandleControl, MOSQ_ERR_SUCCESS>, kControlTopic.c_str()},
    {MOSQ_EVT_TICK, Trampoline<HandleTick, MOSQ_ERR_SUCCESS>, nullptr},
    {MOSQ_EVT_RELOAD, Trampoline<HandleReload, MOSQ_ERR_PLUGIN_DEFER>, nullptr},
    {MOSQ_EVT_DISCONNECT, Trampoline<HandleDisconnect, MOSQ_ERR_SUCCESS>, nullptr},
};

}  // namespace

int RegisterEvents(PluginState& state) {
  for (size_t i = 0; i < std::size(kEvents); ++i) {
    const EventEntry& e = kEvents[i];
    int rc = mosquitto_callback_register(state.identifier(), e.event, e.callback, e.event_data,
                                         &state);
    if (rc != MOSQ_ERR_SUCCESS) {
      LogError("cannot register callback for event " + std::to_string(e.event) + ": " +
               mosquitto_strerror(rc));
      while (i-- > 0) {
        mosquitto_callback_unregister(state.identifier(), kEvents[i].event, kEvents[i].callback,
                                      kEvents[i].event_data);
      }
      return rc;
    }
  }
  return MOSQ_ERR_SUCCESS;
}

void UnregisterEvents(PluginState& state) {
  for (size_t i = std::size(kEvents); i-- > 0;) {
    mosquitto_callback_unregister(state.identifier(), kEvents[i].event, kEvents[i].callback,
                                  kEvents[i].event_data);
  }
}

}  // namespace edgetrust::plugin::internal
