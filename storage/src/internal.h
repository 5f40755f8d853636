// Private to storage: the environment, table handles and LMDB error mapping.
#pragma once

#include <lmdb.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "edgetrust/common/bytes.h"
#include "edgetrust/common/result.h"
#include "edgetrust/storage/store.h"

namespace edgetrust::storage::internal {

// Owns one MDB_env.
class LmdbEnv {
 public:
  static Result<LmdbEnv> Create();
  LmdbEnv() = default;
  LmdbEnv(LmdbEnv&& other) noexcept : env_(std::exchange(other.env_, nullptr)) {}
  LmdbEnv& operator=(LmdbEnv&& other) noexcept {
    if (this != &other) {
      Close();
      env_ = std::exchange(other.env_, nullptr);
    }
    return *this;
  }
  LmdbEnv(const LmdbEnv&) = delete;
  LmdbEnv& operator=(const LmdbEnv&) = delete;
  ~LmdbEnv() { Close(); }
  MDB_env* get() const { return env_; }

 private:
  explicit LmdbEnv(MDB_env* env) : env_(env) {}
  void Close() {
    if (env_ != nullptr) mdb_env_close(env_);
    env_ = nullptr;
  }
  MDB_env* env_ = nullptr;
};

// The named tables. Handles are opened once at Open and are valid for every transaction.
struct Tables {
  MDB_dbi meta = 0;
  MDB_dbi devices = 0;
  MDB_dbi certs = 0;
  MDB_dbi certs_by_device = 0;  // device id \0 fingerprint -> ""
  MDB_dbi rev_fp = 0;           // fingerprint -> seq
  MDB_dbi rev_serial = 0;       // len(issuer) issuer serial -> seq
  MDB_dbi rev_log = 0;          // seq (BE64) -> entry
  MDB_dbi fw_manifests = 0;
  MDB_dbi fw_chunks = 0;        // image \0 index (BE32) -> raw bytes
  MDB_dbi outbox = 0;           // upstream \0 seq (BE64) -> message
  MDB_dbi outbox_meta = 0;      // upstream -> next_seq, count, bytes (BE64 x3)
  MDB_dbi audit = 0;            // seq (BE64) -> record
  MDB_dbi allowlist = 0;
};

// Keeps one process from opening the same environment twice: LMDB's locks are per process
// (fcntl), so closing a second handle would silently drop the first one's locks.
class OpenEnvRegistration {
 public:
  // False if the directory (device, inode) is already open in this process.
  bool Register(uint64_t dev, uint64_t ino);
  OpenEnvRegistration() = default;
  OpenEnvRegistration(const OpenEnvRegistration&) = delete;
  OpenEnvRegistration& operator=(const OpenEnvRegistration&) = delete;
  ~OpenEnvRegistration();

 private:
  bool registered_ = false;
  uint64_t dev_ = 0;
  uint64_t ino_ = 0;
};

struct StoreState {
  OpenEnvRegistration registration;  // declared first: released after the env is closed
  LmdbEnv env;
  Tables tables;
  std::string path;
  bool read_only = false;
};

// Maps an LMDB or errno code to an Error. `what` names the operation.
Error LmdbError(int rc, std::string_view what);

// Begins a transaction, adopting a map grown by another process (MDB_MAP_RESIZED).
int BeginRaw(StoreState& state, unsigned flags, MDB_txn** txn);

struct TxnAccess {
  // Null when the transaction is not usable (ended, or a reset ReadTxn).
  static MDB_txn* Raw(const Txn& txn) { return txn.reset_ ? nullptr : txn.txn_; }
  static const Tables& Dbs(const Txn& txn) { return txn.state_->tables; }
};

inline MDB_val Val(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}
inline MDB_val Val(ByteView b) {
  return MDB_val{b.size(), const_cast<uint8_t*>(b.data())};
}
inline ByteView View(const MDB_val& v) {
  return ByteView(static_cast<const uint8_t*>(v.mv_data), v.mv_size);
}
inline std::string_view Chars(const MDB_val& v) {
  return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

inline void AppendBe64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (i * 8)) & 0xff));
}
inline void AppendBe32(std::string& out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>((v >> (i * 8)) & 0xff));
}
inline uint64_t ReadBe64(const void* p) {
  const auto* b = static_cast<const uint8_t*>(p);
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | b[i];
  return v;
}

}  // namespace edgetrust::storage::internal
