// Forwarding end to end with real processes: a site made by the real CLI, mosquitto with the
// edgetrust plugin, the real edgetrust-gateway, an enrolled device (TestClient with the
// operational certificate it obtained), and two plain local mosquittos standing in for the
// cloud. Up-links reach the routed upstream at its topic template, down-links come back to the
// device, a route switch by SIGHUP moves new messages without the device reconnecting, and
// messages an upstream could not take survive a SIGTERM in the durable outbox.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

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

std::string Policy(const SiteFixture& s, const std::string& route, const std::string& queue = "") {
  return testing::ForwardingPolicy(s, route, {{"hq1", g_site->hq1.port}, {"hq2", g_site->hq2.port}},
                                   queue);
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
                                                          .count = 4}}});
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

}  // namespace
}  // namespace edgetrust
