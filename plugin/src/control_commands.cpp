#include "edgetrust/plugin/control_commands.h"

#include <utility>

namespace edgetrust::plugin {
namespace {

using Json = nlohmann::json;
using protocol::StringField;

ControlCommand ParseOne(const Json& j) {
  ControlCommand cmd;
  static_cast<protocol::CommandHeader&>(cmd) = protocol::ReadCommandHeader(j);
  if (!cmd.error.empty()) return cmd;
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

}  // namespace

Result<std::vector<ControlCommand>> ParseControlRequest(std::string_view payload) {
  ET_ASSIGN_OR_RETURN(std::vector<Json> entries, protocol::ParseCommandList(payload));
  std::vector<ControlCommand> commands;
  commands.reserve(entries.size());
  for (const Json& c : entries) commands.push_back(ParseOne(c));
  return commands;
}

}  // namespace edgetrust::plugin
