// The LMDB store: one environment, named tables, a schema version. This is the only part of
// edgetrust that touches LMDB. The gateway and the CLI open it read-write (LMDB serialises
// writers across processes); the broker plugin opens it read-only and reuses one ReadTxn.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "edgetrust/common/result.h"

// LMDB's handles, forward-declared so callers need not include lmdb.h.
struct MDB_txn;

namespace edgetrust::storage {

// Bumped whenever the on-disk layout changes incompatibly. A store written with another
// version is refused at Open with kFailedPrecondition.
inline constexpr uint32_t kSchemaVersion = 1;

struct StoreOptions {
  std::string path;                    // directory holding data.mdb and lock.mdb
  bool read_only = false;              // never takes the writer lock; the directory must exist
  size_t map_size = size_t{1} << 30;   // upper bound of the data file (1 GiB); ignored read-only
  unsigned max_readers = 510;          // reader slots shared by every process on the store
  bool sync = true;                    // false: no fsync at commit, for bulk loads and benchmarks;
                                       // a process crash still loses nothing, an OS crash may
                                       // lose the last commits
  unsigned file_mode = 0664;           // for data.mdb/lock.mdb created by a writer (umask applies);
                                       // the plugin's user must be able to write lock.mdb
};

namespace internal {
struct StoreState;  // env + table handles; its address is stable for the Store's life
struct TxnAccess;   // lets the table code reach the raw transaction
}  // namespace internal

// Any transaction: table reads accept `const Txn&`, so they work inside a WriteTxn too.
class Txn {
 public:
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  bool active() const { return txn_ != nullptr; }

 protected:
  Txn() = default;
  Txn(Txn&& other) noexcept;
  Txn& operator=(Txn&& other) noexcept;
  ~Txn() = default;

  MDB_txn* txn_ = nullptr;
  internal::StoreState* state_ = nullptr;
  bool reset_ = false;  // a ReadTxn between Reset() and Renew()
  friend struct internal::TxnAccess;
};

// A read snapshot. For a hot path, keep one and call Reset() after each lookup and Renew()
// before the next: no allocation, no reader-slot churn, and old pages are not pinned.
class ReadTxn : public Txn {
 public:
  ReadTxn() = default;
  ReadTxn(ReadTxn&& other) noexcept = default;
  ReadTxn& operator=(ReadTxn&& other) noexcept;
  ~ReadTxn();

  // Releases the snapshot but keeps the reader slot. Reads are invalid until Renew().
  void Reset();
  // Takes a fresh snapshot of the latest committed data.
  Status Renew();
  bool is_reset() const { return reset_; }

 private:
  friend class Store;
};

// The single writer. Aborted on destruction unless Commit() succeeded.
class WriteTxn : public Txn {
 public:
  WriteTxn() = default;
  WriteTxn(WriteTxn&& other) noexcept = default;
  WriteTxn& operator=(WriteTxn&& other) noexcept;
  ~WriteTxn();

  // kResourceExhausted when the map is full ("store is full: raise map size").
  Status Commit();
  void Abort();

 private:
  friend class Store;
};

// Every transaction must end before its Store is destroyed.
class Store {
 public:
  // Creates the directory (read-write only), checks or writes the schema version, clears
  // reader slots left by dead processes. Errors: kFailedPrecondition (schema mismatch, or a
  // read-only open of a store no writer has initialised yet), kUnavailable (no directory),
  // kIo (anything else from the OS or LMDB).
  static Result<Store> Open(const StoreOptions& options);

  Store(Store&&) noexcept;
  Store& operator=(Store&&) noexcept;
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  Result<ReadTxn> BeginRead() const;
  // kFailedPrecondition when the store was opened read-only.
  Result<WriteTxn> BeginWrite();

  const std::string& path() const;
  bool read_only() const;
  // Number of reader slots freed because their process died (mdb_reader_check).
  Result<int> ClearStaleReaders() const;

 private:
  explicit Store(std::unique_ptr<internal::StoreState> state);
  std::unique_ptr<internal::StoreState> state_;
};

}  // namespace edgetrust::storage
