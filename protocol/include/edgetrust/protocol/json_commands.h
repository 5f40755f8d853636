// The JSON command framing that both admin APIs share, after Mosquitto's dynamic-security API:
// the plugin's $CONTROL/edgetrust/v1 and the gateway's {prefix}/_admin/v1/req.
//   request  {"commands":[{"command":"NAME", …arguments…, "correlationData":"…"}, …]}
//   response {"responses":[{"command":"NAME","data":{…},"correlationData":"…"}
//                          | {"command":"NAME","error":"text","correlationData":"…"}]}
// One response per command, in order; a request that cannot be read at all gets one error.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "edgetrust/common/result.h"

namespace edgetrust::protocol {

inline constexpr size_t kMaxCommandPayload = 64 * 1024;
inline constexpr size_t kMaxCommands = 256;

// What every entry of "commands" carries besides its arguments.
struct CommandHeader {
  std::string name;              // as sent, for the response; "Unknown command" when missing
  std::string correlation_data;  // echoed back when it was a string
  std::string error;             // set when the entry is no object or has no "command"
};

// The entries of {"commands":[…]}. kInvalidArgument, with the text to answer, for a payload
// larger than kMaxCommandPayload, not JSON, not an object, without a "commands" array, or with
// more than kMaxCommands entries. Never throws.
Result<std::vector<nlohmann::json>> ParseCommandList(std::string_view payload);

CommandHeader ReadCommandHeader(const nlohmann::json& entry);

// The string field `key` of `obj`, or nullptr when it is absent or not a string.
const std::string* StringField(const nlohmann::json& obj, const char* key);

class CommandResponse {
 public:
  void Ok(const CommandHeader& cmd, nlohmann::json data = nlohmann::json::object());
  void Fail(const CommandHeader& cmd, std::string_view error);
  // For a request that could not be read at all.
  void FailRequest(std::string_view error);
  // Invalid UTF-8 from hostile input is replaced, not thrown on.
  std::string Serialize() const;

 private:
  nlohmann::json responses_ = nlohmann::json::array();
};

}  // namespace edgetrust::protocol
