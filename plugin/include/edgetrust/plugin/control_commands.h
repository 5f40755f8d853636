// The $CONTROL/edgetrust/v1 commands, in the framing of edgetrust/protocol/json_commands.h
// (after Mosquitto's dynamic-security API):
//   request  {"commands":[{"command":"kickDevice","device":"ID","correlationData":"…"}, …]}
//   response {"responses":[{"command":"kickDevice","data":{…},"correlationData":"…"}
//                          | {"command":"…","error":"text"}]}
// Commands: kickDevice {device}, kickFingerprint {fingerprint: hex SHA-256}, reloadStore, getStats.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "edgetrust/common/bytes.h"
#include "edgetrust/common/result.h"
#include "edgetrust/protocol/json_commands.h"

namespace edgetrust::plugin {

inline constexpr size_t kMaxControlPayload = protocol::kMaxCommandPayload;
inline constexpr size_t kMaxControlCommands = protocol::kMaxCommands;

// name, correlation_data and error (kInvalid: why) come from the shared framing.
struct ControlCommand : protocol::CommandHeader {
  enum class Kind { kKickDevice, kKickFingerprint, kReloadStore, kGetStats, kInvalid };
  Kind kind = Kind::kInvalid;
  std::string device;  // kKickDevice: a valid device id
  Bytes fingerprint;   // kKickFingerprint: 32 bytes
};

// kInvalidArgument when the payload is not a JSON object with a "commands" array; a single bad
// command becomes a kInvalid entry so the others still run.
Result<std::vector<ControlCommand>> ParseControlRequest(std::string_view payload);

// Takes a ControlCommand wherever it takes a CommandHeader.
using ControlResponse = protocol::CommandResponse;

}  // namespace edgetrust::plugin
