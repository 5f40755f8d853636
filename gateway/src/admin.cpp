// The gateway's admin API: JSON commands on {prefix}/_admin/v1/req, answered on
// {prefix}/_admin/v1/res, in the framing the plugin's $CONTROL API uses
// (edgetrust/protocol/json_commands.h). Only the policy's admin principals can publish the
// request topic (the plugin's topic rules), so a request is acted upon as it comes.
//   reloadPolicy  what SIGHUP does; the error says why a policy was refused
//   getStatus     the broker link, the policy, waiting requests, and per upstream: connected,
//                 counters since start, and what waits in its outbox
#include <nlohmann/json.hpp>

#include "edgetrust/gateway/gateway.h"
#include "edgetrust/protocol/json_commands.h"
#include "edgetrust/protocol/topics.h"

namespace edgetrust::gateway {

using Json = nlohmann::json;

namespace {

// Each group's route ("" when it has none), as both commands report it.
Json RoutesOf(const policies::Policy& policy) {
  Json routes = Json::object();
  for (const auto& g : policy.groups) routes[g.name] = g.route;
  return routes;
}

}  // namespace

void Gateway::HandleAdmin(const mqtt::Message& message) {
  const std::string& prefix = authority_->policy.topic_prefix;
  std::string response = AnswerAdmin(std::string_view(
      reinterpret_cast<const char*>(message.payload.data()), message.payload.size()));
  auto mid = client_->Publish(protocol::AdminResponseTopic(prefix),
                              ByteView(reinterpret_cast<const uint8_t*>(response.data()),
                                       response.size()),
                              1);
  if (!mid.ok()) log_.Warn("admin_response_not_sent", {{"error", mid.error().ToString()}});
}

std::string Gateway::AnswerAdmin(std::string_view payload) {
  protocol::CommandResponse response;
  auto entries = protocol::ParseCommandList(payload);
  if (!entries.ok()) {
    log_.Warn("admin_request_refused", {{"error", entries.error().message}});
    response.FailRequest(entries.error().message);
    return response.Serialize();
  }
  for (const Json& entry : *entries) {
    protocol::CommandHeader cmd = protocol::ReadCommandHeader(entry);
    if (!cmd.error.empty()) {
      response.Fail(cmd, cmd.error);
    } else if (cmd.name == "reloadPolicy") {
      log_.Info("admin_command", {{"command", cmd.name}});
      if (Status st = Reload(); !st.ok()) {
        response.Fail(cmd, st.error().message);
      } else {
        response.Ok(cmd, {{"groups", authority_->policy.groups.size()},
                          {"routes", RoutesOf(authority_->policy)}});
      }
    } else if (cmd.name == "getStatus") {
      Json upstreams = Json::object();
      if (forwarder_) {
        for (const auto& [name, c] : forwarder_->counters()) {
          Json u = {{"connected", c.connects > c.disconnects},
                    {"queued", c.queued},
                    {"sent", c.sent},
                    {"acked", c.acked},
                    {"dropped", c.dropped},
                    {"refused", c.refused},
                    {"rejected", c.rejected},
                    {"limit_violations", c.limit_violations},
                    {"downlinks", c.downlinks},
                    {"downlinks_refused", c.downlinks_refused}};
          if (auto usage = forwarder_->QueueUsage(name); usage.ok()) {
            u["outbox"] = {{"messages", usage->count}, {"bytes", usage->bytes}};
          }
          upstreams[name] = std::move(u);
        }
      }
      response.Ok(cmd, {{"site", authority_->policy.site},
                        {"broker_connected", client_->connected()},
                        {"policy", {{"groups", authority_->policy.groups.size()},
                                    {"routes", RoutesOf(authority_->policy)}}},
                        {"requests_waiting", queued_requests_},
                        {"forwarding", forwarder_ != nullptr},
                        {"unrouted", forwarder_ ? forwarder_->unrouted() : 0},
                        {"upstreams", upstreams}});
    } else {
      response.Fail(cmd, "Unknown command");
    }
  }
  return response.Serialize();
}

}  // namespace edgetrust::gateway
