#include "edgetrust/storage/store.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>
#include <system_error>
#include <utility>

#include "internal.h"

namespace edgetrust::storage {
namespace internal {

Result<LmdbEnv> LmdbEnv::Create() {
  MDB_env* env = nullptr;
  int rc = mdb_env_create(&env);
  if (rc != 0) return LmdbError(rc, "mdb_env_create");
  return LmdbEnv(env);
}

Error LmdbError(int rc, std::string_view what) {
  std::string msg = std::string(what) + ": " + mdb_strerror(rc);
  switch (rc) {
    case MDB_MAP_FULL:
      return MakeError(ErrorCode::kResourceExhausted,
                       "store is full: raise map size (" + msg + ")");
    case MDB_TXN_FULL:
    case MDB_READERS_FULL:
    case MDB_DBS_FULL:
      return MakeError(ErrorCode::kResourceExhausted, msg);
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
      return MakeError(ErrorCode::kDataLoss, "store is corrupt: " + msg);
    case MDB_VERSION_MISMATCH:
      return MakeError(ErrorCode::kFailedPrecondition, msg);
    case MDB_BAD_VALSIZE:
      return MakeError(ErrorCode::kInvalidArgument, msg);
    case MDB_NOTFOUND:
      return MakeError(ErrorCode::kNotFound, msg);
    case ENOENT:
      return MakeError(ErrorCode::kUnavailable, msg);
    case EACCES:
    case EPERM:
    case EROFS:
      return MakeError(ErrorCode::kPermissionDenied, msg);
    default:
      return MakeError(ErrorCode::kIo, msg);
  }
}

namespace {
std::mutex open_envs_mutex;
std::set<std::pair<uint64_t, uint64_t>> open_envs;
}  // namespace

bool OpenEnvRegistration::Register(uint64_t dev, uint64_t ino) {
  std::lock_guard lock(open_envs_mutex);
  if (!open_envs.emplace(dev, ino).second) return false;
  registered_ = true;
  dev_ = dev;
  ino_ = ino;
  return true;
}

OpenEnvRegistration::~OpenEnvRegistration() {
  if (!registered_) return;
  std::lock_guard lock(open_envs_mutex);
  open_envs.erase({dev_, ino_});
}

int BeginRaw(StoreState& state, unsigned flags, MDB_txn** txn) {
  int rc = mdb_txn_begin(state.env.get(), nullptr, flags, txn);
  if (rc == MDB_MAP_RESIZED) {
    // Another process grew the map; adopt its size (legal only with no txn of ours open).
    rc = mdb_env_set_mapsize(state.env.get(), 0);
    if (rc == 0) rc = mdb_txn_begin(state.env.get(), nullptr, flags, txn);
  }
  return rc;
}

}  // namespace internal

namespace {

using internal::LmdbError;
using internal::StoreState;

constexpr std::string_view kSchemaKey = "schema";

struct TableSpec {
  const char* name;
  MDB_dbi internal::Tables::*member;
};
constexpr TableSpec kTables[] = {
    {"meta", &internal::Tables::meta},
    {"devices", &internal::Tables::devices},
    {"certs", &internal::Tables::certs},
    {"certs_by_device", &internal::Tables::certs_by_device},
    {"rev_fp", &internal::Tables::rev_fp},
    {"rev_serial", &internal::Tables::rev_serial},
    {"rev_log", &internal::Tables::rev_log},
    {"fw_manifests", &internal::Tables::fw_manifests},
    {"fw_chunks", &internal::Tables::fw_chunks},
    {"outbox", &internal::Tables::outbox},
    {"outbox_meta", &internal::Tables::outbox_meta},
    {"audit", &internal::Tables::audit},
    {"allowlist", &internal::Tables::allowlist},
};

Status CheckSchema(MDB_txn* txn, MDB_dbi meta, const std::string& path, bool may_write) {
  MDB_val key = internal::Val(kSchemaKey);
  MDB_val val;
  int rc = mdb_get(txn, meta, &key, &val);
  if (rc == MDB_NOTFOUND) {
    if (!may_write) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "store " + path + " has no schema version (not initialised by a writer)");
    }
    std::string v;
    internal::AppendBe32(v, kSchemaVersion);
    MDB_val data = internal::Val(std::string_view(v));
    rc = mdb_put(txn, meta, &key, &data, 0);
    if (rc != 0) return LmdbError(rc, "write schema version");
    return OkStatus();
  }
  if (rc != 0) return LmdbError(rc, "read schema version");
  if (val.mv_size != 4) {
    return MakeError(ErrorCode::kDataLoss, "store " + path + ": schema version record is corrupt");
  }
  const auto* b = static_cast<const uint8_t*>(val.mv_data);
  uint32_t version = (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
  if (version != kSchemaVersion) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "store " + path + " has schema version " + std::to_string(version) +
                         ", this program expects " + std::to_string(kSchemaVersion) +
                         ": use a matching edgetrust version or migrate the store");
  }
  return OkStatus();
}

}  // namespace

// --- Txn ---

Txn::Txn(Txn&& other) noexcept
    : txn_(std::exchange(other.txn_, nullptr)),
      state_(std::exchange(other.state_, nullptr)),
      reset_(std::exchange(other.reset_, false)) {}

Txn& Txn::operator=(Txn&& other) noexcept {
  txn_ = std::exchange(other.txn_, nullptr);
  state_ = std::exchange(other.state_, nullptr);
  reset_ = std::exchange(other.reset_, false);
  return *this;
}

ReadTxn& ReadTxn::operator=(ReadTxn&& other) noexcept {
  if (this != &other) {
    if (txn_ != nullptr) mdb_txn_abort(txn_);
    Txn::operator=(std::move(other));
  }
  return *this;
}

ReadTxn::~ReadTxn() {
  if (txn_ != nullptr) mdb_txn_abort(txn_);
}

void ReadTxn::Reset() {
  if (txn_ != nullptr && !reset_) {
    mdb_txn_reset(txn_);
    reset_ = true;
  }
}

Status ReadTxn::Renew() {
  if (txn_ == nullptr) {
    return MakeError(ErrorCode::kFailedPrecondition, "read transaction was never begun");
  }
  if (!reset_) mdb_txn_reset(txn_);
  reset_ = true;
  int rc = mdb_txn_renew(txn_);
  if (rc == 0) {
    reset_ = false;
    return OkStatus();
  }
  if (rc == MDB_MAP_RESIZED) {
    // The writer grew the map: drop this handle and begin afresh at the new size.
    mdb_txn_abort(txn_);
    txn_ = nullptr;
    rc = internal::BeginRaw(*state_, MDB_RDONLY, &txn_);
    if (rc == 0) {
      reset_ = false;
      return OkStatus();
    }
    txn_ = nullptr;
  }
  return LmdbError(rc, "renew read transaction");
}

WriteTxn& WriteTxn::operator=(WriteTxn&& other) noexcept {
  if (this != &other) {
    Abort();
    Txn::operator=(std::move(other));
  }
  return *this;
}

WriteTxn::~WriteTxn() { Abort(); }

void WriteTxn::Abort() {
  if (txn_ != nullptr) mdb_txn_abort(txn_);
  txn_ = nullptr;
}

Status WriteTxn::Commit() {
  if (txn_ == nullptr) {
    return MakeError(ErrorCode::kFailedPrecondition, "write transaction is not active");
  }
  int rc = mdb_txn_commit(txn_);  // frees the txn whatever the outcome
  txn_ = nullptr;
  if (rc != 0) return LmdbError(rc, "commit");
  return OkStatus();
}

// --- Store ---

Store::Store(std::unique_ptr<internal::StoreState> state) : state_(std::move(state)) {}
Store::Store(Store&&) noexcept = default;
Store& Store::operator=(Store&&) noexcept = default;
Store::~Store() = default;

const std::string& Store::path() const { return state_->path; }
bool Store::read_only() const { return state_->read_only; }

Result<Store> Store::Open(const StoreOptions& options) {
  if (options.path.empty()) return MakeError(ErrorCode::kInvalidArgument, "store path is empty");
  std::error_code ec;
  if (options.read_only) {
    if (!std::filesystem::is_directory(options.path, ec)) {
      return MakeError(ErrorCode::kUnavailable, "store directory " + options.path + " does not exist");
    }
  } else if (!std::filesystem::create_directories(options.path, ec) && ec) {
    return MakeError(ErrorCode::kIo, "cannot create store directory " + options.path + ": " +
                                         ec.message());
  }

  auto state = std::make_unique<StoreState>();
  struct stat dir_stat;
  if (::stat(options.path.c_str(), &dir_stat) != 0) {
    return MakeError(ErrorCode::kIo, "cannot stat store directory " + options.path + ": " +
                                         std::strerror(errno));
  }
  if (!state->registration.Register(dir_stat.st_dev, dir_stat.st_ino)) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "store " + options.path +
                         " is already open in this process: share that Store (LMDB allows one "
                         "environment per process)");
  }
  state->path = options.path;
  state->read_only = options.read_only;
  ET_ASSIGN_OR_RETURN(state->env, internal::LmdbEnv::Create());
  MDB_env* env = state->env.get();

  int rc = mdb_env_set_maxdbs(env, std::size(kTables) + 3);
  if (rc == 0) rc = mdb_env_set_maxreaders(env, options.max_readers);
  // Read-only keeps LMDB's default (0 = the size the writer recorded in the file).
  if (rc == 0 && !options.read_only) rc = mdb_env_set_mapsize(env, options.map_size);
  if (rc != 0) return LmdbError(rc, "configure store " + options.path);

  // MDB_NOTLS: a read txn belongs to its object, not its thread, so one can be reused
  // across libuv's pool threads and the plugin keeps one slot for its whole life.
  // MDB_NORDAHEAD: lookups are random (device ids, fingerprints); LMDB then advises the map
  // MADV_RANDOM, so a page fault maps that page only, not its cached neighbours (fault-around),
  // and a process's RSS holds the pages it reads rather than most of the file.
  unsigned flags = MDB_NOTLS | MDB_NORDAHEAD;
  if (options.read_only) flags |= MDB_RDONLY;
  if (!options.sync) flags |= MDB_NOSYNC;
  rc = mdb_env_open(env, options.path.c_str(), flags, static_cast<mdb_mode_t>(options.file_mode));
  if (rc != 0) {
    if (options.read_only && rc == ENOENT) {
      return MakeError(ErrorCode::kUnavailable,
                       "store " + options.path + " has no data file (not initialised by a writer)");
    }
    return LmdbError(rc, "open store " + options.path);
  }

  int dead = 0;
  rc = mdb_reader_check(env, &dead);
  if (rc != 0) return LmdbError(rc, "reader check on " + options.path);

  MDB_txn* txn = nullptr;
  rc = internal::BeginRaw(*state, options.read_only ? MDB_RDONLY : 0, &txn);
  if (rc != 0) return LmdbError(rc, "begin open transaction on " + options.path);
  for (const TableSpec& spec : kTables) {
    rc = mdb_dbi_open(txn, spec.name, options.read_only ? 0 : MDB_CREATE,
                      &(state->tables.*spec.member));
    if (rc != 0) {
      mdb_txn_abort(txn);
      if (rc == MDB_NOTFOUND) {
        return MakeError(ErrorCode::kFailedPrecondition,
                         "store " + options.path + " has no table '" + spec.name +
                             "' (not initialised by a writer of schema " +
                             std::to_string(kSchemaVersion) + ")");
      }
      return LmdbError(rc, std::string("open table ") + spec.name);
    }
  }
  Status schema = CheckSchema(txn, state->tables.meta, options.path, !options.read_only);
  if (!schema.ok()) {
    mdb_txn_abort(txn);
    return std::move(schema).error();
  }
  // Committing (even read-only) keeps the table handles open for the env's life.
  rc = mdb_txn_commit(txn);
  if (rc != 0) return LmdbError(rc, "commit open transaction on " + options.path);
  return Store(std::move(state));
}

Result<ReadTxn> Store::BeginRead() const {
  ReadTxn txn;
  int rc = internal::BeginRaw(*state_, MDB_RDONLY, &txn.txn_);
  if (rc != 0) {
    txn.txn_ = nullptr;
    return LmdbError(rc, "begin read transaction");
  }
  txn.state_ = state_.get();
  return txn;
}

Result<WriteTxn> Store::BeginWrite() {
  if (state_->read_only) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "store " + state_->path + " is open read-only: writes are refused");
  }
  WriteTxn txn;
  int rc = internal::BeginRaw(*state_, 0, &txn.txn_);
  if (rc != 0) {
    txn.txn_ = nullptr;
    return LmdbError(rc, "begin write transaction");
  }
  txn.state_ = state_.get();
  return txn;
}

Result<int> Store::ClearStaleReaders() const {
  int dead = 0;
  int rc = mdb_reader_check(state_->env.get(), &dead);
  if (rc != 0) return LmdbError(rc, "reader check");
  return dead;
}

}  // namespace edgetrust::storage
