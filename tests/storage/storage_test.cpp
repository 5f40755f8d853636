#include <gtest/gtest.h>
#include <lmdb.h>

#include <msgpack.hpp>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "edgetrust/storage/lifecycle.h"
#include "edgetrust/storage/records.h"
#include "edgetrust/storage/store.h"
#include "edgetrust/storage/tables.h"
#include "edgetrust/testing/process.h"

namespace edgetrust::storage {
namespace {

using testing::TempDir;

Bytes Fp(uint8_t seed) { return Bytes(32, seed); }

Store OpenOrDie(const std::string& path, bool read_only = false, size_t map_size = size_t{64} << 20) {
  auto store = Store::Open({.path = path, .read_only = read_only, .map_size = map_size});
  EXPECT_TRUE(store.ok()) << store.error().ToString();
  return std::move(store).value();
}

WriteTxn BeginWrite(Store& store) {
  auto txn = store.BeginWrite();
  EXPECT_TRUE(txn.ok()) << txn.error().ToString();
  return std::move(txn).value();
}

ReadTxn BeginRead(const Store& store) {
  auto txn = store.BeginRead();
  EXPECT_TRUE(txn.ok()) << txn.error().ToString();
  return std::move(txn).value();
}

#define ASSERT_OK(expr)                                          \
  do {                                                           \
    auto et_s_ = (expr);                                         \
    ASSERT_TRUE(et_s_.ok()) << #expr ": " << et_s_.error().ToString(); \
  } while (0)

// Writes raw bytes under `key` of table `table`, bypassing the typed layer (the Store must
// be closed: LMDB forbids one env open twice in a process).
void RawPut(const std::string& path, const char* table, const std::string& key,
            const std::string& value) {
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  mdb_env_set_maxdbs(env, 32);
  ASSERT_EQ(mdb_env_open(env, path.c_str(), 0, 0664), 0);
  MDB_txn* txn = nullptr;
  ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  MDB_dbi dbi;
  ASSERT_EQ(mdb_dbi_open(txn, table, 0, &dbi), 0);
  MDB_val k{key.size(), const_cast<char*>(key.data())};
  MDB_val v{value.size(), const_cast<char*>(value.data())};
  ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
  ASSERT_EQ(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

DeviceRecord SampleDevice(const std::string& id) {
  DeviceRecord d;
  d.id = id;
  d.state = DeviceState::kActive;
  d.manufacturer = "acme";
  d.model = "thermo-1";
  d.group = "thermostats";
  d.birth_fingerprint = Fp(1);
  d.operational_fingerprint = Fp(2);
  d.operational_not_after = 1900000000;
  d.fw = "1.2.3";
  d.claim_code_sha256 = Bytes(32, 9);
  d.created_at = 1700000000;
  return d;
}

TEST(Records, StateAndKindNames) {
  for (auto s : {DeviceState::kManufactured, DeviceState::kActive, DeviceState::kTransferPending,
                 DeviceState::kRetired, DeviceState::kCompromised}) {
    auto parsed = ParseDeviceState(DeviceStateName(s));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, s);
  }
  EXPECT_EQ(DeviceStateName(DeviceState::kTransferPending), "transfer_pending");
  EXPECT_FALSE(ParseDeviceState("Active").ok());
  EXPECT_EQ(ParseDeviceState("").error().code, ErrorCode::kInvalidArgument);
  for (auto k : {CertificateKind::kBirth, CertificateKind::kOperational, CertificateKind::kPrincipal,
                 CertificateKind::kCloud}) {
    auto parsed = ParseCertificateKind(CertificateKindName(k));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, k);
  }
  EXPECT_FALSE(ParseCertificateKind("leaf").ok());
}

TEST(Store, CreatesDirectoryAndWritesSchema) {
  TempDir dir;
  const std::string path = dir / "a/b/store";
  Store store = OpenOrDie(path);
  ReadTxn txn = BeginRead(store);
  auto v = ReadSchemaVersion(txn);
  ASSERT_OK(v);
  EXPECT_EQ(*v, kSchemaVersion);
  EXPECT_EQ(store.path(), path);
  EXPECT_FALSE(store.read_only());
}

TEST(Store, SecondOpenInOneProcessIsRefusedUntilTheFirstCloses) {
  TempDir dir;
  const std::string path = dir / "s";
  {
    Store store = OpenOrDie(path);
    for (bool ro : {false, true}) {
      auto again = Store::Open({.path = path, .read_only = ro});
      ASSERT_FALSE(again.ok());
      EXPECT_EQ(again.error().code, ErrorCode::kFailedPrecondition);
      EXPECT_NE(again.error().message.find("already open in this process"), std::string::npos);
    }
    Store moved = std::move(store);  // moving keeps it open and usable
    ReadTxn r = BeginRead(moved);
    EXPECT_EQ(*ReadSchemaVersion(r), kSchemaVersion);
  }
  Store reopened = OpenOrDie(path, /*read_only=*/true);
}

TEST(Store, DeviceRoundTripAndPagination) {
  TempDir dir;
  Store store = OpenOrDie(dir / "s");
  {
    WriteTxn w = BeginWrite(store);
    ASSERT_OK(PutDevice(w, SampleDevice("dev-a")));
    for (int i = 0; i < 25; ++i) {
      char id[16];
      snprintf(id, sizeof id, "p%03d", i);
      ASSERT_OK(PutDevice(w, SampleDevice(id)));
    }
    ASSERT_OK(w.Commit());
  }
  ReadTxn r = BeginRead(store);
  auto got = GetDevice(r, "dev-a");
  ASSERT_OK(got);
  DeviceRecord want = SampleDevice("dev-a");
  EXPECT_EQ(got->id, want.id);
  EXPECT_EQ(got->state, want.state);
  EXPECT_EQ(got->manufacturer, want.manufacturer);
  EXPECT_EQ(got->model, want.model);
  EXPECT_EQ(got->group, want.group);
  EXPECT_EQ(got->birth_fingerprint, want.birth_fingerprint);
  EXPECT_EQ(got->operational_fingerprint, want.operational_fingerprint);
  EXPECT_EQ(got->operational_not_after, want.operational_not_after);
  EXPECT_FALSE(got->operational_unconfirmed);
  EXPECT_EQ(got->fw, want.fw);
  EXPECT_EQ(got->claim_code_sha256, want.claim_code_sha256);
  EXPECT_EQ(got->created_at, want.created_at);
  EXPECT_GE(got->updated_at, UnixNow() - 5);

  auto missing = FindDevice(r, "nope");
  ASSERT_OK(missing);
  EXPECT_FALSE(missing->has_value());
  EXPECT_EQ(GetDevice(r, "nope").error().code, ErrorCode::kNotFound);

  auto count = CountDevices(r);
  ASSERT_OK(count);
  EXPECT_EQ(*count, 26u);

  std::vector<std::string> seen;
  std::string after;
  for (int page = 0; page < 10; ++page) {
    auto list = ListDevices(r, after, 10);
    ASSERT_OK(list);
    if (list->empty()) break;
    for (const auto& d : *list) seen.push_back(d.id);
    after = list->back().id;
  }
  ASSERT_EQ(seen.size(), 26u);
  EXPECT_EQ(seen.front(), "dev-a");
  EXPECT_EQ(seen[1], "p000");
  EXPECT_EQ(seen.back(), "p024");
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  auto mid = ListDevices(r, "p0105", 2);  // a cursor between ids resumes at the next one
  ASSERT_OK(mid);
  ASSERT_EQ(mid->size(), 2u);
  EXPECT_EQ((*mid)[0].id, "p011");
}

TEST(Store, RejectsBadDeviceId) {
  TempDir dir;
  Store store = OpenOrDie(dir / "s");
  WriteTxn w = BeginWrite(store);
  auto st = PutDevice(w, SampleDevice("bad/id"));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(PutDevice(w, SampleDevice("")).error().code, ErrorCode::kInvalidArgument);
}

TEST(Store, CertificateRoundTripAndDeviceIndex) {
  TempDir dir;
  Store store = OpenOrDie(dir / "s");
  CertificateRecord c;
  c.fingerprint = Fp(7);
  c.device_id = "dev-1";
  c.kind = CertificateKind::kBirth;
  c.issuer_id = Fp(100);
  c.serial = {1, 2, 3};
  c.not_before = 10;
  c.not_after = 20;
  c.der = {0x30, 0x82, 0x01};
  CertificateRecord op = c;
  op.fingerprint = Fp(8);
  op.kind = CertificateKind::kOperational;
  CertificateRecord other = c;
  other.fingerprint = Fp(9);
  other.device_id = "dev-10";  // shares the "dev-1" prefix: must not leak into dev-1's list
  {
    WriteTxn w = BeginWrite(store);
    ASSERT_OK(PutCertificate(w, c));
    ASSERT_OK(PutCertificate(w, op));
    ASSERT_OK(PutCertificate(w, other));
    CertificateRecord bad = c;
    bad.fingerprint = {1, 2};
    EXPECT_EQ(PutCertificate(w, bad).error().code, ErrorCode::kInvalidArgument);
    ASSERT_OK(w.Commit());
  }
  {
    ReadTxn r = BeginRead(store);
    auto got = GetCertificate(r, Fp(7));
    ASSERT_OK(got);
    EXPECT_EQ(got->device_id, "dev-1");
    EXPECT_EQ(got->kind, CertificateKind::kBirth);
    EXPECT_EQ(got->issuer_id, Fp(100));
    EXPECT_EQ(got->serial, (Bytes{1, 2, 3}));
    EXPECT_EQ(got->not_before, 10);
    EXPECT_EQ(got->not_after, 20);
    EXPECT_EQ(got->der, c.der);
    auto list = ListDeviceCertificates(r, "dev-1");
    ASSERT_OK(list);
    ASSERT_EQ(list->size(), 2u);
    EXPECT_EQ(GetCertificate(r, Fp(55)).error().code, ErrorCode::kNotFound);
  }
  {
    // Re-owning a certificate moves it in the index.
    WriteTxn w = BeginWrite(store);
    op.device_id = "dev-2";
    ASSERT_OK(PutCertificate(w, op));
    ASSERT_OK(w.Commit());
    ReadTxn r = BeginRead(store);
    EXPECT_EQ(ListDeviceCertificates(r, "dev-1")->size(), 1u);
    EXPECT_EQ(ListDeviceCertificates(r, "dev-2")->size(), 1u);
  }
}

TEST(Store, RevocationLogOrderResumeAndReopen) {
  TempDir dir;
  const std::string path = dir / "s";
  {
    Store store = OpenOrDie(path);
    WriteTxn w = BeginWrite(store);
    auto latest = LatestRevocationSeq(w);
    ASSERT_OK(latest);
    EXPECT_EQ(*latest, 0u);
    for (uint8_t i = 1; i <= 5; ++i) {
      RevocationRecord rev;
      rev.fingerprint = Fp(i);
      rev.issuer_id = Fp(200);
      rev.serial = {i, i};
      rev.device_id = "dev-" + std::to_string(i);
      rev.reason = "test";
      auto seq = AppendRevocation(w, rev);
      ASSERT_OK(seq);
      EXPECT_EQ(*seq, i);
    }
    // Idempotent: the same fingerprint returns its first seq and writes nothing.
    RevocationRecord again;
    again.fingerprint = Fp(3);
    auto seq = AppendRevocation(w, again);
    ASSERT_OK(seq);
    EXPECT_EQ(*seq, 3u);
    // By issuer and serial only.
    RevocationRecord by_serial;
    by_serial.issuer_id = Fp(201);
    by_serial.serial = {9};
    ASSERT_EQ(*AppendRevocation(w, by_serial), 6u);
    EXPECT_EQ(AppendRevocation(w, RevocationRecord{}).error().code, ErrorCode::kInvalidArgument);
    RevocationRecord short_fp;
    short_fp.fingerprint = {1};
    EXPECT_EQ(AppendRevocation(w, short_fp).error().code, ErrorCode::kInvalidArgument);
    ASSERT_OK(w.Commit());
  }
  Store store = OpenOrDie(path);
  {
    ReadTxn r = BeginRead(store);
    EXPECT_EQ(*LatestRevocationSeq(r), 6u);
    EXPECT_TRUE(*IsFingerprintRevoked(r, Fp(1)));
    EXPECT_TRUE(*IsFingerprintRevoked(r, Fp(5)));
    EXPECT_FALSE(*IsFingerprintRevoked(r, Fp(6)));
    EXPECT_TRUE(*IsSerialRevoked(r, Fp(200), Bytes{2, 2}));
    EXPECT_TRUE(*IsSerialRevoked(r, Fp(201), Bytes{9}));
    EXPECT_FALSE(*IsSerialRevoked(r, Fp(201), Bytes{2, 2}));
    EXPECT_FALSE(*IsSerialRevoked(r, Fp(200), Bytes{2}));
    auto found = FindRevocation(r, Fp(4));
    ASSERT_OK(found);
    ASSERT_TRUE(found->has_value());
    EXPECT_EQ((*found)->seq, 4u);
    EXPECT_EQ((*found)->device_id, "dev-4");
    EXPECT_EQ((*found)->reason, "test");
    EXPECT_GT((*found)->ts, 0);

    auto all = ReadRevocationLog(r, 0, 100);
    ASSERT_OK(all);
    ASSERT_EQ(all->size(), 6u);
    for (size_t i = 0; i < all->size(); ++i) EXPECT_EQ((*all)[i].seq, i + 1);
    auto tail = ReadRevocationLog(r, 4, 100);
    ASSERT_OK(tail);
    ASSERT_EQ(tail->size(), 2u);
    EXPECT_EQ((*tail)[0].seq, 5u);
    EXPECT_EQ((*tail)[0].fingerprint, Fp(5));
    EXPECT_EQ((*tail)[1].issuer_id, Fp(201));
    auto page = ReadRevocationLog(r, 1, 2);
    ASSERT_EQ(page->size(), 2u);
    EXPECT_EQ((*page)[1].seq, 3u);
    EXPECT_TRUE(ReadRevocationLog(r, 6, 10)->empty());
  }
  // The sequence continues after a reopen.
  WriteTxn w = BeginWrite(store);
  RevocationRecord rev;
  rev.fingerprint = Fp(77);
  EXPECT_EQ(*AppendRevocation(w, rev), 7u);
}

TEST(Store, FirmwareRoundTrip) {
  TempDir dir;
  Store store = OpenOrDie(dir / "s");
  FirmwareManifest m;
  m.image_id = "thermo-fw-2.0.0";
  m.version = "2.0.0";
  m.size = 10000;
  m.chunk_size = 4096;
  m.sha256 = Fp(3);
  m.sig = Bytes(64, 5);
  m.key_id = "fw-key-1";
  m.channel = "stable";
  m.created_at = 1700000001;
  {
    WriteTxn w = BeginWrite(store);
    ASSERT_OK(PutFirmwareManifest(w, m));
    for (uint32_t i = 0; i < 3; ++i) {
      ASSERT_OK(PutFirmwareChunk(w, m.image_id, i, Bytes(i == 2 ? 1808 : 4096, uint8_t(i))));
    }
    ASSERT_OK(PutFirmwareChunk(w, "other", 0, Bytes{1}));
    ASSERT_OK(w.Commit());
  }
  {
    ReadTxn r = BeginRead(store);
    auto got = GetFirmwareManifest(r, m.image_id);
    ASSERT_OK(got);
    EXPECT_EQ(got->version, "2.0.0");
    EXPECT_EQ(got->size, 10000u);
    EXPECT_EQ(got->chunk_size, 4096u);
    EXPECT_EQ(got->sha256, m.sha256);
    EXPECT_EQ(got->sig, m.sig);
    EXPECT_EQ(got->key_id, "fw-key-1");
    EXPECT_EQ(got->channel, "stable");
    EXPECT_EQ(got->created_at, 1700000001);
    auto chunk = GetFirmwareChunk(r, m.image_id, 2);
    ASSERT_OK(chunk);
    EXPECT_EQ(chunk->size(), 1808u);
    EXPECT_EQ((*chunk)[0], 2);
    EXPECT_EQ(GetFirmwareChunk(r, m.image_id, 3).error().code, ErrorCode::kNotFound);
    EXPECT_EQ(ListFirmwareManifests(r)->size(), 1u);
  }
  {
    WriteTxn w = BeginWrite(store);
    ASSERT_OK(DeleteFirmware(w, m.image_id));
    ASSERT_OK(w.Commit());
    ReadTxn r = BeginRead(store);
    EXPECT_EQ(GetFirmwareManifest(r, m.image_id).error().code, ErrorCode::kNotFound);
    EXPECT_FALSE(GetFirmwareChunk(r, m.image_id, 0).ok());
    EXPECT_TRUE(GetFirmwareChunk(r, "other", 0).ok());
  }
}

TEST(Store, OutboxOrderRemoveStatsAndDropOldest) {
  TempDir dir;
  const std::string path = dir / "s";
  {
    Store store = OpenOrDie(path);
    WriteTxn w = BeginWrite(store);
    for (int i = 0; i < 5; ++i) {
      OutboxMessage m;
      m.device_id = "dev-1";
      m.channel = "telemetry/" + std::to_string(i);
      m.payload = Bytes(100 + i, uint8_t(i));
      m.qos = 1;
      auto seq = OutboxAppend(w, "aws", m);
      ASSERT_OK(seq);
      EXPECT_EQ(*seq, uint64_t(i + 1));
    }
    OutboxMessage other;
    other.device_id = "dev-2";
    other.payload = Bytes(7, 1);
    other.qos = 0;
    ASSERT_EQ(*OutboxAppend(w, "hq", other), 1u);
    ASSERT_OK(w.Commit());

    ReadTxn r = BeginRead(store);
    auto msgs = OutboxRead(r, "aws", 0, 100);
    ASSERT_OK(msgs);
    ASSERT_EQ(msgs->size(), 5u);
    for (size_t i = 0; i < 5; ++i) {
      EXPECT_EQ((*msgs)[i].seq, i + 1);
      EXPECT_EQ((*msgs)[i].upstream, "aws");
      EXPECT_EQ((*msgs)[i].channel, "telemetry/" + std::to_string(i));
      EXPECT_EQ((*msgs)[i].payload.size(), 100 + i);
      EXPECT_GT((*msgs)[i].ts, 0);
    }
    auto stats = OutboxStats(r, "aws");
    ASSERT_OK(stats);
    EXPECT_EQ(stats->count, 5u);
    EXPECT_EQ(stats->bytes, 510u);
    EXPECT_EQ(OutboxRead(r, "hq", 0, 100)->size(), 1u);
    EXPECT_EQ((*OutboxRead(r, "hq", 0, 100))[0].qos, 0);
    EXPECT_EQ(OutboxRead(r, "aws", 3, 1)->front().seq, 4u);
    EXPECT_EQ(OutboxStats(r, "nobody")->count, 0u);
    auto ups = OutboxUpstreams(r);
    ASSERT_OK(ups);
    EXPECT_EQ(*ups, (std::vector<std::string>{"aws", "hq"}));
  }
  Store store = OpenOrDie(path);
  {
    WriteTxn w = BeginWrite(store);
    ASSERT_OK(OutboxRemove(w, "aws", 2));
    ASSERT_OK(OutboxRemove(w, "aws", 2));  // again: not an error, counters unchanged
    auto stats = OutboxStats(w, "aws");
    EXPECT_EQ(stats->count, 4u);
    EXPECT_EQ(stats->bytes, 409u);
    // Keep at most 260 bytes with a 50-byte message incoming: drops seq 1 (100) and 3 (102).
    auto dropped = OutboxDropOldest(w, "aws", 260, 50);
    ASSERT_OK(dropped);
    EXPECT_EQ(dropped->count, 2u);
    EXPECT_EQ(dropped->bytes, 202u);
    auto left = OutboxRead(w, "aws", 0, 100);
    ASSERT_EQ(left->size(), 2u);
    EXPECT_EQ((*left)[0].seq, 4u);
    EXPECT_EQ((*left)[1].seq, 5u);
    EXPECT_EQ(OutboxStats(w, "aws")->bytes, 207u);
    EXPECT_EQ(OutboxDropOldest(w, "aws", 1000)->count, 0u);
    ASSERT_OK(OutboxRemove(w, "aws", 4));
    ASSERT_OK(OutboxRemove(w, "aws", 5));
    EXPECT_EQ(OutboxStats(w, "aws")->count, 0u);
    EXPECT_EQ(OutboxStats(w, "aws")->bytes, 0u);
    // Seq never goes back, even with an empty queue.
    EXPECT_EQ(*OutboxAppend(w, "aws", OutboxMessage{}), 6u);
    EXPECT_EQ(OutboxAppend(w, "", OutboxMessage{}).error().code, ErrorCode::kInvalidArgument);
    // A caller that numbers messages itself may leave gaps, never go back.
    EXPECT_EQ(*OutboxNextSeq(w, "aws"), 7u);
    EXPECT_EQ(*OutboxNextSeq(w, "nobody"), 1u);
    OutboxMessage at;
    at.payload = Bytes(10, 9);
    ASSERT_OK(OutboxAppendAt(w, "aws", 9, at));
    EXPECT_EQ(*OutboxNextSeq(w, "aws"), 10u);
    EXPECT_EQ(OutboxAppendAt(w, "aws", 9, at).error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(OutboxAppendAt(w, "aws", 8, at).error().code, ErrorCode::kInvalidArgument);
    auto last = OutboxAppendAt(w, "aws", UINT64_MAX, at);
    ASSERT_FALSE(last.ok());
    EXPECT_EQ(last.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(last.error().message.find("largest"), std::string::npos) << last.error().message;
    EXPECT_EQ(*OutboxAppend(w, "aws", OutboxMessage{}), 10u);
    auto gap = OutboxRead(w, "aws", 6, 100);
    ASSERT_OK(gap);
    ASSERT_EQ(gap->size(), 2u);
    EXPECT_EQ((*gap)[0].seq, 9u);
    EXPECT_EQ((*gap)[0].payload, at.payload);
    EXPECT_EQ(OutboxStats(w, "aws")->count, 3u);
    EXPECT_EQ(OutboxStats(w, "aws")->bytes, 10u);
    ASSERT_OK(w.Commit());
  }
}

TEST(Store, AuditAndAllowlistRoundTrip) {
  TempDir dir;
  Store store = OpenOrDie(dir / "s");
  WriteTxn w = BeginWrite(store);
  AuditRecord a;
  a.actor = "ops-admin";
  a.action = "retire";
  a.device_id = "dev-1";
  a.detail = "end of life";
  EXPECT_EQ(*AppendAudit(w, a), 1u);
  a.ts = 42;
  EXPECT_EQ(*AppendAudit(w, a), 2u);
  AllowlistEntry e{.device_id = "dev-1", .serial = {1, 2}, .fingerprint = Fp(4), .model = "m1",
                   .manufacturer = "acme"};
  ASSERT_OK(PutAllowlistEntry(w, e));
  ASSERT_OK(w.Commit());

  ReadTxn r = BeginRead(store);
  auto audit = ReadAudit(r, 0, 10);
  ASSERT_OK(audit);
  ASSERT_EQ(audit->size(), 2u);
  EXPECT_EQ((*audit)[0].seq, 1u);
  EXPECT_EQ((*audit)[0].actor, "ops-admin");
  EXPECT_EQ((*audit)[0].action, "retire");
  EXPECT_EQ((*audit)[0].device_id, "dev-1");
  EXPECT_EQ((*audit)[0].detail, "end of life");
  EXPECT_GT((*audit)[0].ts, 0);
  EXPECT_EQ((*audit)[1].ts, 42);
  EXPECT_EQ(ReadAudit(r, 1, 10)->size(), 1u);
  auto got = FindAllowlistEntry(r, "dev-1");
  ASSERT_OK(got);
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->serial, (Bytes{1, 2}));
  EXPECT_EQ((*got)->fingerprint, Fp(4));
  EXPECT_EQ((*got)->model, "m1");
  EXPECT_EQ((*got)->manufacturer, "acme");
  EXPECT_FALSE(FindAllowlistEntry(r, "dev-2")->has_value());
}

TEST(Store, SchemaMismatchIsRefused) {
  TempDir dir;
  const std::string path = dir / "s";
  { Store store = OpenOrDie(path); }
  RawPut(path, "meta", "schema", std::string("\0\0\0\x63", 4));  // version 99
  for (bool ro : {false, true}) {
    auto store = Store::Open({.path = path, .read_only = ro});
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.error().code, ErrorCode::kFailedPrecondition);
    EXPECT_NE(store.error().message.find("schema version 99"), std::string::npos)
        << store.error().message;
  }
}

TEST(Store, ReadOnlyOpenReadsAndRefusesWrites) {
  TempDir dir;
  const std::string path = dir / "s";
  auto missing = Store::Open({.path = dir / "absent", .read_only = true});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kUnavailable);
  EXPECT_FALSE(std::filesystem::exists(dir / "absent"));
  // A directory no writer has initialised: a clear error, not a crash.
  std::filesystem::create_directories(dir / "empty");
  auto empty = Store::Open({.path = dir / "empty", .read_only = true});
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().code, ErrorCode::kUnavailable) << empty.error().ToString();

  {
    Store store = OpenOrDie(path);
    WriteTxn w = BeginWrite(store);
    ASSERT_OK(PutDevice(w, SampleDevice("dev-ro")));
    ASSERT_OK(w.Commit());
  }
  Store ro = OpenOrDie(path, /*read_only=*/true);
  EXPECT_TRUE(ro.read_only());
  auto w = ro.BeginWrite();
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code, ErrorCode::kFailedPrecondition);
  ReadTxn r = BeginRead(ro);
  EXPECT_EQ(GetDevice(r, "dev-ro")->model, "thermo-1");
  // A reset txn refuses reads until renewed.
  r.Reset();
  EXPECT_TRUE(r.is_reset());
  EXPECT_EQ(GetDevice(r, "dev-ro").error().code, ErrorCode::kFailedPrecondition);
  ASSERT_OK(r.Renew());
  EXPECT_TRUE(GetDevice(r, "dev-ro").ok());
  ReadTxn never_begun;
  EXPECT_FALSE(never_begun.Renew().ok());
}

TEST(Store, MapFullIsResourceExhaustedNotACrash) {
  TempDir dir;
  Store store = OpenOrDie(dir / "s", false, 256 * 1024);
  Status last;
  {
    WriteTxn w = BeginWrite(store);
    for (uint32_t i = 0; i < 1000 && last.ok(); ++i) {
      last = PutFirmwareChunk(w, "big", i, Bytes(8192, 1));
    }
  }
  ASSERT_FALSE(last.ok());
  EXPECT_EQ(last.error().code, ErrorCode::kResourceExhausted);
  EXPECT_NE(last.error().message.find("store is full: raise map size"), std::string::npos)
      << last.error().message;
  // The store stays usable after the failed transaction was aborted.
  WriteTxn w = BeginWrite(store);
  ASSERT_OK(PutDevice(w, SampleDevice("after-full")));
  ASSERT_OK(w.Commit());
  ReadTxn r = BeginRead(store);
  EXPECT_TRUE(GetDevice(r, "after-full").ok());
  EXPECT_FALSE(GetFirmwareChunk(r, "big", 0).ok());
}

std::string PackMap(const std::function<void(msgpack::packer<msgpack::sbuffer>&)>& body) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  body(pk);
  return std::string(buf.data(), buf.size());
}

TEST(Store, CorruptRecordIsDataLossAndUnknownKeysAreIgnored) {
  TempDir dir;
  const std::string path = dir / "s";
  { Store store = OpenOrDie(path); }
  RawPut(path, "devices", "garbage", "\xc1\xff not msgpack");
  RawPut(path, "devices", "truncated", std::string("\x8c\xa2id", 4));
  RawPut(path, "devices", "wrongtype", PackMap([](auto& pk) {
           pk.pack_map(2);
           pk.pack(std::string("id"));
           pk.pack(std::string("wrongtype"));
           pk.pack(std::string("st"));
           pk.pack(5);
         }));
  RawPut(path, "devices", "badstate", PackMap([](auto& pk) {
           pk.pack_map(2);
           pk.pack(std::string("id"));
           pk.pack(std::string("badstate"));
           pk.pack(std::string("st"));
           pk.pack(std::string("zombie"));
         }));
  RawPut(path, "devices", "future", PackMap([](auto& pk) {
           pk.pack_map(4);
           pk.pack(std::string("id"));
           pk.pack(std::string("future"));
           pk.pack(std::string("st"));
           pk.pack(std::string("active"));
           pk.pack(std::string("new_field_of_v2"));
           pk.pack(std::vector<int>{1, 2, 3});
           pk.pack(std::string("mo"));
           pk.pack(std::string("m9"));
         }));
  RawPut(path, "devices", "array", PackMap([](auto& pk) { pk.pack(std::vector<int>{1}); }));
  RawPut(path, "rev_log", std::string(7, '\0') + '\x01', "");
  Store store = OpenOrDie(path);
  ReadTxn r = BeginRead(store);
  for (const char* id : {"garbage", "truncated", "wrongtype", "badstate", "array"}) {
    auto got = GetDevice(r, id);
    ASSERT_FALSE(got.ok()) << id;
    EXPECT_EQ(got.error().code, ErrorCode::kDataLoss) << id << ": " << got.error().ToString();
  }
  for (const char* id : {"garbage", "truncated", "wrongtype", "badstate", "array"}) {
    DeviceAuthView view;
    auto got = FindDeviceAuthView(r, id, &view);
    ASSERT_FALSE(got.ok()) << id;
    EXPECT_EQ(got.error().code, ErrorCode::kDataLoss) << id << ": " << got.error().ToString();
  }
  DeviceAuthView future_view;
  auto future_found = FindDeviceAuthView(r, "future", &future_view);
  ASSERT_OK(future_found);
  EXPECT_TRUE(*future_found);
  EXPECT_EQ(future_view.state(), DeviceState::kActive);
  EXPECT_EQ(future_view.model(), "m9");
  auto future = GetDevice(r, "future");
  ASSERT_OK(future);
  EXPECT_EQ(future->state, DeviceState::kActive);
  EXPECT_EQ(future->model, "m9");
  auto list = ListDevices(r, "", 100);
  ASSERT_FALSE(list.ok());
  EXPECT_EQ(list.error().code, ErrorCode::kDataLoss);
  auto log = ReadRevocationLog(r, 0, 10);
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.error().code, ErrorCode::kDataLoss);
}

// records_fuzz found it: an array or map header inside a record (five bytes) claimed up to 4 Gi
// entries and msgpack-c set aside room for all of them (up to 200 GiB) before it read one, so a
// corrupt record cost a giant allocation and, under ASan or a strict allocator, killed the
// process; otherwise it read as "std::bad_alloc". The framing is now checked first.
TEST(Store, CountsLargerThanTheRecordAreDataLossNotAGiantAllocation) {
  TempDir dir;
  const std::string path = dir / "s";
  { Store store = OpenOrDie(path); }
  // The fuzzer's input, as a certificate record: "der" is cut short, and inside it the bytes
  // dd 5d 13 76 3f read as an array of 1.5 Gi elements.
  const std::string fuzzed(
      "\x88\xa2\x66\x70\xc4\x20\x9c\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04"
      "\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\xa1\x64\xa5\x64\x65\x76\x2d\x31\xa1"
      "\x6b\xa5\x62\x69\x72\x74\x68\xa1\x69\xc4\x20\x05\x05\xa1\x73\xc4\x03\x01\x02\x03\xa2\x6e\x62\x01"
      "\xa2\x6e\x61\x02\xa3\x64\x65\x72\xc5\x01\xbe\x31\x82\x01\xba\x30\x82\x01\x9e\x9e\x9e\x9e\x9e\x9e"
      "\x9e\x5f\xa0\x03\x02\x01\x02\x02\x14\x6e\x56\xcc\x58\x04\xdd\x5d\x13\x76\x3f\xc8\x08\x6e\x65\x42"
      "\x3c\xc6\x5f\xa2\x97\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02\x30\x32\x31\x0e\x30\x0c\x06"
      "\x03\x55\x04\x03\x0c\x05\x64\x65\x76\x2d\x31\x31\x0d\x30\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08"
      "\x08\x08\x08\xa3\x73\x69\x67\xc4\x40\x09\x09\x09\x09\x09\x09\x32\x36\x31\x32\x30\x35\x32\x33\x32"
      "\x35\x34\x32\x5a\x17\x0d\x32\x00\x02\x37\x30\x31\x30\x34\x32\x33\x32\x35\x34\x32\x5a\x30\x32\x31"
      "\x0e\x30\x0c\x09",
      220);
  // {"x": map32 of 0xffffffff entries}, {"x": array32 of 0xffffffff elements}, then nothing.
  const std::string huge_map("\x81\xa1x\xdf\xff\xff\xff\xff", 8);
  const std::string huge_array("\x81\xa1x\xdd\xff\xff\xff\xff", 8);
  const std::string fp1(32, '\x01'), fp2(32, '\x02');
  RawPut(path, "certs", fp1, fuzzed);
  RawPut(path, "certs", fp2, huge_map);
  RawPut(path, "fw_manifests", "img", huge_array);
  RawPut(path, "allowlist", "dev-1", huge_map);
  RawPut(path, "audit", std::string(7, '\0') + '\x01', huge_array);
  Store store = OpenOrDie(path);
  ReadTxn r = BeginRead(store);
  auto expect_data_loss = [](const auto& got, const char* what) {
    ASSERT_FALSE(got.ok()) << what;
    EXPECT_EQ(got.error().code, ErrorCode::kDataLoss) << what;
    EXPECT_EQ(got.error().message.find("bad_alloc"), std::string::npos)
        << what << ": " << got.error().message;
  };
  expect_data_loss(FindCertificate(r, AsBytes(fp1)), "fuzzed certificate");
  expect_data_loss(FindCertificate(r, AsBytes(fp2)), "certificate");
  expect_data_loss(FindFirmwareManifest(r, "img"), "firmware manifest");
  expect_data_loss(FindAllowlistEntry(r, "dev-1"), "allowlist entry");
  expect_data_loss(ReadAudit(r, 0, 10), "audit");
}

TEST(Store, DeviceAuthViewMatchesTheFullRecord) {
  TempDir dir;
  Store store = OpenOrDie(dir / "s");
  DeviceRecord full = SampleDevice("dev-1");
  DeviceRecord bare;
  bare.id = "dev-2";
  bare.state = DeviceState::kManufactured;
  DeviceRecord long_names = SampleDevice("dev-3");
  long_names.model = std::string(DeviceAuthView::kMaxName + 1, 'm');
  DeviceRecord exact = SampleDevice("dev-4");
  exact.manufacturer = std::string(DeviceAuthView::kMaxName, 'a');
  exact.state = DeviceState::kCompromised;
  full.operational_unconfirmed = true;
  DeviceRecord odd_fp = SampleDevice("dev-5");
  odd_fp.operational_fingerprint = Bytes(33, 1);
  {
    WriteTxn w = BeginWrite(store);
    for (const auto* d : {&full, &bare, &long_names, &exact, &odd_fp}) ASSERT_OK(PutDevice(w, *d));
    ASSERT_OK(w.Commit());
  }
  ReadTxn r = BeginRead(store);
  for (const auto* d : {&full, &bare, &exact}) {
    DeviceAuthView v;
    auto found = FindDeviceAuthView(r, d->id, &v);
    ASSERT_OK(found);
    ASSERT_TRUE(*found) << d->id;
    EXPECT_EQ(v.state(), d->state) << d->id;
    EXPECT_EQ(Bytes(v.birth_fingerprint().begin(), v.birth_fingerprint().end()), d->birth_fingerprint);
    EXPECT_EQ(Bytes(v.operational_fingerprint().begin(), v.operational_fingerprint().end()),
              d->operational_fingerprint);
    EXPECT_TRUE(v.names_fit());
    EXPECT_EQ(v.manufacturer(), d->manufacturer);
    EXPECT_EQ(v.model(), d->model);
    EXPECT_EQ(v.operational_unconfirmed(), d->operational_unconfirmed) << d->id;
  }
  EXPECT_EQ(GetDevice(r, full.id)->operational_unconfirmed, true);
  DeviceAuthView v;
  auto found = FindDeviceAuthView(r, "dev-3", &v);
  ASSERT_OK(found);
  EXPECT_FALSE(v.names_fit());
  EXPECT_TRUE(v.model().empty());
  EXPECT_TRUE(v.manufacturer().empty());
  EXPECT_EQ(v.state(), DeviceState::kActive);
  // Fingerprints are SHA-256: a longer one is a corrupt record, not a silent mismatch.
  auto odd = FindDeviceAuthView(r, "dev-5", &v);
  ASSERT_FALSE(odd.ok());
  EXPECT_EQ(odd.error().code, ErrorCode::kDataLoss);
  auto absent = FindDeviceAuthView(r, "nobody", &v);
  ASSERT_OK(absent);
  EXPECT_FALSE(*absent);
  auto empty = FindDeviceAuthView(r, "", &v);
  ASSERT_OK(empty);
  EXPECT_FALSE(*empty);
  r.Reset();
  EXPECT_EQ(FindDeviceAuthView(r, "dev-1", &v).error().code, ErrorCode::kFailedPrecondition);
}

// The in-place decoder walks msgpack by hand: every value type must be skipped exactly, and any
// cut of a record must be refused, never read past.
TEST(Store, DeviceAuthViewSkipsEveryTypeAndRefusesEveryTruncation) {
  TempDir dir;
  const std::string path = dir / "s";
  { Store store = OpenOrDie(path); }
  const std::string record = PackMap([](auto& pk) {
    pk.pack_map(16);
    pk.pack(std::string("x1"));
    pk.pack_nil();
    pk.pack(std::string("x2"));
    pk.pack(true);
    pk.pack(std::string("x3"));
    pk.pack(-123456789012LL);
    pk.pack(std::string("x4"));
    pk.pack(18446744073709551615ULL);
    pk.pack(std::string("x5"));
    pk.pack(1.5);
    pk.pack(std::string("x6"));
    pk.pack(1.5f);
    pk.pack(std::string("x7"));
    pk.pack(std::string(300, 's'));  // str16
    pk.pack(std::string("x8"));
    pk.pack_bin(70000);              // bin32
    pk.pack_bin_body(std::string(70000, 'b').data(), 70000);
    pk.pack(std::string("x9"));
    pk.pack_ext(5, 7);               // ext8
    pk.pack_ext_body("12345", 5);
    pk.pack(std::string("xa"));
    pk.pack_ext(4, 7);               // fixext4
    pk.pack_ext_body("1234", 4);
    pk.pack(std::string("xb"));
    pk.pack_map(1);                  // nested containers
    pk.pack(std::string("k"));
    pk.pack_array(20);               // array16
    for (int i = 0; i < 20; ++i) pk.pack_array(0);
    pk.pack(std::string("id"));
    pk.pack(std::string("dev-1"));
    pk.pack(std::string("st"));
    pk.pack(std::string("retired"));
    pk.pack(std::string("of"));
    pk.pack_bin(32);
    pk.pack_bin_body(std::string(32, '\x07').data(), 32);
    pk.pack(std::string("mf"));
    pk.pack(std::string("acme"));
    pk.pack(-1);                     // a non-string key: the record is refused
    pk.pack(0);
  });
  // The same record without the non-string key (16 -> 15 entries, last two values dropped).
  std::string good = record.substr(0, record.size() - 2);
  good[2] = 15;  // map16 count, low byte
  ASSERT_EQ(static_cast<uint8_t>(good[0]), 0xde);
  RawPut(path, "devices", "good", good);
  RawPut(path, "devices", "badkey", record);
  for (size_t cut = 0; cut < good.size(); cut += (cut < 400 ? 1 : 997)) {
    RawPut(path, "devices", "cut-" + std::to_string(cut), good.substr(0, cut));
  }
  Store store = OpenOrDie(path);
  ReadTxn r = BeginRead(store);
  DeviceAuthView v;
  auto found = FindDeviceAuthView(r, "good", &v);
  ASSERT_OK(found);
  EXPECT_EQ(v.state(), DeviceState::kRetired);
  EXPECT_EQ(v.manufacturer(), "acme");
  EXPECT_EQ(v.operational_fingerprint().size(), 32u);
  auto full = GetDevice(r, "good");
  ASSERT_OK(full);
  EXPECT_EQ(full->state, DeviceState::kRetired);
  EXPECT_EQ(FindDeviceAuthView(r, "badkey", &v).error().code, ErrorCode::kDataLoss);
  for (size_t cut = 0; cut < good.size(); cut += (cut < 400 ? 1 : 997)) {
    const std::string id = "cut-" + std::to_string(cut);
    auto got = FindDeviceAuthView(r, id, &v);
    ASSERT_FALSE(got.ok()) << id;
    EXPECT_EQ(got.error().code, ErrorCode::kDataLoss) << id;
    EXPECT_FALSE(GetDevice(r, id).ok()) << id;
  }
}

// The device record is decoded in place, not by msgpack-c: a timestamp in any of msgpack's
// integer encodings must read as msgpack-c reads it, anything that is not an int64 must be
// refused, and a key that merely starts like a known one must be ignored, not taken for it.
TEST(Store, DeviceRecordTakesEveryIntegerEncodingAndOnlyItsOwnKeys) {
  TempDir dir;
  const std::string path = dir / "s";
  { Store store = OpenOrDie(path); }
  auto device_with_times = [](const std::string& id, auto&& pack_times) {
    return PackMap([&](auto& pk) {
      pk.pack_map(6);
      pk.pack(std::string("id"));
      pk.pack(id);
      pk.pack(std::string("st"));
      pk.pack(std::string("active"));
      pack_times(pk);
    });
  };
  struct Case {
    const char* id;
    std::function<void(msgpack::packer<msgpack::sbuffer>&)> pack;
    int64_t want;
  };
  const std::vector<Case> cases = {
      {"fixint", [](auto& pk) { pk.pack_uint8(7); }, 7},
      {"negfixint", [](auto& pk) { pk.pack_int8(-3); }, -3},
      {"uint8", [](auto& pk) { pk.pack_fix_uint8(200); }, 200},
      {"uint16", [](auto& pk) { pk.pack_fix_uint16(60000); }, 60000},
      {"uint32", [](auto& pk) { pk.pack_fix_uint32(4000000000u); }, 4000000000LL},
      {"uint64", [](auto& pk) { pk.pack_fix_uint64(9223372036854775807ULL); }, INT64_MAX},
      {"int8", [](auto& pk) { pk.pack_fix_int8(-100); }, -100},
      {"int8pos", [](auto& pk) { pk.pack_fix_int8(100); }, 100},
      {"int16", [](auto& pk) { pk.pack_fix_int16(-30000); }, -30000},
      {"int32", [](auto& pk) { pk.pack_fix_int32(-2000000000); }, -2000000000},
      {"int64", [](auto& pk) { pk.pack_fix_int64(INT64_MIN); }, INT64_MIN},
      {"wide", [](auto& pk) { pk.pack_fix_uint64(5); }, 5},
  };
  for (const Case& c : cases) {
    RawPut(path, "devices", c.id, device_with_times(c.id, [&](auto& pk) {
             for (const char* key : {"on", "ca", "ua"}) {
               pk.pack(std::string(key));
               c.pack(pk);
             }
             pk.pack(std::string("ou"));
             pk.pack(true);
           }));
  }
  const std::vector<std::pair<const char*, std::function<void(msgpack::packer<msgpack::sbuffer>&)>>>
      refused = {
          {"toobig", [](auto& pk) { pk.pack_fix_uint64(9223372036854775808ULL); }},
          {"float", [](auto& pk) { pk.pack(1.5); }},
          {"string", [](auto& pk) { pk.pack(std::string("1")); }},
          {"nil", [](auto& pk) { pk.pack_nil(); }},
      };
  for (const auto& entry : refused) {
    // Not a structured binding: clang before 16 cannot capture one in a lambda.
    const char* id = entry.first;
    const auto& pack = entry.second;
    RawPut(path, "devices", id, device_with_times(id, [&](auto& pk) {
             pk.pack(std::string("fw"));
             pk.pack(std::string("1.0"));
             pk.pack(std::string("ca"));
             pack(pk);
             pk.pack(std::string("g"));
             pk.pack(std::string("grp"));
             pk.pack(std::string("ou"));
             pk.pack(false);
           }));
  }
  // Keys one byte longer or shorter than known ones, and the known ones' values of another
  // type under those keys: all ignored.
  RawPut(path, "devices", "lookalike", device_with_times("lookalike", [](auto& pk) {
           pk.pack(std::string("stx"));
           pk.pack(5);
           pk.pack(std::string("o"));
           pk.pack(std::string("not a fingerprint"));
           pk.pack(std::string("mfmf"));
           pk.pack(1.5);
           pk.pack(std::string("of"));
           pk.pack_bin(32);
           pk.pack_bin_body(std::string(32, '\x05').data(), 32);
         }));
  RawPut(path, "devices", "badbool", device_with_times("badbool", [](auto& pk) {
           pk.pack(std::string("ou"));
           pk.pack(1);
           pk.pack(std::string("x"));
           pk.pack_nil();
           pk.pack(std::string("y"));
           pk.pack_nil();
           pk.pack(std::string("z"));
           pk.pack_nil();
         }));

  Store store = OpenOrDie(path);
  ReadTxn r = BeginRead(store);
  for (const Case& c : cases) {
    auto got = GetDevice(r, c.id);
    ASSERT_OK(got);
    EXPECT_EQ(got->operational_not_after, c.want) << c.id;
    EXPECT_EQ(got->created_at, c.want) << c.id;
    EXPECT_EQ(got->updated_at, c.want) << c.id;
    EXPECT_TRUE(got->operational_unconfirmed) << c.id;
    EXPECT_EQ(got->state, DeviceState::kActive) << c.id;
  }
  for (const auto& [id, pack] : refused) {
    auto got = GetDevice(r, id);
    ASSERT_FALSE(got.ok()) << id;
    EXPECT_EQ(got.error().code, ErrorCode::kDataLoss) << id;
    // The view does not read "ca": for it the record is well formed.
    DeviceAuthView v;
    EXPECT_TRUE(FindDeviceAuthView(r, id, &v).ok()) << id;
  }
  auto lookalike = GetDevice(r, "lookalike");
  ASSERT_OK(lookalike);
  EXPECT_EQ(lookalike->state, DeviceState::kActive);
  EXPECT_EQ(lookalike->operational_fingerprint, Bytes(32, 5));
  EXPECT_TRUE(lookalike->manufacturer.empty());
  DeviceAuthView v;
  ASSERT_OK(FindDeviceAuthView(r, "lookalike", &v));
  EXPECT_EQ(Bytes(v.operational_fingerprint().begin(), v.operational_fingerprint().end()),
            Bytes(32, 5));
  EXPECT_EQ(GetDevice(r, "badbool").error().code, ErrorCode::kDataLoss);
  EXPECT_EQ(FindDeviceAuthView(r, "badbool", &v).error().code, ErrorCode::kDataLoss);
}

TEST(Store, IsCertificateOfChecksKindAndOwner) {
  TempDir dir;
  Store store = OpenOrDie(dir / "s");
  CertificateRecord op;
  op.fingerprint = Fp(8);
  op.device_id = "dev-1";
  op.kind = CertificateKind::kOperational;
  op.issuer_id = Fp(100);
  op.serial = {1, 2, 3};
  op.der = Bytes(600, 0x30);
  CertificateRecord birth = op;
  birth.fingerprint = Fp(9);
  birth.kind = CertificateKind::kBirth;
  {
    WriteTxn w = BeginWrite(store);
    ASSERT_OK(PutCertificate(w, op));
    ASSERT_OK(PutCertificate(w, birth));
    ASSERT_OK(w.Commit());
  }
  ReadTxn r = BeginRead(store);
  auto is = [&](uint8_t fp, CertificateKind kind, std::string_view id) {
    auto got = IsCertificateOf(r, Fp(fp), kind, id);
    EXPECT_TRUE(got.ok()) << got.error().ToString();
    return got.ok() && *got;
  };
  EXPECT_TRUE(is(8, CertificateKind::kOperational, "dev-1"));
  EXPECT_FALSE(is(8, CertificateKind::kOperational, "dev-10"));
  EXPECT_FALSE(is(8, CertificateKind::kOperational, "dev-"));
  EXPECT_FALSE(is(8, CertificateKind::kBirth, "dev-1"));
  EXPECT_TRUE(is(9, CertificateKind::kBirth, "dev-1"));
  EXPECT_FALSE(is(9, CertificateKind::kOperational, "dev-1"));
  EXPECT_FALSE(is(10, CertificateKind::kOperational, "dev-1"));
  EXPECT_FALSE(is(8, CertificateKind::kOperational, ""));
}

TEST(Lifecycle, RevokeCertificateKnownAndUnknown) {
  TempDir dir;
  Store store = OpenOrDie(dir / "s");
  WriteTxn w = BeginWrite(store);
  CertificateRecord c;
  c.fingerprint = Fp(11);
  c.device_id = "dev-1";
  c.kind = CertificateKind::kOperational;
  c.issuer_id = Fp(50);
  c.serial = {0x0a};
  ASSERT_OK(PutCertificate(w, c));
  auto seq = RevokeCertificate(w, Fp(11), "key leaked", "ops-admin");
  ASSERT_OK(seq);
  EXPECT_EQ(*seq, 1u);
  EXPECT_EQ(*RevokeCertificate(w, Fp(11), "again", "ops-admin"), 1u);
  EXPECT_EQ(*RevokeCertificate(w, Fp(12), "unknown cert", "cli"), 2u);
  EXPECT_EQ(RevokeCertificate(w, Bytes{1}, "", "cli").error().code, ErrorCode::kInvalidArgument);
  ASSERT_OK(w.Commit());

  ReadTxn r = BeginRead(store);
  EXPECT_TRUE(*IsSerialRevoked(r, Fp(50), Bytes{0x0a}));
  EXPECT_TRUE(*IsFingerprintRevoked(r, Fp(12)));
  auto log = ReadRevocationLog(r, 0, 10);
  ASSERT_EQ(log->size(), 2u);
  EXPECT_EQ((*log)[0].device_id, "dev-1");
  EXPECT_EQ((*log)[0].reason, "key leaked");
  EXPECT_TRUE((*log)[1].issuer_id.empty());
  auto audit = ReadAudit(r, 0, 10);
  ASSERT_EQ(audit->size(), 2u);  // the idempotent repeat writes no audit
  EXPECT_EQ((*audit)[0].action, "revoke_certificate");
  EXPECT_EQ((*audit)[0].device_id, "dev-1");
  EXPECT_EQ((*audit)[0].actor, "ops-admin");
}

TEST(Lifecycle, RevokeDeviceByScope) {
  TempDir dir;
  Store store = OpenOrDie(dir / "s");
  {
    WriteTxn w = BeginWrite(store);
    for (const char* id : {"dev-t", "dev-r"}) {
      DeviceRecord d = SampleDevice(id);
      uint8_t base = id[4] == 't' ? 10 : 20;
      d.birth_fingerprint = Fp(base);
      d.operational_fingerprint = Fp(base + 1);
      ASSERT_OK(PutDevice(w, d));
      CertificateRecord birth{.fingerprint = Fp(base), .device_id = id, .kind = CertificateKind::kBirth};
      CertificateRecord op_old{.fingerprint = Fp(base + 2), .device_id = id,
                               .kind = CertificateKind::kOperational};
      CertificateRecord cloud{.fingerprint = Fp(base + 3), .device_id = id,
                              .kind = CertificateKind::kCloud};
      ASSERT_OK(PutCertificate(w, birth));
      ASSERT_OK(PutCertificate(w, op_old));
      ASSERT_OK(PutCertificate(w, cloud));
      // The current operational certificate has no certificate record: the device record names it.
    }
    auto fps = RevokeDevice(w, "dev-t", "sold", "ops-admin", RevokeScope::kOperationalOnly,
                            DeviceState::kTransferPending);
    ASSERT_OK(fps);
    EXPECT_EQ(fps->size(), 3u);
    auto all = RevokeDevice(w, "dev-r", "end of life", "ops-admin", RevokeScope::kAllIncludingBirth,
                            DeviceState::kRetired);
    ASSERT_OK(all);
    EXPECT_EQ(all->size(), 4u);
    EXPECT_EQ(RevokeDevice(w, "ghost", "", "cli", RevokeScope::kAllIncludingBirth,
                           DeviceState::kRetired).error().code,
              ErrorCode::kNotFound);
    ASSERT_OK(w.Commit());
  }
  ReadTxn r = BeginRead(store);
  auto t = GetDevice(r, "dev-t");
  EXPECT_EQ(t->state, DeviceState::kTransferPending);
  EXPECT_TRUE(t->operational_fingerprint.empty());
  EXPECT_FALSE(*IsFingerprintRevoked(r, Fp(10)));  // birth kept for re-enrollment
  EXPECT_TRUE(*IsFingerprintRevoked(r, Fp(11)));
  EXPECT_TRUE(*IsFingerprintRevoked(r, Fp(12)));
  EXPECT_TRUE(*IsFingerprintRevoked(r, Fp(13))) << "a new owner gets new cloud certificates";
  EXPECT_EQ(GetDevice(r, "dev-r")->state, DeviceState::kRetired);
  for (uint8_t fp : {20, 21, 22, 23}) EXPECT_TRUE(*IsFingerprintRevoked(r, Fp(fp))) << int(fp);
  EXPECT_EQ(*LatestRevocationSeq(r), 7u);
  auto audit = ReadAudit(r, 0, 10);
  ASSERT_EQ(audit->size(), 2u);
  EXPECT_EQ((*audit)[1].action, "revoke_device");
  EXPECT_NE((*audit)[1].detail.find("active->retired"), std::string::npos) << (*audit)[1].detail;
}

TEST(Lifecycle, ImportManifestRowIsIdempotentAndKeepsLaterStates) {
  TempDir dir;
  Store store = OpenOrDie(dir / "s");
  WriteTxn w = BeginWrite(store);
  AllowlistEntry row{.device_id = "acme000001", .serial = {1}, .fingerprint = Fp(1), .model = "thermo-1"};
  EXPECT_EQ(*ImportManifestRow(w, row, "acme"), ImportOutcome::kCreated);
  EXPECT_EQ(*ImportManifestRow(w, row, "acme"), ImportOutcome::kUnchanged);
  row.model = "thermo-2";
  EXPECT_EQ(*ImportManifestRow(w, row, "acme"), ImportOutcome::kUpdated);
  auto d = GetDevice(w, "acme000001");
  EXPECT_EQ(d->state, DeviceState::kManufactured);
  EXPECT_EQ(d->manufacturer, "acme");
  EXPECT_EQ(d->model, "thermo-2");
  EXPECT_EQ(d->birth_fingerprint, Fp(1));

  DeviceRecord active = *d;
  active.state = DeviceState::kActive;
  ASSERT_OK(PutDevice(w, active));
  EXPECT_EQ(*ImportManifestRow(w, row, "acme"), ImportOutcome::kUnchanged);
  row.serial = {2};
  EXPECT_EQ(*ImportManifestRow(w, row, "acme"), ImportOutcome::kKeptLaterState);
  EXPECT_EQ(GetDevice(w, "acme000001")->state, DeviceState::kActive);
  EXPECT_EQ((*FindAllowlistEntry(w, "acme000001"))->serial, (Bytes{2}));
  EXPECT_EQ(ReadAudit(w, 0, 100)->size(), 3u);  // created, updated, kept: no audit when unchanged

  row.device_id = "bad id";
  EXPECT_EQ(ImportManifestRow(w, row, "acme").error().code, ErrorCode::kInvalidArgument);
  row.device_id = "ok";
  row.fingerprint = {1, 2};
  EXPECT_EQ(ImportManifestRow(w, row, "acme").error().code, ErrorCode::kInvalidArgument);
}

TEST(Lifecycle, ClaimCodeStoresOnlyItsHash) {
  TempDir dir;
  Store store = OpenOrDie(dir / "s");
  WriteTxn w = BeginWrite(store);
  ASSERT_OK(RegisterClaim(w, "dev-c", "abc"));
  auto d = GetDevice(w, "dev-c");
  ASSERT_OK(d);
  EXPECT_EQ(d->state, DeviceState::kManufactured);
  EXPECT_EQ(HexEncode(d->claim_code_sha256),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_TRUE(*CheckClaim(w, "dev-c", "abc"));
  EXPECT_FALSE(*CheckClaim(w, "dev-c", "abd"));
  EXPECT_FALSE(*CheckClaim(w, "dev-c", ""));
  EXPECT_FALSE(*CheckClaim(w, "other", "abc"));
  EXPECT_EQ(RegisterClaim(w, "dev-c", "").error().code, ErrorCode::kInvalidArgument);
  // Registering on an existing device keeps its state.
  DeviceRecord active = SampleDevice("dev-a");
  ASSERT_OK(PutDevice(w, active));
  ASSERT_OK(RegisterClaim(w, "dev-a", "xyz"));
  EXPECT_EQ(GetDevice(w, "dev-a")->state, DeviceState::kActive);
  EXPECT_TRUE(*CheckClaim(w, "dev-a", "xyz"));
}

TEST(Store, UncommittedWriteIsDiscarded) {
  TempDir dir;
  Store store = OpenOrDie(dir / "s");
  {
    WriteTxn w = BeginWrite(store);
    ASSERT_OK(PutDevice(w, SampleDevice("ghost")));
  }  // destroyed without Commit
  ReadTxn r = BeginRead(store);
  EXPECT_FALSE(FindDevice(r, "ghost")->has_value());
  WriteTxn w = BeginWrite(store);
  ASSERT_OK(w.Commit());
  EXPECT_FALSE(w.Commit().ok());  // a committed txn is over
}

}  // namespace
}  // namespace edgetrust::storage
