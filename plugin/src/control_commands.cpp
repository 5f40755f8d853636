#include "edgetrust/plugin/control_commands.h"

#include <utility>

namespace edgetrust::plugin {
namespace {

using Json = nlohmann::json;

const std::string* StringField(const Json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return nullptr;
  return it->get_ptr<const std::string*>();
}

ControlCommand ParseOne(const Json& j) {
  ControlCommand cmd;
  if (!j.is_object()) {
    cmd.name = "Unknown command";
    cmd.error = "command is not a JSON object";
    return cmd;
  }
  if (const std::string* corr = StringField(j, "correlationData")) cmd.correlation_data = *corr;
  const std::string* name = StringField(j, "command");
  if (name == nullptr) {
    cmd.name = "Unknown command";
    cmd.error = "missing command";
    return cmd;
  }
  cmd.name = *name;
  if (*name == "kickDevice") {
    const std::string* device = StringField(j, "device");
    if (device == nullptr || !IsValidDeviceId(*device)) {
      cmd.error = "device must be a valid device id";
      return cmd;
    }
    cmd.kind = ControlCommand::Kind::kKickDevice;
    cmd.device = *device;
  } else if (*name == "kickFingerprint") {
    const std::string* hex = StringField(j, "fingerprint");
    std::optional<Bytes> fp = hex ? HexDecode(*hex) : std::nullopt;
    if (!fp || fp->size() != 32) {
      cmd.error = "fingerprint must be the hex SHA-256 of a certificate";
      return cmd;
    }
    cmd.kind = ControlCommand::Kind::kKickFingerprint;
    cmd.fingerprint = std::move(*fp);
  } else if (*name == "reloadStore") {
    cmd.kind = ControlCommand::Kind::kReloadStore;
  } else if (*name == "getStats") {
    cmd.kind = ControlCommand::Kind::kGetStats;
  } else {
    cmd.error = "Unknown command";
  }
  return cmd;
}

}  // namespace

Result<std::vector<ControlCommand>> ParseControlRequest(std::string_view payload) {
  if (payload.size() > kMaxControlPayload) {
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
  if (it->size() > kMaxControlCommands) {
    return MakeError(ErrorCode::kInvalidArgument, "too many commands");
  }
  std::vector<ControlCommand> commands;
  commands.reserve(it->size());
  for (const Json& c : *it) commands.push_back(ParseOne(c));
  return commands;
}

void ControlResponse::Ok(const ControlCommand& cmd, nlohmann::json data) {
  Json r = {{"command", cmd.name}, {"data", std::move(data)}};
  if (!cmd.correlation_data.empty()) r["correlationData"] = cmd.correlation_data;
  responses_.push_back(std::move(r));
}

void ControlResponse::Fail(const ControlCommand& cmd, std::string_view error) {
  Json r = {{"command", cmd.name}, {"error", std::string(error)}};
  if (!cmd.correlation_data.empty()) r["correlationData"] = cmd.correlation_data;
  responses_.push_back(std::move(r));
}

void ControlResponse::FailRequest(std::string_view error) {
  responses_.push_back({{"command", "Unknown command"}, {"error", std::string(error)}});
}

std::string ControlResponse::Serialize() const {
  // Replace invalid UTF-8 from hostile input rather than throwing.
  return Json{{"responses", responses_}}.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace edgetrust::plugin
