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

struct ControlCommand {
  enum class Kind { kKickDevice, kKickFingerprint, kReloadStore, kGetStats, kInvalid };
  Kind kind = Kind::kInvalid;
  std::string name;              // as sent ("kickDevice"), for the response
  std::string device;            // kKickDevice: a valid device id
  Bytes fingerprint;             // kKickFingerprint: 32 bytes
  std::string error;             // kInvalid: why
  std::string correlation_data;  // echoed back when it was a string
};

// kInvalidArgument when the payload is not a JSON object with a "commands" array; a single bad
// command becomes a kInvalid entry so the others still run.
Result<std::vector<ControlCommand>> ParseControlRequest(std::string_view payload);

class ControlResponse {
 public:
  void Ok(const ControlCommand& cmd, nlohmann::json data = nlohmann::json::object());
  void Fail(const ControlCommand& cmd, std::string_view error);
  // For a request that could not be parsed at all.
  void FailRequest(std::string_view error);
  std::string Serialize() const;

 private:
  protocol::CommandResponse response_;
};

}  // namespace edgetrust::plugin
