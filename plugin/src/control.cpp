// MOSQ_EVT_CONTROL on $CONTROL/edgetrust/v1: the gateway (or an admin) tells the plugin to
// disconnect a device at once. The ACL check has already limited the topic to gateway and
// admin; the role is checked again here. Kicks are only queued: the broker calls the tick
// right after the network events of the same loop iteration, so they land within
// milliseconds without this callback touching another client.
#include <string>

#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "broker_log.h"
#include "edgetrust/plugin/control_commands.h"
#include "events.h"

namespace edgetrust::plugin::internal {
namespace {

size_t KickMatching(PluginState& state, const std::function<bool(const ClientInfo&)>& match,
                    const std::string& reason) {
  std::vector<ClientRegistry::Key> keys;
  state.clients.ForEach([&](ClientRegistry::Key key, ClientInfo& info) {
    if (!info.cut_off && match(info)) keys.push_back(key);
  });
  for (ClientRegistry::Key key : keys) state.QueueKick(key, reason);
  return keys.size();
}

void Run(PluginState& state, const ControlCommand& cmd, const std::string& caller,
         ControlResponse& response) {
  ++state.counters.control_commands;
  using Kind = ControlCommand::Kind;
  switch (cmd.kind) {
    case Kind::kKickDevice: {
      size_t n = KickMatching(
          state, [&](const ClientInfo& c) { return c.client_id == cmd.device; },
          "kickDevice from " + caller);
      response.Ok(cmd, {{"device", cmd.device}, {"sessions", n}});
      return;
    }
    case Kind::kKickFingerprint: {
      const std::string hex = HexEncode(cmd.fingerprint);
      size_t n = KickMatching(
          state, [&](const ClientInfo& c) { return c.fingerprint_hex == hex; },
          "kickFingerprint from " + caller);
      response.Ok(cmd, {{"fingerprint", hex}, {"sessions", n}});
      return;
    }
    case Kind::kReloadStore:
      if (!state.store_open()) state.TryOpenStore();
      state.poll_store_now = true;
      response.Ok(cmd, {{"storeOpen", state.store_open()}});
      return;
    case Kind::kGetStats:
      response.Ok(cmd, state.counters.ToJson(state.clients.size(), state.clients.offline_size()));
      return;
    case Kind::kInvalid:
      response.Fail(cmd, cmd.error);
      return;
  }
}

}  // namespace

int HandleControl(PluginState& state, void* event_data) {
  auto* ev = static_cast<mosquitto_evt_control*>(event_data);
  const ClientInfo* caller = state.clients.Find(ev->client);
  if (caller == nullptr || caller->cut_off ||
      (caller->role != protocol::Role::kGateway && caller->role != protocol::Role::kAdmin)) {
    ++state.counters.acl_denied;
    return MOSQ_ERR_ACL_DENIED;
  }
  const std::string caller_id = caller->client_id;  // `caller` may not outlive a kick

  ControlResponse response;
  auto commands = ParseControlRequest(
      std::string_view(static_cast<const char*>(ev->payload), ev->payloadlen));
  if (!commands.ok()) {
    LogWarning("control request from '" + Printable(caller_id) + "' refused: " +
               commands.error().message);
    response.FailRequest(commands.error().message);
  } else {
    for (const ControlCommand& cmd : *commands) Run(state, cmd, caller_id, response);
  }
  const std::string body = response.Serialize();
  mosquitto_broker_publish_copy(caller_id.c_str(), std::string(protocol::kControlResponseTopic).c_str(),
                                static_cast<int>(body.size()), body.data(), 0, false, nullptr);
  return MOSQ_ERR_SUCCESS;
}

}  // namespace edgetrust::plugin::internal
