// The plugin inside a real mosquitto: every row of the CONNECT decision both ways, every role's
// topics both ways, stamping, revocation (control message and store), expiry, fail-closed store,
// policy reload. One broker per suite; each test uses its own device ids.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>

#include <nlohmann/json.hpp>

#include "edgetrust/storage/lifecycle.h"
#include "edgetrust/storage/tables.h"
#include "edgetrust/testing/mqtt_client.h"
#include "edgetrust/testing/process.h"
#include "plugin_site.h"

namespace edgetrust::testing {
namespace {

using namespace std::chrono_literals;
using storage::DeviceState;
using Clock = std::chrono::steady_clock;

constexpr int kRefusedV5 = 0x87;  // CONNACK / PUBACK / SUBACK "not authorized"
constexpr int kNoSubscribers = 0x10;  // v5 PUBACK: accepted, nobody subscribed

// A QoS 1 publish the broker accepted (v5 PUBACK 0x00 or 0x10).
bool Accepted(int rc) { return rc == 0 || rc == kNoSubscribers; }

std::string NextId(const std::string& prefix) {
  static std::atomic<int> n{100};
  char buf[16];
  std::snprintf(buf, sizeof buf, "%06d", n++);
  return prefix + buf;
}

Bytes Fp(const Credentials& c) { return Bytes(c.cert.fingerprint.begin(), c.cert.fingerprint.end()); }

class PluginTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    site_ = new PluginSite();
    port_ = FreeLoopbackPort();
    broker_ = new Broker(Broker::Start(site_->dir(), site_->BrokerConfig(port_), {port_}));
    gateway_ = new Credentials(site_->Issue("gateway", Issuer::kSite, "edgetrust-gateway"));
    admin_ = new Credentials(site_->Issue("admin", Issuer::kSite, "ops-admin"));
  }
  static void TearDownTestSuite() {
    if (std::getenv("ET_PLUGIN_TEST_LOG") != nullptr) std::fprintf(stderr, "%s", broker_->Log().c_str());
    delete gateway_;
    delete admin_;
    delete broker_;
    delete site_;
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "--- broker log ---\n%s\n", broker_->Log().c_str());
  }

  // An operational device: site-issued certificate, device record active with that fingerprint.
  static Credentials ActiveDevice(const std::string& id, int64_t not_after = 0) {
    Credentials c = site_->Issue(id + "-op", Issuer::kSite, id, "", 0, not_after);
    storage::DeviceRecord d;
    d.id = id;
    d.state = DeviceState::kActive;
    d.manufacturer = "acme";
    d.model = "thermo-a";
    d.operational_fingerprint = Fp(c);
    d.operational_not_after = c.cert.not_after;
    site_->PutDevice(d);
    return c;
  }
  static void PutState(const std::string& id, DeviceState state, const std::string& model) {
    storage::DeviceRecord d;
    d.id = id;
    d.state = state;
    d.model = model;
    site_->PutDevice(d);
  }
  static int Connect(TestClient& client, const Credentials& c) {
    return client.Connect(port_, site_->Tls(c));
  }
  // Connects `id` with `c` at protocol 5 and 4; returns both CONNACK codes.
  static std::pair<int, int> ConnectBoth(const std::string& id, const Credentials& c) {
    TestClient v5(id, 5);
    int a = Connect(v5, c);
    v5.Disconnect();
    TestClient v4(id, 4);
    int b = Connect(v4, c);
    v4.Disconnect();
    return {a, b};
  }
  static void ExpectAllowed(const std::string& id, const Credentials& c) {
    auto [v5, v4] = ConnectBoth(id, c);
    EXPECT_EQ(v5, 0) << id;
    EXPECT_EQ(v4, 0) << id;
  }
  static void ExpectDenied(const std::string& id, const Credentials& c,
                           const std::string& reason = {}) {
    auto [v5, v4] = ConnectBoth(id, c);
    EXPECT_NE(v5, 0) << id;
    EXPECT_NE(v4, 0) << id;
    if (!reason.empty()) {
      // The one log line of this denial: client id, short fingerprint, reason.
      const std::string line = "denied client '" + id + "' (cert " +
                               c.fingerprint_hex().substr(0, 16) + "): " + reason;
      EXPECT_TRUE(WaitUntil([&] { return broker_->Log().find(line) != std::string::npos; }, 3s))
          << line;
    }
  }

  static PluginSite* site_;
  static Broker* broker_;
  static int port_;
  static Credentials* gateway_;
  static Credentials* admin_;
};

PluginSite* PluginTest::site_ = nullptr;
Broker* PluginTest::broker_ = nullptr;
int PluginTest::port_ = 0;
Credentials* PluginTest::gateway_ = nullptr;
Credentials* PluginTest::admin_ = nullptr;

// --- the CONNECT decision, row by row ---

TEST_F(PluginTest, Row2ClientIdMustEqualCn) {
  std::string id = NextId("thermo-");
  auto c = site_->Issue(id, Issuer::kAcme, id, "thermo-a");
  ExpectAllowed(id, c);
  std::string upper = id;
  upper[0] = 'T';
  ExpectDenied(upper, c, "client_id_mismatch");
  ExpectDenied(NextId("thermo-"), c, "client_id_mismatch");
}

TEST_F(PluginTest, Row2HostileCommonNamesDenied) {
  struct Case {
    std::string file;
    std::optional<std::string> cn;
    std::string client_id;
    std::string reason;
  };
  std::vector<Case> cases = {
      {"slash", std::string("ab/cd"), "ab/cd", "invalid_common_name"},
      {"plus", std::string("ab+cd"), "ab+cd", "invalid_common_name"},
      {"hash", std::string("ab#cd"), "ab#cd", "invalid_common_name"},
      {"long", std::string(65, 'a'), std::string(65, 'a'), "invalid_common_name"},
      {"nul", std::string("thermo-nul\0evil", 15), "thermo-nul", "client_id_mismatch"},
      {"nocn", std::nullopt, "thermo-nocn", "no_common_name"},
  };
  for (const auto& k : cases) {
    auto c = site_->IssueHostile("hostile-" + k.file, Issuer::kAcme, k.cn);
    ExpectDenied(k.client_id, c, k.reason);
  }
}

TEST_F(PluginTest, Row3RevokedDenied) {
  std::string a = NextId("thermo-"), b = NextId("thermo-");
  auto ca = site_->Issue(a, Issuer::kAcme, a, "thermo-a");
  auto cb = site_->Issue(b, Issuer::kAcme, b, "thermo-a");
  ExpectAllowed(a, ca);
  ExpectAllowed(b, cb);
  site_->RevokeFingerprint(ca.cert);
  site_->RevokeSerial(cb.cert);
  ExpectDenied(a, ca, "revoked");
  ExpectDenied(b, cb, "revoked");
}

TEST_F(PluginTest, Row4ExpiredOrNotYetValidRefused) {
  // mosquitto's own chain check refuses these during the TLS handshake already (-1); the
  // plugin's check is the second line. Either way: no session.
  std::string a = NextId("thermo-"), b = NextId("thermo-");
  auto expired = site_->Issue(a, Issuer::kAcme, a, "thermo-a", UnixNow() - 7200, UnixNow() - 60);
  auto future = site_->Issue(b, Issuer::kAcme, b, "thermo-a", UnixNow() + 3600, UnixNow() + 7200);
  ExpectDenied(a, expired);
  ExpectDenied(b, future);
}

TEST_F(PluginTest, UnknownIssuerDenied) {
  std::string a = NextId("thermo-"), b = NextId("thermo-");
  auto rogue = site_->Issue(a, Issuer::kRogue, a, "thermo-a");  // in cafile, not in the policy
  ExpectDenied(a, rogue, "unknown_issuer");
  auto outsider = site_->Issue(b, Issuer::kOutsider, b, "thermo-a");  // not even in cafile
  ExpectDenied(b, outsider);
}

TEST_F(PluginTest, Row5BirthCertificateByState) {
  std::string unknown = NextId("thermo-");
  ExpectAllowed(unknown, site_->Issue(unknown, Issuer::kAcme, unknown, "thermo-a"));

  std::string listed = NextId("lock-"), unlisted = NextId("lock-");
  PutState(listed, DeviceState::kManufactured, "lock-a");
  ExpectAllowed(listed, site_->Issue(listed, Issuer::kAcme, listed, "lock-a"));
  ExpectDenied(unlisted, site_->Issue(unlisted, Issuer::kAcme, unlisted, "lock-a"),
               "enrollment_not_allowed");

  std::string transfer = NextId("thermo-");
  PutState(transfer, DeviceState::kTransferPending, "thermo-a");
  ExpectAllowed(transfer, site_->Issue(transfer, Issuer::kAcme, transfer, "thermo-a"));

  std::string reenroll = NextId("thermo-"), no_reenroll = NextId("plain-");
  PutState(reenroll, DeviceState::kActive, "thermo-a");
  PutState(no_reenroll, DeviceState::kActive, "plain");
  ExpectAllowed(reenroll, site_->Issue(reenroll, Issuer::kAcme, reenroll, "thermo-a"));
  ExpectDenied(no_reenroll, site_->Issue(no_reenroll, Issuer::kAcme, no_reenroll, "plain"),
               "enrollment_not_allowed");

  std::string retired = NextId("thermo-"), compromised = NextId("thermo-");
  PutState(retired, DeviceState::kRetired, "thermo-a");
  PutState(compromised, DeviceState::kCompromised, "thermo-a");
  ExpectDenied(retired, site_->Issue(retired, Issuer::kAcme, retired, "thermo-a"), "device_retired");
  ExpectDenied(compromised, site_->Issue(compromised, Issuer::kAcme, compromised, "thermo-a"),
               "device_compromised");
}

TEST_F(PluginTest, Row6SiteCertificates) {
  ExpectAllowed("edgetrust-gateway", *gateway_);
  ExpectAllowed("ops-admin", *admin_);
  std::string id = NextId("thermo-");
  auto op = ActiveDevice(id);
  ExpectAllowed(id, op);
  auto stale = site_->Issue(id + "-stale", Issuer::kSite, id);
  ExpectDenied(id, stale, "not_current_certificate");
  std::string unknown = NextId("thermo-");
  ExpectDenied(unknown, site_->Issue(unknown, Issuer::kSite, unknown), "device_not_active");
  PutState(id, DeviceState::kTransferPending, "thermo-a");
  ExpectDenied(id, op, "device_not_active");
}

// --- topics per role ---

TEST_F(PluginTest, EnrollingTopics) {
  std::string id = NextId("thermo-");
  auto c = site_->Issue(id, Issuer::kAcme, id, "thermo-a");
  TestClient gw("edgetrust-gateway", 5);
  ASSERT_EQ(Connect(gw, *gateway_), 0);
  ASSERT_EQ(gw.Subscribe("et/+/enroll/req", 1), 1);
  TestClient dev(id, 5);
  ASSERT_EQ(Connect(dev, c), 0);
  EXPECT_EQ(dev.Subscribe("et/" + id + "/enroll/res", 1), 1);
  EXPECT_EQ(dev.Subscribe("et/" + id + "/down/#", 1), kRefusedV5);
  EXPECT_EQ(dev.Subscribe("et/+/enroll/res", 1), kRefusedV5);
  EXPECT_EQ(dev.Publish("et/" + id + "/up/x", "no", 1), kRefusedV5);
  EXPECT_EQ(dev.Publish("et/" + id + "/enroll/req", "csr", 1), 0);
  auto m = gw.WaitMessage(3s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->topic, "et/" + id + "/enroll/req");
  EXPECT_EQ(m->user_properties["et-cert-sha256"], c.fingerprint_hex());
  EXPECT_EQ(gw.Publish("et/" + id + "/enroll/res", "cert", 1), 0);
  auto r = dev.WaitMessage(3s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->topic, "et/" + id + "/enroll/res");
}

TEST_F(PluginTest, DeviceTopics) {
  std::string id = NextId("thermo-"), other = NextId("thermo-");
  auto c = ActiveDevice(id);
  TestClient dev(id, 5);
  ASSERT_EQ(Connect(dev, c), 0);
  for (const char* ok : {"/down/#", "/down/cfg/+", "/cert/res", "/ota/offer", "/ota/chunk", "/lifecycle"}) {
    EXPECT_EQ(dev.Subscribe("et/" + id + ok, 1), 1) << ok;
  }
  for (std::string bad : {std::string("et/#"), std::string("et/+/down/#"), std::string("#"),
                          std::string("$SYS/#"), "et/" + other + "/down/#", "et/" + id + "/up/#",
                          std::string("$CONTROL/edgetrust/v1/response"), std::string("et/_admin/v1/res")}) {
    EXPECT_EQ(dev.Subscribe(bad, 1), kRefusedV5) << bad;
  }
  for (const char* ok : {"/up/temp", "/up/a/b", "/state", "/cert/req", "/ota/get", "/ota/status"}) {
    EXPECT_TRUE(Accepted(dev.Publish("et/" + id + ok, "x", 1))) << ok;
  }
  for (std::string bad : {"et/" + other + "/up/temp", "et/" + id + "/down/x", "et/" + id + "/enroll/req",
                          std::string("$CONTROL/edgetrust/v1"), std::string("et/_admin/v1/req"),
                          std::string("other/topic")}) {
    EXPECT_EQ(dev.Publish(bad, "x", 1), kRefusedV5) << bad;
  }
  EXPECT_TRUE(dev.connected());

  // Delivery both ways through the gateway.
  TestClient gw("edgetrust-gateway", 5);
  ASSERT_EQ(Connect(gw, *gateway_), 0);
  ASSERT_EQ(gw.Subscribe("et/+/up/#", 1), 1);
  dev.TakeMessages();
  EXPECT_EQ(dev.Publish("et/" + id + "/up/temp", "21.5", 1), 0);
  auto up = gw.WaitMessage(3s);
  ASSERT_TRUE(up);
  EXPECT_EQ(up->payload, "21.5");
  EXPECT_EQ(gw.Publish("et/" + id + "/down/cfg", "on", 1), 0);
  auto down = dev.WaitMessage(3s);
  ASSERT_TRUE(down);
  EXPECT_EQ(down->topic, "et/" + id + "/down/cfg");
}

TEST_F(PluginTest, DeviceTopicsMqtt311) {
  std::string id = NextId("thermo-");
  auto c = ActiveDevice(id);
  TestClient dev(id, 4);
  ASSERT_EQ(Connect(dev, c), 0);
  EXPECT_EQ(dev.Subscribe("et/" + id + "/down/#", 1), 1);
  EXPECT_EQ(dev.Subscribe("et/#", 1), 0x80);  // 3.1.1 SUBACK failure
  TestClient gw("edgetrust-gateway", 5);
  ASSERT_EQ(Connect(gw, *gateway_), 0);
  ASSERT_EQ(gw.Subscribe("et/+/up/#", 1), 1);
  // 3.1.1 has no negative PUBACK: the refused message simply never arrives.
  EXPECT_EQ(dev.Publish("et/" + id + "/down/x", "refused", 1), 0);
  EXPECT_EQ(dev.Publish("et/" + id + "/up/t", "accepted", 1), 0);
  auto m = gw.WaitMessage(3s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->payload, "accepted");
  EXPECT_EQ(m->user_properties["et-cert-sha256"], c.fingerprint_hex());
}

TEST_F(PluginTest, GatewayAndAdminTopics) {
  TestClient gw("edgetrust-gateway", 5);
  ASSERT_EQ(Connect(gw, *gateway_), 0);
  EXPECT_EQ(gw.Subscribe("et/+/up/#", 1), 1);
  EXPECT_EQ(gw.Subscribe("et/_admin/v1/req", 1), 1);
  EXPECT_EQ(gw.Subscribe("$CONTROL/edgetrust/v1/response", 1), 1);
  EXPECT_EQ(gw.Subscribe("$SYS/broker/edgetrust/#", 0), 0);
  EXPECT_EQ(gw.Subscribe("#", 1), kRefusedV5);
  EXPECT_EQ(gw.Subscribe("$SYS/#", 1), kRefusedV5);
  EXPECT_EQ(gw.Subscribe("$CONTROL/dynamic-security/#", 1), kRefusedV5);
  EXPECT_TRUE(Accepted(gw.Publish("et/thermo-999999/down/x", "x", 1)));
  EXPECT_TRUE(Accepted(gw.Publish("et/_admin/v1/res", "{}", 1)));
  EXPECT_EQ(gw.Publish("other/topic", "x", 1), kRefusedV5);

  TestClient admin("ops-admin", 5);
  ASSERT_EQ(Connect(admin, *admin_), 0);
  EXPECT_EQ(admin.Subscribe("et/_admin/v1/res", 1), 1);
  EXPECT_EQ(admin.Subscribe("$CONTROL/edgetrust/v1/response", 1), 1);
  EXPECT_EQ(admin.Subscribe("et/+/up/#", 1), kRefusedV5);
  EXPECT_EQ(admin.Subscribe("#", 1), kRefusedV5);
  EXPECT_TRUE(Accepted(admin.Publish("et/_admin/v1/req", "{}", 1)));
  EXPECT_EQ(admin.Publish("et/thermo-999999/down/x", "x", 1), kRefusedV5);

  // Counters under $SYS/broker/edgetrust/ reach operators (stats_interval 1 s).
  ASSERT_EQ(admin.Subscribe("$SYS/broker/edgetrust/connect/allowed", 0), 0);
  auto stat = admin.WaitMessage(3s);
  ASSERT_TRUE(stat);
  EXPECT_GT(std::stoull(stat->payload), 0u);
}

// --- sessions that outlive their connection ---

// The broker asks the plugin before it queues a message for a session whose client is away.
// The gateway's session must keep collecting device data while the gateway restarts, and a
// device's session its down-links; a session whose device is revoked meanwhile collects nothing
// more, and an offline entry never lets anything be published (wills stay refused).
TEST_F(PluginTest, PersistentSessionsQueueWhileTheirClientIsAway) {
  std::string id = NextId("thermo-");
  auto c = ActiveDevice(id);
  {
    TestClient gw("edgetrust-gateway", 4, /*clean_session=*/false);
    ASSERT_EQ(Connect(gw, *gateway_), 0);
    ASSERT_EQ(gw.Subscribe("et/+/up/#", 1), 1);
    gw.Disconnect();
  }
  // Both sessions persistent (MQTT 3.1.1, clean session off): a clean connect of the same id
  // would end the session it meets.
  TestClient dev(id, 4, /*clean_session=*/false);
  ASSERT_EQ(Connect(dev, c), 0);
  ASSERT_EQ(dev.Subscribe("et/" + id + "/down/#", 1), 1);
  ASSERT_EQ(dev.Publish("et/" + id + "/up/t", "while-away", 1), 0);
  dev.Disconnect();
  TestClient ops("ops-admin", 5);
  ASSERT_EQ(Connect(ops, *admin_), 0);

  TestClient gw("edgetrust-gateway", 4, /*clean_session=*/false);
  ASSERT_EQ(Connect(gw, *gateway_), 0);
  auto up = gw.WaitMessage(3s);
  ASSERT_TRUE(up) << "the gateway's session did not keep what arrived while it was away";
  EXPECT_EQ(up->payload, "while-away");
  // A down-link for the device while it is away waits in its session.
  ASSERT_EQ(gw.Publish("et/" + id + "/down/cfg", "on", 1), 0);
  TestClient back(id, 4, /*clean_session=*/false);
  ASSERT_EQ(Connect(back, c), 0);
  auto down = back.WaitMessage(3s);
  ASSERT_TRUE(down) << "the device's session did not keep its down-link";
  EXPECT_EQ(down->payload, "on");
  back.Disconnect();

  // Revoked while away: nothing more is queued for it.
  {
    auto txn = site_->store().BeginWrite();
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE(storage::RevokeDevice(*txn, id, "test", "plugin_test",
                                      storage::RevokeScope::kOperationalOnly,
                                      DeviceState::kTransferPending)
                    .ok());
    ASSERT_TRUE(txn->Commit().ok());
  }
  // The revocation log is read on the tick: wait until the plugin has applied it.
  ASSERT_TRUE(WaitUntil([&] { return Connect(dev, c) != 0; }, 3s));
  ASSERT_EQ(gw.Publish("et/" + id + "/down/cfg", "after-revocation", 1), 0);
  // Counted: exactly the two messages above were let into sessions of absent clients (the
  // counter is published every second; wait for two publications after the last publish).
  ASSERT_EQ(ops.Subscribe("$SYS/broker/edgetrust/acl/queued_for_offline", 0), 0);
  std::optional<ReceivedMessage> queued;
  for (int i = 0; i < 3; ++i) {
    auto m = ops.WaitMessage(3s);
    ASSERT_TRUE(m);
    queued = m;
  }
  EXPECT_EQ(queued->payload, "2") << "something was queued for the revoked device";
}

// --- stamping ---

TEST_F(PluginTest, ForgedStampReplacedOtherPropertiesKept) {
  std::string id = NextId("thermo-");
  auto c = ActiveDevice(id);
  TestClient gw("edgetrust-gateway", 5);
  ASSERT_EQ(Connect(gw, *gateway_), 0);
  ASSERT_EQ(gw.Subscribe("et/" + id + "/up/#", 1), 1);
  TestClient dev(id, 5);
  ASSERT_EQ(Connect(dev, c), 0);
  std::string forged(64, 'a');
  EXPECT_EQ(dev.Publish("et/" + id + "/up/t", "x", 1, false,
                        {{"et-cert-sha256", forged}, {"unit", "celsius"}}),
            0);
  auto m = gw.WaitMessage(3s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->user_properties["et-cert-sha256"], c.fingerprint_hex());
  EXPECT_EQ(m->user_properties["unit"], "celsius");
}

// --- revocation reaches connected clients ---

TEST_F(PluginTest, ControlKickDisconnectsWithin200ms) {
  std::string id = NextId("thermo-"), id2 = NextId("thermo-");
  auto c = ActiveDevice(id);
  auto c2 = ActiveDevice(id2);
  TestClient dev(id, 5), dev2(id2, 4);
  ASSERT_EQ(Connect(dev, c), 0);
  ASSERT_EQ(Connect(dev2, c2), 0);

  // A device may not use the control topic.
  EXPECT_EQ(dev.Publish("$CONTROL/edgetrust/v1",
                        R"({"commands":[{"command":"kickDevice","device":")" + id2 + "\"}]}", 1),
            kRefusedV5);
  EXPECT_FALSE(dev2.WaitDisconnected(300ms));

  TestClient gw("edgetrust-gateway", 5);
  ASSERT_EQ(Connect(gw, *gateway_), 0);
  ASSERT_EQ(gw.Subscribe("$CONTROL/edgetrust/v1/response", 1), 1);
  auto t0 = Clock::now();
  ASSERT_EQ(gw.Publish("$CONTROL/edgetrust/v1",
                       R"({"commands":[{"command":"kickDevice","device":")" + id +
                           R"(","correlationData":"k1"}]})",
                       0),
            0);
  ASSERT_TRUE(dev.WaitDisconnected(2s));
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
  EXPECT_LT(elapsed.count(), 200) << "kickDevice took " << elapsed.count() << " ms";
  std::printf("kickDevice -> disconnected in %lld ms\n", static_cast<long long>(elapsed.count()));
  auto resp = gw.WaitMessage(2s);
  ASSERT_TRUE(resp);
  auto j = nlohmann::json::parse(resp->payload);
  EXPECT_EQ(j["responses"][0]["command"], "kickDevice");
  EXPECT_EQ(j["responses"][0]["data"]["sessions"], 1);
  EXPECT_EQ(j["responses"][0]["correlationData"], "k1");

  t0 = Clock::now();
  ASSERT_EQ(gw.Publish("$CONTROL/edgetrust/v1",
                       R"({"commands":[{"command":"kickFingerprint","fingerprint":")" +
                           c2.fingerprint_hex() + "\"}]}",
                       0),
            0);
  ASSERT_TRUE(dev2.WaitDisconnected(2s));
  elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
  EXPECT_LT(elapsed.count(), 200);
  resp = gw.WaitMessage(2s);
  ASSERT_TRUE(resp);
  EXPECT_EQ(nlohmann::json::parse(resp->payload)["responses"][0]["data"]["sessions"], 1);

  // Malformed requests get an error response and break nothing.
  ASSERT_EQ(gw.Publish("$CONTROL/edgetrust/v1", "{not json", 1), 0);
  auto err = gw.WaitMessage(2s);
  ASSERT_TRUE(err);
  EXPECT_NE(err->payload.find("error"), std::string::npos);
  ASSERT_EQ(gw.Publish("$CONTROL/edgetrust/v1", R"({"commands":[{"command":"bogus"}]})", 1), 0);
  err = gw.WaitMessage(2s);
  ASSERT_TRUE(err);
  EXPECT_NE(err->payload.find("Unknown command"), std::string::npos);
  EXPECT_TRUE(gw.connected());
}

TEST_F(PluginTest, StoreRevocationDisconnectsWithinOneTick) {
  std::string id = NextId("thermo-");
  auto c = ActiveDevice(id);
  TestClient dev(id, 5);
  ASSERT_EQ(Connect(dev, c), 0);
  auto t0 = Clock::now();
  {
    auto txn = site_->store().BeginWrite();
    ASSERT_TRUE(txn.ok());
    auto revoked = storage::RevokeDevice(*txn, id, "test", "plugin_test",
                                         storage::RevokeScope::kAllIncludingBirth,
                                         DeviceState::kRetired);
    ASSERT_TRUE(revoked.ok()) << revoked.error().ToString();
    ASSERT_TRUE(txn->Commit().ok());
  }
  ASSERT_TRUE(dev.WaitDisconnected(3s));
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
  EXPECT_LT(elapsed.count(), 1000);
  std::printf("store revocation -> disconnected in %lld ms\n", static_cast<long long>(elapsed.count()));
  TestClient again(id, 5);
  EXPECT_NE(Connect(again, c), 0);
}

// Renewal: the gateway records the new certificate as current and revokes the old one only on
// the device's first use of the new one. A device whose renewal answer was lost reconnects with
// the old one and must get in, and stay in when the revocation log names it, until then.
TEST_F(PluginTest, RenewalGraceOldCertificateUntilRevoked) {
  std::string id = NextId("thermo-");
  auto old_op = ActiveDevice(id);
  site_->PutCertificate(old_op, id);
  auto new_op = site_->Issue(id + "-renewed", Issuer::kSite, id);
  site_->PutCertificate(new_op, id);
  storage::DeviceRecord d;
  d.id = id;
  d.state = DeviceState::kActive;
  d.manufacturer = "acme";
  d.model = "thermo-a";
  d.operational_fingerprint = Fp(new_op);
  site_->PutDevice(d);
  ExpectAllowed(id, old_op);
  ExpectAllowed(id, new_op);

  TestClient dev(id, 5);
  ASSERT_EQ(Connect(dev, old_op), 0);
  // One log batch: a certificate of this device that was never used (replaced before use) and
  // a witness device's certificate. Once the witness is gone the batch was applied, and the
  // session re-decided with the old certificate must still be there.
  auto unused = site_->Issue(id + "-unused", Issuer::kSite, id);
  site_->PutCertificate(unused, id);
  std::string witness_id = NextId("thermo-");
  auto witness = ActiveDevice(witness_id);
  TestClient witness_dev(witness_id, 5);
  ASSERT_EQ(Connect(witness_dev, witness), 0);
  {
    auto txn = site_->store().BeginWrite();
    ASSERT_TRUE(txn.ok());
    for (const Credentials* c : {&unused, &witness}) {
      auto seq = storage::RevokeCertificate(*txn, c->cert.fingerprint, "test", "plugin_test");
      ASSERT_TRUE(seq.ok()) << seq.error().ToString();
    }
    ASSERT_TRUE(txn->Commit().ok());
  }
  ASSERT_TRUE(witness_dev.WaitDisconnected(3s));
  EXPECT_TRUE(dev.connected());
  EXPECT_TRUE(Accepted(dev.Publish("et/" + id + "/up/t", "still here", 1)));

  // The device used its new certificate: the gateway revokes the old one, the session ends.
  site_->RevokeFingerprint(old_op.cert);
  ASSERT_TRUE(dev.WaitDisconnected(3s));
  ExpectDenied(id, old_op, "revoked");
  ExpectAllowed(id, new_op);
}

TEST_F(PluginTest, CertificateExpiringDuringSessionEndsIt) {
  std::string id = NextId("thermo-");
  const int64_t not_after = UnixNow() + 3;
  auto c = ActiveDevice(id, not_after);
  TestClient dev(id, 5);
  ASSERT_EQ(Connect(dev, c), 0);
  ASSERT_TRUE(dev.WaitDisconnected(8s));
  // Seconds resolution: gone within one tick of the first second past not_after.
  EXPECT_LE(UnixNow(), not_after + 2);
}

// How often does 2.0.11 give us MOSQ_EVT_TICK? (It decides how fast queued kicks land.)
TEST_F(PluginTest, TickRateIdleAndBusy) {
  TestClient gw("edgetrust-gateway", 5);
  ASSERT_EQ(Connect(gw, *gateway_), 0);
  ASSERT_EQ(gw.Subscribe("$CONTROL/edgetrust/v1/response", 1), 1);
  auto ticks = [&]() -> uint64_t {
    gw.TakeMessages();
    EXPECT_EQ(gw.Publish("$CONTROL/edgetrust/v1", R"({"commands":[{"command":"getStats"}]})", 1), 0);
    auto m = gw.WaitMessage(2s);
    if (!m) return 0;
    return nlohmann::json::parse(m->payload)["responses"][0]["data"]["ticks"].get<uint64_t>();
  };
  uint64_t a = ticks();
  auto t0 = Clock::now();
  std::this_thread::sleep_for(1s);
  uint64_t b = ticks();
  double idle = (b - a) / std::chrono::duration<double>(Clock::now() - t0).count();

  std::string id = NextId("thermo-");
  auto c = ActiveDevice(id);
  TestClient dev(id, 5);
  ASSERT_EQ(Connect(dev, c), 0);
  std::atomic<bool> stop{false};
  std::thread flood([&] {
    while (!stop) dev.Publish("et/" + id + "/up/flood", "x", 0);
  });
  std::this_thread::sleep_for(200ms);
  a = ticks();
  t0 = Clock::now();
  std::this_thread::sleep_for(1s);
  b = ticks();
  double busy = (b - a) / std::chrono::duration<double>(Clock::now() - t0).count();
  stop = true;
  flood.join();
  std::printf("MOSQ_EVT_TICK: %.0f/s idle, %.0f/s busy\n", idle, busy);
  EXPECT_GE(idle, 8.0);  // epoll_wait times out every 100 ms
  EXPECT_GE(busy, idle);
}

// --- fail closed, reload, no certificate: own brokers ---

TEST(PluginBrokerTest, UnreadableStoreDeniesEveryoneBrokerStaysUp) {
  PluginSite site;
  auto gw = site.Issue("gateway", Issuer::kSite, "edgetrust-gateway");
  std::string not_a_store = site.Path("not-a-store");
  ::mkdir(not_a_store.c_str(), 0755);
  GiveToMosquitto(not_a_store);
  int port = FreeLoopbackPort();
  Broker broker = Broker::Start(site.dir(), site.BrokerConfig(port, not_a_store), {port});
  for (int i = 0; i < 2; ++i) {
    TestClient c("edgetrust-gateway", 5);
    EXPECT_EQ(c.Connect(port, site.Tls(gw)), kRefusedV5);
  }
  EXPECT_TRUE(broker.process().running());
  EXPECT_TRUE(PortAccepts(port));
  std::string log = broker.Log();
  EXPECT_NE(log.find("cannot be read"), std::string::npos) << log;
  EXPECT_NE(log.find("store_unavailable"), std::string::npos) << log;
}

TEST(PluginBrokerTest, NoCertificateDenied) {
  PluginSite site;
  auto gw = site.Issue("gateway", Issuer::kSite, "edgetrust-gateway");
  int port = FreeLoopbackPort();
  // Without require_certificate mosquitto hands the plugin no certificate at all.
  Broker broker = Broker::Start(site.dir(), site.BrokerConfig(port, {}, false), {port});
  TestClient c("edgetrust-gateway", 5);
  EXPECT_EQ(c.Connect(port, site.Tls(gw)), kRefusedV5);
  EXPECT_TRUE(WaitUntil([&] { return broker.Log().find("no_certificate") != std::string::npos; }, 3s));
}

TEST(PluginBrokerTest, PolicyReloadKeepsOldPolicyWhenInvalid) {
  PluginSite site;
  auto admin = site.Issue("admin", Issuer::kSite, "ops-admin");
  int port = FreeLoopbackPort();
  Broker broker = Broker::Start(site.dir(), site.BrokerConfig(port), {port});

  TestClient connected("ops-admin", 5);
  ASSERT_EQ(connected.Connect(port, site.Tls(admin)), 0);

  WriteFile(site.Path("policy.yaml"), "site: [unclosed\n");
  broker.Reload();
  ASSERT_TRUE(WaitUntil([&] {
    return broker.Log().find("refused, keeping the running policy") != std::string::npos;
  }, 5s)) << broker.Log();
  EXPECT_TRUE(connected.connected());
  {
    TestClient c("ops-admin", 5);
    EXPECT_EQ(c.Connect(port, site.Tls(admin)), 0);  // old policy still names ops-admin
  }

  // A valid policy without the admin principal: the running admin session ends, new ones fail.
  std::string yaml = site.PolicyYaml();
  yaml.replace(yaml.find("admin: [ops-admin]"), 18, "admin: [someone-else]");
  WriteFile(site.Path("policy.yaml"), yaml);
  broker.Reload();
  ASSERT_TRUE(WaitUntil([&] { return broker.Log().find("policy reloaded") != std::string::npos; }, 5s));
  EXPECT_TRUE(connected.WaitDisconnected(3s));
  TestClient c("ops-admin", 5);
  EXPECT_NE(c.Connect(port, site.Tls(admin)), 0);
}

}  // namespace
}  // namespace edgetrust::testing
