// Topic access per role: DESIGN.md's roles table (protocol::MayPublish/MaySubscribe/MayReceive)
// plus the plugin's own counters under $SYS/broker/edgetrust/, readable by gateway and admin.
#pragma once

#include <string_view>

#include "edgetrust/plugin/client_registry.h"

namespace edgetrust::plugin {

inline constexpr std::string_view kStatsTopicPrefix = "$SYS/broker/edgetrust/";

enum class Access { kPublish, kSubscribe, kUnsubscribe, kReceive };

// `topic` is a topic name for kPublish/kReceive and a filter for kSubscribe/kUnsubscribe.
// A connected client: nothing once it is cut off.
bool MayAccess(const ClientInfo& client, std::string_view prefix, Access access,
               std::string_view topic);
// What `role` grants the client `client_id` (also for a session whose client is away).
bool MayAccess(protocol::Role role, std::string_view client_id, std::string_view prefix,
               Access access, std::string_view topic);

}  // namespace edgetrust::plugin
