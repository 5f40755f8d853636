#include "edgetrust/storage/tables.h"

#include <cstring>
#include <string>
#include <utility>

#include "codec.h"
#include "internal.h"

namespace edgetrust::storage {
namespace {

using internal::AppendBe32;
using internal::AppendBe64;
using internal::Chars;
using internal::LmdbError;
using internal::ReadBe64;
using internal::TxnAccess;
using internal::Val;
using internal::View;

// Owns one MDB_cursor for the life of a table walk.
class Cursor {
 public:
  static Result<Cursor> Open(MDB_txn* txn, MDB_dbi dbi) {
    MDB_cursor* c = nullptr;
    int rc = mdb_cursor_open(txn, dbi, &c);
    if (rc != 0) return LmdbError(rc, "open cursor");
    return Cursor(c);
  }
  Cursor(Cursor&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
  Cursor& operator=(Cursor&&) = delete;
  ~Cursor() {
    if (c_ != nullptr) mdb_cursor_close(c_);
  }
  // 0, MDB_NOTFOUND or an error.
  int Get(MDB_val* key, MDB_val* val, MDB_cursor_op op) { return mdb_cursor_get(c_, key, val, op); }
  int Del() { return mdb_cursor_del(c_, 0); }

 private:
  explicit Cursor(MDB_cursor* c) : c_(c) {}
  MDB_cursor* c_;
};

Result<MDB_txn*> ReadHandle(const Txn& txn) {
  MDB_txn* raw = TxnAccess::Raw(txn);
  if (raw == nullptr) {
    return MakeError(ErrorCode::kFailedPrecondition, "transaction is not active (reset or ended)");
  }
  return raw;
}

// Looks up `key`; returns false when absent.
Result<bool> RawGet(MDB_txn* txn, MDB_dbi dbi, MDB_val key, MDB_val* val, std::string_view what) {
  int rc = mdb_get(txn, dbi, &key, val);
  if (rc == MDB_NOTFOUND) return false;
  if (rc != 0) return LmdbError(rc, what);
  return true;
}

Status RawPut(MDB_txn* txn, MDB_dbi dbi, MDB_val key, MDB_val val, std::string_view what,
              unsigned flags = 0) {
  int rc = mdb_put(txn, dbi, &key, &val, flags);
  if (rc != 0) return LmdbError(rc, what);
  return OkStatus();
}

Status RawPut(MDB_txn* txn, MDB_dbi dbi, MDB_val key, std::string_view val, std::string_view what,
              unsigned flags = 0) {
  return RawPut(txn, dbi, key, Val(val), what, flags);
}

Status RawDel(MDB_txn* txn, MDB_dbi dbi, MDB_val key, std::string_view what) {
  int rc = mdb_del(txn, dbi, &key, nullptr);
  if (rc != 0 && rc != MDB_NOTFOUND) return LmdbError(rc, what);
  return OkStatus();
}

Status CheckName(std::string_view name, std::string_view what) {
  if (name.empty() || name.find('\0') != std::string_view::npos || name.size() > 255) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string(what) + " must be 1-255 bytes without NUL");
  }
  return OkStatus();
}

Status CheckDigest(ByteView digest, std::string_view what) {
  if (digest.size() != 32) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string(what) + " must be 32 bytes (SHA-256), got " +
                         std::to_string(digest.size()));
  }
  return OkStatus();
}

template <typename R>
Result<std::optional<R>> FindRecord(const Txn& txn, MDB_dbi dbi, MDB_val key, std::string_view what) {
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  MDB_val val;
  ET_ASSIGN_OR_RETURN(bool found, RawGet(raw, dbi, key, &val, what));
  if (!found) return std::optional<R>();
  R record;
  ET_RETURN_IF_ERROR(internal::Decode(View(val), &record));
  return std::optional<R>(std::move(record));
}

Result<uint64_t> LastSeq(MDB_txn* raw, MDB_dbi dbi, std::string_view what) {
  ET_ASSIGN_OR_RETURN(Cursor cursor, Cursor::Open(raw, dbi));
  MDB_val key, val;
  int rc = cursor.Get(&key, &val, MDB_LAST);
  if (rc == MDB_NOTFOUND) return uint64_t{0};
  if (rc != 0) return LmdbError(rc, what);
  if (key.mv_size != 8) {
    return MakeError(ErrorCode::kDataLoss, std::string(what) + ": key is not a sequence number");
  }
  return ReadBe64(key.mv_data);
}

std::string SeqKey(uint64_t seq) {
  std::string k;
  AppendBe64(k, seq);
  return k;
}

std::string PrefixKey(std::string_view name) {
  std::string k(name);
  k.push_back('\0');
  return k;
}

std::string SerialKey(ByteView issuer_id, ByteView serial) {
  std::string k;
  k.push_back(static_cast<char>(issuer_id.size()));
  k.append(AsChars(issuer_id));
  k.append(AsChars(serial));
  return k;
}

Result<bool> HasKey(const Txn& txn, MDB_dbi dbi, MDB_val key, std::string_view what) {
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  MDB_val val;
  return RawGet(raw, dbi, key, &val, what);
}

}  // namespace

// --- devices ---

Result<std::optional<DeviceRecord>> FindDevice(const Txn& txn, std::string_view id) {
  if (id.empty()) return std::optional<DeviceRecord>();
  return FindRecord<DeviceRecord>(txn, TxnAccess::Dbs(txn).devices, Val(id), "get device");
}

Result<DeviceRecord> GetDevice(const Txn& txn, std::string_view id) {
  ET_ASSIGN_OR_RETURN(auto device, FindDevice(txn, id));
  if (!device) return MakeError(ErrorCode::kNotFound, "no device '" + std::string(id) + "'");
  return std::move(*device);
}

Result<bool> FindDeviceAuthView(const Txn& txn, std::string_view id, DeviceAuthView* out) {
  if (id.empty()) return false;
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  MDB_val val;
  ET_ASSIGN_OR_RETURN(bool found,
                      RawGet(raw, TxnAccess::Dbs(txn).devices, Val(id), &val, "get device"));
  if (!found) return false;
  ET_RETURN_IF_ERROR(internal::DeviceAuthViewWriter::Decode(View(val), out));
  return true;
}

Status PutDevice(WriteTxn& txn, const DeviceRecord& device) {
  if (!IsValidDeviceId(device.id)) {
    return MakeError(ErrorCode::kInvalidArgument, "invalid device id '" + device.id + "'");
  }
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  DeviceRecord copy = device;
  copy.updated_at = UnixNow();
  if (copy.created_at == 0) copy.created_at = copy.updated_at;
  return RawPut(raw, TxnAccess::Dbs(txn).devices, Val(device.id), internal::Encode(copy),
                "put device");
}

Result<std::vector<DeviceRecord>> ListDevices(const Txn& txn, std::string_view after_id,
                                              size_t limit) {
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  std::vector<DeviceRecord> out;
  if (limit == 0) return out;
  ET_ASSIGN_OR_RETURN(Cursor cursor, Cursor::Open(raw, TxnAccess::Dbs(txn).devices));
  MDB_val key = Val(after_id), val;
  int rc = after_id.empty() ? cursor.Get(&key, &val, MDB_FIRST)
                            : cursor.Get(&key, &val, MDB_SET_RANGE);
  if (rc == 0 && !after_id.empty() && Chars(key) == after_id) rc = cursor.Get(&key, &val, MDB_NEXT);
  while (rc == 0 && out.size() < limit) {
    DeviceRecord d;
    ET_RETURN_IF_ERROR(internal::Decode(View(val), &d));
    out.push_back(std::move(d));
    rc = cursor.Get(&key, &val, MDB_NEXT);
  }
  if (rc != 0 && rc != MDB_NOTFOUND) return LmdbError(rc, "list devices");
  return out;
}

Result<uint64_t> CountDevices(const Txn& txn) {
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  MDB_stat st;
  int rc = mdb_stat(raw, TxnAccess::Dbs(txn).devices, &st);
  if (rc != 0) return LmdbError(rc, "count devices");
  return uint64_t{st.ms_entries};
}

// --- certificates ---

Result<std::optional<CertificateRecord>> FindCertificate(const Txn& txn, ByteView fingerprint) {
  if (fingerprint.empty()) return std::optional<CertificateRecord>();
  return FindRecord<CertificateRecord>(txn, TxnAccess::Dbs(txn).certs, Val(fingerprint),
                                       "get certificate");
}

Result<CertificateRecord> GetCertificate(const Txn& txn, ByteView fingerprint) {
  ET_ASSIGN_OR_RETURN(auto cert, FindCertificate(txn, fingerprint));
  if (!cert) {
    return MakeError(ErrorCode::kNotFound, "no certificate with fingerprint " + HexEncode(fingerprint));
  }
  return std::move(*cert);
}

Status PutCertificate(WriteTxn& txn, const CertificateRecord& cert) {
  ET_RETURN_IF_ERROR(CheckDigest(cert.fingerprint, "certificate fingerprint"));
  if (cert.device_id.find('\0') != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "certificate device id contains NUL");
  }
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  const auto& dbs = TxnAccess::Dbs(txn);
  ET_ASSIGN_OR_RETURN(auto old, FindCertificate(txn, cert.fingerprint));
  if (old && !old->device_id.empty() && old->device_id != cert.device_id) {
    std::string k = PrefixKey(old->device_id) + std::string(AsChars(cert.fingerprint));
    ET_RETURN_IF_ERROR(RawDel(raw, dbs.certs_by_device, Val(std::string_view(k)), "unindex certificate"));
  }
  ET_RETURN_IF_ERROR(RawPut(raw, dbs.certs, Val(ByteView(cert.fingerprint)), internal::Encode(cert),
                            "put certificate"));
  if (!cert.device_id.empty()) {
    std::string k = PrefixKey(cert.device_id) + std::string(AsChars(cert.fingerprint));
    ET_RETURN_IF_ERROR(
        RawPut(raw, dbs.certs_by_device, Val(std::string_view(k)), std::string_view(), "index certificate"));
  }
  return OkStatus();
}

Result<bool> IsCertificateOf(const Txn& txn, ByteView fingerprint, CertificateKind kind,
                             std::string_view device_id) {
  if (fingerprint.empty() || device_id.empty()) return false;
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  MDB_val val;
  ET_ASSIGN_OR_RETURN(bool found, RawGet(raw, TxnAccess::Dbs(txn).certs, Val(fingerprint), &val,
                                         "get certificate"));
  if (!found) return false;
  CertificateKind stored_kind;
  std::string_view owner;
  ET_RETURN_IF_ERROR(internal::DecodeCertificateOwner(View(val), &stored_kind, &owner));
  return stored_kind == kind && owner == device_id;
}

Result<std::vector<CertificateRecord>> ListDeviceCertificates(const Txn& txn,
                                                              std::string_view device_id) {
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  std::vector<CertificateRecord> out;
  if (device_id.empty()) return out;
  const std::string prefix = PrefixKey(device_id);
  ET_ASSIGN_OR_RETURN(Cursor cursor, Cursor::Open(raw, TxnAccess::Dbs(txn).certs_by_device));
  MDB_val key = Val(std::string_view(prefix)), val;
  int rc = cursor.Get(&key, &val, MDB_SET_RANGE);
  while (rc == 0 && Chars(key).starts_with(prefix)) {
    ByteView fp = View(key).subspan(prefix.size());
    ET_ASSIGN_OR_RETURN(auto cert, FindCertificate(txn, fp));
    if (!cert) {
      return MakeError(ErrorCode::kDataLoss, "certificate index of device '" + std::string(device_id) +
                                                 "' names a missing certificate " + HexEncode(fp));
    }
    out.push_back(std::move(*cert));
    rc = cursor.Get(&key, &val, MDB_NEXT);
  }
  if (rc != 0 && rc != MDB_NOTFOUND) return LmdbError(rc, "list device certificates");
  return out;
}

// --- revocations ---

Result<bool> IsFingerprintRevoked(const Txn& txn, ByteView fingerprint) {
  if (fingerprint.empty()) return false;
  return HasKey(txn, TxnAccess::Dbs(txn).rev_fp, Val(fingerprint), "revocation by fingerprint");
}

Result<bool> IsSerialRevoked(const Txn& txn, ByteView issuer_id, ByteView serial) {
  if (issuer_id.empty() || serial.empty() || issuer_id.size() > 255 || serial.size() > 255) {
    return false;
  }
  // Built on the stack: this runs on every CONNECT.
  uint8_t key[1 + 255 + 255];
  key[0] = static_cast<uint8_t>(issuer_id.size());
  std::memcpy(key + 1, issuer_id.data(), issuer_id.size());
  std::memcpy(key + 1 + issuer_id.size(), serial.data(), serial.size());
  return HasKey(txn, TxnAccess::Dbs(txn).rev_serial,
                Val(ByteView(key, 1 + issuer_id.size() + serial.size())), "revocation by serial");
}

namespace {
Result<std::optional<RevocationLogEntry>> LogEntryAt(const Txn& txn, uint64_t seq) {
  std::string k = SeqKey(seq);
  ET_ASSIGN_OR_RETURN(auto rec, FindRecord<RevocationRecord>(txn, TxnAccess::Dbs(txn).rev_log,
                                                             Val(std::string_view(k)),
                                                             "read revocation log"));
  if (!rec) return std::optional<RevocationLogEntry>();
  RevocationLogEntry entry;
  static_cast<RevocationRecord&>(entry) = std::move(*rec);
  entry.seq = seq;
  return std::optional<RevocationLogEntry>(std::move(entry));
}

Result<std::optional<uint64_t>> IndexedSeq(const Txn& txn, MDB_dbi dbi, MDB_val key) {
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  MDB_val val;
  ET_ASSIGN_OR_RETURN(bool found, RawGet(raw, dbi, key, &val, "revocation index"));
  if (!found) return std::optional<uint64_t>();
  if (val.mv_size != 8) return MakeError(ErrorCode::kDataLoss, "corrupt revocation index entry");
  return std::optional<uint64_t>(ReadBe64(val.mv_data));
}
}  // namespace

Result<std::optional<RevocationLogEntry>> FindRevocation(const Txn& txn, ByteView fingerprint) {
  if (fingerprint.empty()) return std::optional<RevocationLogEntry>();
  ET_ASSIGN_OR_RETURN(auto seq, IndexedSeq(txn, TxnAccess::Dbs(txn).rev_fp, Val(fingerprint)));
  if (!seq) return std::optional<RevocationLogEntry>();
  ET_ASSIGN_OR_RETURN(auto entry, LogEntryAt(txn, *seq));
  if (!entry) {
    return MakeError(ErrorCode::kDataLoss, "revocation index names missing log entry " +
                                               std::to_string(*seq));
  }
  return entry;
}

Result<uint64_t> AppendRevocation(WriteTxn& txn, const RevocationRecord& revocation) {
  const bool by_fp = !revocation.fingerprint.empty();
  const bool by_serial = !revocation.issuer_id.empty() && !revocation.serial.empty();
  if (!by_fp && !by_serial) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "a revocation needs a fingerprint or an issuer id and a serial");
  }
  if (by_fp) ET_RETURN_IF_ERROR(CheckDigest(revocation.fingerprint, "revoked fingerprint"));
  if (revocation.issuer_id.size() > 255 || revocation.serial.size() > 255) {
    return MakeError(ErrorCode::kInvalidArgument, "issuer id or serial longer than 255 bytes");
  }
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  const auto& dbs = TxnAccess::Dbs(txn);
  const std::string serial_key = by_serial ? SerialKey(revocation.issuer_id, revocation.serial) : "";

  if (by_fp) {
    ET_ASSIGN_OR_RETURN(auto seq, IndexedSeq(txn, dbs.rev_fp, Val(ByteView(revocation.fingerprint))));
    if (seq) return *seq;
  } else {
    ET_ASSIGN_OR_RETURN(auto seq, IndexedSeq(txn, dbs.rev_serial, Val(std::string_view(serial_key))));
    if (seq) return *seq;
  }

  ET_ASSIGN_OR_RETURN(uint64_t last, LastSeq(raw, dbs.rev_log, "revocation log"));
  const uint64_t seq = last + 1;
  RevocationRecord rec = revocation;
  if (rec.ts == 0) rec.ts = UnixNow();
  const std::string seq_key = SeqKey(seq);
  ET_RETURN_IF_ERROR(RawPut(raw, dbs.rev_log, Val(std::string_view(seq_key)), internal::Encode(rec),
                            "append revocation log", MDB_APPEND));
  if (by_fp) {
    ET_RETURN_IF_ERROR(RawPut(raw, dbs.rev_fp, Val(ByteView(rec.fingerprint)), seq_key,
                              "index revocation by fingerprint"));
  }
  if (by_serial) {
    // The first revocation of an (issuer, serial) keeps the index.
    int rc = 0;
    MDB_val k = Val(std::string_view(serial_key)), v = Val(std::string_view(seq_key));
    rc = mdb_put(raw, dbs.rev_serial, &k, &v, MDB_NOOVERWRITE);
    if (rc != 0 && rc != MDB_KEYEXIST) return LmdbError(rc, "index revocation by serial");
  }
  return seq;
}

Result<std::vector<RevocationLogEntry>> ReadRevocationLog(const Txn& txn, uint64_t after_seq,
                                                          size_t max) {
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  std::vector<RevocationLogEntry> out;
  if (max == 0 || after_seq == UINT64_MAX) return out;
  ET_ASSIGN_OR_RETURN(Cursor cursor, Cursor::Open(raw, TxnAccess::Dbs(txn).rev_log));
  const std::string start = SeqKey(after_seq + 1);
  MDB_val key = Val(std::string_view(start)), val;
  int rc = cursor.Get(&key, &val, MDB_SET_RANGE);
  while (rc == 0 && out.size() < max) {
    if (key.mv_size != 8) return MakeError(ErrorCode::kDataLoss, "corrupt revocation log key");
    RevocationLogEntry entry;
    ET_RETURN_IF_ERROR(internal::Decode(View(val), static_cast<RevocationRecord*>(&entry)));
    entry.seq = ReadBe64(key.mv_data);
    out.push_back(std::move(entry));
    rc = cursor.Get(&key, &val, MDB_NEXT);
  }
  if (rc != 0 && rc != MDB_NOTFOUND) return LmdbError(rc, "read revocation log");
  return out;
}

Result<uint64_t> LatestRevocationSeq(const Txn& txn) {
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  return LastSeq(raw, TxnAccess::Dbs(txn).rev_log, "revocation log");
}

// --- firmware ---

Status PutFirmwareManifest(WriteTxn& txn, const FirmwareManifest& manifest) {
  ET_RETURN_IF_ERROR(CheckName(manifest.image_id, "firmware image id"));
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  return RawPut(raw, TxnAccess::Dbs(txn).fw_manifests, Val(manifest.image_id),
                internal::Encode(manifest), "put firmware manifest");
}

Result<std::optional<FirmwareManifest>> FindFirmwareManifest(const Txn& txn,
                                                             std::string_view image_id) {
  if (image_id.empty()) return std::optional<FirmwareManifest>();
  return FindRecord<FirmwareManifest>(txn, TxnAccess::Dbs(txn).fw_manifests, Val(image_id),
                                      "get firmware manifest");
}

Result<FirmwareManifest> GetFirmwareManifest(const Txn& txn, std::string_view image_id) {
  ET_ASSIGN_OR_RETURN(auto m, FindFirmwareManifest(txn, image_id));
  if (!m) return MakeError(ErrorCode::kNotFound, "no firmware image '" + std::string(image_id) + "'");
  return std::move(*m);
}

Result<std::vector<FirmwareManifest>> ListFirmwareManifests(const Txn& txn) {
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  std::vector<FirmwareManifest> out;
  ET_ASSIGN_OR_RETURN(Cursor cursor, Cursor::Open(raw, TxnAccess::Dbs(txn).fw_manifests));
  MDB_val key, val;
  int rc = cursor.Get(&key, &val, MDB_FIRST);
  while (rc == 0) {
    FirmwareManifest m;
    ET_RETURN_IF_ERROR(internal::Decode(View(val), &m));
    out.push_back(std::move(m));
    rc = cursor.Get(&key, &val, MDB_NEXT);
  }
  if (rc != MDB_NOTFOUND) return LmdbError(rc, "list firmware manifests");
  return out;
}

namespace {
std::string ChunkKey(std::string_view image_id, uint32_t index) {
  std::string k = PrefixKey(image_id);
  AppendBe32(k, index);
  return k;
}
}  // namespace

Status PutFirmwareChunk(WriteTxn& txn, std::string_view image_id, uint32_t index, ByteView data) {
  ET_RETURN_IF_ERROR(CheckName(image_id, "firmware image id"));
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  std::string k = ChunkKey(image_id, index);
  return RawPut(raw, TxnAccess::Dbs(txn).fw_chunks, Val(std::string_view(k)), Val(data),
                "put firmware chunk");
}

Result<Bytes> GetFirmwareChunk(const Txn& txn, std::string_view image_id, uint32_t index) {
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  std::string k = ChunkKey(image_id, index);
  MDB_val val;
  ET_ASSIGN_OR_RETURN(bool found, RawGet(raw, TxnAccess::Dbs(txn).fw_chunks,
                                         Val(std::string_view(k)), &val, "get firmware chunk"));
  if (!found) {
    return MakeError(ErrorCode::kNotFound, "no chunk " + std::to_string(index) + " of image '" +
                                               std::string(image_id) + "'");
  }
  ByteView v = View(val);
  return Bytes(v.begin(), v.end());
}

Status DeleteFirmware(WriteTxn& txn, std::string_view image_id) {
  ET_RETURN_IF_ERROR(CheckName(image_id, "firmware image id"));
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  const auto& dbs = TxnAccess::Dbs(txn);
  ET_RETURN_IF_ERROR(RawDel(raw, dbs.fw_manifests, Val(image_id), "delete firmware manifest"));
  const std::string prefix = PrefixKey(image_id);
  ET_ASSIGN_OR_RETURN(Cursor cursor, Cursor::Open(raw, dbs.fw_chunks));
  MDB_val key = Val(std::string_view(prefix)), val;
  int rc = cursor.Get(&key, &val, MDB_SET_RANGE);
  while (rc == 0 && Chars(key).starts_with(prefix)) {
    rc = cursor.Del();
    if (rc != 0) return LmdbError(rc, "delete firmware chunk");
    key = Val(std::string_view(prefix));  // re-seek: no reliance on cursor state after a delete
    rc = cursor.Get(&key, &val, MDB_SET_RANGE);
  }
  if (rc != 0 && rc != MDB_NOTFOUND) return LmdbError(rc, "delete firmware chunks");
  return OkStatus();
}

// --- outbox ---

namespace {
struct OutboxMeta {
  uint64_t next_seq = 1;
  OutboxUsage usage;
};

Result<OutboxMeta> ReadOutboxMeta(const Txn& txn, std::string_view upstream) {
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  MDB_val val;
  ET_ASSIGN_OR_RETURN(bool found, RawGet(raw, TxnAccess::Dbs(txn).outbox_meta, Val(upstream), &val,
                                         "read outbox counters"));
  OutboxMeta meta;
  if (!found) return meta;
  if (val.mv_size != 24) {
    return MakeError(ErrorCode::kDataLoss, "corrupt outbox counters of '" + std::string(upstream) + "'");
  }
  const auto* p = static_cast<const uint8_t*>(val.mv_data);
  meta.next_seq = ReadBe64(p);
  meta.usage.count = ReadBe64(p + 8);
  meta.usage.bytes = ReadBe64(p + 16);
  return meta;
}

Status WriteOutboxMeta(WriteTxn& txn, std::string_view upstream, const OutboxMeta& meta) {
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  std::string v;
  AppendBe64(v, meta.next_seq);
  AppendBe64(v, meta.usage.count);
  AppendBe64(v, meta.usage.bytes);
  return RawPut(raw, TxnAccess::Dbs(txn).outbox_meta, Val(upstream), v, "write outbox counters");
}

std::string OutboxKey(std::string_view upstream, uint64_t seq) {
  std::string k = PrefixKey(upstream);
  AppendBe64(k, seq);
  return k;
}

Status PutOutboxMessage(WriteTxn& txn, std::string_view upstream, OutboxMeta meta, uint64_t seq,
                        const OutboxMessage& msg) {
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  OutboxMessage copy = msg;
  if (copy.ts == 0) copy.ts = UnixNow();
  std::string k = OutboxKey(upstream, seq);
  ET_RETURN_IF_ERROR(RawPut(raw, TxnAccess::Dbs(txn).outbox, Val(std::string_view(k)),
                            internal::Encode(copy), "append to outbox"));
  meta.next_seq = seq + 1;
  meta.usage.count += 1;
  meta.usage.bytes += msg.payload.size();
  return WriteOutboxMeta(txn, upstream, meta);
}
}  // namespace

Result<uint64_t> OutboxAppend(WriteTxn& txn, std::string_view upstream, const OutboxMessage& msg) {
  ET_RETURN_IF_ERROR(CheckName(upstream, "upstream name"));
  ET_ASSIGN_OR_RETURN(OutboxMeta meta, ReadOutboxMeta(txn, upstream));
  const uint64_t seq = meta.next_seq;
  ET_RETURN_IF_ERROR(PutOutboxMessage(txn, upstream, meta, seq, msg));
  return seq;
}

Status OutboxAppendAt(WriteTxn& txn, std::string_view upstream, uint64_t seq,
                      const OutboxMessage& msg) {
  ET_RETURN_IF_ERROR(CheckName(upstream, "upstream name"));
  ET_ASSIGN_OR_RETURN(OutboxMeta meta, ReadOutboxMeta(txn, upstream));
  if (seq == UINT64_MAX) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "outbox of '" + std::string(upstream) + "': seq " + std::to_string(seq) +
                         " is the largest there is; no sequence number would follow it");
  }
  if (seq < meta.next_seq) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "outbox of '" + std::string(upstream) + "': seq " + std::to_string(seq) +
                         " is below the next one, " + std::to_string(meta.next_seq));
  }
  return PutOutboxMessage(txn, upstream, meta, seq, msg);
}

Result<uint64_t> OutboxNextSeq(const Txn& txn, std::string_view upstream) {
  ET_RETURN_IF_ERROR(CheckName(upstream, "upstream name"));
  ET_ASSIGN_OR_RETURN(OutboxMeta meta, ReadOutboxMeta(txn, upstream));
  return meta.next_seq;
}

Result<std::vector<OutboxMessage>> OutboxRead(const Txn& txn, std::string_view upstream,
                                              uint64_t after_seq, size_t max) {
  ET_RETURN_IF_ERROR(CheckName(upstream, "upstream name"));
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  std::vector<OutboxMessage> out;
  if (max == 0 || after_seq == UINT64_MAX) return out;
  const std::string prefix = PrefixKey(upstream);
  const std::string start = OutboxKey(upstream, after_seq + 1);
  ET_ASSIGN_OR_RETURN(Cursor cursor, Cursor::Open(raw, TxnAccess::Dbs(txn).outbox));
  MDB_val key = Val(std::string_view(start)), val;
  int rc = cursor.Get(&key, &val, MDB_SET_RANGE);
  while (rc == 0 && out.size() < max && Chars(key).starts_with(prefix)) {
    if (key.mv_size != prefix.size() + 8) return MakeError(ErrorCode::kDataLoss, "corrupt outbox key");
    OutboxMessage m;
    ET_RETURN_IF_ERROR(internal::Decode(View(val), &m));
    m.seq = ReadBe64(static_cast<const char*>(key.mv_data) + prefix.size());
    m.upstream = std::string(upstream);
    out.push_back(std::move(m));
    rc = cursor.Get(&key, &val, MDB_NEXT);
  }
  if (rc != 0 && rc != MDB_NOTFOUND) return LmdbError(rc, "read outbox");
  return out;
}

Status OutboxRemove(WriteTxn& txn, std::string_view upstream, uint64_t seq) {
  ET_RETURN_IF_ERROR(CheckName(upstream, "upstream name"));
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  const auto& dbs = TxnAccess::Dbs(txn);
  std::string k = OutboxKey(upstream, seq);
  MDB_val val;
  ET_ASSIGN_OR_RETURN(bool found, RawGet(raw, dbs.outbox, Val(std::string_view(k)), &val, "outbox"));
  if (!found) return OkStatus();
  OutboxMessage m;
  ET_RETURN_IF_ERROR(internal::Decode(View(val), &m));
  ET_RETURN_IF_ERROR(RawDel(raw, dbs.outbox, Val(std::string_view(k)), "remove from outbox"));
  ET_ASSIGN_OR_RETURN(OutboxMeta meta, ReadOutboxMeta(txn, upstream));
  meta.usage.count = meta.usage.count > 0 ? meta.usage.count - 1 : 0;
  meta.usage.bytes = meta.usage.bytes >= m.payload.size() ? meta.usage.bytes - m.payload.size() : 0;
  return WriteOutboxMeta(txn, upstream, meta);
}

Result<OutboxUsage> OutboxStats(const Txn& txn, std::string_view upstream) {
  ET_RETURN_IF_ERROR(CheckName(upstream, "upstream name"));
  ET_ASSIGN_OR_RETURN(OutboxMeta meta, ReadOutboxMeta(txn, upstream));
  return meta.usage;
}

Result<OutboxUsage> OutboxDropOldest(WriteTxn& txn, std::string_view upstream, uint64_t max_bytes,
                                     uint64_t incoming_bytes) {
  ET_RETURN_IF_ERROR(CheckName(upstream, "upstream name"));
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  ET_ASSIGN_OR_RETURN(OutboxMeta meta, ReadOutboxMeta(txn, upstream));
  OutboxUsage dropped;
  if (meta.usage.bytes + incoming_bytes <= max_bytes) return dropped;
  const std::string prefix = PrefixKey(upstream);
  ET_ASSIGN_OR_RETURN(Cursor cursor, Cursor::Open(raw, TxnAccess::Dbs(txn).outbox));
  MDB_val key = Val(std::string_view(prefix)), val;
  int rc = cursor.Get(&key, &val, MDB_SET_RANGE);
  while (rc == 0 && Chars(key).starts_with(prefix) && meta.usage.bytes + incoming_bytes > max_bytes) {
    OutboxMessage m;
    ET_RETURN_IF_ERROR(internal::Decode(View(val), &m));
    rc = cursor.Del();
    if (rc != 0) return LmdbError(rc, "drop oldest outbox message");
    dropped.count += 1;
    dropped.bytes += m.payload.size();
    meta.usage.count = meta.usage.count > 0 ? meta.usage.count - 1 : 0;
    meta.usage.bytes = meta.usage.bytes >= m.payload.size() ? meta.usage.bytes - m.payload.size() : 0;
    key = Val(std::string_view(prefix));  // re-seek: no reliance on cursor state after a delete
    rc = cursor.Get(&key, &val, MDB_SET_RANGE);
  }
  if (rc != 0 && rc != MDB_NOTFOUND) return LmdbError(rc, "drop oldest outbox messages");
  ET_RETURN_IF_ERROR(WriteOutboxMeta(txn, upstream, meta));
  return dropped;
}

Result<std::vector<std::string>> OutboxUpstreams(const Txn& txn) {
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  std::vector<std::string> out;
  ET_ASSIGN_OR_RETURN(Cursor cursor, Cursor::Open(raw, TxnAccess::Dbs(txn).outbox_meta));
  MDB_val key, val;
  int rc = cursor.Get(&key, &val, MDB_FIRST);
  while (rc == 0) {
    out.emplace_back(Chars(key));
    rc = cursor.Get(&key, &val, MDB_NEXT);
  }
  if (rc != MDB_NOTFOUND) return LmdbError(rc, "list outbox upstreams");
  return out;
}

// --- audit ---

Result<uint64_t> AppendAudit(WriteTxn& txn, const AuditRecord& record) {
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  const auto& dbs = TxnAccess::Dbs(txn);
  ET_ASSIGN_OR_RETURN(uint64_t last, LastSeq(raw, dbs.audit, "audit log"));
  AuditRecord copy = record;
  if (copy.ts == 0) copy.ts = UnixNow();
  const std::string k = SeqKey(last + 1);
  ET_RETURN_IF_ERROR(RawPut(raw, dbs.audit, Val(std::string_view(k)), internal::Encode(copy),
                            "append audit", MDB_APPEND));
  return last + 1;
}

Result<std::vector<AuditRecord>> ReadAudit(const Txn& txn, uint64_t after_seq, size_t max) {
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  std::vector<AuditRecord> out;
  if (max == 0 || after_seq == UINT64_MAX) return out;
  ET_ASSIGN_OR_RETURN(Cursor cursor, Cursor::Open(raw, TxnAccess::Dbs(txn).audit));
  const std::string start = SeqKey(after_seq + 1);
  MDB_val key = Val(std::string_view(start)), val;
  int rc = cursor.Get(&key, &val, MDB_SET_RANGE);
  while (rc == 0 && out.size() < max) {
    if (key.mv_size != 8) return MakeError(ErrorCode::kDataLoss, "corrupt audit key");
    AuditRecord r;
    ET_RETURN_IF_ERROR(internal::Decode(View(val), &r));
    r.seq = ReadBe64(key.mv_data);
    out.push_back(std::move(r));
    rc = cursor.Get(&key, &val, MDB_NEXT);
  }
  if (rc != 0 && rc != MDB_NOTFOUND) return LmdbError(rc, "read audit");
  return out;
}

// --- allowlist ---

Status PutAllowlistEntry(WriteTxn& txn, const AllowlistEntry& entry) {
  if (!IsValidDeviceId(entry.device_id)) {
    return MakeError(ErrorCode::kInvalidArgument, "invalid device id '" + entry.device_id + "'");
  }
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  return RawPut(raw, TxnAccess::Dbs(txn).allowlist, Val(entry.device_id), internal::Encode(entry),
                "put allowlist entry");
}

Result<std::optional<AllowlistEntry>> FindAllowlistEntry(const Txn& txn,
                                                         std::string_view device_id) {
  if (device_id.empty()) return std::optional<AllowlistEntry>();
  return FindRecord<AllowlistEntry>(txn, TxnAccess::Dbs(txn).allowlist, Val(device_id),
                                    "get allowlist entry");
}

// --- meta ---

Result<uint32_t> ReadSchemaVersion(const Txn& txn) {
  ET_ASSIGN_OR_RETURN(MDB_txn * raw, ReadHandle(txn));
  MDB_val val;
  ET_ASSIGN_OR_RETURN(bool found, RawGet(raw, TxnAccess::Dbs(txn).meta, Val(std::string_view("schema")),
                                         &val, "read schema version"));
  if (!found) return MakeError(ErrorCode::kNotFound, "no schema version");
  if (val.mv_size != 4) return MakeError(ErrorCode::kDataLoss, "corrupt schema version");
  const auto* b = static_cast<const uint8_t*>(val.mv_data);
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
}

}  // namespace edgetrust::storage
