#include <sys/stat.h>
// The `mqtt` upstream and the Forwarder's durable queue against a real mosquitto with
// username/password.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <set>

#include "forwarding_fixture.h"

namespace edgetrust::forwarding::test {
namespace {

using testing::Broker;
using testing::FreeLoopbackPort;
using testing::RunCommand;

class MqttForwardingTest : public ForwardingTest {
 protected:
  void SetUp() override {
    ForwardingTest::SetUp();
    port_ = FreeLoopbackPort();
    observer_port_ = FreeLoopbackPort();
    passwd_ = tmp_ / "passwd";
    testing::WriteFile(tmp_ / "edge.pass", "s3cret pass\n");
  }

  // mosquitto_passwd -b; `with_user` false leaves only an unrelated user in the file.
  void WritePasswords(bool with_user) {
    auto r = RunCommand({"/usr/bin/mosquitto_passwd", "-c", "-b", passwd_, "someone", "else"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    if (with_user) {
      r = RunCommand({"/usr/bin/mosquitto_passwd", "-b", passwd_, "edge-01", "s3cret pass"});
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    chmod(passwd_.c_str(), 0644);
  }

  // Starts the broker so that the observer is subscribed before our upstream can log in: the
  // upstream's user is added to the password file only after, then the broker reloads it.
  void StartBrokerObserverFirst(const std::string& filter) {
    WritePasswords(false);
    broker_ = StartPlainBroker(tmp_.path(), port_, observer_port_, passwd_);
    observer_ = std::make_unique<Observer>(observer_port_, filter);
    WritePasswords(true);
    broker_.Reload();
  }

  policies::Upstream Hq(const std::string& password_file) {
    policies::Upstream u;
    u.name = "hq";
    u.kind = policies::UpstreamKind::kMqtt;
    u.url = "mqtt://127.0.0.1:" + std::to_string(port_);
    u.host = "127.0.0.1";
    u.port = static_cast<uint16_t>(port_);
    u.tls = false;
    u.username = "edge-01";
    u.password_file = password_file;
    u.topic = "sites/{site}/{group}/{device}/{channel}";
    u.down_topic = "cmd/{site}/{device}/{channel}";
    u.qos = 2;
    u.protocol = 5;
    return u;
  }

  // 100 messages per second over three devices; the broker is down for 3 s in the middle: every
  // message arrives, first arrivals in submission order per device.
  void StoreAndForwardAcrossBrokerRestart(ForwarderOptions options) {
    StartBrokerObserverFirst("sites/#");
    CreateForwarder(MakePolicy({Hq(tmp_ / "edge.pass")}, {{"meters", "hq"}}), options);
    const std::vector<std::string> devices{"dev-a", "dev-b", "dev-c"};
    std::map<std::string, int> next;
    bool paused = false;
    int total = 0;
    // 100 messages per second, round robin over the devices.
    uv_timer_t producer;
    uv_timer_init(&loop_, &producer);
    struct Ctx {
      MqttForwardingTest* self;
      std::function<void()> tick;
    } ctx{this, [&] {
            if (paused) return;
            const std::string& d = devices[total % devices.size()];
            Submit(d, "meters", "seq", Payload(d, next[d]++), 1);
            ++total;
          }};
    producer.data = &ctx;
    uv_timer_start(&producer, [](uv_timer_t* t) { static_cast<Ctx*>(t->data)->tick(); }, 10, 10);

    std::vector<testing::ReceivedMessage> received;
    auto unique_received = [&] {
      std::set<std::string> seen;
      for (const auto& m : received) seen.insert(m.payload);
      return seen.size();
    };
    RunFor(std::chrono::seconds(1));
    // Everything the broker took must have reached the observer before the broker dies: the
    // broker keeps nothing across a restart, and that loss would not be ours.
    paused = true;
    ASSERT_TRUE(RunUntil([&] {
      observer_->Poll();
      for (auto& m : observer_->messages()) received.push_back(std::move(m));
      observer_->messages().clear();
      return static_cast<int>(unique_received()) == total;
    }));
    paused = false;
    const int before_outage = total;
    broker_.process().Stop();
    observer_.reset();
    RunFor(std::chrono::seconds(3));
    EXPECT_GT(forwarder_->QueueUsage("hq")->count, 250u);  // held durably meanwhile
    StartBrokerObserverFirst("sites/#");
    RunFor(std::chrono::seconds(1));
    paused = true;
    uv_timer_stop(&producer);
    // `producer` lives on this stack: its close must be done before the test returns.
    bool producer_closed = false;
    producer.data = &producer_closed;
    uv_close(reinterpret_cast<uv_handle_t*>(&producer),
             [](uv_handle_t* h) { *static_cast<bool*>(h->data) = true; });
    ASSERT_TRUE(RunUntil([&] { return producer_closed; }));
    ASSERT_TRUE(RunUntil(
        [&] {
          observer_->Poll();
          for (auto& m : observer_->messages()) received.push_back(std::move(m));
          observer_->messages().clear();
          return static_cast<int>(unique_received()) == total;
        },
        std::chrono::seconds(20)))
        << unique_received() << " of " << total;
    EXPECT_GT(total, before_outage + 350);
    // The last ones may have arrived before their commit: it answers them.
    ASSERT_TRUE(RunUntil([&] { return ok_ + failed_ == total; }));
    EXPECT_EQ(ok_, total);
    EXPECT_EQ(failed_, 0);

    // Per device: first arrivals in submission order; repeats are allowed (at least once).
    std::map<std::string, int> highest;
    std::set<std::string> seen;
    int duplicates = 0;
    for (const auto& m : received) {
      if (!seen.insert(m.payload).second) {
        ++duplicates;
        continue;
      }
      auto [device, seq] = ParsePayload(m.payload);
      auto it = highest.find(device);
      EXPECT_TRUE(it == highest.end() ? seq == 0 : seq == it->second + 1)
          << device << " got " << seq << " after " << (it == highest.end() ? -1 : it->second);
      highest[device] = seq;
    }
    for (const auto& d : devices) EXPECT_EQ(highest[d], next[d] - 1) << d;
    std::printf("store-and-forward: %d messages, %d duplicates, %llu reconnects\n", total, duplicates,
                static_cast<unsigned long long>(forwarder_->Counters("hq").connects));
    ASSERT_TRUE(RunUntil([&] { return forwarder_->QueueUsage("hq")->count == 0; }));
  }

  int port_ = 0, observer_port_ = 0;
  std::string passwd_;
  Broker broker_;
  std::unique_ptr<Observer> observer_;
};

TEST_F(MqttForwardingTest, TelemetryWithEachQosAndDownlink) {
  StartBrokerObserverFirst("sites/#");
  CreateForwarder(MakePolicy({Hq(tmp_ / "edge.pass")}, {{"meters", "hq"}}));
  Submit("dev-1", "meters", "temp", Payload("dev-1", 0), 0);
  Submit("dev-1", "meters", "temp/inside", Payload("dev-1", 1), 1);
  Submit("dev-2", "meters", "hum", Payload("dev-2", 0), 2);
  ASSERT_TRUE(RunUntil([&] {
    observer_->Poll();
    return observer_->messages().size() == 3;
  }));
  EXPECT_EQ(ok_, 3);
  std::map<std::string, int> qos_by_topic;
  for (const auto& m : observer_->messages()) qos_by_topic[m.topic] = m.qos;
  EXPECT_EQ(qos_by_topic, (std::map<std::string, int>{{"sites/edge-01/meters/dev-1/temp", 0},
                                                      {"sites/edge-01/meters/dev-1/temp/inside", 1},
                                                      {"sites/edge-01/meters/dev-2/hum", 2}}));
  ASSERT_TRUE(RunUntil([&] { return forwarder_->QueueUsage("hq")->count == 0; }));
  UpstreamCounters c = forwarder_->Counters("hq");
  EXPECT_EQ(c.queued, 3u);
  EXPECT_EQ(c.acked, 3u);
  EXPECT_EQ(c.connects, 1u);

  // Down-link: the upstream's command topic comes back as (device, channel).
  // (0x10 = accepted, no matching subscribers)
  ASSERT_EQ(observer_->client().Publish("cmd/edge-01/dev-2/led/red", "on", 1), 0);
  ASSERT_EQ(observer_->client().Publish("cmd/other-site/dev-2/led", "x", 1), 0x10);
  ASSERT_EQ(observer_->client().Publish("cmd/edge-01/dev-3/fan", "off", 1), 0);
  // Within the subscription filter (cmd/edge-01/+/#) but placed nowhere: counted, not delivered.
  ASSERT_EQ(observer_->client().Publish("cmd/edge-01/dev-3", "no channel level", 1), 0);
  ASSERT_EQ(observer_->client().Publish("cmd/edge-01/not%a device/led", "bad id", 1), 0);
  ASSERT_TRUE(RunUntil([&] { return forwarder_->Counters("hq").downlinks_refused == 2; }));
  RunFor(std::chrono::milliseconds(200));
  EXPECT_EQ(forwarder_->Counters("hq").downlinks, 2u);
  ASSERT_EQ(downlinks_.size(), 2u);
  EXPECT_EQ(downlinks_[0].device_id, "dev-2");
  EXPECT_EQ(downlinks_[0].channel, "led/red");
  EXPECT_EQ(std::string(downlinks_[0].payload.begin(), downlinks_[0].payload.end()), "on");
  EXPECT_EQ(downlinks_[1].device_id, "dev-3");
  EXPECT_EQ(downlinks_[1].channel, "fan");
}

TEST_F(MqttForwardingTest, WrongPasswordNeverDeliversAndKeepsTheQueue) {
  StartBrokerObserverFirst("sites/#");
  testing::WriteFile(tmp_ / "wrong.pass", "not it\n");
  CreateForwarder(MakePolicy({Hq(tmp_ / "wrong.pass")}, {{"meters", "hq"}}));
  Submit("dev-1", "meters", "temp", Payload("dev-1", 0), 1);
  RunFor(std::chrono::milliseconds(1500));
  EXPECT_EQ(ok_, 1);  // durable in the outbox
  EXPECT_EQ(forwarder_->Counters("hq").connects, 0u);
  EXPECT_EQ(forwarder_->QueueUsage("hq")->count, 1u);
  observer_->Poll();
  EXPECT_TRUE(observer_->messages().empty());
}

TEST_F(MqttForwardingTest, StoreAndForwardAcrossBrokerRestartKeepsEveryMessageInOrder) {
  StoreAndForwardAcrossBrokerRestart({});
}

// With little held in memory (read_ahead 64, window 8), the outage's messages go the outbox's
// way and are read back, while those sent before their commit go from memory: none overtakes
// an older one of its device.
TEST_F(MqttForwardingTest, StoreAndForwardKeepsOrderWhenMessagesGoThroughTheOutbox) {
  ForwarderOptions options;
  options.read_ahead = 64;
  options.window = 8;
  StoreAndForwardAcrossBrokerRestart(options);
}

TEST_F(MqttForwardingTest, FullQueueDropsOldestAndCounts) {
  policies::QueuePolicy queue{.max_bytes = 4096, .on_full = policies::QueueFullAction::kDropOldest};
  CreateForwarder(MakePolicy({Hq(tmp_ / "edge.pass")}, {{"meters", "hq"}}, queue));
  for (int i = 0; i < 10; ++i) {
    Bytes p = Payload("dev-1", i);
    p.resize(1000, '.');
    Submit("dev-1", "meters", "t", std::move(p), 1);
  }
  ASSERT_TRUE(RunUntil([&] { return ok_ + failed_ == 10; }));
  EXPECT_EQ(ok_, 10);
  UpstreamCounters c = forwarder_->Counters("hq");
  EXPECT_EQ(c.dropped, 6u);
  EXPECT_EQ(c.refused, 0u);
  EXPECT_EQ(forwarder_->QueueUsage("hq")->count, 4u);
  EXPECT_EQ(forwarder_->QueueUsage("hq")->bytes, 4000u);

  StartBrokerObserverFirst("sites/#");
  ASSERT_TRUE(RunUntil([&] { return forwarder_->QueueUsage("hq")->count == 0; }));
  RunFor(std::chrono::milliseconds(200));
  observer_->Poll();
  std::set<int> got;
  for (const auto& m : observer_->messages()) got.insert(ParsePayload(m.payload).second);
  EXPECT_EQ(got, (std::set<int>{6, 7, 8, 9}));
}

TEST_F(MqttForwardingTest, FullQueueRefusesWhenPolicySaysSo) {
  policies::QueuePolicy queue{.max_bytes = 4096, .on_full = policies::QueueFullAction::kRefuse};
  CreateForwarder(MakePolicy({Hq(tmp_ / "edge.pass")}, {{"meters", "hq"}}, queue));
  for (int i = 0; i < 10; ++i) {
    Bytes p = Payload("dev-1", i);
    p.resize(1000, '.');
    Submit("dev-1", "meters", "t", std::move(p), 1);
  }
  ASSERT_TRUE(RunUntil([&] { return ok_ + failed_ == 10; }));
  EXPECT_EQ(ok_, 4);
  EXPECT_EQ(failed_, 6);
  for (const auto& e : errors_) EXPECT_EQ(e.code, ErrorCode::kResourceExhausted);
  EXPECT_EQ(forwarder_->Counters("hq").refused, 6u);
  EXPECT_EQ(forwarder_->Counters("hq").dropped, 0u);

  StartBrokerObserverFirst("sites/#");
  ASSERT_TRUE(RunUntil([&] { return forwarder_->QueueUsage("hq")->count == 0; }));
  RunFor(std::chrono::milliseconds(200));
  observer_->Poll();
  std::set<int> got;
  for (const auto& m : observer_->messages()) got.insert(ParsePayload(m.payload).second);
  EXPECT_EQ(got, (std::set<int>{0, 1, 2, 3}));
}

// Commits run on the thread pool. WhenCommitted answers on the loop once what was submitted is in
// the outbox (the submissions' own callbacks first), never from inside the call, and says when
// there is nothing to wait for; a blocking Flush waits for a running commit, then commits the rest.
TEST_F(MqttForwardingTest, CommitsOffTheLoopAnswerOnceDurable) {
  CreateForwarder(MakePolicy({Hq(tmp_ / "edge.pass")}, {{"meters", "hq"}}));  // no broker: all stays
  EXPECT_FALSE(forwarder_->WhenCommitted([](Status) { ADD_FAILURE() << "nothing was waiting"; }));
  Submit("dev-1", "meters", "t", Payload("dev-1", 0), 1);
  int answered = 0, ok_then = -1;
  uint64_t queued_then = 0;
  ASSERT_TRUE(forwarder_->WhenCommitted([&](Status st) {
    EXPECT_TRUE(st.ok());
    answered++;
    auto usage = forwarder_->QueueUsage("hq");
    queued_then = usage.ok() ? usage->count : 0;
    ok_then = ok_;
  }));
  EXPECT_EQ(answered, 0) << "answered inside WhenCommitted";
  ASSERT_TRUE(RunUntil([&] { return answered == 1; }));
  EXPECT_EQ(queued_then, 1u) << "answered before the commit";
  EXPECT_EQ(ok_then, 1);

  Submit("dev-1", "meters", "t", Payload("dev-1", 1), 1);
  bool second = false;
  ASSERT_TRUE(forwarder_->WhenCommitted([&](Status st) { second = st.ok(); }));
  Submit("dev-1", "meters", "t", Payload("dev-1", 2), 1);
  EXPECT_TRUE(forwarder_->Flush().ok());
  EXPECT_TRUE(second);
  EXPECT_EQ(ok_, 3);
  auto usage = forwarder_->QueueUsage("hq");
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->count, 3u);
  EXPECT_EQ(forwarder_->Counters("hq").queued, 3u);
}

// A message submitted while its upstream has nothing unread in the outbox is sent at once, before
// its commit; when the upstream acknowledges it first it is never written (no flash wear while
// the uplink keeps up). Its submitter still hears "durable" only when its commit is done. When
// the upstream is down, every message is written, and delivered from the outbox later.
TEST_F(MqttForwardingTest, MessagesAcknowledgedBeforeTheirCommitAreNeverWritten) {
  StartBrokerObserverFirst("sites/#");
  ForwarderOptions options;
  options.batch_delay = std::chrono::milliseconds(8000);  // all acknowledged before it
  CreateForwarder(MakePolicy({Hq(tmp_ / "edge.pass")}, {{"meters", "hq"}}), options);
  ASSERT_TRUE(RunUntil([&] { return forwarder_->Counters("hq").connects == 1; }));
  constexpr int kMessages = 50;
  for (int i = 0; i < kMessages; ++i) Submit("dev-1", "meters", "t", Payload("dev-1", i), 1);
  ASSERT_TRUE(RunUntil([&] {
    observer_->Poll();
    return forwarder_->Counters("hq").acked == kMessages && observer_->messages().size() == kMessages;
  }));
  EXPECT_EQ(ok_, 0) << "answered before the commit";
  ASSERT_TRUE(RunUntil([&] { return ok_ == kMessages; }));
  UpstreamCounters c = forwarder_->Counters("hq");
  EXPECT_EQ(c.queued, uint64_t{kMessages});
  EXPECT_EQ(c.written, 0u);
  EXPECT_EQ(forwarder_->QueueUsage("hq")->count, 0u);
  for (int i = 0; i < kMessages; ++i) {
    EXPECT_EQ(ParsePayload(observer_->messages()[static_cast<size_t>(i)].payload).second, i);
  }

  broker_.process().Stop();
  observer_.reset();
  ASSERT_TRUE(RunUntil([&] { return forwarder_->ActiveUpstreams().size() == 1 &&
                                    forwarder_->Counters("hq").disconnects == 1; }));
  for (int i = kMessages; i < kMessages + 10; ++i) Submit("dev-1", "meters", "t", Payload("dev-1", i), 1);
  ASSERT_TRUE(RunUntil([&] { return ok_ == kMessages + 10; }));
  EXPECT_EQ(forwarder_->Counters("hq").written, 10u);
  EXPECT_EQ(forwarder_->QueueUsage("hq")->count, 10u);

  StartBrokerObserverFirst("sites/#");
  ASSERT_TRUE(RunUntil([&] { return forwarder_->QueueUsage("hq")->count == 0; }, std::chrono::seconds(20)));
  RunFor(std::chrono::milliseconds(200));
  observer_->Poll();
  std::vector<int> first_arrivals;
  for (const auto& m : observer_->messages()) {
    const int i = ParsePayload(m.payload).second;
    if (std::find(first_arrivals.begin(), first_arrivals.end(), i) == first_arrivals.end()) {
      first_arrivals.push_back(i);
    }
  }
  std::vector<int> expected(10);
  std::iota(expected.begin(), expected.end(), kMessages);
  EXPECT_EQ(first_arrivals, expected);
}

TEST_F(MqttForwardingTest, UnroutedGroupIsAcceptedButNotForwarded) {
  CreateForwarder(MakePolicy({Hq(tmp_ / "edge.pass")}, {{"meters", "hq"}, {"quarantine", ""}}));
  Submit("dev-9", "quarantine", "t", Payload("dev-9", 0), 1);
  ASSERT_TRUE(RunUntil([&] { return ok_ == 1; }));
  EXPECT_EQ(forwarder_->unrouted(), 1u);
  EXPECT_EQ(forwarder_->Counters("hq").queued, 0u);
}

}  // namespace
}  // namespace edgetrust::forwarding::test
