// ConnectDecider, access rules and control parsing on a real store, without a broker.
#include <gtest/gtest.h>

#include "edgetrust/plugin/access_rules.h"
#include "edgetrust/plugin/client_registry.h"
#include "edgetrust/plugin/connect_decider.h"
#include "edgetrust/plugin/control_commands.h"
#include "edgetrust/plugin/trust_index.h"
#include "edgetrust/storage/tables.h"
#include "plugin_site.h"

namespace edgetrust::plugin {
namespace {

using protocol::Role;
using storage::DeviceState;
using testing::Credentials;
using testing::Issuer;
using testing::PluginSite;

Bytes Fp(const Credentials& c) { return Bytes(c.cert.fingerprint.begin(), c.cert.fingerprint.end()); }

class DeciderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto snap = LoadPolicySnapshot(site_.Path("policy.yaml"));
    ASSERT_TRUE(snap.ok()) << snap.error().ToString();
    decider_.SetPolicy(*snap);
    decider_.SetStore(&site_.store());
  }
  Decision Decide(const Credentials& c, std::string_view id = {}) {
    return decider_.Decide(id.empty() ? std::string_view(c.cert.subject.cn) : id, &c.cert, UnixNow());
  }
  void Put(const std::string& id, DeviceState state, const std::string& model = {},
           Bytes op_fp = {}, Bytes birth_fp = {}, const std::string& manufacturer = {}) {
    storage::DeviceRecord d;
    d.id = id;
    d.state = state;
    d.model = model;
    d.manufacturer = manufacturer;
    d.operational_fingerprint = std::move(op_fp);
    d.birth_fingerprint = std::move(birth_fp);
    site_.PutDevice(d);
  }

  PluginSite site_;
  ConnectDecider decider_;
};

TEST_F(DeciderTest, NoCertificate) {
  EXPECT_EQ(decider_.Decide("dev-1", nullptr, UnixNow()).reason, DenyReason::kNoCertificate);
}

TEST_F(DeciderTest, ClientIdMustEqualCnExactly) {
  auto c = site_.Issue("d1", Issuer::kAcme, "thermo-000001", "thermo-a");
  EXPECT_TRUE(Decide(c).allowed());
  EXPECT_EQ(Decide(c, "THERMO-000001").reason, DenyReason::kClientIdMismatch);
  EXPECT_EQ(Decide(c, "thermo-000002").reason, DenyReason::kClientIdMismatch);
}

TEST_F(DeciderTest, HostileCommonNames) {
  auto slash = site_.IssueHostile("h1", Issuer::kAcme, std::string("a/b"));
  EXPECT_EQ(Decide(slash).reason, DenyReason::kInvalidCommonName);
  auto plus = site_.IssueHostile("h2", Issuer::kAcme, std::string("a+b"));
  EXPECT_EQ(Decide(plus).reason, DenyReason::kInvalidCommonName);
  auto hash = site_.IssueHostile("h3", Issuer::kAcme, std::string("a#"));
  EXPECT_EQ(Decide(hash).reason, DenyReason::kInvalidCommonName);
  auto longcn = site_.IssueHostile("h4", Issuer::kAcme, std::string(65, 'a'));
  if (!longcn.cert.subject.cn.empty()) {
    EXPECT_EQ(Decide(longcn).reason, DenyReason::kInvalidCommonName);
  }
  auto nul = site_.IssueHostile("h5", Issuer::kAcme, std::string("dev-1\0x", 7));
  ASSERT_EQ(nul.cert.subject.cn.size(), 7u) << "pki must keep the NUL";
  EXPECT_EQ(decider_.Decide("dev-1", &nul.cert, UnixNow()).reason, DenyReason::kClientIdMismatch);
  auto none = site_.IssueHostile("h6", Issuer::kAcme, std::nullopt);
  EXPECT_EQ(decider_.Decide("dev-1", &none.cert, UnixNow()).reason, DenyReason::kNoCommonName);
}

TEST_F(DeciderTest, RevokedByFingerprintAndBySerial) {
  auto a = site_.Issue("a", Issuer::kAcme, "thermo-000001", "thermo-a");
  auto b = site_.Issue("b", Issuer::kAcme, "thermo-000002", "thermo-a");
  EXPECT_TRUE(Decide(a).allowed());
  site_.RevokeFingerprint(a.cert);
  EXPECT_EQ(Decide(a).reason, DenyReason::kRevoked);
  EXPECT_TRUE(Decide(b).allowed());
  site_.RevokeSerial(b.cert);
  EXPECT_EQ(Decide(b).reason, DenyReason::kRevoked);
}

TEST_F(DeciderTest, Validity) {
  auto expired = site_.Issue("e", Issuer::kAcme, "thermo-000001", "thermo-a", UnixNow() - 7200,
                             UnixNow() - 10);
  EXPECT_EQ(Decide(expired).reason, DenyReason::kExpired);
  auto future = site_.Issue("f", Issuer::kAcme, "thermo-000002", "thermo-a", UnixNow() + 3600,
                            UnixNow() + 7200);
  EXPECT_EQ(Decide(future).reason, DenyReason::kNotYetValid);
}

TEST_F(DeciderTest, UnknownIssuer) {
  auto rogue = site_.Issue("r", Issuer::kRogue, "thermo-000001", "thermo-a");
  EXPECT_EQ(Decide(rogue).reason, DenyReason::kUnknownIssuer);
}

TEST_F(DeciderTest, BirthCertificateStates) {
  auto unknown = site_.Issue("u", Issuer::kAcme, "thermo-000001", "thermo-a");
  Decision d = Decide(unknown);
  ASSERT_TRUE(d.allowed());
  EXPECT_EQ(d.role, Role::kEnrolling);

  auto manufactured = site_.Issue("m", Issuer::kAcme, "lock-000001", "lock-a");
  auto unlisted = site_.Issue("m2", Issuer::kAcme, "lock-000002", "lock-a");
  Put("lock-000001", DeviceState::kManufactured, "lock-a", {}, Fp(manufactured), "acme");
  EXPECT_EQ(Decide(manufactured).role, Role::kEnrolling);
  EXPECT_TRUE(Decide(manufactured).allowed());
  EXPECT_EQ(Decide(unlisted).reason, DenyReason::kEnrollmentNotAllowed);  // allowlist group

  // Another birth certificate under a known device's id is a clone.
  auto clone = site_.Issue("m3", Issuer::kAcme, "lock-000001", "lock-a");
  EXPECT_EQ(Decide(clone).reason, DenyReason::kNotCurrentCertificate);

  auto transfer = site_.Issue("t", Issuer::kAcme, "thermo-000003", "thermo-a");
  Put("thermo-000003", DeviceState::kTransferPending, "thermo-a");
  EXPECT_EQ(Decide(transfer).role, Role::kEnrolling);

  auto active_re = site_.Issue("a1", Issuer::kAcme, "thermo-000004", "thermo-a");
  Put("thermo-000004", DeviceState::kActive, "thermo-a");
  EXPECT_TRUE(Decide(active_re).allowed());  // thermostats: reenroll true
  auto active_no = site_.Issue("a2", Issuer::kAcme, "plain-000001", "plain");
  Put("plain-000001", DeviceState::kActive, "plain");
  EXPECT_EQ(Decide(active_no).reason, DenyReason::kEnrollmentNotAllowed);
  // Its operational certificate issued but never seen in use: the answer may have been lost.
  auto unconfirmed = site_.Issue("a3", Issuer::kAcme, "plain-000002", "plain");
  storage::DeviceRecord pending;
  pending.id = "plain-000002";
  pending.state = DeviceState::kActive;
  pending.model = "plain";
  pending.operational_unconfirmed = true;
  site_.PutDevice(pending);
  Decision again = Decide(unconfirmed);
  ASSERT_TRUE(again.allowed());
  EXPECT_EQ(again.role, Role::kEnrolling);
  pending.operational_unconfirmed = false;
  site_.PutDevice(pending);
  EXPECT_EQ(Decide(unconfirmed).reason, DenyReason::kEnrollmentNotAllowed);

  auto retired = site_.Issue("x1", Issuer::kAcme, "thermo-000005", "thermo-a");
  Put("thermo-000005", DeviceState::kRetired, "thermo-a");
  EXPECT_EQ(Decide(retired).reason, DenyReason::kDeviceRetired);
  auto compromised = site_.Issue("x2", Issuer::kAcme, "thermo-000006", "thermo-a");
  Put("thermo-000006", DeviceState::kCompromised, "thermo-a");
  EXPECT_EQ(Decide(compromised).reason, DenyReason::kDeviceCompromised);

  auto principal = site_.Issue("p", Issuer::kAcme, "edgetrust-gateway", "thermo-a");
  EXPECT_EQ(Decide(principal).reason, DenyReason::kInvalidCommonName);
}

TEST_F(DeciderTest, SiteCertificates) {
  auto gw = site_.Issue("gw", Issuer::kSite, "edgetrust-gateway");
  EXPECT_EQ(Decide(gw).role, Role::kGateway);
  auto admin = site_.Issue("adm", Issuer::kSite, "ops-admin");
  EXPECT_EQ(Decide(admin).role, Role::kAdmin);

  auto op = site_.Issue("op", Issuer::kSite, "thermo-000010");
  EXPECT_EQ(Decide(op).reason, DenyReason::kDeviceNotActive);  // unknown device
  Put("thermo-000010", DeviceState::kActive, "thermo-a", Fp(op));
  Decision d = Decide(op);
  ASSERT_TRUE(d.allowed());
  EXPECT_EQ(d.role, Role::kDevice);
  auto stale = site_.Issue("op2", Issuer::kSite, "thermo-000010");
  EXPECT_EQ(Decide(stale).reason, DenyReason::kNotCurrentCertificate);
  Put("thermo-000010", DeviceState::kTransferPending, "thermo-a", Fp(op));
  EXPECT_EQ(Decide(op).reason, DenyReason::kDeviceNotActive);
  Put("thermo-000010", DeviceState::kRetired, "thermo-a", Fp(op));
  EXPECT_EQ(Decide(op).reason, DenyReason::kDeviceRetired);
}

// The gateway renews by recording the new certificate as current and revoking the previous one
// only when the device first uses the new one: a lost renewal answer must not lock it out.
TEST_F(DeciderTest, PreviousOperationalCertificateAcceptedUntilRevoked) {
  const std::string id = "thermo-000020";
  auto old_op = site_.Issue("old", Issuer::kSite, id);
  site_.PutCertificate(old_op, id);
  Put(id, DeviceState::kActive, "thermo-a", Fp(old_op));
  EXPECT_EQ(Decide(old_op).role, Role::kDevice);

  auto new_op = site_.Issue("new", Issuer::kSite, id);
  site_.PutCertificate(new_op, id);
  Put(id, DeviceState::kActive, "thermo-a", Fp(new_op));
  Decision with_old = Decide(old_op);
  ASSERT_TRUE(with_old.allowed()) << DenyReasonName(with_old.reason);
  EXPECT_EQ(with_old.role, Role::kDevice);
  EXPECT_EQ(Decide(new_op).role, Role::kDevice);

  // Site-issued with the device's name but never recorded, or recorded as something else.
  auto unrecorded = site_.Issue("unrecorded", Issuer::kSite, id);
  EXPECT_EQ(Decide(unrecorded).reason, DenyReason::kNotCurrentCertificate);
  auto as_birth = site_.Issue("as-birth", Issuer::kSite, id);
  site_.PutCertificate(as_birth, id, storage::CertificateKind::kBirth);
  EXPECT_EQ(Decide(as_birth).reason, DenyReason::kNotCurrentCertificate);

  // Only an active device gets in, with the current certificate or the previous one.
  Put(id, DeviceState::kTransferPending, "thermo-a", Fp(new_op));
  EXPECT_EQ(Decide(old_op).reason, DenyReason::kDeviceNotActive);
  Put(id, DeviceState::kActive, "thermo-a", Fp(new_op));

  // First use of the new certificate: the gateway revokes the old one.
  site_.RevokeFingerprint(old_op.cert);
  EXPECT_EQ(Decide(old_op).reason, DenyReason::kRevoked);
  EXPECT_EQ(Decide(new_op).role, Role::kDevice);

  // Revoked by issuer and serial only: refused the same.
  auto older = site_.Issue("older", Issuer::kSite, id);
  site_.PutCertificate(older, id);
  EXPECT_EQ(Decide(older).role, Role::kDevice);
  site_.RevokeSerial(older.cert);
  EXPECT_EQ(Decide(older).reason, DenyReason::kRevoked);
}

TEST_F(DeciderTest, AnotherDevicesOperationalCertificateRefused) {
  // A certificate named thermo-000021 but recorded as thermo-000022's operational certificate
  // (and current for it) gives thermo-000021 nothing.
  auto a_op = site_.Issue("a-op", Issuer::kSite, "thermo-000021");
  auto crossed = site_.Issue("crossed", Issuer::kSite, "thermo-000021");
  site_.PutCertificate(a_op, "thermo-000021");
  site_.PutCertificate(crossed, "thermo-000022");
  Put("thermo-000021", DeviceState::kActive, "thermo-a", Fp(a_op));
  Put("thermo-000022", DeviceState::kActive, "thermo-a", Fp(crossed));
  EXPECT_EQ(Decide(a_op).role, Role::kDevice);
  EXPECT_EQ(Decide(crossed).reason, DenyReason::kNotCurrentCertificate);
  // Nor can it pass as thermo-000022: the client id must be the certificate's CN.
  EXPECT_EQ(Decide(crossed, "thermo-000022").reason, DenyReason::kClientIdMismatch);

  // A principal's certificate recorded under the device's id is no operational one either.
  auto principal_kind = site_.Issue("p-kind", Issuer::kSite, "thermo-000021");
  site_.PutCertificate(principal_kind, "thermo-000021", storage::CertificateKind::kPrincipal);
  EXPECT_EQ(Decide(principal_kind).reason, DenyReason::kNotCurrentCertificate);
}

// Names longer than a certificate can carry do not fit the decision's fixed buffers: the
// decider reads the full record for them and decides the same.
TEST_F(DeciderTest, LongManufacturerFallsBackToFullRecord) {
  auto birth = site_.Issue("long-mf", Issuer::kAcme, "thermo-000030", "thermo-a");
  Put("thermo-000030", DeviceState::kManufactured, "thermo-a", {}, Fp(birth),
      std::string(200, 'm'));
  EXPECT_EQ(Decide(birth).reason, DenyReason::kEnrollmentNotAllowed);  // another manufacturer
  // The stored model, not the certificate's OU, picks the group: "plain-…" has re-enrollment
  // off, "thermo-*" has it on.
  Put("thermo-000030", DeviceState::kActive, "plain-" + std::string(100, 'x'), {}, Fp(birth),
      "acme");
  EXPECT_EQ(Decide(birth).reason, DenyReason::kEnrollmentNotAllowed);
  Put("thermo-000030", DeviceState::kActive, "thermo-" + std::string(100, 'x'), {}, Fp(birth),
      "acme");
  EXPECT_EQ(Decide(birth).role, Role::kEnrolling);
  Put("thermo-000030", DeviceState::kActive, "plain-a", {}, Fp(birth), "acme");
  EXPECT_EQ(Decide(birth).reason, DenyReason::kEnrollmentNotAllowed);
  Put("thermo-000030", DeviceState::kManufactured, "thermo-a", {}, Fp(birth), "acme");
  EXPECT_EQ(Decide(birth).role, Role::kEnrolling);
}

TEST(DeciderNoStore, FailsClosed) {
  PluginSite site;
  ConnectDecider decider;
  auto snap = LoadPolicySnapshot(site.Path("policy.yaml"));
  ASSERT_TRUE(snap.ok());
  decider.SetPolicy(*snap);
  auto c = site.Issue("d", Issuer::kAcme, "thermo-000001", "thermo-a");
  EXPECT_EQ(decider.Decide("thermo-000001", &c.cert, UnixNow()).reason,
            DenyReason::kStoreUnavailable);
}

TEST(ClientRegistry, OfflineSessionsKeepOnlyWhatTheyMayReceive) {
  ClientRegistry r;
  int a = 0, b = 0;  // two broker handles
  auto info = [](const std::string& id, protocol::Role role) {
    ClientInfo i;
    i.client_id = id;
    i.role = role;
    i.cert.fingerprint[0] = 7;
    return i;
  };
  r.Add(&a, info("edgetrust-gateway", protocol::Role::kGateway));
  r.KeepOffline(&a, 1000);
  EXPECT_EQ(r.Find(&a), nullptr);
  const OfflineSession* away = r.FindOffline("edgetrust-gateway");
  ASSERT_NE(away, nullptr);
  EXPECT_EQ(away->role, protocol::Role::kGateway);
  EXPECT_EQ(away->since, 1000);
  EXPECT_EQ(away->fingerprint[0], 7);
  // Connected again: decided afresh, the offline entry is gone.
  r.Add(&b, info("edgetrust-gateway", protocol::Role::kGateway));
  EXPECT_EQ(r.FindOffline("edgetrust-gateway"), nullptr);

  // A takeover: the old handle ends while the new one of the same id is live — no entry.
  r.Add(&a, info("edgetrust-gateway", protocol::Role::kGateway));
  r.KeepOffline(&b, 1001);
  EXPECT_EQ(r.FindOffline("edgetrust-gateway"), nullptr);
  EXPECT_NE(r.Find(&a), nullptr);

  // A session being cut off (revoked, expired) keeps nothing.
  r.Find(&a)->cut_off = true;
  r.KeepOffline(&a, 1002);
  EXPECT_EQ(r.FindOffline("edgetrust-gateway"), nullptr);
  EXPECT_EQ(r.size(), 0u);

  r.Add(&a, info("thermo-1", protocol::Role::kDevice));
  r.KeepOffline(&a, 1003);
  r.Add(&b, info("thermo-2", protocol::Role::kDevice));
  r.KeepOffline(&b, 1004);
  EXPECT_EQ(r.offline_size(), 2u);
  r.ForgetOfflineIf([](const std::string& id, const OfflineSession&) { return id == "thermo-1"; });
  EXPECT_EQ(r.FindOffline("thermo-1"), nullptr);
  EXPECT_NE(r.FindOffline("thermo-2"), nullptr);
}

TEST(AccessRules, DeviceAndOperators) {
  ClientInfo dev;
  dev.client_id = "dev-1";
  dev.role = Role::kDevice;
  EXPECT_TRUE(MayAccess(dev, "et", Access::kPublish, "et/dev-1/up/t"));
  EXPECT_FALSE(MayAccess(dev, "et", Access::kPublish, "et/dev-2/up/t"));
  EXPECT_FALSE(MayAccess(dev, "et", Access::kSubscribe, "et/#"));
  EXPECT_FALSE(MayAccess(dev, "et", Access::kSubscribe, "$SYS/broker/edgetrust/#"));
  EXPECT_FALSE(MayAccess(dev, "et", Access::kPublish, "$CONTROL/edgetrust/v1"));
  dev.cut_off = true;
  EXPECT_FALSE(MayAccess(dev, "et", Access::kPublish, "et/dev-1/up/t"));

  ClientInfo admin;
  admin.client_id = "ops-admin";
  admin.role = Role::kAdmin;
  EXPECT_TRUE(MayAccess(admin, "et", Access::kSubscribe, "$SYS/broker/edgetrust/#"));
  EXPECT_TRUE(MayAccess(admin, "et", Access::kReceive, "$SYS/broker/edgetrust/connect/allowed"));
  EXPECT_FALSE(MayAccess(admin, "et", Access::kSubscribe, "$SYS/#"));
  EXPECT_TRUE(MayAccess(admin, "et", Access::kPublish, "$CONTROL/edgetrust/v1"));
}

TEST(ControlCommands, ParsesAndRefuses) {
  EXPECT_FALSE(ParseControlRequest("{").ok());
  EXPECT_FALSE(ParseControlRequest("[]").ok());
  EXPECT_FALSE(ParseControlRequest("{\"commands\":3}").ok());
  EXPECT_FALSE(ParseControlRequest(std::string(kMaxControlPayload + 1, ' ')).ok());
  auto r = ParseControlRequest(
      R"({"commands":[{"command":"kickDevice","device":"dev-1","correlationData":"c1"},
                      {"command":"kickDevice","device":"a/b"},
                      {"command":"kickFingerprint","fingerprint":"zz"},
                      {"command":"kickFingerprint","fingerprint":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"},
                      {"command":"reloadStore"}, {"command":"nope"}, 7]})");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 7u);
  using K = ControlCommand::Kind;
  EXPECT_EQ((*r)[0].kind, K::kKickDevice);
  EXPECT_EQ((*r)[0].correlation_data, "c1");
  EXPECT_EQ((*r)[1].kind, K::kInvalid);
  EXPECT_EQ((*r)[2].kind, K::kInvalid);
  EXPECT_EQ((*r)[3].kind, K::kKickFingerprint);
  EXPECT_EQ((*r)[4].kind, K::kReloadStore);
  EXPECT_EQ((*r)[5].kind, K::kInvalid);
  EXPECT_EQ((*r)[6].kind, K::kInvalid);

  ControlResponse resp;
  resp.Ok((*r)[0], {{"sessions", 1}});
  resp.Fail((*r)[1], "bad \xff utf8");
  auto j = nlohmann::json::parse(resp.Serialize());
  EXPECT_EQ(j["responses"][0]["correlationData"], "c1");
  EXPECT_TRUE(j["responses"][1].contains("error"));
}

}  // namespace
}  // namespace edgetrust::plugin
