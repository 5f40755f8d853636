// Any bytes as a $CONTROL/edgetrust/v1 request: ParseControlRequest returns an Error or a list of
// commands (never throws, hangs or crashes), each command is either usable or carries the reason
// it is not, the response to it is valid JSON with one entry per command, and the usable
// commands, written back as a request, parse to the same commands.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "edgetrust/plugin/control_commands.h"

using namespace edgetrust;
using namespace edgetrust::plugin;
using Kind = ControlCommand::Kind;

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

nlohmann::json Rewrite(const ControlCommand& c) {
  nlohmann::json j = {{"command", c.name}};
  if (c.kind == Kind::kKickDevice) j["device"] = c.device;
  if (c.kind == Kind::kKickFingerprint) j["fingerprint"] = HexEncode(c.fingerprint);
  if (!c.correlation_data.empty()) j["correlationData"] = c.correlation_data;
  return j;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view payload(reinterpret_cast<const char*>(data), size);
  auto commands = ParseControlRequest(payload);
  ControlResponse response;
  if (!commands.ok()) {
    Check(!commands.error().message.empty());
    response.FailRequest(commands.error().message);
    Check(!nlohmann::json::parse(response.Serialize(), nullptr, false).is_discarded());
    return 0;
  }
  Check(commands->size() <= kMaxControlCommands);
  nlohmann::json again = {{"commands", nlohmann::json::array()}};
  for (const ControlCommand& c : *commands) {
    switch (c.kind) {
      case Kind::kKickDevice: Check(IsValidDeviceId(c.device) && c.error.empty()); break;
      case Kind::kKickFingerprint: Check(c.fingerprint.size() == 32 && c.error.empty()); break;
      case Kind::kReloadStore:
      case Kind::kGetStats: Check(c.error.empty()); break;
      case Kind::kInvalid: Check(!c.error.empty()); break;
    }
    if (c.kind == Kind::kInvalid) {
      response.Fail(c, c.error);
    } else {
      response.Ok(c, {{"device", c.device}});
      again["commands"].push_back(Rewrite(c));
    }
  }
  auto out = nlohmann::json::parse(response.Serialize(), nullptr, false);
  Check(!out.is_discarded() && out["responses"].size() == commands->size());

  auto reparsed = ParseControlRequest(again.dump());
  Check(reparsed.ok());
  size_t i = 0;
  for (const ControlCommand& c : *commands) {
    if (c.kind == Kind::kInvalid) continue;
    Check(i < reparsed->size());
    const ControlCommand& r = (*reparsed)[i++];
    Check(r.kind == c.kind && r.name == c.name && r.device == c.device &&
          r.fingerprint == c.fingerprint && r.correlation_data == c.correlation_data);
  }
  Check(i == reparsed->size());
  return 0;
}
