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
  if (client.cut_off) return false;
  const std::string& id = client.client_id;
  switch (access) {
    case Access::kPublish:
      return protocol::MayPublish(client.role, prefix, id, topic);
    case Access::kSubscribe:
    case Access::kUnsubscribe:
      // Unsubscribing is confined like subscribing: nothing outside the role was ever granted.
      if (IsOperator(client.role) && UnderStats(topic)) return protocol::IsValidTopicFilter(topic);
      return protocol::MaySubscribe(client.role, prefix, id, topic);
    case Access::kReceive:
      if (IsOperator(client.role) && UnderStats(topic)) return true;
      return protocol::MayReceive(client.role, prefix, id, topic);
  }
  return false;
}

}  // namespace edgetrust::plugin
