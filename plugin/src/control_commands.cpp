#include "edgetrust/plugin/control_commands.h"

#include <utility>

namespace edgetrust::plugin {
namespace {

using Json = nlohmann::json;
using protocol::StringField;

ControlCommand ParseOne(const Json& j) {
  ControlCommand cmd;
  protocol::CommandHeader header = protocol::ReadCommandHeader(j);
  cmd.name = std::move(header.name);
  cmd.correlation_data = std::move(header.correlation_data);
  if (!header.error.empty()) {
    cmd.error = std::move(header.error);
    return cmd;
  }
  if (cmd.name == "kickDevice") {
    const std::string* device = StringField(j, "device");
    if (device == nullptr || !IsValidDeviceId(*device)) {
      cmd.error = "device must be a valid device id";
      return cmd;
    }
    cmd.kind = ControlCommand::Kind::kKickDevice;
    cmd.device = *device;
  } else if (cmd.name == "kickFingerprint") {
    const std::string* hex = StringField(j, "fingerprint");
    std::optional<Bytes> fp = hex ? HexDecode(*hex) : std::nullopt;
    if (!fp || fp->size() != 32) {
      cmd.error = "fingerprint must be the hex SHA-256 of a certificate";
      return cmd;
    }
    cmd.kind = ControlCommand::Kind::kKickFingerprint;
    cmd.fingerprint = std::move(*fp);
  } else if (cmd.name == "reloadStore") {
    cmd.kind = ControlCommand::Kind::kReloadStore;
  } else if (cmd.name == "getStats") {
    cmd.kind = ControlCommand::Kind::kGetStats;
  } else {
    cmd.error = "Unknown command";
  }
  return cmd;
}

protocol::CommandHeader HeaderOf(const ControlCommand& cmd) {
  return {.name = cmd.name, .correlation_data = cmd.correlation_data, .error = cmd.error};
}

}  // namespace

Result<std::vector<ControlCommand>> ParseControlRequest(std::string_view payload) {
  ET_ASSIGN_OR_RETURN(std::vector<Json> entries, protocol::ParseCommandList(payload));
  std::vector<ControlCommand> commands;
  commands.reserve(entries.size());
  for (const Json& c : entries) commands.push_back(ParseOne(c));
  return commands;
}

void ControlResponse::Ok(const ControlCommand& cmd, nlohmann::json data) {
  response_.Ok(HeaderOf(cmd), std::move(data));
}

void ControlResponse::Fail(const ControlCommand& cmd, std::string_view error) {
  response_.Fail(HeaderOf(cmd), error);
}

void ControlResponse::FailRequest(std::string_view error) { response_.FailRequest(error); }

std::string ControlResponse::Serialize() const { return response_.Serialize(); }

}  // namespace edgetrust::plugin
