#include "edgetrust/protocol/json_commands.h"

#include <utility>

namespace edgetrust::protocol {

using Json = nlohmann::json;

Result<std::vector<Json>> ParseCommandList(std::string_view payload) {
  if (payload.size() > kMaxCommandPayload) {
    return MakeError(ErrorCode::kInvalidArgument, "payload too large");
  }
  // No exceptions: a malformed payload is a normal input, answered with an error response.
  Json j = Json::parse(payload.begin(), payload.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return MakeError(ErrorCode::kInvalidArgument, "Payload not valid JSON");
  if (!j.is_object()) return MakeError(ErrorCode::kInvalidArgument, "Payload not a JSON object");
  auto it = j.find("commands");
  if (it == j.end() || !it->is_array()) {
    return MakeError(ErrorCode::kInvalidArgument, "Invalid/missing commands");
  }
  if (it->size() > kMaxCommands) {
    return MakeError(ErrorCode::kInvalidArgument, "too many commands");
  }
  std::vector<Json> entries;
  entries.reserve(it->size());
  for (Json& entry : *it) entries.push_back(std::move(entry));
  return entries;
}

CommandHeader ReadCommandHeader(const Json& entry) {
  CommandHeader h;
  if (!entry.is_object()) {
    h.name = "Unknown command";
    h.error = "command is not a JSON object";
    return h;
  }
  if (const std::string* corr = StringField(entry, "correlationData")) h.correlation_data = *corr;
  const std::string* name = StringField(entry, "command");
  if (name == nullptr) {
    h.name = "Unknown command";
    h.error = "missing command";
    return h;
  }
  h.name = *name;
  return h;
}

const std::string* StringField(const Json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return nullptr;
  return it->get_ptr<const std::string*>();
}

void CommandResponse::Ok(const CommandHeader& cmd, Json data) {
  Json r = {{"command", cmd.name}, {"data", std::move(data)}};
  if (!cmd.correlation_data.empty()) r["correlationData"] = cmd.correlation_data;
  responses_.push_back(std::move(r));
}

void CommandResponse::Fail(const CommandHeader& cmd, std::string_view error) {
  Json r = {{"command", cmd.name}, {"error", std::string(error)}};
  if (!cmd.correlation_data.empty()) r["correlationData"] = cmd.correlation_data;
  responses_.push_back(std::move(r));
}

void CommandResponse::FailRequest(std::string_view error) {
  responses_.push_back({{"command", "Unknown command"}, {"error", std::string(error)}});
}

std::string CommandResponse::Serialize() const {
  return Json{{"responses", responses_}}.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace edgetrust::protocol
