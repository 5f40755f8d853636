// Writes transactions in a loop until killed or done; used by storage_crash_test.
//   storage_crash_writer DIR BATCH MAX_TXNS
// Each transaction revokes BATCH new certificates (seq = counter), writes their certificate and
// device records, one outbox message and one audit record, commits, then prints
// "committed <last seq>" — only after Commit returns, so a printed seq is acknowledged.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "edgetrust/storage/lifecycle.h"
#include "edgetrust/storage/store.h"
#include "edgetrust/storage/tables.h"

using namespace edgetrust;
using namespace edgetrust::storage;

namespace {

Bytes CounterBytes(uint64_t n, uint8_t tag, size_t size) {
  Bytes b(size, tag);
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(n >> (56 - 8 * i));
  return b;
}

int Fail(const char* what, const Error& e) {
  std::fprintf(stderr, "%s: %s\n", what, e.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s DIR BATCH MAX_TXNS\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const int batch = std::atoi(argv[2]);
  const long max_txns = std::atol(argv[3]);
  auto store = Store::Open({.path = dir, .map_size = size_t{256} << 20});
  if (!store.ok()) return Fail("open", store.error());
  std::printf("ready\n");
  std::fflush(stdout);
  for (long t = 0; t < max_txns; ++t) {
    auto txn = store->BeginWrite();
    if (!txn.ok()) return Fail("begin", txn.error());
    auto latest = LatestRevocationSeq(*txn);
    if (!latest.ok()) return Fail("latest", latest.error());
    uint64_t seq = *latest;
    for (int i = 0; i < batch; ++i) {
      const uint64_t n = seq + 1;
      const std::string id = "dev-" + std::to_string(n);
      CertificateRecord cert;
      cert.fingerprint = CounterBytes(n, 0xf0, 32);
      cert.device_id = id;
      cert.kind = CertificateKind::kOperational;
      cert.issuer_id = Bytes(32, 0x1d);
      cert.serial = CounterBytes(n, 0x5e, 12);
      cert.der = Bytes(600, static_cast<uint8_t>(n));  // bulk, so commits span many pages
      if (auto s = PutCertificate(*txn, cert); !s.ok()) return Fail("put cert", s.error());
      DeviceRecord dev;
      dev.id = id;
      dev.state = DeviceState::kActive;
      dev.operational_fingerprint = cert.fingerprint;
      if (auto s = PutDevice(*txn, dev); !s.ok()) return Fail("put device", s.error());
      auto fps = RevokeDevice(*txn, id, "crash test", "crash_writer", RevokeScope::kAllIncludingBirth,
                              DeviceState::kRetired);
      if (!fps.ok()) return Fail("revoke", fps.error());
      auto now = LatestRevocationSeq(*txn);
      if (!now.ok() || *now != n) {
        std::fprintf(stderr, "seq did not advance to %llu\n", static_cast<unsigned long long>(n));
        return 1;
      }
      seq = n;
    }
    OutboxMessage msg;
    msg.device_id = "dev-" + std::to_string(seq);
    msg.channel = "t";
    msg.payload = Bytes(100, 7);
    if (auto s = OutboxAppend(*txn, "up", msg); !s.ok()) return Fail("outbox", s.error());
    if (auto s = txn->Commit(); !s.ok()) return Fail("commit", s.error());
    std::printf("committed %llu\n", static_cast<unsigned long long>(seq));
    std::fflush(stdout);
  }
  return 0;
}
