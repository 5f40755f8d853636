// Forwarding under faults, through the whole real chain: devices (real MQTT TLS clients with the
// operational certificates they enrolled for) → the site's mosquitto with the edgetrust plugin →
// the edgetrust-gateway process → a plain local mosquitto standing in for the cloud → a
// subscriber with a persistent session on it.
//
// While the devices stream 100 messages per second, the upstream is down for 60 s and the
// gateway is killed with SIGKILL, at whatever moment the clock says, and started again. Every
// message the site broker acknowledged to a device must reach the subscriber at least once, the
// first arrivals of each device in the order it sent them, and nothing arrives that was not sent.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "edgetrust/storage/store.h"
#include "edgetrust/storage/tables.h"
#include "edgetrust/testing/mqtt_client.h"
#include "edgetrust/testing/process.h"
#include "edgetrust/testing/site_fixture.h"
#include "gateway_fixture.h"

namespace edgetrust {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::Broker;
using testing::EnrollingDevice;
using testing::FreeLoopbackPort;
using testing::GatewaySite;
using testing::SiteFixture;
using testing::TestClient;
using testing::UpstreamBroker;
using testing::WaitUntil;
using testing::WriteFile;

constexpr char kSite[] = "edge-fault";
constexpr char kUpstream[] = "hq";
constexpr int kDevices = 5;
constexpr int kMessagesPerSecond = 100;  // all devices together
constexpr auto kPeriod = std::chrono::microseconds(1'000'000 / kMessagesPerSecond);
constexpr auto kStream = 75s;
constexpr auto kUpstreamStopAt = 5s;
constexpr auto kUpstreamDownFor = 60s;
constexpr auto kGatewayKillAt = 20s;  // the upstream is down: the outbox holds messages
constexpr auto kGatewayDownFor = 3s;
// The gateway's upstream back-off grows to 30 s (±20 %), so it may take that long to notice the
// upstream is back; then about 6000 queued messages drain.
constexpr auto kDrainLimit = 90s;

// The cloud's consumer: MQTT 3.1.1, clean_session false and a fixed client id, so the upstream
// broker keeps its subscription and whatever is queued for it across the broker's own restart
// (persistence). libmosquitto's thread reconnects by itself.
class CloudSubscriber {
 public:
  CloudSubscriber(std::string client_id, std::string pattern, std::vector<std::string> devices)
      : client_id_(std::move(client_id)), pattern_(std::move(pattern)), devices_(std::move(devices)) {
    arrivals_.resize(devices_.size());
    times_.resize(devices_.size());
  }
  ~CloudSubscriber() {
    if (mosq_ == nullptr) return;
    mosquitto_disconnect(mosq_);
    mosquitto_loop_stop(mosq_, true);
    mosquitto_destroy(mosq_);
  }
  CloudSubscriber(const CloudSubscriber&) = delete;
  CloudSubscriber& operator=(const CloudSubscriber&) = delete;

  bool Start(int port) {
    mosq_ = mosquitto_new(client_id_.c_str(), false, this);
    if (mosq_ == nullptr) return false;
    mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_connect_with_flags_callback_set(mosq_, OnConnect);
    mosquitto_subscribe_callback_set(mosq_, OnSubscribe);
    mosquitto_message_callback_set(mosq_, OnMessage);
    mosquitto_reconnect_delay_set(mosq_, 1, 1, false);
    if (mosquitto_connect_async(mosq_, "127.0.0.1", port, 30) != MOSQ_ERR_SUCCESS) return false;
    if (mosquitto_loop_start(mosq_) != MOSQ_ERR_SUCCESS) return false;
    return WaitUntil([&] {
      std::lock_guard lock(mu_);
      return subscribed_;
    });
  }

  // CONNACKs, and how many of them found the session kept by the broker.
  std::pair<int, int> Connects() {
    std::lock_guard lock(mu_);
    return {connects_, sessions_present_};
  }
  // Per device: the seqs in arrival order.
  std::vector<std::vector<uint64_t>> Arrivals() {
    std::lock_guard lock(mu_);
    return arrivals_;
  }
  uint64_t Distinct() {
    std::lock_guard lock(mu_);
    return distinct_;
  }
  // Messages whose topic or payload is not one the devices sent.
  uint64_t Strangers() {
    std::lock_guard lock(mu_);
    return strangers_;
  }
  // How many of `acked` (per device, by seq) have not arrived yet.
  uint64_t Missing(const std::vector<std::vector<bool>>& acked) {
    std::lock_guard lock(mu_);
    uint64_t missing = 0;
    for (size_t d = 0; d < acked.size(); ++d) {
      for (size_t seq = 0; seq < acked[d].size(); ++seq) {
        if (acked[d][seq] && (seq >= times_[d].size() || times_[d][seq] == 0)) ++missing;
      }
    }
    return missing;
  }

 private:
  static void OnConnect(struct mosquitto* m, void* obj, int rc, int flags) {
    auto* self = static_cast<CloudSubscriber*>(obj);
    if (rc != 0) return;
    const bool session_present = (flags & 1) != 0;
    {
      std::lock_guard lock(self->mu_);
      ++self->connects_;
      if (session_present) ++self->sessions_present_;
    }
    // A kept session keeps the subscription; subscribing again would be harmless but would hide
    // a broker that forgot the session.
    if (!session_present) mosquitto_subscribe(m, nullptr, self->pattern_.c_str(), 1);
  }
  static void OnSubscribe(struct mosquitto*, void* obj, int, int count, const int* granted) {
    auto* self = static_cast<CloudSubscriber*>(obj);
    std::lock_guard lock(self->mu_);
    self->subscribed_ = count > 0 && granted[0] == 1;
  }
  static void OnMessage(struct mosquitto*, void* obj, const struct mosquitto_message* msg) {
    auto* self = static_cast<CloudSubscriber*>(obj);
    // sites/{site}/{device}/telemetry, payload: the device's seq in decimal.
    std::string topic = msg->topic;
    std::string prefix = std::string("sites/") + kSite + "/";
    const char* p = static_cast<const char*>(msg->payload);
    uint64_t seq = 0;
    auto [end, ec] = std::from_chars(p, p + msg->payloadlen, seq);
    std::lock_guard lock(self->mu_);
    int device = -1;
    for (size_t d = 0; d < self->devices_.size(); ++d) {
      if (topic == prefix + self->devices_[d] + "/telemetry") device = static_cast<int>(d);
    }
    if (device < 0 || ec != std::errc() || end != p + msg->payloadlen) {
      ++self->strangers_;
      return;
    }
    self->arrivals_[device].push_back(seq);
    auto& times = self->times_[device];
    if (times.size() <= seq) times.resize(seq + 1, 0);
    if (times[seq]++ == 0) ++self->distinct_;
  }

  std::string client_id_, pattern_;
  std::vector<std::string> devices_;
  struct mosquitto* mosq_ = nullptr;
  std::mutex mu_;
  bool subscribed_ = false;
  int connects_ = 0, sessions_present_ = 0;
  std::vector<std::vector<uint64_t>> arrivals_;
  std::vector<std::vector<uint32_t>> times_;
  uint64_t distinct_ = 0, strangers_ = 0;
};

// Keeps a stopped upstream's port bound (not listening: connecting is refused, as when nothing
// is there) so that no test running in parallel is handed it while the broker is away.
class PortHold {
 public:
  explicit PortHold(int port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // past its TIME_WAITs
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    held_ = bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~PortHold() { Release(); }
  PortHold(const PortHold&) = delete;
  PortHold& operator=(const PortHold&) = delete;
  bool held() const { return held_; }
  void Release() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
  bool held_ = false;
};

// What one device sent: one thread per device publishes on a fixed schedule (the devices take
// turns, 10 ms apart in all), each QoS 1 publish waiting for the site broker's PUBACK.
struct DeviceStream {
  TestClient* client = nullptr;
  std::string topic;
  std::vector<bool> acked;  // by seq; what the broker acknowledged counts as sent
  std::map<int, int> failures;  // publish result → count

  void Run(std::stop_token stop, Clock::time_point t0, int index) {
    for (uint64_t seq = 0; !stop.stop_requested(); ++seq) {
      auto due = t0 + kPeriod * (seq * kDevices + index);
      if (due >= t0 + kStream) break;
      std::this_thread::sleep_until(due);
      int rc = client->Publish(topic, std::to_string(seq), 1);
      acked.push_back(rc == 0);
      if (rc != 0) ++failures[rc];
    }
  }
};

class GatewayFaultTest : public testing::GatewayTestBase {
 protected:
  GatewaySite& gateway_site() override { return gw_; }

  void SetUp() override {
    gw_.fx = SiteFixture::Create(gw_.tmp, {.site_id = kSite,
                                           .manufacturers = {{.name = "acme", .model = "thermo-1",
                                                              .count = kDevices}}});
    // The upstream saves its clients' sessions on SIGTERM: the directory must be writable by
    // the user mosquitto drops to.
    hq_.dir = gw_.tmp / "hq";
    mkdir(hq_.dir.c_str(), 0755);
    if (const passwd* pw = getpwnam("mosquitto")) {
      ASSERT_EQ(chown(hq_.dir.c_str(), pw->pw_uid, pw->pw_gid), 0);
    }
    hq_.port = FreeLoopbackPort();
    hq_.extra_config = "persistence true\npersistence_location " + hq_.dir +
                       "/\nmax_queued_messages 100000\n";
    hq_.Start();
    WriteFile(gw_.fx.policy, testing::ForwardingPolicy(gw_.fx, kUpstream, {{kUpstream, hq_.port}}));
    // While the gateway is dead the broker queues for its session; the default (1000) would
    // drop messages the devices were told were delivered.
    gw_.broker = Broker::Start(gw_.tmp.path(),
                               gw_.fx.MosquittoConfig() + "\nmax_queued_messages 100000\n",
                               {gw_.fx.port});
  }

  // The logs go with the temporary directory; ET_TEST_ARTIFACTS=DIR keeps those of a failure.
  void TearDown() override {
    GatewayTestBase::TearDown();
    const char* keep = std::getenv("ET_TEST_ARTIFACTS");
    if (!HasFailure() || keep == nullptr) return;
    std::error_code ec;
    std::filesystem::create_directories(keep, ec);
    for (const auto& e : std::filesystem::recursive_directory_iterator(gw_.tmp.path(), ec)) {
      auto ext = e.path().extension();
      if (ext == ".log" || ext == ".conf" || ext == ".yaml")
        std::filesystem::copy_file(e.path(), std::filesystem::path(keep) / e.path().filename(),
                                   std::filesystem::copy_options::overwrite_existing, ec);
    }
    std::cerr << "logs kept in " << keep << "\n";
  }

  // Messages committed to the upstream's outbox, read as any other process of the site would.
  std::optional<uint64_t> Outbox() {
    auto store = storage::Store::Open({.path = gw_.fx.store, .read_only = true});
    if (!store.ok()) return std::nullopt;
    auto txn = store->BeginRead();
    if (!txn.ok()) return std::nullopt;
    auto usage = storage::OutboxStats(*txn, kUpstream);
    if (!usage.ok()) return std::nullopt;
    return usage->count;
  }

  GatewaySite gw_;
  UpstreamBroker hq_;
};

std::string Show(const std::optional<uint64_t>& v) { return v ? std::to_string(*v) : "?"; }

TEST_F(GatewayFaultTest, UpstreamDownAMinuteAndGatewayKilledOnceLosesNothingAndKeepsOrder) {
  const auto started = Clock::now();
  ASSERT_NO_FATAL_FAILURE(StartGateway());
  ASSERT_TRUE(WaitUntil([&] { return Logged("upstream_up upstream=hq"); }, 10s)) << gateway_.Log();

  std::vector<std::string> ids;
  for (const auto& d : site().devices) ids.push_back(d.id);
  CloudSubscriber cloud("cloud-fault", std::string("sites/") + kSite + "/+/telemetry", ids);
  ASSERT_TRUE(cloud.Start(hq_.port));

  std::vector<std::unique_ptr<EnrollingDevice>> devices;
  std::vector<DeviceStream> streams(kDevices);
  for (int d = 0; d < kDevices; ++d) {
    devices.push_back(std::make_unique<EnrollingDevice>(site(), ids[d]));
    ASSERT_NO_FATAL_FAILURE(devices.back()->Enroll());
    streams[d].client = &devices.back()->client();
    streams[d].topic = "et/" + ids[d] + "/up/telemetry";
  }

  const auto t0 = Clock::now() + 100ms;
  std::vector<std::jthread> publishers;  // last: joined before what they use goes away
  for (int d = 0; d < kDevices; ++d) {
    publishers.emplace_back([&, d](std::stop_token stop) { streams[d].Run(stop, t0, d); });
  }

  // The upstream goes away cleanly (it saves the subscriber's session and queue).
  std::this_thread::sleep_until(t0 + kUpstreamStopAt);
  hq_.broker.process().Signal(SIGTERM);
  EXPECT_EQ(hq_.broker.process().Wait(10s), std::optional<int>(0));
  PortHold hold(hq_.port);
  EXPECT_EQ(access((hq_.dir + "/mosquitto.db").c_str(), F_OK), 0) << "upstream saved no sessions";
  EXPECT_TRUE(WaitUntil([&] { return Logged("upstream_down upstream=hq"); }, 10s))
      << gateway_.Log();

  // SIGKILL at an arbitrary moment of the stream (a random phase against the publish
  // schedule), the outbox holding what the upstream missed.
  std::mt19937 rng(std::random_device{}());
  const auto phase = std::chrono::microseconds(
      std::uniform_int_distribution<int64_t>(0, kPeriod.count() - 1)(rng));
  std::this_thread::sleep_until(t0 + kGatewayKillAt + phase);
  const auto outbox_at_kill = Outbox();
  gateway_.Signal(SIGKILL);
  EXPECT_EQ(gateway_.Wait(5s), std::optional<int>(128 + SIGKILL));
  std::this_thread::sleep_until(t0 + kGatewayKillAt + kGatewayDownFor);
  ASSERT_NO_FATAL_FAILURE(StartGateway());

  // The upstream returns on the same port.
  std::this_thread::sleep_until(t0 + kUpstreamStopAt + kUpstreamDownFor);
  const auto outbox_at_return = Outbox();
  const uint64_t arrived_before_return = cloud.Distinct();
  hold.Release();
  hq_.Start();
  const auto upstream_back = Clock::now();

  for (auto& p : publishers) p.join();
  std::vector<std::vector<bool>> acked;
  uint64_t sent = 0, attempted = 0;
  for (const auto& s : streams) {
    acked.push_back(s.acked);
    attempted += s.acked.size();
    for (bool a : s.acked) sent += a ? 1 : 0;
  }

  const bool all = WaitUntil([&] { return cloud.Missing(acked) == 0; }, kDrainLimit);
  const auto drained = Clock::now();

  // --- what arrived ---
  auto secs = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  const auto arrivals = cloud.Arrivals();
  uint64_t received = 0, duplicates = 0, never_sent = 0, out_of_order = 0;
  std::string first_problem;
  for (int d = 0; d < kDevices; ++d) {
    std::vector<bool> seen(streams[d].acked.size(), false);
    int64_t last_first = -1;
    for (uint64_t seq : arrivals[d]) {
      ++received;
      if (seq >= seen.size()) {
        ++never_sent;
        if (first_problem.empty())
          first_problem = ids[d] + " seq " + std::to_string(seq) + " was never published";
        continue;
      }
      if (seen[seq]) {
        ++duplicates;
        continue;
      }
      seen[seq] = true;
      if (static_cast<int64_t>(seq) < last_first) {
        ++out_of_order;
        if (first_problem.empty())
          first_problem = ids[d] + " seq " + std::to_string(seq) + " first arrived after seq " +
                          std::to_string(last_first);
      }
      last_first = std::max<int64_t>(last_first, static_cast<int64_t>(seq));
    }
    // When the lost messages were published tells which part lost them.
    std::string missing;
    int lost = 0;
    double first_at = 0, last_at = 0;
    for (size_t seq = 0; seq < seen.size(); ++seq) {
      if (!streams[d].acked[seq] || seen[seq]) continue;
      double at = secs(kPeriod * (seq * kDevices + d));
      if (lost == 0) first_at = at;
      last_at = at;
      if (lost++ < 10) missing += " " + std::to_string(seq);
    }
    EXPECT_EQ(lost, 0) << ids[d] << " acknowledged but never delivered, published between t="
                       << first_at << " s and t=" << last_at << " s of the stream (upstream down "
                       << secs(kUpstreamStopAt) << "–" << secs(kUpstreamStopAt + kUpstreamDownFor)
                       << " s, gateway killed at " << secs(kGatewayKillAt) << " s, back after "
                       << secs(kGatewayDownFor) << " s); seqs:" << missing
                       << (lost > 10 ? " …" : "");
    for (const auto& [rc, n] : streams[d].failures)
      std::cerr << ids[d] << ": " << n << " publishes not acknowledged (result " << rc << ")\n";
  }
  const auto [connects, sessions_kept] = cloud.Connects();
  std::cerr << "fault stream: attempted=" << attempted << " sent(acked)=" << sent
            << " received=" << received << " distinct=" << cloud.Distinct()
            << " duplicates=" << duplicates << " never_sent=" << never_sent
            << " out_of_order=" << out_of_order << " strangers=" << cloud.Strangers()
            << " kill_phase_us=" << phase.count() << " outbox_at_kill=" << Show(outbox_at_kill)
            << " outbox_at_return=" << Show(outbox_at_return)
            << " arrived_before_return=" << arrived_before_return
            << " drain_after_return_s=" << secs(drained - upstream_back)
            << " subscriber_connects=" << connects << " sessions_kept=" << sessions_kept
            << " wall_s=" << secs(drained - started) << "\n";
  RecordProperty("sent", std::to_string(sent));
  RecordProperty("received", std::to_string(received));
  RecordProperty("duplicates", std::to_string(duplicates));

  EXPECT_TRUE(all) << "not every acknowledged message arrived within " << kDrainLimit.count()
                   << " s of the stream's end";
  EXPECT_EQ(never_sent, 0u) << first_problem;
  EXPECT_EQ(cloud.Strangers(), 0u);
  EXPECT_EQ(out_of_order, 0u) << first_problem;
  // The stream was what it claims to be: nearly every publish acknowledged by the site broker.
  EXPECT_GE(sent, attempted * 99 / 100);
  EXPECT_GE(attempted, static_cast<uint64_t>(kMessagesPerSecond * kStream.count() * 95 / 100));
  // The upstream kept the subscriber's session across its restart, so nothing in its queue was
  // lost on its side (a loss would otherwise be blamed on the gateway).
  EXPECT_EQ(connects, 2);
  EXPECT_EQ(sessions_kept, 1);
  // The gateway really queued: its outbox held the messages of the outage, which reached the
  // upstream only once it was back.
  ASSERT_TRUE(outbox_at_kill.has_value() && outbox_at_return.has_value());
  EXPECT_GE(*outbox_at_kill, static_cast<uint64_t>(kMessagesPerSecond * 10))
      << "the outbox should hold the ~15 s since the upstream left";
  EXPECT_GE(*outbox_at_return, static_cast<uint64_t>(kMessagesPerSecond * 50))
      << "the outbox should hold the ~60 s of the outage";
  EXPECT_LE(arrived_before_return, static_cast<uint64_t>(kMessagesPerSecond * 10));
  EXPECT_TRUE(Logged("upstream_up upstream=hq")) << gateway_.Log();
}

}  // namespace
}  // namespace edgetrust
