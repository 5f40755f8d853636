// Forwarding end to end with real processes: a site made by the real CLI, mosquitto with the
// edgetrust plugin, the real edgetrust-gateway, an enrolled device (TestClient with the
// operational certificate it obtained), and two plain local mosquittos standing in for the
// cloud. Up-links reach the routed upstream at its topic template, down-links come back to the
// device, a route switch by SIGHUP or by the admin API moves new messages without the device
// reconnecting (also through `edgetrust admin`), and messages an upstream could not take survive a
// SIGTERM in the durable outbox.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "edgetrust/common/bytes.h"
#include "edgetrust/pki/certificate.h"
#include "edgetrust/pki/key.h"
#include "edgetrust/testing/mqtt_client.h"
#include "edgetrust/testing/process.h"
#include "edgetrust/testing/site_fixture.h"
#include "gateway_fixture.h"

namespace edgetrust {
namespace {

using namespace std::chrono_literals;
using testing::Broker;
using testing::FreeLoopbackPort;
using testing::GatewaySite;
using testing::ReceivedMessage;
using testing::SiteFixture;
using testing::TestClient;
using testing::UpstreamBroker;
using testing::WaitUntil;
using testing::WriteFile;
using Device = testing::EnrollingDevice;
using Upstream = UpstreamBroker;

constexpr char kSite[] = "edge-fwd";

struct Site {
  GatewaySite gw;
  Upstream hq1, hq2;
};
Site* g_site = nullptr;

std::string Policy(const SiteFixture& s, const std::string& route, const std::string& extra = "") {
  return testing::ForwardingPolicy(s, route, {{"hq1", g_site->hq1.port}, {"hq2", g_site->hq2.port}},
                                   extra);
}

// A plain client on an upstream broker: what the cloud sees, and how it talks back.
std::unique_ptr<TestClient> Cloud(const Upstream& u, const std::string& name) {
  auto c = std::make_unique<TestClient>(name);
  EXPECT_EQ(c->Connect(u.port, {}), 0);
  EXPECT_EQ(c->Subscribe("sites/#", 1), 1);
  return c;
}

std::optional<ReceivedMessage> WaitTopic(TestClient& c, const std::string& topic,
                                         std::chrono::milliseconds wait = 10s) {
  auto deadline = std::chrono::steady_clock::now() + wait;
  while (std::chrono::steady_clock::now() < deadline) {
    auto m = c.WaitMessage(100ms);
    if (m && m->topic == topic) return m;
  }
  return std::nullopt;
}

class GatewayForwardTest : public testing::GatewayTestBase {
 protected:
  static void SetUpTestSuite() {
    g_site = new Site();
    GatewaySite& s = g_site->gw;
    s.fx = SiteFixture::Create(s.tmp, {.site_id = kSite,
                                       .manufacturers = {{.name = "acme", .model = "thermo-1",
                                                          .count = 6}}});
    for (Upstream* u : {&g_site->hq1, &g_site->hq2}) {
      u->dir = s.tmp / ("hq-" + std::to_string(u == &g_site->hq1 ? 1 : 2));
      mkdir(u->dir.c_str(), 0755);
      u->port = FreeLoopbackPort();
      u->Start();
    }
    WriteFile(s.fx.policy, Policy(s.fx, "hq1"));
    s.broker = Broker::Start(s.tmp.path(), s.fx.MosquittoConfig(), {s.fx.port});
  }
  static void TearDownTestSuite() {
    delete g_site;
    g_site = nullptr;
  }

  GatewaySite& gateway_site() override { return g_site->gw; }
};

TEST_F(GatewayForwardTest, UpDownAndRouteSwitchWithoutReconnecting) {
  WriteFile(site().policy, Policy(site(), "hq1"));
  auto cloud1 = Cloud(g_site->hq1, "cloud-1");
  auto cloud2 = Cloud(g_site->hq2, "cloud-2");
  StartGateway();
  ASSERT_TRUE(WaitUntil([&] { return Logged("upstream_up upstream=hq1"); }, 10s)) << gateway_.Log();

  Device dev(site(), "acme-000001");
  ASSERT_NO_FATAL_FAILURE(dev.Enroll());

  // Up: et/{id}/up/{channel…} → sites/{site}/{device}/{channel…} on the routed upstream.
  ASSERT_EQ(dev.Up("telemetry", "t=21.5"), 0);
  auto m = WaitTopic(*cloud1, std::string("sites/") + kSite + "/acme-000001/telemetry");
  ASSERT_TRUE(m.has_value()) << gateway_.Log();
  EXPECT_EQ(m->payload, "t=21.5");
  ASSERT_EQ(dev.Up("env/inside", std::string("\x00\x01\xff", 3)), 0);
  m = WaitTopic(*cloud1, std::string("sites/") + kSite + "/acme-000001/env/inside");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->payload, std::string("\x00\x01\xff", 3));

  // Down: the cloud's cmd/{site}/{device}/{channel…} → et/{id}/down/{channel…}.
  ASSERT_EQ(cloud1->Publish(std::string("cmd/") + kSite + "/acme-000001/led/set", "on", 1), 0);
  m = WaitTopic(dev.client(), "et/acme-000001/down/led/set");
  ASSERT_TRUE(m.has_value()) << gateway_.Log();
  EXPECT_EQ(m->payload, "on");
  // A down-link for a name that is no device id goes nowhere, and breaks nothing.
  ASSERT_EQ(cloud1->Publish(std::string("cmd/") + kSite + "/bad%id/x", "no", 1), 0);

  // Route switch: new messages go to hq2; the device keeps its connection.
  WriteFile(site().policy, Policy(site(), "hq2"));
  gateway_.Signal(SIGHUP);
  ASSERT_TRUE(WaitUntil([&] { return Logged("policy_reloaded"); }, 10s)) << gateway_.Log();
  ASSERT_TRUE(WaitUntil([&] { return Logged("upstream_up upstream=hq2"); }, 10s)) << gateway_.Log();
  ASSERT_EQ(dev.Up("telemetry", "after-switch"), 0);
  m = WaitTopic(*cloud2, std::string("sites/") + kSite + "/acme-000001/telemetry");
  ASSERT_TRUE(m.has_value()) << gateway_.Log();
  EXPECT_EQ(m->payload, "after-switch");
  EXPECT_FALSE(WaitTopic(*cloud1, std::string("sites/") + kSite + "/acme-000001/telemetry", 500ms))
      << "the old route still got a message after the switch";
  EXPECT_TRUE(dev.client().connected());
  EXPECT_FALSE(dev.client().WaitDisconnected(10ms));

  ASSERT_EQ(cloud2->Publish(std::string("cmd/") + kSite + "/acme-000001/fan", "high", 1), 0);
  m = WaitTopic(dev.client(), "et/acme-000001/down/fan");
  ASSERT_TRUE(m.has_value()) << gateway_.Log();
  EXPECT_EQ(m->payload, "high");

  // A policy whose route names no upstream is refused; the running routes stay.
  WriteFile(site().policy, Policy(site(), "nowhere"));
  gateway_.Signal(SIGHUP);
  ASSERT_TRUE(WaitUntil([&] { return Logged("policy_reload_refused"); }, 10s)) << gateway_.Log();
  ASSERT_EQ(dev.Up("telemetry", "still-hq2"), 0);
  m = WaitTopic(*cloud2, std::string("sites/") + kSite + "/acme-000001/telemetry");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->payload, "still-hq2");
}

// The admin API: a request on et/_admin/v1/req from the policy's admin principal is answered on
// et/_admin/v1/res, one response per command: reloadPolicy switches the route as SIGHUP does
// (and says why a policy is refused), getStatus reports the upstreams; a device cannot send
// commands at all.
TEST_F(GatewayForwardTest, AdminApiReloadsThePolicyAndReportsStatus) {
  WriteFile(site().policy, Policy(site(), "hq1"));
  auto cloud1 = Cloud(g_site->hq1, "cloud-1a");
  auto cloud2 = Cloud(g_site->hq2, "cloud-2a");
  StartGateway();
  ASSERT_TRUE(WaitUntil([&] { return Logged("upstream_up upstream=hq1"); }, 10s)) << gateway_.Log();
  Device dev(site(), "acme-000003");
  ASSERT_NO_FATAL_FAILURE(dev.Enroll());
  ASSERT_EQ(dev.Up("telemetry", "before"), 0);
  ASSERT_TRUE(WaitTopic(*cloud1, std::string("sites/") + kSite + "/acme-000003/telemetry"));

  TestClient admin("ops-admin");
  ASSERT_EQ(admin.Connect(site().port, site().AdminTls()), 0);
  ASSERT_EQ(admin.Subscribe("et/_admin/v1/res", 1), 1);
  auto ask = [&](const std::string& request) -> nlohmann::json {
    EXPECT_EQ(admin.Publish("et/_admin/v1/req", request, 1), 0);
    auto m = WaitTopic(admin, "et/_admin/v1/res");
    if (!m) return nullptr;
    auto j = nlohmann::json::parse(m->payload, nullptr, false);
    if (j.is_discarded() || !j.contains("responses") || !j["responses"].is_array()) return nullptr;
    return j["responses"];
  };

  WriteFile(site().policy, Policy(site(), "hq2"));
  nlohmann::json r = ask(R"({"commands":[{"command":"reloadPolicy","correlationData":"r1"},)"
                         R"({"command":"getStatus"},{"command":"launchRockets"},{"nocommand":1}]})");
  ASSERT_TRUE(r.is_array()) << gateway_.Log();
  ASSERT_EQ(r.size(), 4u) << r.dump();
  EXPECT_EQ(r[0]["command"], "reloadPolicy");
  EXPECT_EQ(r[0]["correlationData"], "r1");
  EXPECT_EQ(r[0]["data"]["routes"]["thermostats"], "hq2") << r[0].dump();
  EXPECT_EQ(r[1]["command"], "getStatus");
  const nlohmann::json& status = r[1]["data"];
  EXPECT_EQ(status["site"], kSite);
  EXPECT_EQ(status["broker_connected"], true);
  EXPECT_EQ(status["policy"]["routes"]["thermostats"], "hq2");
  EXPECT_GE(status["upstreams"]["hq1"]["acked"].get<uint64_t>(), 1u) << status.dump();
  EXPECT_EQ(status["upstreams"]["hq1"]["outbox"]["messages"], 0) << status.dump();
  EXPECT_EQ(r[2]["error"], "Unknown command");
  EXPECT_EQ(r[3]["error"], "missing command");
  EXPECT_TRUE(Logged("policy_reloaded"));

  // The new route takes the next message, the device still connected.
  ASSERT_TRUE(WaitUntil([&] { return Logged("upstream_up upstream=hq2"); }, 10s)) << gateway_.Log();
  ASSERT_EQ(dev.Up("telemetry", "after"), 0);
  auto m = WaitTopic(*cloud2, std::string("sites/") + kSite + "/acme-000003/telemetry");
  ASSERT_TRUE(m.has_value()) << gateway_.Log();
  EXPECT_EQ(m->payload, "after");

  // A policy that does not load is refused with its reason; the running one stays.
  WriteFile(site().policy, Policy(site(), "nowhere"));
  r = ask(R"({"commands":[{"command":"reloadPolicy"}]})");
  ASSERT_EQ(r.size(), 1u) << gateway_.Log();
  ASSERT_TRUE(r[0].contains("error")) << r.dump();
  EXPECT_NE(r[0]["error"].get<std::string>().find("nowhere"), std::string::npos) << r.dump();
  ASSERT_EQ(dev.Up("telemetry", "still-hq2"), 0);
  m = WaitTopic(*cloud2, std::string("sites/") + kSite + "/acme-000003/telemetry");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->payload, "still-hq2");

  // A request that is not JSON gets one error; a device may not send requests at all.
  r = ask("reload please");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0]["error"], "Payload not valid JSON");
  EXPECT_GE(dev.client().Publish("et/_admin/v1/req", R"({"commands":[{"command":"getStatus"}]})", 1),
            0x80);
  EXPECT_FALSE(WaitTopic(admin, "et/_admin/v1/res", 1s)) << "a device's request was answered";
  EXPECT_TRUE(gateway_.running());
}

// The same API as an operator uses it: `edgetrust admin status | reload --dir SITE`.
TEST_F(GatewayForwardTest, CliAdminCommandsAskTheRunningGateway) {
  WriteFile(site().policy, Policy(site(), "hq1"));
  StartGateway();
  ASSERT_TRUE(WaitUntil([&] { return Logged("upstream_up upstream=hq1"); }, 10s)) << gateway_.Log();
  auto cli = [&](std::vector<std::string> args) {
    args.insert(args.begin(), testing::BinPath("edgetrust"));
    return testing::RunCommand(args, 30s);
  };

  testing::CommandResult r = cli({"admin", "status", "--dir", site().dir});
  ASSERT_EQ(r.exit_code, 0) << r.err << gateway_.Log();
  nlohmann::json status = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(status.is_discarded()) << r.out;
  EXPECT_EQ(status["site"], kSite);
  EXPECT_EQ(status["policy"]["routes"]["thermostats"], "hq1");
  EXPECT_EQ(status["upstreams"]["hq1"]["connected"], true) << r.out;

  WriteFile(site().policy, Policy(site(), "hq2"));
  r = cli({"admin", "reload", "--dir", site().dir});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("thermostats -> hq2"), std::string::npos) << r.out;
  EXPECT_TRUE(Logged("policy_reloaded"));

  // Refused with the gateway's reason; exit 1.
  WriteFile(site().policy, Policy(site(), "nowhere"));
  r = cli({"admin", "reload", "--dir", site().dir});
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.err.find("the gateway refused reloadPolicy"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("nowhere"), std::string::npos) << r.err;

  // Nobody listening, and no gateway to answer: one clear line each, exit 1.
  r = cli({"admin", "status", "--dir", site().dir, "--port", std::to_string(FreeLoopbackPort())});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot connect to the site broker"), std::string::npos) << r.err;
  gateway_.Signal(SIGTERM);
  ASSERT_TRUE(gateway_.Wait(10s).has_value());
  r = cli({"admin", "status", "--dir", site().dir, "--timeout", "1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no answer on et/_admin/v1/res"), std::string::npos) << r.err;

  // A site-CA certificate whose CN is no admin principal: the broker's refusal, named as such.
  const std::string other = g_site->gw.tmp / "not-an-admin";
  std::filesystem::create_directories(other);
  for (const char* f : {"site-ca.pem", "mosquitto.conf", "policy.yaml"}) {
    std::filesystem::copy_file(site().dir + "/" + f, other + "/" + f);
  }
  auto ca = pki::LoadCertificateFile(site().site_ca_cert);
  auto ca_key = pki::LoadPrivateKeyFile(site().site_ca_key);
  auto key = pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256);
  ASSERT_TRUE(ca.ok() && ca_key.ok() && key.ok());
  pki::IssueRequest req;
  req.subject.cn = "ops-intruder";
  req.public_key_der = *key->PublicKeyDer();
  req.not_before = UnixNow() - 60;
  req.not_after = UnixNow() + 3600;
  req.extended_usage = pki::ExtendedUsage::kClientAuth;
  auto cert = pki::IssueCertificate(*ca, *ca_key, req);
  ASSERT_TRUE(cert.ok());
  ASSERT_TRUE(pki::WriteCertificateFile(other + "/admin.pem", pki::CertificateToPem(cert->der), false).ok());
  ASSERT_TRUE(pki::WritePrivateKeyFile(other + "/admin.key", *key, false).ok());
  r = cli({"admin", "status", "--dir", other});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("the site broker refused ops-intruder: Not authorized"), std::string::npos)
      << r.err;
}

TEST_F(GatewayForwardTest, QueuedMessagesSurviveSigtermAndReachTheUpstreamAfterARestart) {
  WriteFile(site().policy, Policy(site(), "hq2"));
  StartGateway();
  ASSERT_TRUE(WaitUntil([&] { return Logged("upstream_up upstream=hq2"); }, 10s)) << gateway_.Log();
  Device dev(site(), "acme-000002");
  ASSERT_NO_FATAL_FAILURE(dev.Enroll());

  // The upstream goes away; what the device sends waits in the outbox.
  g_site->hq2.broker.process().Stop();
  ASSERT_TRUE(WaitUntil([&] { return Logged("upstream_down upstream=hq2"); }, 10s)) << gateway_.Log();
  for (int i = 0; i < 5; ++i) ASSERT_EQ(dev.Up("seq", "m" + std::to_string(i)), 0);
  gateway_.Signal(SIGTERM);
  ASSERT_EQ(gateway_.Wait(20s), std::optional<int>(0)) << gateway_.Log();
  // Kept in the outbox; any the gateway had not read yet wait in its broker session instead.
  EXPECT_TRUE(Logged("outbox_kept upstream=hq2 messages=")) << gateway_.Log();

  // Upstream back, then the gateway: the five arrive, in order.
  g_site->hq2.Start();
  auto cloud = Cloud(g_site->hq2, "cloud-2b");
  StartGateway();
  for (int i = 0; i < 5; ++i) {
    auto m = WaitTopic(*cloud, std::string("sites/") + kSite + "/acme-000002/seq");
    ASSERT_TRUE(m.has_value()) << "message " << i << "\n" << gateway_.Log();
    EXPECT_EQ(m->payload, "m" + std::to_string(i));
  }
}

TEST_F(GatewayForwardTest, OnFullRefuseIsLoggedAndNothingBeyondTheLimitIsQueued) {
  // 4 KiB of queue (the least a policy may say), upstream down: the first message fits, the
  // next ones are refused.
  WriteFile(site().policy,
            Policy(site(), "hq1", "queue: { max_bytes: 4KiB, on_full: refuse }\n"));
  g_site->hq1.broker.process().Stop();
  StartGateway();
  Device dev(site(), "acme-000003");
  ASSERT_NO_FATAL_FAILURE(dev.Enroll());
  ASSERT_EQ(dev.Up("t", std::string(2500, 'a')), 0);
  ASSERT_EQ(dev.Up("t", std::string(2500, 'b')), 0);
  ASSERT_EQ(dev.Up("t", std::string(2500, 'c')), 0);
  ASSERT_TRUE(WaitUntil([&] { return Logged("queue_full_refused"); }, 10s))
      << gateway_.Log();
  gateway_.Signal(SIGTERM);
  ASSERT_EQ(gateway_.Wait(20s), std::optional<int>(0)) << gateway_.Log();
  EXPECT_TRUE(Logged("outbox_kept upstream=hq1 messages=1")) << gateway_.Log();

  g_site->hq1.Start();
  auto cloud = Cloud(g_site->hq1, "cloud-1b");
  WriteFile(site().policy, Policy(site(), "hq1"));
  StartGateway();
  auto m = WaitTopic(*cloud, std::string("sites/") + kSite + "/acme-000003/t");
  ASSERT_TRUE(m.has_value()) << gateway_.Log();
  EXPECT_EQ(m->payload, std::string(2500, 'a'));
  EXPECT_FALSE(WaitTopic(*cloud, std::string("sites/") + kSite + "/acme-000003/t", 500ms));
}

TEST_F(GatewayForwardTest, WhatDevicesSendWhileTheGatewayIsStoppedWaitsInItsBrokerSession) {
  // The gateway's session outlives its connection (clean start off, session expiry): what
  // devices publish meanwhile — and were acknowledged for — is queued by the broker for it.
  WriteFile(site().policy, Policy(site(), "hq1"));
  auto cloud = Cloud(g_site->hq1, "cloud-1c");
  StartGateway();
  ASSERT_TRUE(WaitUntil([&] { return Logged("upstream_up upstream=hq1"); }, 10s)) << gateway_.Log();
  Device dev(site(), "acme-000004");
  ASSERT_NO_FATAL_FAILURE(dev.Enroll());
  gateway_.Signal(SIGTERM);
  ASSERT_EQ(gateway_.Wait(20s), std::optional<int>(0)) << gateway_.Log();

  for (int i = 0; i < 5; ++i) ASSERT_EQ(dev.Up("offline", "o" + std::to_string(i)), 0);
  StartGateway();
  for (int i = 0; i < 5; ++i) {
    auto m = WaitTopic(*cloud, std::string("sites/") + kSite + "/acme-000004/offline");
    ASSERT_TRUE(m.has_value()) << "message " << i << " published while the gateway was away\n"
                               << gateway_.Log();
    EXPECT_EQ(m->payload, "o" + std::to_string(i));
  }
}

TEST_F(GatewayForwardTest, AnAwsDeviceIdentityEndsWithTheDevice) {
  // "AWS" with identity device: mutual TLS with the device's cloud certificate (issued by the
  // site CA, CN = thing name) and a thing policy on the CN. The site broker's own server
  // certificate stands in for the endpoint's.
  const std::string dir = gateway_site().tmp / "aws";
  mkdir(dir.c_str(), 0755);
  const std::string acl = dir + "/thing-policy.acl";
  WriteFile(acl, std::string("pattern write dt/") + kSite + "/%u/#\n");
  chmod(acl.c_str(), 0644);
  const int port = FreeLoopbackPort(), observer_port = FreeLoopbackPort();
  Broker aws = Broker::Start(
      dir,
      "per_listener_settings true\nlistener " + std::to_string(port) + " 127.0.0.1\ncafile " +
          site().site_ca_cert + "\ncertfile " + site().broker_cert + "\nkeyfile " + site().broker_key +
          "\nrequire_certificate true\nuse_identity_as_username true\nallow_anonymous false\n"
          "acl_file " + acl + "\nlistener " + std::to_string(observer_port) +
          " 127.0.0.1\nallow_anonymous true\n",
      {port, observer_port});
  TestClient observer("aws-observer");
  ASSERT_EQ(observer.Connect(observer_port, {}), 0);
  ASSERT_EQ(observer.Subscribe("dt/#", 1), 1);

  WriteFile(site().policy,
            Policy(site(), "aws",
                   "  aws: { kind: aws-iot, endpoint: \"localhost:" + std::to_string(port) +
                       "\", identity: device, ca: " + site().site_ca_cert +
                       ", topic: \"dt/{site}/{device}/{channel}\", qos: 1 }\n"));
  StartGateway();
  const std::string id = "acme-000005";
  Device dev(site(), id);
  ASSERT_NO_FATAL_FAILURE(dev.Enroll());
  ASSERT_EQ(dev.Up("telemetry", "t=1"), 0);
  const std::string topic = std::string("dt/") + kSite + "/" + id + "/telemetry";
  auto m = WaitTopic(observer, topic);
  ASSERT_TRUE(m.has_value()) << gateway_.Log() << aws.Log();
  EXPECT_EQ(m->payload, "t=1");
  EXPECT_TRUE(Logged("cloud_cert_issued upstream=aws device=" + id)) << gateway_.Log();
  const std::string key = site().dir + "/cloud/aws/" + id + ".key";
  struct stat st {};
  ASSERT_EQ(stat(key.c_str(), &st), 0) << "the cloud key is kept beside the store";
  const auto cloud_cert = pki::LoadCertificateFile(site().dir + "/cloud/aws/" + id + ".pem");
  ASSERT_TRUE(cloud_cert.ok());

  // End of life by the operator's CLI, straight into the store while the gateway runs.
  const std::string out = SiteFixture::Cli(
      {"revoke", "--store", site().store, "--device", id, "--all", "--reason", "scrapped"});
  EXPECT_NE(out.find(HexEncode(cloud_cert->fingerprint) + "  cloud"), std::string::npos) << out;
  EXPECT_NE(out.find("revoke them there as well"), std::string::npos) << out;
  ASSERT_TRUE(WaitUntil([&] { return Logged("cloud_identity_destroyed device=" + id); }, 10s))
      << gateway_.Log();
  EXPECT_TRUE(Logged("cert=" + HexEncode(cloud_cert->fingerprint))) << "named for the cloud's revocation";
  EXPECT_NE(stat(key.c_str(), &st), 0) << "the key of a scrapped device is destroyed";
  // Its cloud connection is gone too: the emulator saw the thing leave.
  ASSERT_TRUE(WaitUntil([&] { return aws.Log().find("Client " + id + " disconnected") != std::string::npos ||
                                     aws.Log().find("Client " + id + " closed its connection") !=
                                         std::string::npos; },
                        10s))
      << aws.Log();

  // A key that cannot be removed now is not forgotten: the gateway logs it and tries again
  // until it is gone. (unlink fails on a directory, even for root.)
  const std::string id2 = "acme-000006";
  Device dev2(site(), id2);
  ASSERT_NO_FATAL_FAILURE(dev2.Enroll());
  ASSERT_EQ(dev2.Up("telemetry", "t=2"), 0);
  ASSERT_TRUE(WaitTopic(observer, std::string("dt/") + kSite + "/" + id2 + "/telemetry").has_value())
      << gateway_.Log();
  const std::string key2 = site().dir + "/cloud/aws/" + id2 + ".key";
  const std::string pem2 = site().dir + "/cloud/aws/" + id2 + ".pem";
  ASSERT_EQ(unlink(key2.c_str()), 0);
  ASSERT_EQ(mkdir(key2.c_str(), 0700), 0);
  SiteFixture::Cli({"revoke", "--store", site().store, "--device", id2, "--all"});
  ASSERT_TRUE(WaitUntil([&] { return Logged("revocation_not_applied"); }, 10s)) << gateway_.Log();
  EXPECT_FALSE(Logged("cloud_identity_destroyed device=" + id2));
  EXPECT_EQ(stat(pem2.c_str(), &st), 0) << "nothing half-done: the pair goes only with its key";
  ASSERT_EQ(rmdir(key2.c_str()), 0);
  ASSERT_TRUE(WaitUntil([&] { return Logged("cloud_identity_destroyed device=" + id2); }, 10s))
      << gateway_.Log();
  EXPECT_NE(stat(pem2.c_str(), &st), 0);
}

}  // namespace
}  // namespace edgetrust
