// Unit tests of the gateway's small pieces: command line, rate limiter, CSR pre-check.
#include <gtest/gtest.h>

#include <thread>

#include "edgetrust/gateway/enrollment_service.h"
#include "edgetrust/gateway/options.h"
#include "edgetrust/gateway/rate_limiter.h"
#include "edgetrust/pki/key.h"
#include "edgetrust/protocol/messages.h"

namespace edgetrust::gateway {
namespace {

std::vector<std::string> Base() {
  return {"--policy", "p.yaml", "--store", "s", "--broker", "mqtts://127.0.0.1:8884",
          "--ca", "ca.pem", "--cert", "g.pem", "--key", "g.key"};
}

TEST(GatewayOptions, ParsesTheDocumentedFlags) {
  auto args = Base();
  args.insert(args.end(), {"--site-ca", "x.pem", "--site-ca-key", "x.key", "--log-level", "warn",
                           "--rate", "3/7", "--request-queue", "16"});
  auto o = ParseGatewayOptions(args);
  ASSERT_TRUE(o.ok()) << o.error().ToString();
  EXPECT_EQ(o->broker_host, "127.0.0.1");
  EXPECT_EQ(o->broker_port, 8884);
  EXPECT_EQ(o->site_ca_key_file, "x.key");
  EXPECT_EQ(o->log_level, LogLevel::kWarn);
  EXPECT_EQ(o->rate_burst, 3);
  EXPECT_EQ(o->rate_window_seconds, 7);
  EXPECT_EQ(o->request_queue, 16);
  auto defaults = ParseGatewayOptions(Base());
  ASSERT_TRUE(defaults.ok()) << defaults.error().ToString();
  EXPECT_EQ(defaults->request_queue, 2048);
  auto v6 = Base();
  v6[5] = "mqtts://[::1]";
  ASSERT_TRUE(ParseGatewayOptions(v6).ok());
  EXPECT_EQ(ParseGatewayOptions(v6)->broker_host, "::1");
  EXPECT_EQ(ParseGatewayOptions(v6)->broker_port, 8883);
}

TEST(GatewayOptions, RefusesBadInput) {
  for (auto [i, bad] : std::vector<std::pair<int, std::string>>{
           {5, "mqtt://127.0.0.1"}, {5, "mqtts://:1"}, {5, "mqtts://h:99999"}, {5, "mqtts://[::1"}}) {
    auto a = Base();
    a[i] = bad;
    EXPECT_FALSE(ParseGatewayOptions(a).ok()) << bad;
  }
  auto a = Base();
  a.resize(10);  // no --key
  EXPECT_FALSE(ParseGatewayOptions(a).ok());
  a = Base();
  a.push_back("--bogus");
  EXPECT_FALSE(ParseGatewayOptions(a).ok());
  a = Base();
  a.insert(a.end(), {"--rate", "5"});
  EXPECT_FALSE(ParseGatewayOptions(a).ok());
  for (const char* n : {"0", "-1", "many", "", "10001"}) {
    a = Base();
    a.insert(a.end(), {"--request-queue", n});
    EXPECT_FALSE(ParseGatewayOptions(a).ok()) << n;
  }
  EXPECT_NE(GatewayUsage().find("site-ca.key beside the policy"), std::string::npos);
}

TEST(RateLimiter, BurstThenRefillPerKey) {
  RateLimiter r(5, 10);
  for (int i = 0; i < 5; i++) EXPECT_TRUE(r.Allow("a", 1000));
  EXPECT_FALSE(r.Allow("a", 1000));
  EXPECT_TRUE(r.Allow("b", 1000));          // buckets are per device
  EXPECT_FALSE(r.Allow("a", 2999));         // one token takes 2 s
  EXPECT_TRUE(r.Allow("a", 3000));
  EXPECT_FALSE(r.Allow("a", 3000));
  r.Prune(3000);
  EXPECT_EQ(r.size(), 1u);                  // b is full again and forgotten; a is not
  r.Prune(100000);
  EXPECT_EQ(r.size(), 0u);
}

// CheckCsr runs on a thread of the gateway's own, ahead of the transaction: it must leave exactly what
// pki::ParseCsrDer says of the request's CSR, and leave alone what Handle refuses by itself.
DeviceRequest RequestWithCsr(protocol::TopicKind kind, Bytes csr) {
  protocol::EnrollRequest m;
  m.rid = "r1";
  m.csr = std::move(csr);
  m.birth = Bytes{0x30, 0x00};
  DeviceRequest r;
  r.kind = kind;
  r.device_id = "acme-000001";
  r.payload = protocol::EncodeEnrollRequest(m);
  return r;
}

TEST(CheckCsr, KeepsTheVerdictOfTheSelfSignatureCheck) {
  auto key = pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256);
  ASSERT_TRUE(key.ok());
  auto csr = pki::CreateCsr(*key, {.cn = "acme-000001"});
  ASSERT_TRUE(csr.ok());

  for (auto kind : {protocol::TopicKind::kEnrollReq, protocol::TopicKind::kCertReq}) {
    DeviceRequest good = RequestWithCsr(kind, *csr);
    std::thread([&] { CheckCsr(good); }).join();  // as on the gateway's checking thread
    ASSERT_TRUE(good.csr.has_value());
    ASSERT_TRUE(good.csr->ok()) << good.csr->error().ToString();
    EXPECT_EQ((*good.csr)->subject.cn, "acme-000001");
    EXPECT_EQ((*good.csr)->public_key_der, *key->PublicKeyDer());
  }

  Bytes forged = *csr;
  forged[forged.size() - 3] ^= 0x01;  // inside the signature
  DeviceRequest bad = RequestWithCsr(protocol::TopicKind::kEnrollReq, forged);
  CheckCsr(bad);
  ASSERT_TRUE(bad.csr.has_value());
  EXPECT_FALSE(bad.csr->ok());

  DeviceRequest junk = RequestWithCsr(protocol::TopicKind::kEnrollReq, Bytes{1, 2, 3});
  CheckCsr(junk);
  ASSERT_TRUE(junk.csr.has_value());
  EXPECT_FALSE(junk.csr->ok());
}

TEST(CheckCsr, LeavesWhatHandleRefusesOrNeverChecks) {
  DeviceRequest undecodable;
  undecodable.kind = protocol::TopicKind::kEnrollReq;
  undecodable.payload = Bytes{0xc1, 0xff, 0x00};
  CheckCsr(undecodable);
  EXPECT_FALSE(undecodable.csr.has_value());

  DeviceRequest state = RequestWithCsr(protocol::TopicKind::kState, Bytes{1});
  CheckCsr(state);
  EXPECT_FALSE(state.csr.has_value());

  DeviceRequest huge = RequestWithCsr(protocol::TopicKind::kEnrollReq,
                                      Bytes(protocol::kMaxEnrollPayloadBytes, 0x30));
  CheckCsr(huge);
  EXPECT_FALSE(huge.csr.has_value());
}

// A repeat answered from memory needs no CSR check; anything else does.
TEST(EnrollmentService, RemembersOnlyTheSameDeviceKindAndRid) {
  EnrollmentService service;
  DeviceRequest req = RequestWithCsr(protocol::TopicKind::kEnrollReq, Bytes{1});
  EXPECT_FALSE(service.Remembers(req));
  service.Remember(req, "r1", Bytes{0x30, 0x00});
  EXPECT_TRUE(service.Remembers(req));

  DeviceRequest renewal = RequestWithCsr(protocol::TopicKind::kCertReq, Bytes{1});
  EXPECT_FALSE(service.Remembers(renewal));
  DeviceRequest other_device = req;
  other_device.device_id = "acme-000002";
  EXPECT_FALSE(service.Remembers(other_device));
  protocol::EnrollRequest m = *protocol::DecodeEnrollRequest(req.payload);
  m.rid = "r2";
  DeviceRequest other_rid = req;
  other_rid.payload = protocol::EncodeEnrollRequest(m);
  EXPECT_FALSE(service.Remembers(other_rid));
  DeviceRequest junk = req;
  junk.payload = Bytes{0xc1};
  EXPECT_FALSE(service.Remembers(junk));
}

}  // namespace
}  // namespace edgetrust::gateway
