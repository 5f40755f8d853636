#include "edgetrust/storage/records.h"

#include <array>
#include <string>
#include <utility>

namespace edgetrust::storage {
namespace {

constexpr std::array<std::pair<DeviceState, std::string_view>, 5> kStateNames{{
    {DeviceState::kManufactured, "manufactured"},
    {DeviceState::kActive, "active"},
    {DeviceState::kTransferPending, "transfer_pending"},
    {DeviceState::kRetired, "retired"},
    {DeviceState::kCompromised, "compromised"},
}};

constexpr std::array<std::pair<CertificateKind, std::string_view>, 4> kKindNames{{
    {CertificateKind::kBirth, "birth"},
    {CertificateKind::kOperational, "operational"},
    {CertificateKind::kPrincipal, "principal"},
    {CertificateKind::kCloud, "cloud"},
}};

}  // namespace

std::string_view DeviceStateName(DeviceState state) {
  for (const auto& [s, name] : kStateNames) {
    if (s == state) return name;
  }
  return "unknown";
}

Result<DeviceState> ParseDeviceState(std::string_view name) {
  for (const auto& [s, n] : kStateNames) {
    if (n == name) return s;
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "unknown device state '" + std::string(name) +
                       "' (expected manufactured, active, transfer_pending, retired or compromised)");
}

std::string_view CertificateKindName(CertificateKind kind) {
  for (const auto& [k, name] : kKindNames) {
    if (k == kind) return name;
  }
  return "unknown";
}

Result<CertificateKind> ParseCertificateKind(std::string_view name) {
  for (const auto& [k, n] : kKindNames) {
    if (n == name) return k;
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "unknown certificate kind '" + std::string(name) +
                       "' (expected birth, operational, principal or cloud)");
}

}  // namespace edgetrust::storage
