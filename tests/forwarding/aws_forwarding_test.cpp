// The `aws-iot` upstream against a mosquitto configured like AWS IoT Core's door: mutual TLS,
// the certificate is the identity.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "forwarding_fixture.h"

namespace edgetrust::forwarding::test {

policies::Upstream AwsUpstream(const TestPki& pki, int port, int connections) {
  policies::Upstream u;
  u.name = "aws";
  u.kind = policies::UpstreamKind::kAwsIot;
  u.endpoint = "localhost:" + std::to_string(port);
  u.host = "localhost";
  u.port = static_cast<uint16_t>(port);
  u.tls = true;
  u.client_id = "edge-01";
  u.ca = pki.ca;
  u.cert = pki.client_cert;
  u.key = pki.client_key;
  u.topic = "dt/{site}/{device}/{channel}";
  u.down_topic = "cmd/{site}/{device}/{channel}";
  u.qos = 1;
  u.connections = connections;
  return u;
}

namespace {

using testing::Broker;
using testing::FreeLoopbackPort;

class AwsForwardingTest : public ForwardingTest {
 protected:
  void SetUp() override {
    ForwardingTest::SetUp();
    pki_ = MakeTestPki(tmp_.path());
    port_ = FreeLoopbackPort();
    observer_port_ = FreeLoopbackPort();
    broker_ = StartAwsLikeBroker(tmp_.path(), port_, observer_port_, pki_);
    observer_ = std::make_unique<Observer>(observer_port_, "dt/#");
  }

  TestPki pki_;
  int port_ = 0, observer_port_ = 0;
  Broker broker_;
  std::unique_ptr<Observer> observer_;
};

TEST_F(AwsForwardingTest, MutualTlsPoolLimitsAndDownlink) {
  CreateForwarder(MakePolicy({AwsUpstream(pki_, port_, 2)}, {{"thermostats", "aws"}}));
  ASSERT_TRUE(RunUntil([&] { return forwarder_->Counters("aws").connects == 2; }));
  const std::string log = broker_.Log();
  EXPECT_NE(log.find("as edge-01-0"), std::string::npos) << log;
  EXPECT_NE(log.find("as edge-01-1"), std::string::npos) << log;
  EXPECT_NE(log.find("u'edge-01'"), std::string::npos) << "certificate CN is the username";

  Submit("dev-1", "thermostats", "temp", Payload("dev-1", 0), 2);  // QoS 2: downgraded to 1
  Submit("dev-1", "thermostats", "temp", Payload("dev-1", 1), 2);
  Bytes big(128 * 1024 + 1, 'x');
  Submit("dev-1", "thermostats", "big", std::move(big), 1);  // over 128 KB: refused by us
  Submit("dev-2", "thermostats", "a/b/c/d/e/f", Payload("dev-2", 0), 1);  // 8 '/': refused
  Bytes max(128 * 1024, 'y');
  Submit("dev-2", "thermostats", "a/b/c/d/e", std::move(max), 1);  // at both limits: sent
  ASSERT_TRUE(RunUntil([&] {
    observer_->Poll();
    return observer_->messages().size() == 3 && forwarder_->QueueUsage("aws")->count == 0;
  }));
  RunFor(std::chrono::milliseconds(200));
  observer_->Poll();
  ASSERT_EQ(observer_->messages().size(), 3u);
  std::map<std::string, int> qos;
  for (const auto& m : observer_->messages()) {
    qos[m.topic] = m.qos;
    if (m.topic == "dt/edge-01/dev-2/a/b/c/d/e") {
      EXPECT_EQ(m.payload.size(), 128u * 1024);
    }
  }
  EXPECT_EQ(qos["dt/edge-01/dev-1/temp"], 1);
  EXPECT_EQ(qos.count("dt/edge-01/dev-2/a/b/c/d/e"), 1u);
  UpstreamCounters c = forwarder_->Counters("aws");
  EXPECT_EQ(c.qos_downgraded, 2u);
  EXPECT_EQ(c.limit_violations, 2u);
  EXPECT_EQ(c.acked, 3u);
  EXPECT_EQ(c.queued, 5u);

  ASSERT_LT(observer_->client().Publish("cmd/edge-01/dev-1/setpoint", "21.5", 1), 0x80);
  ASSERT_TRUE(RunUntil([&] { return downlinks_.size() == 1; }));
  EXPECT_EQ(downlinks_[0].device_id, "dev-1");
  EXPECT_EQ(downlinks_[0].channel, "setpoint");
  RunFor(std::chrono::milliseconds(200));
  EXPECT_EQ(downlinks_.size(), 1u) << "the pool must subscribe once, not once per connection";
}

TEST_F(AwsForwardingTest, NoClientCertificateNoConnection) {
  testing::TempDir elsewhere;
  auto other = MakeTestPki(elsewhere.path());  // same names, another CA: the broker does not trust it
  policies::Upstream stranger = AwsUpstream(pki_, port_, 1);
  stranger.cert = other.client_cert;
  stranger.key = other.client_key;
  stranger.ca = pki_.ca;
  CreateForwarder(MakePolicy({stranger}, {{"thermostats", "aws"}}));
  Submit("dev-1", "thermostats", "temp", Payload("dev-1", 0), 1);
  RunFor(std::chrono::milliseconds(1500));
  EXPECT_EQ(forwarder_->Counters("aws").connects, 0u);
  EXPECT_EQ(forwarder_->QueueUsage("aws")->count, 1u);
}

TEST_F(AwsForwardingTest, PublishRateIsLimitedPerConnection) {
  CreateForwarder(MakePolicy({AwsUpstream(pki_, port_, 1)}, {{"thermostats", "aws"}}));
  ASSERT_TRUE(RunUntil([&] { return forwarder_->Counters("aws").connects == 1; }));
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 250; ++i) Submit("dev-1", "thermostats", "t", Payload("dev-1", i), 1);
  ASSERT_TRUE(RunUntil([&] { return forwarder_->Counters("aws").acked == 250; },
                       std::chrono::seconds(10)));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // A full bucket of 100, then 100 per second: the other 150 take 1.5 s.
  EXPECT_GE(seconds, 1.4);
  EXPECT_LE(seconds, 3.5);
  observer_->Poll();
  int expect = 0;
  for (const auto& m : observer_->messages()) {
    EXPECT_EQ(ParsePayload(m.payload).second, expect++);
  }
  EXPECT_EQ(expect, 250);
}

}  // namespace
}  // namespace edgetrust::forwarding::test
