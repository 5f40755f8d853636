#include "edgetrust/storage/lifecycle.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <algorithm>
#include <string>

#include "edgetrust/storage/tables.h"

namespace edgetrust::storage {
namespace {

Result<Bytes> Sha256(std::string_view data) {
  Bytes digest(WC_SHA256_DIGEST_SIZE);
  if (wc_Sha256Hash(reinterpret_cast<const byte*>(data.data()), static_cast<word32>(data.size()),
                    digest.data()) != 0) {
    return MakeError(ErrorCode::kCrypto, "SHA-256 failed");
  }
  return digest;
}

Status Audit(WriteTxn& txn, std::string_view actor, std::string_view action,
             std::string_view device_id, std::string detail) {
  AuditRecord record;
  record.actor = std::string(actor);
  record.action = std::string(action);
  record.device_id = std::string(device_id);
  record.detail = std::move(detail);
  ET_ASSIGN_OR_RETURN(uint64_t seq, AppendAudit(txn, record));
  (void)seq;
  return OkStatus();
}

// Revokes one fingerprint with whatever the store knows about its certificate.
Result<uint64_t> RevokeFingerprint(WriteTxn& txn, ByteView fingerprint, std::string_view reason,
                                   std::string_view fallback_device) {
  RevocationRecord rev;
  rev.fingerprint.assign(fingerprint.begin(), fingerprint.end());
  rev.reason = std::string(reason);
  rev.device_id = std::string(fallback_device);
  ET_ASSIGN_OR_RETURN(auto cert, FindCertificate(txn, fingerprint));
  if (cert) {
    rev.issuer_id = cert->issuer_id;
    rev.serial = cert->serial;
    if (!cert->device_id.empty()) rev.device_id = cert->device_id;
  }
  return AppendRevocation(txn, rev);
}

bool SameAllowlist(const AllowlistEntry& a, const AllowlistEntry& b) {
  return a.device_id == b.device_id && a.serial == b.serial && a.fingerprint == b.fingerprint &&
         a.model == b.model && a.manufacturer == b.manufacturer;
}

}  // namespace

Result<uint64_t> RevokeCertificate(WriteTxn& txn, ByteView fingerprint, std::string_view reason,
                                   std::string_view actor) {
  if (fingerprint.size() != 32) {
    return MakeError(ErrorCode::kInvalidArgument, "fingerprint must be 32 bytes (SHA-256)");
  }
  ET_ASSIGN_OR_RETURN(uint64_t before, LatestRevocationSeq(txn));
  ET_ASSIGN_OR_RETURN(uint64_t seq, RevokeFingerprint(txn, fingerprint, reason, ""));
  if (seq > before) {
    ET_ASSIGN_OR_RETURN(auto entries, ReadRevocationLog(txn, seq - 1, 1));
    std::string device = entries.empty() ? "" : entries.front().device_id;
    ET_RETURN_IF_ERROR(Audit(txn, actor, "revoke_certificate", device,
                             "fingerprint=" + HexEncode(fingerprint) + " seq=" +
                                 std::to_string(seq) + " reason=" + std::string(reason)));
  }
  return seq;
}

Result<std::vector<Bytes>> RevokeDevice(WriteTxn& txn, std::string_view device_id,
                                        std::string_view reason, std::string_view actor,
                                        RevokeScope scope, DeviceState new_state) {
  ET_ASSIGN_OR_RETURN(DeviceRecord device, GetDevice(txn, device_id));
  const bool all = scope == RevokeScope::kAllIncludingBirth;

  std::vector<Bytes> fingerprints;
  auto add = [&](const Bytes& fp) {
    if (fp.size() == 32 && std::find(fingerprints.begin(), fingerprints.end(), fp) == fingerprints.end()) {
      fingerprints.push_back(fp);
    }
  };
  ET_ASSIGN_OR_RETURN(auto certs, ListDeviceCertificates(txn, device_id));
  for (const CertificateRecord& c : certs) {
    // Cloud certificates are operational credentials held for the device: a new owner gets new ones.
    if (all || c.kind == CertificateKind::kOperational || c.kind == CertificateKind::kCloud) {
      add(c.fingerprint);
    }
  }
  add(device.operational_fingerprint);
  if (all) {
    add(device.birth_fingerprint);
    ET_ASSIGN_OR_RETURN(auto allow, FindAllowlistEntry(txn, device_id));
    if (allow) add(allow->fingerprint);
  }

  ET_ASSIGN_OR_RETURN(uint64_t before, LatestRevocationSeq(txn));
  for (const Bytes& fp : fingerprints) {
    ET_ASSIGN_OR_RETURN(uint64_t seq, RevokeFingerprint(txn, fp, reason, device_id));
    (void)seq;
  }
  ET_ASSIGN_OR_RETURN(uint64_t after, LatestRevocationSeq(txn));

  const DeviceState old_state = device.state;
  device.state = new_state;
  device.operational_fingerprint.clear();
  device.operational_not_after = 0;
  ET_RETURN_IF_ERROR(PutDevice(txn, device));
  ET_RETURN_IF_ERROR(Audit(
      txn, actor, "revoke_device", device_id,
      std::string("scope=") + (all ? "all" : "operational") + " state=" +
          std::string(DeviceStateName(old_state)) + "->" + std::string(DeviceStateName(new_state)) +
          " certificates=" + std::to_string(fingerprints.size()) +
          " new_revocations=" + std::to_string(after - before) + " reason=" + std::string(reason)));
  return fingerprints;
}

Result<ImportOutcome> ImportManifestRow(WriteTxn& txn, const AllowlistEntry& entry,
                                        std::string_view manufacturer, std::string_view actor) {
  if (!IsValidDeviceId(entry.device_id)) {
    return MakeError(ErrorCode::kInvalidArgument, "invalid device id '" + entry.device_id + "'");
  }
  if (entry.fingerprint.size() != 32) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "device '" + entry.device_id + "': fingerprint must be 32 bytes (SHA-256)");
  }
  AllowlistEntry row = entry;
  row.manufacturer = std::string(manufacturer);

  ET_ASSIGN_OR_RETURN(auto old_row, FindAllowlistEntry(txn, row.device_id));
  const bool row_changed = !old_row || !SameAllowlist(*old_row, row);
  ET_ASSIGN_OR_RETURN(auto device, FindDevice(txn, row.device_id));

  ImportOutcome outcome;
  if (!device) {
    DeviceRecord d;
    d.id = row.device_id;
    d.state = DeviceState::kManufactured;
    d.manufacturer = row.manufacturer;
    d.model = row.model;
    d.birth_fingerprint = row.fingerprint;
    ET_RETURN_IF_ERROR(PutDevice(txn, d));
    outcome = ImportOutcome::kCreated;
  } else if (device->state == DeviceState::kManufactured) {
    const bool device_changed = device->manufacturer != row.manufacturer ||
                                device->model != row.model ||
                                device->birth_fingerprint != row.fingerprint;
    if (device_changed) {
      device->manufacturer = row.manufacturer;
      device->model = row.model;
      device->birth_fingerprint = row.fingerprint;
      ET_RETURN_IF_ERROR(PutDevice(txn, *device));
    }
    outcome = (device_changed || row_changed) ? ImportOutcome::kUpdated : ImportOutcome::kUnchanged;
  } else {
    outcome = row_changed ? ImportOutcome::kKeptLaterState : ImportOutcome::kUnchanged;
  }
  if (outcome == ImportOutcome::kUnchanged) return outcome;
  if (row_changed) ET_RETURN_IF_ERROR(PutAllowlistEntry(txn, row));
  static constexpr const char* kNames[] = {"created", "updated", "unchanged", "kept_later_state"};
  ET_RETURN_IF_ERROR(Audit(txn, actor, "import_manifest_row", row.device_id,
                           std::string("outcome=") + kNames[static_cast<int>(outcome)] +
                               " manufacturer=" + row.manufacturer + " model=" + row.model +
                               " fingerprint=" + HexEncode(row.fingerprint)));
  return outcome;
}

Status RegisterClaim(WriteTxn& txn, std::string_view device_id, std::string_view code,
                     std::string_view actor) {
  if (!IsValidDeviceId(device_id)) {
    return MakeError(ErrorCode::kInvalidArgument, "invalid device id '" + std::string(device_id) + "'");
  }
  if (code.empty()) return MakeError(ErrorCode::kInvalidArgument, "claim code is empty");
  ET_ASSIGN_OR_RETURN(Bytes digest, Sha256(code));
  ET_ASSIGN_OR_RETURN(auto device, FindDevice(txn, device_id));
  DeviceRecord d;
  if (device) {
    d = std::move(*device);
  } else {
    d.id = std::string(device_id);
    d.state = DeviceState::kManufactured;
  }
  d.claim_code_sha256 = std::move(digest);
  ET_RETURN_IF_ERROR(PutDevice(txn, d));
  return Audit(txn, actor, "register_claim", device_id, device ? "existing device" : "new device");
}

Result<bool> CheckClaim(const Txn& txn, std::string_view device_id, std::string_view code) {
  ET_ASSIGN_OR_RETURN(auto device, FindDevice(txn, device_id));
  if (!device || device->claim_code_sha256.size() != WC_SHA256_DIGEST_SIZE) return false;
  ET_ASSIGN_OR_RETURN(Bytes digest, Sha256(code));
  uint8_t diff = 0;
  for (size_t i = 0; i < digest.size(); ++i) diff |= digest[i] ^ device->claim_code_sha256[i];
  return diff == 0;
}

}  // namespace edgetrust::storage
