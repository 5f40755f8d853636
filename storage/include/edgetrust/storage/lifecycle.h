// Lifecycle operations shared by the CLI and the gateway. Each runs inside the caller's one
// WriteTxn and writes its audit record in that same transaction, so a crash leaves either
// all of it or none of it. The caller commits.
#pragma once

#include <string_view>
#include <vector>

#include "edgetrust/common/bytes.h"
#include "edgetrust/common/result.h"
#include "edgetrust/storage/records.h"
#include "edgetrust/storage/store.h"

namespace edgetrust::storage {

// Revokes one certificate. Fills issuer_id/serial/device from its CertificateRecord when the
// store knows it; an unknown fingerprint is still revoked by fingerprint alone. Returns the
// log seq (the existing one if it was already revoked).
Result<uint64_t> RevokeCertificate(WriteTxn& txn, ByteView fingerprint, std::string_view reason,
                                   std::string_view actor);

enum class RevokeScope {
  kOperationalOnly,       // transfer: the device re-enrolls with its birth certificate (its
                          // operational and cloud certificates are revoked, not the birth one)
  kAllIncludingBirth,     // retire / compromise: nothing of the device connects again
};

// Revokes every certificate of the device within `scope` (its certificate records, plus the
// fingerprints its device record and allowlist entry name), sets its state to `new_state`
// and clears its operational fingerprint. Returns every fingerprint in scope, now revoked
// (including ones revoked earlier), so the caller can disconnect them. kNotFound if the
// device is unknown.
Result<std::vector<Bytes>> RevokeDevice(WriteTxn& txn, std::string_view device_id,
                                        std::string_view reason, std::string_view actor,
                                        RevokeScope scope, DeviceState new_state);

enum class ImportOutcome {
  kCreated,           // new device, state manufactured
  kUpdated,           // was manufactured, fields refreshed
  kUnchanged,         // identical row imported before
  kKeptLaterState,    // device already past manufactured: allowlist updated, state kept
};

// Writes the allowlist entry and makes the device `manufactured` unless it already exists in
// a later state. Idempotent; an unchanged row writes nothing (no audit either).
Result<ImportOutcome> ImportManifestRow(WriteTxn& txn, const AllowlistEntry& entry,
                                        std::string_view manufacturer,
                                        std::string_view actor = "cli");

// Stores SHA-256(code) on the device (creating a `manufactured` record if it is unknown).
Status RegisterClaim(WriteTxn& txn, std::string_view device_id, std::string_view code,
                     std::string_view actor = "cli");
// True iff a claim is registered for the device and `code` matches it (constant time).
Result<bool> CheckClaim(const Txn& txn, std::string_view device_id, std::string_view code);

}  // namespace edgetrust::storage
