// The `azure-iot-hub` upstream against a mosquitto whose test plugin checks logins as IoT Hub
// does (username format and SAS signature from the derived device key), and the route switch
// from an AWS-like to this Azure-like broker.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "edgetrust/forwarding/azure_sas.h"
#include "forwarding_fixture.h"

namespace edgetrust::forwarding::test {

policies::Upstream AwsUpstream(const TestPki& pki, int port, int connections);

namespace {

using testing::Broker;
using testing::CountOf;
using testing::FreeLoopbackPort;

constexpr const char* kHub = "testhub.azure-devices.net";
constexpr const char* kGroupKey = "c2VjcmV0IGdyb3VwIGtleSBvZiAzMiBieXRlcyEhIQ==";

class AzureForwardingTest : public ForwardingTest {
 protected:
  void SetUp() override {
    ForwardingTest::SetUp();
    pki_ = MakeTestPki(tmp_.path());
    port_ = FreeLoopbackPort();
    observer_port_ = FreeLoopbackPort();
    broker_ = StartAzureLikeBroker(tmp_.path(), port_, observer_port_, pki_, kHub, kGroupKey);
    observer_ = std::make_unique<Observer>(observer_port_, "devices/+/messages/events/#", 1);
    testing::WriteFile(tmp_ / "group.key", std::string(kGroupKey) + "\n");
  }

  policies::Upstream Azure(const std::string& key_file) {
    policies::Upstream u;
    u.name = "azure";
    u.kind = policies::UpstreamKind::kAzureIotHub;
    u.hostname = kHub;
    u.host = "localhost";  // the test hub; the SAS and username still name `hostname`
    u.port = static_cast<uint16_t>(port_);
    u.tls = true;
    u.ca = pki_.ca;
    u.group_key_file = key_file;
    u.identity = policies::UpstreamIdentity::kDevice;
    u.qos = 1;
    u.protocol = 4;
    return u;
  }

  TestPki pki_;
  int port_ = 0, observer_port_ = 0;
  Broker broker_;
  std::unique_ptr<Observer> observer_;
};

TEST_F(AzureForwardingTest, PerDeviceSasTelemetryCloudToDeviceAndIdleClose) {
  ForwarderOptions options;
  options.tuning.azure_idle = std::chrono::milliseconds(800);
  CreateForwarder(MakePolicy({Azure(tmp_ / "group.key")}, {{"meters", "azure"}}), options);
  Submit("dev-1", "meters", "temp/in", Payload("dev-1", 0), 1);
  Submit("dev-2", "meters", "hum", Payload("dev-2", 0), 2);  // IoT Hub: QoS 1 at most
  Submit("dev-1", "meters", "temp/in", Payload("dev-1", 1), 1);
  ASSERT_TRUE(RunUntil([&] {
    observer_->Poll();
    return observer_->messages().size() == 3;
  }));
  // In order per device; dev-2 has its own connection and may overtake dev-1.
  std::vector<std::string> dev1, dev2;
  for (const auto& m : observer_->messages()) {
    (m.topic.find("dev-1") != std::string::npos ? dev1 : dev2).push_back(m.topic + " " + m.payload);
  }
  EXPECT_EQ(dev1, (std::vector<std::string>{"devices/dev-1/messages/events/channel=temp%2Fin dev-1|0",
                                            "devices/dev-1/messages/events/channel=temp%2Fin dev-1|1"}));
  EXPECT_EQ(dev2, (std::vector<std::string>{"devices/dev-2/messages/events/channel=hum dev-2|0"}));
  const std::string log = broker_.Log();
  EXPECT_EQ(CountOf(log, "azure-auth: accept dev-1"), 1) << log;
  EXPECT_EQ(CountOf(log, "azure-auth: accept dev-2"), 1) << log;
  EXPECT_EQ(CountOf(log, "azure-auth: deny"), 0) << log;
  EXPECT_EQ(forwarder_->Counters("azure").connects, 2u);
  EXPECT_EQ(forwarder_->Counters("azure").qos_downgraded, 1u);

  // Cloud-to-device for a connected device.
  ASSERT_TRUE(RunUntil([&] { return CountOf(broker_.Log(), "devices/dev-1/messages/devicebound/#") > 0; }));
  ASSERT_LT(observer_->client().Publish("devices/dev-1/messages/devicebound/%24.mid=7&channel=led%2Fred",
                                        "on", 1),
            0x80);
  ASSERT_TRUE(RunUntil([&] { return downlinks_.size() == 1; }));
  EXPECT_EQ(downlinks_[0].device_id, "dev-1");
  EXPECT_EQ(downlinks_[0].channel, "led/red");
  // A channel that cannot be read is counted and not guessed at.
  ASSERT_LT(observer_->client().Publish("devices/dev-1/messages/devicebound/channel=led%2", "x", 1),
            0x80);
  ASSERT_LT(observer_->client().Publish("devices/dev-1/messages/devicebound/channel=a&channel=b",
                                        "x", 1),
            0x80);
  ASSERT_TRUE(RunUntil([&] { return forwarder_->Counters("azure").downlinks_refused == 2; }));
  EXPECT_EQ(downlinks_.size(), 1u);
  EXPECT_EQ(forwarder_->Counters("azure").downlinks, 1u);

  // Idle connections close; the next message opens one again.
  ASSERT_TRUE(RunUntil([&] { return forwarder_->Counters("azure").disconnects == 2; },
                       std::chrono::seconds(5)));
  Submit("dev-2", "meters", "hum", Payload("dev-2", 1), 1);
  ASSERT_TRUE(RunUntil([&] {
    observer_->Poll();
    return observer_->messages().size() == 4;
  }));
  EXPECT_EQ(forwarder_->Counters("azure").connects, 3u) << broker_.Log();
}

TEST_F(AzureForwardingTest, WrongKeyIsRefusedByTheHub) {
  testing::WriteFile(tmp_ / "other.key", "b3RoZXIgZ3JvdXAga2V5IHRoYXQgaXMgd3Jvbmch\n");
  CreateForwarder(MakePolicy({Azure(tmp_ / "other.key")}, {{"meters", "azure"}}));
  Submit("dev-1", "meters", "t", Payload("dev-1", 0), 1);
  ASSERT_TRUE(RunUntil([&] { return CountOf(broker_.Log(), "azure-auth: deny dev-1: bad signature") > 0; }));
  RunFor(std::chrono::milliseconds(500));
  EXPECT_EQ(forwarder_->Counters("azure").connects, 0u);
  EXPECT_EQ(forwarder_->QueueUsage("azure")->count, 1u);
}

TEST_F(AzureForwardingTest, SasTokenIsRenewedByReconnecting) {
  ForwarderOptions options;
  options.tuning.azure_sas_ttl = std::chrono::seconds(4);
  options.tuning.azure_sas_renew_at = 0.25;  // renew after 1 s
  CreateForwarder(MakePolicy({Azure(tmp_ / "group.key")}, {{"meters", "azure"}}), options);
  int sent = 0;
  Submit("dev-1", "meters", "t", Payload("dev-1", sent++), 1);
  ASSERT_TRUE(RunUntil([&] { return CountOf(broker_.Log(), "azure-auth: accept dev-1") >= 3; },
                       std::chrono::seconds(8)));
  Submit("dev-1", "meters", "t", Payload("dev-1", sent++), 1);
  ASSERT_TRUE(RunUntil([&] {
    observer_->Poll();
    return static_cast<int>(observer_->messages().size()) == sent;
  }));
}

TEST_F(AzureForwardingTest, RouteSwitchFromAwsToAzureLosesNothingAndSendsNothingTwice) {
  const int aws_port = FreeLoopbackPort();
  const int aws_observer_port = FreeLoopbackPort();
  Broker aws = StartAwsLikeBroker(tmp_.path(), aws_port, aws_observer_port, pki_);
  Observer aws_observer(aws_observer_port, "dt/#", 1);
  auto before = MakePolicy({AwsUpstream(pki_, aws_port, 1), Azure(tmp_ / "group.key")},
                           {{"meters", "aws"}});
  auto after = MakePolicy({AwsUpstream(pki_, aws_port, 1), Azure(tmp_ / "group.key")},
                          {{"meters", "azure"}});
  CreateForwarder(before);
  const std::vector<std::string> devices{"dev-a", "dev-b", "dev-c"};
  std::map<std::string, int> next;
  int total = 0;
  auto produce = [&](int n) {
    for (int i = 0; i < n; ++i) {
      const std::string& d = devices[total % devices.size()];
      Submit(d, "meters", "seq", Payload(d, next[d]++), 1);
      ++total;
      RunFor(std::chrono::milliseconds(10));
    }
  };
  produce(150);
  ASSERT_TRUE(forwarder_->ApplyPolicy(after).ok());
  produce(150);
  std::map<std::string, std::set<std::string>> at;  // payload sets per cloud
  ASSERT_TRUE(RunUntil(
      [&] {
        observer_->Poll();
        aws_observer.Poll();
        for (auto& m : observer_->messages()) at["azure"].insert(m.payload);
        for (auto& m : aws_observer.messages()) at["aws"].insert(m.payload);
        return static_cast<int>(at["azure"].size() + at["aws"].size()) >= total;
      },
      std::chrono::seconds(20)));
  RunFor(std::chrono::milliseconds(300));
  observer_->Poll();
  aws_observer.Poll();
  for (auto& m : observer_->messages()) at["azure"].insert(m.payload);
  for (auto& m : aws_observer.messages()) at["aws"].insert(m.payload);
  for (const auto& p : at["aws"]) EXPECT_EQ(at["azure"].count(p), 0u) << p << " sent to both";
  EXPECT_EQ(static_cast<int>(at["aws"].size() + at["azure"].size()), total);
  EXPECT_GT(at["aws"].size(), 100u);
  EXPECT_GT(at["azure"].size(), 100u);
  // The old upstream is stopped once drained (nothing routes to it any more).
  ASSERT_TRUE(RunUntil([&] {
    auto active = forwarder_->ActiveUpstreams();
    return active == std::vector<std::string>{"azure"};
  }));
  EXPECT_EQ(forwarder_->QueueUsage("aws")->count, 0u);
  EXPECT_EQ(forwarder_->QueueUsage("azure")->count, 0u);
}

}  // namespace
}  // namespace edgetrust::forwarding::test
