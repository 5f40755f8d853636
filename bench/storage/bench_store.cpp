// bench_store: the store's share of the plugin's CONNECT at 1e3 and 1e6 devices.
// What the plugin (ConnectDecider::Decide) does with the store at every device CONNECT, in its
// order: renew its one ReadTxn, check the certificate's fingerprint and then its issuer and
// serial against the revocation indexes, read the device in place (FindDeviceAuthView), check
// the device's state and operational fingerprint, reset the txn. A B-tree lookup should grow
// with log(n), so 1000x more devices should cost well under 2x. FindDevice, the gateway's
// full-record read, is printed on its own line as a secondary figure; and a pointer chase over
// buffers the size of both data files shows what one cache/TLB-missing load costs here. Last, the
// CONNECT lookups again with as many distinct devices in the large store as the small one holds.
//   bench_store [--small N] [--large N] [--lookups N] [--dir DIR] [--working-set N]
// --working-set limits lookups to N random devices (to separate tree depth from cache misses).
// The stores go to /dev/shm when it exists (no disk I/O in the fill), else to $TMPDIR.
#include <stdlib.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <utility>
#include <random>
#include <string>
#include <vector>

#include "edgetrust/storage/store.h"
#include "edgetrust/storage/tables.h"

using namespace edgetrust;
using namespace edgetrust::storage;
using Clock = std::chrono::steady_clock;

namespace {

std::string DeviceId(uint64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "acme%07llu", static_cast<unsigned long long>(i));
  return buf;
}

// A fingerprint that looks random (as SHA-256 output is), derived from i.
Bytes Fingerprint(uint64_t i, uint8_t salt) {
  Bytes fp(32);
  uint64_t x = i * 0x9E3779B97F4A7C15ull + salt;
  for (size_t k = 0; k < 32; k += 8) {
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    std::memcpy(fp.data() + k, &x, 8);
  }
  return fp;
}

// A serial as the site CA issues them (16 random bytes, positive, as pki::Certificate carries
// it: big-endian magnitude), derived from i.
Bytes Serial(uint64_t i, uint8_t salt) {
  Bytes serial = Fingerprint(i, salt ^ 0x80);
  serial.resize(16);
  serial[0] = static_cast<uint8_t>((serial[0] & 0x7f) | 0x40);
  return serial;
}

// pki::Certificate::issuer_id of every operational certificate: SHA-256 of the site CA's Name.
const Bytes& SiteCaId() {
  static const Bytes id = Fingerprint(0, 0x5c);
  return id;
}

bool Check(const Status& s, const char* what) {
  if (!s.ok()) std::fprintf(stderr, "%s: %s\n", what, s.error().ToString().c_str());
  return s.ok();
}

bool Fill(Store& store, uint64_t n) {
  const uint64_t batch = 50000;
  for (uint64_t start = 0; start < n; start += batch) {
    auto txn = store.BeginWrite();
    if (!txn.ok()) return Check(txn.error(), "begin");
    for (uint64_t i = start; i < std::min(n, start + batch); ++i) {
      DeviceRecord d;
      d.id = DeviceId(i);
      d.state = DeviceState::kActive;
      d.manufacturer = "acme";
      d.model = "thermo-1";
      d.group = "thermostats";
      d.birth_fingerprint = Fingerprint(i, 1);
      d.operational_fingerprint = Fingerprint(i, 2);
      d.operational_not_after = 1900000000;
      d.fw = "1.4.2";
      if (!Check(PutDevice(*txn, d), "put device")) return false;
      CertificateRecord c;
      c.fingerprint = d.operational_fingerprint;
      c.device_id = d.id;
      c.kind = CertificateKind::kOperational;
      c.issuer_id = SiteCaId();
      c.serial = Serial(i, 2);
      c.not_before = 1700000000;
      c.not_after = 1900000000;
      c.der = Bytes(420, 0x30);  // the size of a P-256 leaf certificate
      if (!Check(PutCertificate(*txn, c), "put certificate")) return false;
      if (i % 100 == 0) {  // 1% of devices have a revoked earlier certificate: both indexes
        RevocationRecord r;
        r.fingerprint = Fingerprint(i, 3);
        r.issuer_id = SiteCaId();
        r.serial = Serial(i, 3);
        r.device_id = d.id;
        r.reason = "bench";
        r.ts = 1700000000;
        auto seq = AppendRevocation(*txn, r);
        if (!seq.ok()) return Check(seq.error(), "revoke");
      }
    }
    if (!Check(txn->Commit(), "commit")) return false;
  }
  return true;
}

struct Figures {
  double renew_p50_ns = 0;   // Renew + Reset alone
  double revoke_p50_ns = 0;  // + both revocation checks
  double mean_ns = 0;        // the whole CONNECT sequence
  double p50_ns = 0;
  double p99_ns = 0;
  double find_device_p50_ns = 0;  // Renew + FindDevice + Reset
  double find_device_p99_ns = 0;
  double fill_s = 0;
  uint64_t data_bytes = 0;   // size of data.mdb
};

enum class Mode { kRenewOnly, kRevocation, kConnect, kFindDevice };

// One filled store, opened read-only as the plugin opens it, with its lookup keys.
class Bench {
 public:
  bool Prepare(const std::string& dir, uint64_t n, uint64_t lookups, uint64_t working_set) {
    std::filesystem::remove_all(dir);
    {
      auto store = Store::Open({.path = dir, .map_size = size_t{8} << 30, .sync = false});
      if (!store.ok()) return Check(store.error(), "open");
      auto t0 = Clock::now();
      if (!Fill(*store, n)) return false;
      figures_.fill_s = std::chrono::duration<double>(Clock::now() - t0).count();
    }
    std::error_code ec;
    figures_.data_bytes = std::filesystem::file_size(std::filesystem::path(dir) / "data.mdb", ec);
    if (ec) {
      std::fprintf(stderr, "size of %s/data.mdb: %s\n", dir.c_str(), ec.message().c_str());
      return false;
    }
    auto store = Store::Open({.path = dir, .read_only = true});
    if (!store.ok()) return Check(store.error(), "open read-only");
    store_.emplace(std::move(store).value());
    auto txn = store_->BeginRead();
    if (!txn.ok()) return Check(txn.error(), "begin read");
    txn_ = std::move(txn).value();
    // The revocation indexes hold real entries: a lookup that finds nothing walks a real tree.
    auto fp_hit = IsFingerprintRevoked(txn_, Fingerprint(0, 3));
    auto serial_hit = IsSerialRevoked(txn_, SiteCaId(), Serial(0, 3));
    if (!fp_hit.ok() || !*fp_hit || !serial_hit.ok() || !*serial_hit) {
      std::fprintf(stderr, "the revocation indexes do not hold what the fill wrote\n");
      return false;
    }
    txn_.Reset();
    ChooseKeys(n, lookups, working_set);
    return true;
  }

  // The lookups: `lookups` random picks among `working_set` random devices of the n.
  void ChooseKeys(uint64_t n, uint64_t lookups, uint64_t working_set) {
    std::mt19937_64 rng(42);
    std::uniform_int_distribution<uint64_t> pick(0, n - 1);
    std::vector<uint64_t> keys(std::min(n, working_set));
    for (auto& key : keys) key = pick(rng);
    std::uniform_int_distribution<size_t> pick_key(0, keys.size() - 1);
    ids_.resize(lookups);
    fps_.resize(lookups);
    serials_.resize(lookups);
    ns_.resize(lookups);
    for (uint64_t k = 0; k < lookups; ++k) {
      uint64_t i = keys[pick_key(rng)];
      ids_[k] = DeviceId(i);
      fps_[k] = Fingerprint(i, 2);
      serials_[k] = Serial(i, 2);
    }
  }

  // Lookups [begin, end), each timed from Renew to Reset. kConnect is ConnectDecider::Decide's
  // store work for a site-CA certificate of an active device, call for call.
  bool Run(Mode mode, size_t begin, size_t end) {
    bool ok = true;
    for (size_t k = begin; k < end; ++k) {
      auto t0 = Clock::now();
      if (!txn_.Renew().ok()) return false;
      if (mode == Mode::kRevocation || mode == Mode::kConnect) {
        Result<bool> fp_revoked = IsFingerprintRevoked(txn_, fps_[k]);
        Result<bool> serial_revoked = IsSerialRevoked(txn_, SiteCaId(), serials_[k]);
        ok &= fp_revoked.ok() && !*fp_revoked && serial_revoked.ok() && !*serial_revoked;
      }
      if (mode == Mode::kConnect) {
        DeviceAuthView device;
        Result<bool> known = FindDeviceAuthView(txn_, ids_[k], &device);
        ok &= known.ok() && *known && device.state() == DeviceState::kActive &&
              std::ranges::equal(device.operational_fingerprint(), fps_[k]);
      }
      if (mode == Mode::kFindDevice) {
        Result<std::optional<DeviceRecord>> device = FindDevice(txn_, ids_[k]);
        ok &= device.ok() && device->has_value() && (*device)->state == DeviceState::kActive;
      }
      txn_.Reset();
      auto t1 = Clock::now();
      if (!ok) return false;
      ns_[k] = static_cast<uint32_t>(std::chrono::nanoseconds(t1 - t0).count());
    }
    return true;
  }

  void Record(Mode mode) {
    std::vector<uint32_t> sorted = ns_;
    std::sort(sorted.begin(), sorted.end());
    const double p50 = sorted[sorted.size() / 2];
    const double p99 = sorted[sorted.size() * 99 / 100];
    if (mode == Mode::kRenewOnly) figures_.renew_p50_ns = p50;
    if (mode == Mode::kRevocation) figures_.revoke_p50_ns = p50;
    if (mode == Mode::kFindDevice) {
      figures_.find_device_p50_ns = p50;
      figures_.find_device_p99_ns = p99;
    }
    if (mode == Mode::kConnect) {
      double sum = 0;
      for (uint32_t v : sorted) sum += v;
      figures_.mean_ns = sum / sorted.size();
      figures_.p50_ns = p50;
      figures_.p99_ns = p99;
    }
  }

  // The median of the last Run's lookups, without touching the figures.
  double LastP50() const {
    std::vector<uint32_t> sorted = ns_;
    std::sort(sorted.begin(), sorted.end());
    return sorted[sorted.size() / 2];
  }

  const Figures& figures() const { return figures_; }
  size_t lookups() const { return ids_.size(); }

 private:
  std::optional<Store> store_;
  ReadTxn txn_;  // declared after store_: destroyed before it
  std::vector<std::string> ids_;
  std::vector<Bytes> fps_;
  std::vector<Bytes> serials_;
  std::vector<uint32_t> ns_;
  Figures figures_;
};

// Both stores are measured in alternating blocks, so a burst of load from other processes
// on a shared machine hits both alike.
bool MeasureInterleaved(Bench& a, Bench& b) {
  const size_t n = a.lookups(), block = 1000;
  for (Mode mode : {Mode::kConnect, Mode::kRenewOnly, Mode::kRevocation, Mode::kFindDevice,
                    Mode::kConnect}) {
    for (size_t begin = 0; begin < n; begin += block) {
      const size_t end = std::min(n, begin + block);
      if (!a.Run(mode, begin, end) || !b.Run(mode, begin, end)) {
        std::fprintf(stderr, "a lookup failed\n");
        return false;
      }
    }
    a.Record(mode);  // the first kConnect pass warms the caches and is overwritten by the last
    b.Record(mode);
  }
  return true;
}

// A buffer of 64-byte lines, each holding the index of the next line of one random cycle
// through all of them: following it is a chain of dependent loads, each to a random line.
// Mapped with 4 KiB pages, as the store's data file in /dev/shm is (no transparent huge pages
// for tmpfs by default), so each load pays the same TLB misses a B-tree page read would.
class PointerChase {
 public:
  static constexpr size_t kLine = 64;
  static constexpr size_t kHops = 256;  // loads per timed sample

  ~PointerChase() {
    if (base_ != nullptr) munmap(base_, bytes_);
  }

  bool Prepare(uint64_t bytes, uint64_t seed) {
    lines_ = std::max<uint64_t>(2, bytes / kLine);
    bytes_ = lines_ * kLine;
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      std::perror("mmap");
      return false;
    }
    base_ = static_cast<uint8_t*>(p);
    madvise(base_, bytes_, MADV_NOHUGEPAGE);
    // Sattolo's shuffle: one cycle through every line.
    std::vector<uint32_t> next(lines_);
    for (uint64_t i = 0; i < lines_; ++i) next[i] = static_cast<uint32_t>(i);
    std::mt19937_64 rng(seed);
    for (uint64_t i = lines_ - 1; i > 0; --i) {
      std::swap(next[i], next[std::uniform_int_distribution<uint64_t>(0, i - 1)(rng)]);
    }
    for (uint64_t i = 0; i < lines_; ++i) Slot(i) = next[i];
    return true;
  }

  // `samples` timed chains of kHops loads each, continuing where the last one stopped.
  void Run(size_t samples) {
    for (size_t s = 0; s < samples; ++s) {
      auto t0 = Clock::now();
      uint64_t at = at_;
      for (size_t h = 0; h < kHops; ++h) at = Slot(at);
      auto t1 = Clock::now();
      at_ = at;
      ns_.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / kHops);
    }
  }

  // The median of the samples' per-load times; what the first samples warmed is left out.
  double P50(size_t skip) const {
    std::vector<double> sorted(ns_.begin() + static_cast<ptrdiff_t>(std::min(skip, ns_.size())),
                               ns_.end());
    std::sort(sorted.begin(), sorted.end());
    return sorted.empty() ? 0 : sorted[sorted.size() / 2];
  }
  uint64_t bytes() const { return bytes_; }

 private:
  uint64_t& Slot(uint64_t line) { return reinterpret_cast<uint64_t*>(base_)[line * (kLine / 8)]; }

  uint8_t* base_ = nullptr;
  uint64_t bytes_ = 0, lines_ = 0, at_ = 0;
  std::vector<double> ns_;
};

// The same alternation as the stores', in longer blocks: each switch evicts the small buffer's
// lines and TLB entries, and its first ~lines/kHops samples of a block rewarm them.
void MeasureChaseInterleaved(PointerChase& a, PointerChase& b) {
  const size_t warm = 200, rounds = 8, block = 1000;
  a.Run(warm);
  b.Run(warm);
  for (size_t r = 0; r < rounds; ++r) {
    a.Run(block);
    b.Run(block);
  }
}

std::string Size(uint64_t bytes) {
  char buf[32];
  if (bytes >= (uint64_t{1} << 30)) {
    std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (1 << 30));
  } else if (bytes >= (uint64_t{1} << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  } else {
    std::snprintf(buf, sizeof buf, "%.0f KiB", static_cast<double>(bytes) / (1 << 10));
  }
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t small = 1000, large = 1000000, lookups = 200000, working_set = UINT64_MAX;
  std::string base;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--small") small = std::stoull(argv[i + 1]);
    else if (a == "--large") large = std::stoull(argv[i + 1]);
    else if (a == "--lookups") lookups = std::stoull(argv[i + 1]);
    else if (a == "--dir") base = argv[i + 1];
    else if (a == "--working-set") working_set = std::stoull(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: %s [--small N] [--large N] [--lookups N] [--dir DIR] [--working-set N]\n", argv[0]);
      return 2;
    }
  }
  bool own_dir = base.empty();
  if (own_dir) {
    std::error_code ec;
    const auto parent = std::filesystem::is_directory("/dev/shm", ec)
                            ? std::filesystem::path("/dev/shm")
                            : std::filesystem::temp_directory_path();
    std::string tmpl = (parent / "bench-store-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) return 1;
    base = tmpl;
  }
  Bench small_bench, large_bench;
  bool ok = small_bench.Prepare(base + "/small", small, lookups, working_set) &&
            large_bench.Prepare(base + "/large", large, lookups, working_set) &&
            MeasureInterleaved(small_bench, large_bench);
  // Then the same CONNECT lookups with as few distinct devices in the large store as the small one
  // has, each looked up ~200 times: what stays is the deeper tree and the TLB, not cold memory.
  double hot_a = 0, hot_b = 0;
  const uint64_t hot = std::min(small, working_set);
  if (ok && hot < large) {
    small_bench.ChooseKeys(small, lookups, hot);
    large_bench.ChooseKeys(large, lookups, hot);
    for (int pass = 0; pass < 2 && ok; ++pass) {  // the first warms; blocks alternate as above
      for (size_t begin = 0; begin < lookups && ok; begin += 1000) {
        const size_t end = std::min<size_t>(lookups, begin + 1000);
        ok = small_bench.Run(Mode::kConnect, begin, end) && large_bench.Run(Mode::kConnect, begin, end);
      }
    }
    hot_a = small_bench.LastP50();
    hot_b = large_bench.LastP50();
  }
  const Figures a = small_bench.figures(), b = large_bench.figures();
  if (own_dir) std::filesystem::remove_all(base);
  if (!ok) return 1;
  // After the stores are gone, so the buffers do not sit next to them in memory.
  PointerChase small_chase, large_chase;
  if (!small_chase.Prepare(a.data_bytes, 1) || !large_chase.Prepare(b.data_bytes, 2)) return 1;
  MeasureChaseInterleaved(small_chase, large_chase);
  const double load_a = small_chase.P50(200), load_b = large_chase.P50(200);

  std::printf("fill: %llu devices in %.2f s (data file %s),"
              " %llu devices in %.2f s (data file %s)\n",
              static_cast<unsigned long long>(small), a.fill_s, Size(a.data_bytes).c_str(),
              static_cast<unsigned long long>(large), b.fill_s, Size(b.data_bytes).c_str());
  std::printf("CONNECT lookup (renew + fingerprint and serial revocation checks"
              " + FindDeviceAuthView + reset), %llu random lookups:\n",
              static_cast<unsigned long long>(lookups));
  for (const auto& [count, f] : {std::pair{small, a}, std::pair{large, b}}) {
    std::printf("  %8llu devices: p50 %.0f ns  p99 %.0f ns  mean %.0f ns"
                "  (p50 of renew+reset %.0f ns, +revocation checks %.0f ns)\n",
                static_cast<unsigned long long>(count), f.p50_ns, f.p99_ns, f.mean_ns,
                f.renew_p50_ns, f.revoke_p50_ns);
  }
  std::printf("FindDevice (gateway's full-record read, renew + FindDevice + reset):"
              " %llu devices p50 %.0f ns p99 %.0f ns, %llu devices p50 %.0f ns p99 %.0f ns\n",
              static_cast<unsigned long long>(small), a.find_device_p50_ns, a.find_device_p99_ns,
              static_cast<unsigned long long>(large), b.find_device_p50_ns, b.find_device_p99_ns);
  std::printf("memory baseline: one random dependent load over %s: %.1f ns, over %s: %.1f ns",
              Size(small_chase.bytes()).c_str(), load_a, Size(large_chase.bytes()).c_str(),
              load_b);
  if (load_b > load_a) {
    std::printf(" (CONNECT p50 at %llu - at %llu devices = %.0f ns: ~%.1f more cold loads)",
                static_cast<unsigned long long>(large), static_cast<unsigned long long>(small),
                b.p50_ns - a.p50_ns, (b.p50_ns - a.p50_ns) / (load_b - load_a));
  }
  std::printf("\n");
  if (hot_b > 0) {
    std::printf("same %llu hot devices in both stores: CONNECT p50 %.0f ns vs %.0f ns, ratio %.2f"
                " (the deeper tree and TLB misses alone)\n",
                static_cast<unsigned long long>(hot), hot_b, hot_a, hot_b / hot_a);
  }
  // The median: on a shared machine the mean mostly measures other processes' preemptions.
  const double ratio = b.p50_ns / a.p50_ns;
  std::printf("store lookup: 1e3=%.0f ns 1e6=%.0f ns ratio=%.2f (goal <= 2)\n", a.p50_ns, b.p50_ns,
              ratio);
  return 0;
}
