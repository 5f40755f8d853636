// Typed access to the store's tables. Reads take any transaction (`const Txn&`); writes take
// a WriteTxn. A record that does not decode yields kDataLoss. Strings used as keys (device
// ids, upstream names, image ids) must be non-empty and free of NUL bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "edgetrust/common/bytes.h"
#include "edgetrust/common/result.h"
#include "edgetrust/storage/records.h"
#include "edgetrust/storage/store.h"

namespace edgetrust::storage {

// --- devices (key: id) ---
Result<std::optional<DeviceRecord>> FindDevice(const Txn& txn, std::string_view id);
Result<DeviceRecord> GetDevice(const Txn& txn, std::string_view id);  // kNotFound if absent
// The plugin's hot path: the device's state, fingerprints, manufacturer and model decoded in
// place into `*out`; no heap allocation. False (and `*out` untouched) when there is no such
// device; kDataLoss when the record is malformed, like FindDevice.
Result<bool> FindDeviceAuthView(const Txn& txn, std::string_view id, DeviceAuthView* out);
// Sets updated_at to now, and created_at to now when it is 0.
Status PutDevice(WriteTxn& txn, const DeviceRecord& device);
// Devices in id order, strictly after `after_id` ("" = from the start), at most `limit`.
Result<std::vector<DeviceRecord>> ListDevices(const Txn& txn, std::string_view after_id,
                                              size_t limit);
Result<uint64_t> CountDevices(const Txn& txn);

// --- certificates (key: fingerprint; index: device id) ---
Result<std::optional<CertificateRecord>> FindCertificate(const Txn& txn, ByteView fingerprint);
Result<CertificateRecord> GetCertificate(const Txn& txn, ByteView fingerprint);
Status PutCertificate(WriteTxn& txn, const CertificateRecord& cert);
Result<std::vector<CertificateRecord>> ListDeviceCertificates(const Txn& txn,
                                                              std::string_view device_id);
// True when a certificate with this fingerprint is recorded with kind `kind` for `device_id`.
// Reads the record in place, no heap allocation. Says nothing of revocation: check that with
// IsFingerprintRevoked / IsSerialRevoked.
Result<bool> IsCertificateOf(const Txn& txn, ByteView fingerprint, CertificateKind kind,
                             std::string_view device_id);

// --- revocations (indexes by fingerprint and by (issuer_id, serial), plus a log) ---
// Hot path of the plugin: no allocation.
Result<bool> IsFingerprintRevoked(const Txn& txn, ByteView fingerprint);
Result<bool> IsSerialRevoked(const Txn& txn, ByteView issuer_id, ByteView serial);
// The log entry that revoked this fingerprint, nullopt if it is not revoked.
Result<std::optional<RevocationLogEntry>> FindRevocation(const Txn& txn, ByteView fingerprint);
// Writes both indexes and a log entry, returns its seq. Idempotent: if the fingerprint (or,
// without a fingerprint, the issuer+serial) is already revoked, returns the existing seq and
// writes nothing. kInvalidArgument without a fingerprint and without issuer_id+serial.
Result<uint64_t> AppendRevocation(WriteTxn& txn, const RevocationRecord& revocation);
// Entries with seq > after_seq, oldest first, at most `max`.
Result<std::vector<RevocationLogEntry>> ReadRevocationLog(const Txn& txn, uint64_t after_seq,
                                                          size_t max);
// 0 when nothing was ever revoked.
Result<uint64_t> LatestRevocationSeq(const Txn& txn);

// --- firmware (manifest key: image id; chunks: image id + index, raw bytes) ---
Status PutFirmwareManifest(WriteTxn& txn, const FirmwareManifest& manifest);
Result<std::optional<FirmwareManifest>> FindFirmwareManifest(const Txn& txn,
                                                             std::string_view image_id);
Result<FirmwareManifest> GetFirmwareManifest(const Txn& txn, std::string_view image_id);
Result<std::vector<FirmwareManifest>> ListFirmwareManifests(const Txn& txn);
Status PutFirmwareChunk(WriteTxn& txn, std::string_view image_id, uint32_t index, ByteView data);
Result<Bytes> GetFirmwareChunk(const Txn& txn, std::string_view image_id, uint32_t index);
// Removes the manifest and every chunk of the image.
Status DeleteFirmware(WriteTxn& txn, std::string_view image_id);

// --- outbox: one FIFO per upstream, seq strictly increasing per upstream ---
struct OutboxUsage {
  uint64_t count = 0;
  uint64_t bytes = 0;  // sum of payload sizes
};
Result<uint64_t> OutboxAppend(WriteTxn& txn, std::string_view upstream, const OutboxMessage& msg);
// Appends `msg` as `seq`, for a caller that numbers messages itself (see OutboxNextSeq) and may
// leave gaps: kInvalidArgument when `seq` is below the queue's next one. The next is then seq + 1.
Status OutboxAppendAt(WriteTxn& txn, std::string_view upstream, uint64_t seq,
                      const OutboxMessage& msg);
// The seq that the next OutboxAppend would give (1 for a queue never used).
Result<uint64_t> OutboxNextSeq(const Txn& txn, std::string_view upstream);
// Messages with seq > after_seq, oldest first, at most `max`.
Result<std::vector<OutboxMessage>> OutboxRead(const Txn& txn, std::string_view upstream,
                                              uint64_t after_seq, size_t max);
// Removing a seq that is not there is not an error (the sender may retry after a crash).
Status OutboxRemove(WriteTxn& txn, std::string_view upstream, uint64_t seq);
Result<OutboxUsage> OutboxStats(const Txn& txn, std::string_view upstream);
// Drops oldest messages until bytes + incoming_bytes <= max_bytes; returns what was dropped.
Result<OutboxUsage> OutboxDropOldest(WriteTxn& txn, std::string_view upstream, uint64_t max_bytes,
                                     uint64_t incoming_bytes = 0);
// Upstreams that have (or had) a queue.
Result<std::vector<std::string>> OutboxUpstreams(const Txn& txn);

// --- audit log ---
Result<uint64_t> AppendAudit(WriteTxn& txn, const AuditRecord& record);
Result<std::vector<AuditRecord>> ReadAudit(const Txn& txn, uint64_t after_seq, size_t max);

// --- allowlist (key: device id) ---
Status PutAllowlistEntry(WriteTxn& txn, const AllowlistEntry& entry);
Result<std::optional<AllowlistEntry>> FindAllowlistEntry(const Txn& txn,
                                                         std::string_view device_id);

// --- meta ---
Result<uint32_t> ReadSchemaVersion(const Txn& txn);

}  // namespace edgetrust::storage
