// The CONNECT decision must not touch the heap once warm: it runs on Mosquitto's one thread for
// every connection. This binary replaces malloc/calloc/realloc with counting forwards to glibc
// (operator new goes through malloc), so LMDB, msgpack and std containers are all counted.
#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <cstdlib>

#include "edgetrust/plugin/connect_decider.h"
#include "edgetrust/plugin/trust_index.h"
#include "edgetrust/storage/tables.h"
#include "plugin_site.h"

extern "C" void* __libc_malloc(size_t size);
extern "C" void* __libc_calloc(size_t n, size_t size);
extern "C" void* __libc_realloc(void* p, size_t size);

namespace {
// One thread: the test body. Plain globals, since TLS could itself allocate.
bool g_counting = false;
size_t g_allocations = 0;
}  // namespace

extern "C" void* malloc(size_t size) {
  if (g_counting) ++g_allocations;
  return __libc_malloc(size);
}
extern "C" void* calloc(size_t n, size_t size) {
  if (g_counting) ++g_allocations;
  return __libc_calloc(n, size);
}
extern "C" void* realloc(void* p, size_t size) {
  if (g_counting) ++g_allocations;
  return __libc_realloc(p, size);
}

namespace edgetrust::plugin {
namespace {

using protocol::Role;
using storage::DeviceState;
using testing::Credentials;
using testing::Issuer;
using testing::PluginSite;

Bytes Fp(const Credentials& c) { return Bytes(c.cert.fingerprint.begin(), c.cert.fingerprint.end()); }

TEST(DecisionAllocations, NoneOnAllowedDeviceAndEnrollingPaths) {
  PluginSite site;
  auto previous = site.Issue("prev", Issuer::kSite, "thermo-000001");
  auto current = site.Issue("cur", Issuer::kSite, "thermo-000001");
  site.PutCertificate(previous, "thermo-000001");
  site.PutCertificate(current, "thermo-000001");
  storage::DeviceRecord d;
  d.id = "thermo-000001";
  d.state = DeviceState::kActive;
  d.manufacturer = "acme";
  d.model = "thermo-a";
  d.group = "thermostats";
  d.fw = "1.2.3-with-a-long-build-tag";
  d.operational_fingerprint = Fp(current);
  site.PutDevice(d);
  auto unknown_birth = site.Issue("birth", Issuer::kAcme, "thermo-000002", "thermo-a");
  auto known_birth = site.Issue("birth2", Issuer::kAcme, "thermo-000003", "thermo-a");
  d.id = "thermo-000003";
  d.state = DeviceState::kManufactured;
  d.operational_fingerprint.clear();
  d.birth_fingerprint = Fp(known_birth);
  site.PutDevice(d);

  auto snap = LoadPolicySnapshot(site.Path("policy.yaml"));
  ASSERT_TRUE(snap.ok()) << snap.error().ToString();
  ConnectDecider decider;
  decider.SetPolicy(*snap);
  decider.SetStore(&site.store());

  const std::array<const Credentials*, 4> certs = {&current, &previous, &unknown_birth, &known_birth};
  const std::array<Role, 4> want = {Role::kDevice, Role::kDevice, Role::kEnrolling, Role::kEnrolling};
  const int64_t now = UnixNow();
  for (const Credentials* c : certs) {
    Decision warm = decider.Decide(c->cert.subject.cn, &c->cert, now);  // opens the read txn
    ASSERT_TRUE(warm.allowed()) << c->cert.subject.cn << ": " << DenyReasonName(warm.reason);
  }

  constexpr int kRounds = 1000;
  std::array<int, 4> allowed{};
  g_allocations = 0;
  g_counting = true;
  for (int r = 0; r < kRounds; ++r) {
    for (size_t i = 0; i < certs.size(); ++i) {
      Decision dec = decider.Decide(certs[i]->cert.subject.cn, &certs[i]->cert, now);
      if (dec.allowed() && dec.role == want[i]) ++allowed[i];
    }
  }
  g_counting = false;
  for (size_t i = 0; i < certs.size(); ++i) EXPECT_EQ(allowed[i], kRounds) << i;
  EXPECT_EQ(g_allocations, 0u) << "heap allocations in " << kRounds * certs.size() << " decisions";

  // The counter counts: a full record decode allocates.
  auto txn = decider.Acquire();
  ASSERT_TRUE(txn.ok());
  g_allocations = 0;
  g_counting = true;
  auto full = storage::FindDevice(**txn, "thermo-000001");
  g_counting = false;
  decider.Release();
  ASSERT_TRUE(full.ok());
  EXPECT_GT(g_allocations, 0u);
}

}  // namespace
}  // namespace edgetrust::plugin
