// One handler per broker event, each in its own file. Handlers may throw or fail freely: the
// trampolines in event_table.cpp catch everything and turn it into the fail-closed answer.
#pragma once

#include "plugin_state.h"

namespace edgetrust::plugin::internal {

int HandleBasicAuth(PluginState& state, void* event_data);   // auth.cpp
int HandleAclCheck(PluginState& state, void* event_data);    // acl.cpp
int HandleMessage(PluginState& state, void* event_data);     // message.cpp
int HandleControl(PluginState& state, void* event_data);     // control.cpp
int HandleTick(PluginState& state, void* event_data);        // tick.cpp
int HandleReload(PluginState& state, void* event_data);      // reload.cpp
int HandleDisconnect(PluginState& state, void* event_data);  // disconnect.cpp

// Registers every callback in table order; on failure unregisters what was registered.
int RegisterEvents(PluginState& state);
// Unregisters in reverse table order.
void UnregisterEvents(PluginState& state);

// Kicks queued by callbacks; called by the tick (tick.cpp).
void DrainKicks(PluginState& state);

}  // namespace edgetrust::plugin::internal
