#include "edgetrust/plugin/access_rules.h"

#include "edgetrust/protocol/topics.h"

namespace edgetrust::plugin {
namespace {

bool IsOperator(protocol::Role role) {
  return role == protocol::Role::kGateway || role == protocol::Role::kAdmin;
}

bool UnderStats(std::string_view topic) { return topic.starts_with(kStatsTopicPrefix); }

}  // namespace

bool MayAccess(const ClientInfo& client, std::string_view prefix, Access access,
               std::string_view topic) {
  return !client.cut_off && MayAccess(client.role, client.client_id, prefix, access, topic);
}

bool MayAccess(protocol::Role role, std::string_view id, std::string_view prefix, Access access,
               std::string_view topic) {
  switch (access) {
    case Access::kPublish:
      return protocol::MayPublish(role, prefix, id, topic);
    case Access::kSubscribe:
    case Access::kUnsubscribe:
      // Unsubscribing is confined like subscribing: nothing outside the role was ever granted.
      if (IsOperator(role) && UnderStats(topic)) return protocol::IsValidTopicFilter(topic);
      return protocol::MaySubscribe(role, prefix, id, topic);
    case Access::kReceive:
      if (IsOperator(role) && UnderStats(topic)) return true;
      return protocol::MayReceive(role, prefix, id, topic);
  }
  return false;
}

}  // namespace edgetrust::plugin
