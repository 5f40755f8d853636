// Typed records kept in the store. On disk each is a msgpack map with short string keys;
// unknown keys are ignored on read so a newer writer does not break an older reader.
// Fingerprints and issuer ids are SHA-256 digests (32 bytes); serials are raw bytes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "edgetrust/common/bytes.h"
#include "edgetrust/common/result.h"

namespace edgetrust::storage {

// DESIGN.md "Device states".
enum class DeviceState { kManufactured, kActive, kTransferPending, kRetired, kCompromised };

// "manufactured", "active", "transfer_pending", "retired", "compromised".
std::string_view DeviceStateName(DeviceState state);
Result<DeviceState> ParseDeviceState(std::string_view name);
// retired and compromised: nothing of the device may connect again.
inline bool IsTerminal(DeviceState s) {
  return s == DeviceState::kRetired || s == DeviceState::kCompromised;
}

enum class CertificateKind { kBirth, kOperational, kPrincipal, kCloud };

// "birth", "operational", "principal", "cloud".
std::string_view CertificateKindName(CertificateKind kind);
Result<CertificateKind> ParseCertificateKind(std::string_view name);

struct DeviceRecord {
  std::string id;
  DeviceState state = DeviceState::kManufactured;
  std::string manufacturer;
  std::string model;
  std::string group;                  // policy group chosen at enrollment
  Bytes birth_fingerprint;
  Bytes operational_fingerprint;      // the one certificate the device may connect with
  int64_t operational_not_after = 0;  // unix seconds
  // Issued at enrollment and not yet seen in use (no state message stamped with it). Until it
  // is, the birth certificate may enroll again, even where re-enrollment is off: a device that
  // lost the answer (gateway or device died after the commit) is not locked out.
  bool operational_unconfirmed = false;
  std::string fw;                     // firmware version last reported
  Bytes claim_code_sha256;            // SHA-256 of the claim code, never the code
  int64_t created_at = 0;
  int64_t updated_at = 0;
};

namespace internal {
struct DeviceAuthViewWriter;  // the in-place decoder
}  // namespace internal

// What the broker plugin needs of a device to decide a CONNECT, read in place from the stored
// record into fixed buffers (FindDeviceAuthView): no heap allocation, so it can be kept and
// reused on a hot path. Everything else of the record needs FindDevice.
class DeviceAuthView {
 public:
  // Upper bound of X.509 CN/O/OU (RFC 5280 ub-*-name): what a certificate can carry.
  static constexpr size_t kMaxName = 64;

  DeviceState state() const { return state_; }
  // Empty when the record has none; otherwise 1-32 bytes (a record with a longer one does not
  // decode: fingerprints are SHA-256 digests).
  ByteView birth_fingerprint() const { return ByteView(birth_fp_.data(), birth_fp_size_); }
  ByteView operational_fingerprint() const {
    return ByteView(operational_fp_.data(), operational_fp_size_);
  }
  // False when the stored manufacturer or model is longer than kMaxName: both then read as
  // empty here, and a caller that needs them must use FindDevice.
  bool names_fit() const { return names_fit_; }
  bool operational_unconfirmed() const { return operational_unconfirmed_; }
  std::string_view manufacturer() const { return {manufacturer_.data(), manufacturer_size_}; }
  std::string_view model() const { return {model_.data(), model_size_}; }

 private:
  friend struct internal::DeviceAuthViewWriter;
  DeviceState state_ = DeviceState::kManufactured;
  std::array<uint8_t, 32> birth_fp_{};
  std::array<uint8_t, 32> operational_fp_{};
  std::array<char, kMaxName> manufacturer_{};
  std::array<char, kMaxName> model_{};
  uint8_t birth_fp_size_ = 0;
  uint8_t operational_fp_size_ = 0;
  uint8_t manufacturer_size_ = 0;
  uint8_t model_size_ = 0;
  bool names_fit_ = true;
  bool operational_unconfirmed_ = false;
};

struct CertificateRecord {
  Bytes fingerprint;                  // key
  std::string device_id;              // device id, or the principal's CN; may be empty (cloud)
  CertificateKind kind = CertificateKind::kOperational;
  Bytes issuer_id;
  Bytes serial;
  int64_t not_before = 0;
  int64_t not_after = 0;
  Bytes der;
};

// What is revoked. A revocation needs a fingerprint, or an issuer id and a serial, or both.
struct RevocationRecord {
  Bytes fingerprint;
  Bytes issuer_id;
  Bytes serial;
  std::string device_id;
  std::string reason;
  int64_t ts = 0;                     // 0 = now, at append
};

// One entry of the revocation log the plugin replays on its tick.
struct RevocationLogEntry : RevocationRecord {
  uint64_t seq = 0;                   // strictly increasing from 1, never reused
};

struct FirmwareManifest {
  std::string image_id;               // key
  std::string version;
  uint64_t size = 0;                  // bytes of the whole image
  uint32_t chunk_size = 0;
  Bytes sha256;                       // of the whole image
  Bytes sig;                          // signature over the manifest
  std::string key_id;                 // signing key id
  std::string channel;
  int64_t created_at = 0;
};

// A message waiting for its upstream.
struct OutboxMessage {
  uint64_t seq = 0;                   // set by OutboxAppend, filled by OutboxRead
  std::string upstream;               // filled by OutboxRead
  std::string device_id;
  std::string channel;                // the `{channel…}` part of et/{id}/up/{channel…}
  Bytes payload;
  uint8_t qos = 1;
  int64_t ts = 0;
};

struct AuditRecord {
  uint64_t seq = 0;                   // set by AppendAudit, filled by ReadAudit
  int64_t ts = 0;                     // 0 = now, at append
  std::string actor;                  // "cli", "gateway", an admin CN…
  std::string action;                 // "revoke_device", "import_manifest", …
  std::string device_id;
  std::string detail;
};

// One row of a factory manifest (manifest.csv: id, serial, sha256 fingerprint, model).
struct AllowlistEntry {
  std::string device_id;              // key
  Bytes serial;
  Bytes fingerprint;                  // of the birth certificate
  std::string model;
  std::string manufacturer;
};

}  // namespace edgetrust::storage
