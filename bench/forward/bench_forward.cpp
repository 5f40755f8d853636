// bench_forward: up-link forwarding end to end, edgetrust against Mosquitto's own bridge.
//
//   bench_forward [--devices N] [--messages M] [--publishers P] [--inflight W] [--rounds R]
//                 [--broker-inflight I] [--broker-queued Q] [--quick] [--keep] [--only a|b]
//                 [--gateway PATH] [--telemetry-interval T] [--stagger-ms MS] [--upstream-tls]
//
// Phase 1 (fleet): a site made by the real CLI with N provisioned devices; mosquitto with the
// edgetrust plugin (real TLS), the real edgetrust-gateway routing the group to a plain local
// upstream mosquitto (an `mqtt` upstream). `edgetrust-device --simulate N --count 3 --interval T` enrolls
// every device through the gateway, reconnects it with its operational certificate and publishes
// (at least) 3 telemetry messages per device, which the gateway forwards. Prints the time, the devices the
// upstream heard from, the active devices in the store, and the gateway's VmHWM/VmRSS.
//
// Phase 2 (throughput), rounds of A and B with fresh brokers each run, in the order A B, B A,
// A B, … so that a drift of the machine's speed over the rounds favours neither:
//   A  site mosquitto (plugin) → edgetrust-gateway (durable LMDB outbox) → upstream mosquitto
//   B  the same site mosquitto config plus a Mosquitto bridge (`topic et/+/up/# out 1`) to the
//      same kind of upstream; no gateway.
// In both, P enrolled devices (operational certificates from phase 1, libmosquitto over TLS,
// MQTT v5) publish M 100-byte QoS 1 messages on et/{id}/up/telemetry, W unacknowledged each, and
// one subscriber on the upstream (QoS 1) counts distinct messages. The gateway and the bridge reach
// the upstream over plain TCP, or with --upstream-tls over TLS as every cloud upstream requires (the
// subscriber stays on plain TCP). The transport matters to the upstream broker: mosquitto 2.0
// reads a plain socket one packet per wake-up, with a read(2) for its type, one per byte of its
// length and one for the rest (4 for these PUBLISHes), but a TLS socket a record at a time (two
// reads), handling every packet the record holds; the gateway sends many PUBLISHes per record,
// the bridge one (strace of the upstream in A: 7.0 reads per message plain, 1.3 over TLS).
// Rate = M / (first publish → M-th distinct message at the upstream). Both site brokers get the
// same max_inflight_messages / max_queued_messages (see kLimitsWhy below). Prints every run, the medians and A/B, and where
// the CPU went: each process's user + system time over the run (/proc/PID/stat, all threads;
// this process's own for the publishers and the upstream subscriber) per delivered message.
// When every process shares a few cores, the rate is about cores / total CPU per message.
#include <mosquitto.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "edgetrust/device/runner.h"
#include "edgetrust/mqtt/uv_mqtt_client.h"
#include "edgetrust/storage/store.h"
#include "edgetrust/storage/tables.h"
#include "edgetrust/testing/process.h"
#include "edgetrust/testing/site_fixture.h"

namespace {

using namespace edgetrust;
using namespace std::chrono_literals;
using testing::SiteFixture;
using testing::Subprocess;
using Clock = std::chrono::steady_clock;

constexpr size_t kPayloadBytes = 100;
constexpr char kMagic[4] = {'E', 'T', 'F', 'B'};
constexpr char kBridgeClientId[] = "site-bridge";

struct Flags {
  int devices = 10000;
  int messages = 100000;
  int publishers = 100;
  int inflight = 10;
  int rounds = 3;
  int broker_inflight = 100;
  int broker_queued = 1000000;
  bool keep = false;
  bool run_a = true, run_b = true;  // --only a|b: one case (profiling)
  std::string gateway;               // --gateway PATH: another build of edgetrust-gateway
  // Fleet phase: seconds between a device's telemetry messages. The simulator keeps every
  // device publishing until all have sent 3, so N / interval msg/s is the fleet's steady load.
  int telemetry_interval = 20;
  // Fleet phase: ms between the simulated devices' first connects. At 1 ms, 10,000 TLS
  // handshakes (and as many reconnects with operational certificates) arrive faster than a
  // 2-core broker can answer them, and the fleet sometimes never recovers from the connect
  // timeouts (both gateways, before and after a change, seen stuck at a few hundred devices).
  int stagger_ms = 5;
  int hold = 0;  // --hold S: keep the fleet's gateway running S seconds after its figures (inspection)
  // --upstream-tls: the gateway and the bridge reach the upstream over TLS (server certificate,
  // as every cloud upstream requires) instead of plain TCP; the counting subscriber stays plain.
  bool upstream_tls = false;
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string StatusField(pid_t pid, const std::string& field) {
  std::string status = testing::ReadFile("/proc/" + std::to_string(pid) + "/status");
  size_t p = status.find(field + ":");
  if (p == std::string::npos) return "?";
  size_t e = status.find('\n', p);
  std::string v = status.substr(p + field.size() + 1, e - p - field.size() - 1);
  size_t s = v.find_first_not_of(" \t");
  return s == std::string::npos ? v : v.substr(s);
}

// User + system CPU seconds of a process so far, all its threads; -1 if unreadable.
double ProcessCpuSeconds(pid_t pid) {
  std::string stat = testing::ReadFile("/proc/" + std::to_string(pid) + "/stat");
  size_t p = stat.rfind(')');  // the command name may hold spaces and parentheses
  if (p == std::string::npos) return -1;
  // After the name: state (field 3) ... utime (14), stime (15).
  const char* c = stat.c_str() + p + 1;
  for (int field = 3; field <= 13; ++field) {
    c = std::strchr(c + 1, ' ');
    if (c == nullptr) return -1;
  }
  unsigned long long utime = 0, stime = 0;
  if (std::sscanf(c, " %llu %llu", &utime, &stime) != 2) return -1;
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double SelfCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return s(ru.ru_utime) + s(ru.ru_stime);
}

// CPU microseconds per delivered message, by process, over one run.
struct CpuSplit {
  double site = 0, gateway = 0, upstream = 0, bench = 0;  // bench: publishers + upstream subscriber
  double total() const { return site + gateway + upstream + bench; }
};

// CPU seconds of the processes of one run, read at its start and at its end.
struct CpuSample {
  double site = 0, gateway = 0, upstream = 0, bench = 0;
  static CpuSample Take(pid_t site_pid, pid_t gateway_pid, pid_t upstream_pid) {
    return {ProcessCpuSeconds(site_pid), gateway_pid > 0 ? ProcessCpuSeconds(gateway_pid) : 0,
            ProcessCpuSeconds(upstream_pid), SelfCpuSeconds()};
  }
  CpuSplit PerMessageSince(const CpuSample& start, uint64_t messages) const {
    const double us = 1e6 / static_cast<double>(std::max<uint64_t>(messages, 1));
    return {(site - start.site) * us, (gateway - start.gateway) * us,
            (upstream - start.upstream) * us, (bench - start.bench) * us};
  }
};

double MedianOf(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// mosquitto with a config of ours and only the log types we want: the test harness's Broker adds
// `log_type all`, which writes several lines per message and would dominate a throughput run.
Subprocess StartMosquitto(const std::string& dir, const std::string& name, const std::string& conf,
                          int port) {
  std::string log = dir + "/" + name + ".log";
  std::string conf_path = dir + "/" + name + ".conf";
  testing::WriteFile(log, "");
  chmod(log.c_str(), 0666);
  testing::WriteFile(conf_path, conf + "\nlog_dest file " + log +
                                    "\nlog_type error\nlog_type warning\nlog_type notice\n");
  auto p = Subprocess::Start({"/usr/sbin/mosquitto", "-c", conf_path}, dir + "/" + name + ".out");
  bool up = testing::WaitUntil([&] { return !p.running() || testing::PortAccepts(port); }, 10s);
  if (!up || !p.running()) {
    throw std::runtime_error("mosquitto " + name + " did not start:\n" + testing::ReadFile(log) +
                             testing::ReadFile(dir + "/" + name + ".out"));
  }
  return p;
}

// The upstream's subscriber, on libmosquitto's own thread. Counts distinct messages of the armed
// run (payload: magic, run, publisher, sequence), duplicates, and — for anything else — which
// devices it heard from (topic et/{id}/…).
class UpstreamCounter {
 public:
  ~UpstreamCounter() { Stop(); }

  void Start(int port, const std::string& client_id) {
    mosq_ = mosquitto_new(client_id.c_str(), true, this);
    if (!mosq_) throw std::runtime_error("mosquitto_new failed");
    mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    // A subscriber that never limits what the upstream may send it: the bottleneck must be the
    // path under test, not the measuring end.
    mosquitto_int_option(mosq_, MOSQ_OPT_RECEIVE_MAXIMUM, 65535);
    mosquitto_connect_v5_callback_set(mosq_, [](mosquitto* m, void*, int rc, int, const mosquitto_property*) {
      if (rc == 0) mosquitto_subscribe(m, nullptr, "#", 1);
    });
    mosquitto_subscribe_v5_callback_set(
        mosq_, [](mosquitto*, void* self, int, int, const int*, const mosquitto_property*) {
          static_cast<UpstreamCounter*>(self)->subscribed_ = true;
        });
    mosquitto_message_v5_callback_set(
        mosq_, [](mosquitto*, void* self, const mosquitto_message* m, const mosquitto_property*) {
          static_cast<UpstreamCounter*>(self)->OnMessage(m);
        });
    if (mosquitto_connect(mosq_, "127.0.0.1", port, 60) != MOSQ_ERR_SUCCESS ||
        mosquitto_loop_start(mosq_) != MOSQ_ERR_SUCCESS) {
      throw std::runtime_error("subscriber cannot connect to the upstream");
    }
    if (!testing::WaitUntil([&] { return subscribed_.load(); }, 10s))
      throw std::runtime_error("subscriber: no SUBACK from the upstream");
  }

  void Stop() {
    if (!mosq_) return;
    mosquitto_disconnect(mosq_);
    mosquitto_loop_stop(mosq_, false);
    mosquitto_destroy(mosq_);
    mosq_ = nullptr;
  }

  void Arm(uint8_t run, uint32_t publishers, uint32_t per_publisher) {
    std::lock_guard lock(mu_);
    run_ = run;
    per_publisher_ = per_publisher;
    seen_.assign(static_cast<size_t>(publishers) * per_publisher, false);
    fresh_ = 0;
    dupes_ = 0;
    stale_ = 0;
  }

  uint64_t fresh() const { return fresh_.load(); }
  uint64_t dupes() const { return dupes_.load(); }
  uint64_t stale() const { return stale_.load(); }
  uint64_t others() const { return others_.load(); }
  size_t Devices() {
    std::lock_guard lock(mu_);
    return devices_.size();
  }

 private:
  void OnMessage(const mosquitto_message* m) {
    const auto* p = static_cast<const unsigned char*>(m->payload);
    std::lock_guard lock(mu_);
    if (m->payloadlen == static_cast<int>(kPayloadBytes) && std::memcmp(p, kMagic, 4) == 0) {
      if (p[4] != run_) {
        stale_++;
        return;
      }
      uint32_t pub = p[5] | (p[6] << 8) | (p[7] << 16);
      uint32_t seq = p[8] | (p[9] << 8) | (p[10] << 16) | (static_cast<uint32_t>(p[11]) << 24);
      size_t i = static_cast<size_t>(pub) * per_publisher_ + seq;
      if (seq >= per_publisher_ || i >= seen_.size()) {
        stale_++;
      } else if (seen_[i]) {
        dupes_++;
      } else {
        seen_[i] = true;
        fresh_++;
      }
      return;
    }
    others_++;
    std::string topic = m->topic;
    size_t a = topic.find('/'), b = topic.find('/', a + 1);
    if (a != std::string::npos && b != std::string::npos) devices_.insert(topic.substr(a + 1, b - a - 1));
  }

  mosquitto* mosq_ = nullptr;
  std::atomic<bool> subscribed_{false};
  std::mutex mu_;
  uint8_t run_ = 0;
  uint32_t per_publisher_ = 0;
  std::vector<bool> seen_;
  std::set<std::string> devices_;
  std::atomic<uint64_t> fresh_{0}, dupes_{0}, stale_{0}, others_{0};
};

// P devices on one libuv loop, each keeping `window` QoS 1 publishes unacknowledged.
class PublisherFleet {
 public:
  struct Device {
    std::string id, identity;  // identity: operational.pem (certificate + key)
  };

  PublisherFleet(uv_loop_t* loop, const std::string& ca, int port, std::vector<Device> devices,
                 uint32_t per_publisher, int window, uint8_t run)
      : loop_(loop), per_(per_publisher), window_(window), run_(run) {
    for (size_t i = 0; i < devices.size(); i++) {
      auto p = std::make_unique<Pub>();
      p->index = static_cast<uint32_t>(i);
      p->topic = "et/" + devices[i].id + "/up/telemetry";
      mqtt::ClientOptions o;
      o.port = port;
      o.client_id = devices[i].id;
      o.ca = ca;
      o.cert = devices[i].identity;
      o.key = devices[i].identity;
      o.keepalive = 60;
      mqtt::ClientCallbacks cb;
      Pub* raw = p.get();
      cb.on_connect = [this, raw](int reason) {
        if (reason != 0) {
          refused_++;
          return;
        }
        if (!raw->connected_once) {
          raw->connected_once = true;
          connected_++;
        } else {
          reconnects_++;
          // Unacknowledged QoS 1 messages are resent by libmosquitto; keep the window as is.
        }
      };
      cb.on_publish_ack = [this, raw](int, int reason) {
        if (reason >= 0x80) errors_++;
        raw->inflight--;
        acked_++;
        Pump(*raw);
      };
      auto c = mqtt::UvMqttClient::Create(loop_, o, cb);
      if (!c.ok()) throw std::runtime_error("publisher " + devices[i].id + ": " + c.error().ToString());
      p->client = std::move(c).value();
      pubs_.push_back(std::move(p));
    }
  }

  void Connect() {
    for (auto& p : pubs_) (void)p->client->Start();
  }
  size_t connected() const { return connected_; }
  size_t refused() const { return refused_; }
  uint64_t acked() const { return acked_; }
  uint64_t errors() const { return errors_; }
  uint64_t reconnects() const { return reconnects_; }

  void Go() {
    for (auto& p : pubs_) Pump(*p);
  }

  void Stop() {
    for (auto& p : pubs_) p->client->Stop();
  }
  bool closed() const {
    return std::all_of(pubs_.begin(), pubs_.end(), [](const auto& p) { return p->client->closed(); });
  }

 private:
  struct Pub {
    uint32_t index = 0;
    std::string topic;
    std::unique_ptr<mqtt::UvMqttClient> client;
    uint32_t next = 0;
    int inflight = 0;
    bool connected_once = false;
  };

  void Pump(Pub& p) {
    while (p.inflight < window_ && p.next < per_ && p.client->connected()) {
      unsigned char payload[kPayloadBytes];
      std::memset(payload, 'x', sizeof payload);
      std::memcpy(payload, kMagic, 4);
      payload[4] = run_;
      payload[5] = p.index & 0xff;
      payload[6] = (p.index >> 8) & 0xff;
      payload[7] = (p.index >> 16) & 0xff;
      for (int b = 0; b < 4; b++) payload[8 + b] = (p.next >> (8 * b)) & 0xff;
      auto mid = p.client->Publish(p.topic, ByteView(payload, sizeof payload), 1);
      if (!mid.ok()) {
        errors_++;
        return;
      }
      p.next++;
      p.inflight++;
    }
  }

  uv_loop_t* loop_;
  uint32_t per_;
  int window_;
  uint8_t run_;
  std::vector<std::unique_ptr<Pub>> pubs_;
  size_t connected_ = 0, refused_ = 0;
  uint64_t acked_ = 0, errors_ = 0, reconnects_ = 0;
};

void RunLoopUntil(uv_loop_t* loop, const std::function<bool()>& done, std::chrono::seconds limit) {
  // A timer keeps uv_run from blocking forever when nothing else is pending.
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, [](uv_timer_t*) {}, 2, 2);
  auto deadline = Clock::now() + limit;
  while (!done() && Clock::now() < deadline) uv_run(loop, UV_RUN_ONCE);
  uv_timer_stop(&tick);
  uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
  uv_run(loop, UV_RUN_NOWAIT);
}

struct Bench {
  Flags flags;
  testing::TempDir tmp;
  SiteFixture site;
  int upstream_port = 0;      // plain listener: the counting subscriber, and the data path
  int upstream_tls_port = 0;  // --upstream-tls: TLS listener for the data path
  std::string state_dir;
  std::string limits;  // the same broker limits for the site broker in A and B, and the upstream

  std::string UpstreamConfig() const {
    std::string tls;
    if (flags.upstream_tls) {
      // The site broker's server certificate (SAN 127.0.0.1, from the site CA) serves here too.
      tls = "listener " + std::to_string(upstream_tls_port) + " 127.0.0.1\n" +
            "cafile " + site.site_ca_cert + "\ncertfile " + site.broker_cert + "\n" +
            "keyfile " + site.broker_key + "\nrequire_certificate false\n";
    }
    return "listener " + std::to_string(upstream_port) + " 127.0.0.1\n" + tls +
           "allow_anonymous true\npersistence false\n" + limits;
  }

  // Where the gateway and the bridge send: the TLS listener with --upstream-tls.
  int DataPort() const { return flags.upstream_tls ? upstream_tls_port : upstream_port; }

  std::string SiteConfigA() const { return site.MosquittoConfig() + limits; }

  // What a competent operator writes for a durable bridge over a LAN: QoS 1 end to end, a
  // persistent session on the remote (cleansession false), MQTT 3.1.1 (the bridge default),
  // notifications off (not part of the data path), quick restart after a drop.
  std::string SiteConfigB() const {
    return SiteConfigA() +
           "\nconnection upstream\n"
           "address 127.0.0.1:" + std::to_string(DataPort()) + "\n" +
           (flags.upstream_tls ? "bridge_cafile " + site.site_ca_cert + "\n" : std::string()) +
           "remote_clientid " + kBridgeClientId + "\n"
           "bridge_protocol_version mqttv311\n"
           "cleansession false\n"
           "keepalive_interval 60\n"
           "restart_timeout 1\n"
           "notifications false\n"
           "try_private true\n"
           "start_type automatic\n"
           "topic et/+/up/# out 1\n";
  }

  std::string Policy(bool routed) const {
    return "site: " + site.site_id + "\n" +
           "trust:\n"
           "  site_ca: " + site.site_ca_cert + "\n" +
           "  manufacturers:\n"
           "    acme: " + site.manufacturers.at("acme").ca_cert + "\n" +
           "principals: { gateway: [edgetrust-gateway], admin: [ops-admin] }\n"
           "groups:\n"
           "  - name: thermostats\n"
           "    match: { manufacturer: acme, model: \"*\" }\n"
           "    enrollment: { mode: auto }\n" +
           (routed ? "    route: hq\n" : "") +
           "upstreams:\n"
           "  hq: { kind: mqtt, url: \"" + (flags.upstream_tls ? "mqtts" : "mqtt") +
           "://127.0.0.1:" + std::to_string(DataPort()) + "\", topic: \"et/{device}/up/{channel}\", " +
           (flags.upstream_tls ? "ca: " + site.site_ca_cert + ", " : std::string()) + "qos: 1 }\n";
  }

  Subprocess StartGateway(const std::string& name) {
    auto gw = Subprocess::Start(
        {flags.gateway.empty() ? testing::BinPath("edgetrust-gateway") : flags.gateway,
         "--policy", site.policy, "--store", site.store,
         "--broker", "mqtts://127.0.0.1:" + std::to_string(site.port), "--ca", site.site_ca_cert,
         "--cert", site.gateway_cert, "--key", site.gateway_key},
        tmp / (name + ".log"));
    bool ok = testing::WaitUntil(
        [&] {
          std::string log = gw.Log();
          return !gw.running() || (log.find("gateway_ready") != std::string::npos &&
                                   log.find("upstream_up") != std::string::npos);
        },
        20s);
    if (!ok || !gw.running()) throw std::runtime_error("gateway did not start:\n" + gw.Log());
    return gw;
  }
};

struct RunResult {
  double rate = 0;  // delivered messages per second (0 on failure)
  CpuSplit cpu;
  double cpus_busy = 0;  // CPU seconds of all the run's processes per second of the run
};

// One throughput run.
RunResult RunOnce(Bench& b, bool edgetrust, int round, uv_loop_t* loop,
               const std::vector<PublisherFleet::Device>& pubs) {
  const Flags& f = b.flags;
  const char* label = edgetrust ? "A edgetrust" : "B bridge   ";
  std::string tag = std::string(edgetrust ? "A" : "B") + std::to_string(round);
  uint8_t run = static_cast<uint8_t>(1 + round * 2 + (edgetrust ? 0 : 1));
  uint32_t per = static_cast<uint32_t>(f.messages / f.publishers);
  uint64_t total = static_cast<uint64_t>(per) * pubs.size();

  auto upstream = StartMosquitto(b.tmp.path(), "upstream-" + tag, b.UpstreamConfig(), b.upstream_port);
  UpstreamCounter counter;
  counter.Start(b.upstream_port, "cloud-" + tag);
  counter.Arm(run, static_cast<uint32_t>(pubs.size()), per);
  auto broker = StartMosquitto(b.tmp.path(), "site-" + tag,
                               edgetrust ? b.SiteConfigA() : b.SiteConfigB(), b.site.port);
  Subprocess gateway;
  if (edgetrust) {
    gateway = b.StartGateway("gateway-" + tag);
  } else {
    std::string ulog = b.tmp / ("upstream-" + tag + ".log");
    if (!testing::WaitUntil([&] {
          return testing::ReadFile(ulog).find(std::string("as ") + kBridgeClientId) != std::string::npos;
        }, 20s)) {
      throw std::runtime_error("the bridge did not connect to the upstream");
    }
  }

  PublisherFleet fleet(loop, b.site.site_ca_cert, b.site.port, pubs, per, f.inflight, run);
  fleet.Connect();
  RunLoopUntil(loop, [&] { return fleet.connected() + fleet.refused() == pubs.size(); }, 60s);
  if (fleet.connected() != pubs.size()) {
    std::printf("  %s round %d: only %zu/%zu publishers connected (%zu refused)\n", label, round,
                fleet.connected(), pubs.size(), fleet.refused());
  }

  const pid_t gateway_pid = edgetrust ? gateway.pid() : 0;
  const CpuSample cpu0 = CpuSample::Take(broker.pid(), gateway_pid, upstream.pid());
  auto t0 = Clock::now();
  Clock::time_point t_acked{};
  fleet.Go();
  RunLoopUntil(loop, [&] {
    if (t_acked == Clock::time_point{} && fleet.acked() >= total) t_acked = Clock::now();
    return counter.fresh() >= total;
  }, 600s);
  auto t1 = Clock::now();
  const CpuSample cpu1 = CpuSample::Take(broker.pid(), gateway_pid, upstream.pid());
  double secs = Seconds(t1 - t0);
  bool complete = counter.fresh() >= total;
  RunResult result;
  result.cpu = cpu1.PerMessageSince(cpu0, total);
  result.cpus_busy = result.cpu.total() * static_cast<double>(total) / 1e6 / secs;
  double rate = complete ? total / secs : 0;
  double ingest = t_acked != Clock::time_point{} ? total / Seconds(t_acked - t0) : 0;

  std::string rss;
  if (edgetrust) {
    rss = ", gateway VmHWM " + StatusField(gateway.pid(), "VmHWM");
  }
  std::printf("  %s round %d: %llu/%llu delivered in %.2f s = %.0f msg/s (site broker acked all "
              "publishes at %.0f msg/s; %llu duplicates, %llu stale; %llu publisher reconnects)%s\n",
              label, round, static_cast<unsigned long long>(counter.fresh()),
              static_cast<unsigned long long>(total), secs, rate, ingest,
              static_cast<unsigned long long>(counter.dupes()),
              static_cast<unsigned long long>(counter.stale()),
              static_cast<unsigned long long>(fleet.reconnects()), rss.c_str());
  std::printf("      CPU per message: site broker %.0f us%s, upstream broker %.0f us, publishers + "
              "upstream subscriber %.0f us, total %.0f us (%.2f CPUs busy)\n",
              result.cpu.site,
              edgetrust ? (", gateway " + std::to_string(std::lround(result.cpu.gateway)) + " us").c_str() : "",
              result.cpu.upstream, result.cpu.bench, result.cpu.total(), result.cpus_busy);
  std::fflush(stdout);

  fleet.Stop();
  RunLoopUntil(loop, [&] { return fleet.closed(); }, 10s);
  if (edgetrust) gateway.Stop(10s);
  counter.Stop();
  broker.Stop();
  upstream.Stop();
  result.rate = rate;
  return result;
}

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  bool quick = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&]() -> int {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return std::atoi(argv[++i]);
    };
    if (a == "--devices") f.devices = next();
    else if (a == "--messages") f.messages = next();
    else if (a == "--publishers") f.publishers = next();
    else if (a == "--telemetry-interval") f.telemetry_interval = next();
    else if (a == "--stagger-ms") f.stagger_ms = next();
    else if (a == "--hold") f.hold = next();
    else if (a == "--inflight") f.inflight = next();
    else if (a == "--rounds") f.rounds = next();
    else if (a == "--broker-inflight") f.broker_inflight = next();
    else if (a == "--broker-queued") f.broker_queued = next();
    else if (a == "--keep") f.keep = true;
    else if (a == "--upstream-tls") f.upstream_tls = true;
    else if (a == "--gateway") {
      if (i + 1 >= argc) throw std::runtime_error("--gateway needs a path");
      f.gateway = argv[++i];
    } else if (a == "--only") {
      if (i + 1 >= argc) throw std::runtime_error("--only needs a or b");
      std::string which = argv[++i];
      f.run_a = which == "a";
      f.run_b = which == "b";
    }
    else if (a == "--quick") quick = true;
    else throw std::runtime_error("unknown flag " + a);
  }
  if (quick) {
    f.devices = std::min(f.devices, 200);
    f.messages = std::min(f.messages, 20000);
    f.rounds = 1;
  }
  f.publishers = std::min(f.publishers, f.devices);
  if (f.devices < 1 || f.publishers < 1 || f.messages < f.publishers || f.inflight < 1 ||
      f.stagger_ms < 0 ||
      f.rounds < 1) {
    throw std::runtime_error("bad flags");
  }
  return f;
}

// Devices whose record is active in the store (read-only, beside the running gateway).
Result<uint64_t> CountActive(const std::string& store_dir) {
  storage::StoreOptions o;
  o.path = store_dir;
  o.read_only = true;
  ET_ASSIGN_OR_RETURN(auto store, storage::Store::Open(o));
  ET_ASSIGN_OR_RETURN(auto txn, store.BeginRead());
  uint64_t active = 0;
  std::string after;
  for (;;) {
    ET_ASSIGN_OR_RETURN(auto page, storage::ListDevices(txn, after, 1000));
    if (page.empty()) break;
    for (const auto& d : page) active += d.state == storage::DeviceState::kActive ? 1 : 0;
    after = page.back().id;
  }
  return active;
}

int Main(int argc, char** argv) {
  Bench b;
  b.flags = ParseFlags(argc, argv);
  const Flags& f = b.flags;

  // 10,000 TLS connections in the simulator and as many in the broker: both inherit this.
  // The simulator needs device::kDescriptorsPerSimulatedDevice per device; root may raise the
  // hard limit too (where it cannot, the fleet is split over several simulator processes).
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  const rlim_t wanted =
      static_cast<rlim_t>(f.devices) * device::kDescriptorsPerSimulatedDevice + 4096;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < wanted) rl.rlim_max = wanted;
  rl.rlim_cur = rl.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < wanted) {
    std::printf("warning: RLIMIT_NOFILE %llu is low for %d devices\n",
                static_cast<unsigned long long>(rl.rlim_cur), f.devices);
  }
  b.limits = "max_connections -1\n"
             "max_inflight_messages " + std::to_string(f.broker_inflight) + "\n" +
             "max_queued_messages " + std::to_string(f.broker_queued) + "\n" +
             "queue_qos0_messages true\n";

  std::printf("bench_forward: %d devices; throughput: %d x 100-byte QoS 1 messages from %d devices, "
              "%d unacknowledged each, %d round(s) of A and B (A first in even rounds, B first "
              "in odd)\n",
              f.devices, f.messages, f.publishers, f.inflight, f.rounds);
  std::printf("broker limits (site broker in A and B, and the upstream): max_inflight_messages %d, "
              "max_queued_messages %d, queue_qos0_messages true, max_connections -1\n",
              f.broker_inflight, f.broker_queued);
  std::printf("  why: the publishers get PUBACK from the site broker long before the message is "
              "upstream, so the broker's queue for the one session that carries everything out "
              "(gateway or bridge) grows; with the default 1000 it would drop QoS 1 messages. "
              "max_inflight_messages bounds what the bridge (MQTT 3.1.1) has unacknowledged "
              "upstream and what the upstream grants the gateway's v5 connection (Receive "
              "Maximum); toward the gateway the site broker obeys the Receive Maximum the "
              "gateway asks for (1024).\n");
  std::printf("outbox: the store as the gateway opens it (storage::StoreOptions default sync=true: "
              "LMDB fsyncs every commit) on %s\n", b.tmp.path().c_str());
  std::printf("upstream link (gateway in A, bridge in B): %s; the counting subscriber: plain TCP\n",
              f.upstream_tls ? "TLS (server certificate from the site CA)"
                             : "plain TCP (--upstream-tls: TLS, as cloud upstreams require)");

  auto t_setup = Clock::now();
  b.site = SiteFixture::Create(
      b.tmp, {.site_id = "bench", .manufacturers = {{.name = "acme", .model = "thermo-1", .count = f.devices}}});
  b.upstream_port = testing::FreeLoopbackPort();
  if (f.upstream_tls) {
    do {
      b.upstream_tls_port = testing::FreeLoopbackPort();
    } while (b.upstream_tls_port == b.upstream_port);
  }
  testing::WriteFile(b.site.policy, b.Policy(true));
  b.state_dir = b.tmp / "device-state";
  std::printf("setup: site + %d provisioned devices by the CLI in %.1f s\n", f.devices,
              Seconds(Clock::now() - t_setup));
  std::fflush(stdout);

  // ---- Phase 1: the fleet enrolls and talks; the gateway's memory with N devices.
  {
    auto upstream = StartMosquitto(b.tmp.path(), "upstream-fleet", b.UpstreamConfig(), b.upstream_port);
    UpstreamCounter counter;
    counter.Start(b.upstream_port, "cloud-fleet");
    auto broker = StartMosquitto(b.tmp.path(), "site-fleet", b.SiteConfigA(), b.site.port);
    auto gateway = b.StartGateway("gateway-fleet");
    std::printf("gateway (idle, 0 devices): VmRSS %s\n", StatusField(gateway.pid(), "VmRSS").c_str());
    // Split the fleet over as many simulator processes as the descriptor limit asks for, each
    // given its share of the factory output as a directory of links.
    rlimit nofile{};
    getrlimit(RLIMIT_NOFILE, &nofile);
    const int per_process = std::max<int>(
        1, static_cast<int>((std::min<rlim_t>(nofile.rlim_cur, 1 << 20) - 128) /
                            device::kDescriptorsPerSimulatedDevice));
    const std::string devices_dir = b.site.manufacturers.at("acme").devices_dir;
    std::vector<Subprocess> sims;
    auto t0 = Clock::now();
    for (int first = 0, part = 0; first < f.devices; first += per_process, ++part) {
      const int count = std::min(per_process, f.devices - first);
      const std::string share = b.tmp / ("devices-part-" + std::to_string(part));
      mkdir(share.c_str(), 0755);
      for (int i = first; i < first + count; ++i) {
        const std::string& id = b.site.devices[static_cast<size_t>(i)].id;
        if (symlink((devices_dir + "/" + id).c_str(), (share + "/" + id).c_str()) != 0) {
          throw std::runtime_error("cannot link " + id + " into " + share);
        }
      }
      sims.push_back(Subprocess::Start(
          {testing::BinPath("edgetrust-device"), "--broker",
           "mqtts://127.0.0.1:" + std::to_string(b.site.port), "--ca", b.site.site_ca_cert,
           "--simulate", std::to_string(count), "--factory-out", share, "--state", b.state_dir,
           "--count", "3", "--interval", std::to_string(f.telemetry_interval), "--stagger-ms",
           std::to_string(f.stagger_ms), "--quiet", "--duration", "1800"},
          b.tmp / ("simulator-" + std::to_string(part) + ".log")));
    }
    std::printf("fleet: %zu simulator process(es), up to %d devices each\n", sims.size(), per_process);
    std::optional<int> code = 0;
    // VmHWM says how high the gateway's RSS went, not of what: sampled each second, the highest
    // VmRSS seen and its anonymous / file (LMDB map) split.
    struct RssSample {
      long anon_kb = 0, file_kb = 0;
      double at_s = 0;
      long total() const { return anon_kb + file_kb; }
    } peak;
    auto sample_rss = [&] {
      RssSample now{std::atol(StatusField(gateway.pid(), "RssAnon").c_str()),
                    std::atol(StatusField(gateway.pid(), "RssFile").c_str()),
                    Seconds(Clock::now() - t0)};
      if (now.total() > peak.total()) peak = now;
    };
    const CpuSample cpu0 = CpuSample::Take(broker.pid(), gateway.pid(), upstream.pid());
    std::vector<double> sim_cpu(sims.size(), 0.0);  // each simulator's, at its last sample
    for (int tick = 1;; tick++) {
      bool all_done = true;
      for (auto& sim : sims) {
        if (sim.running()) all_done = false;
      }
      if (all_done) break;
      std::this_thread::sleep_for(1s);
      sample_rss();
      for (size_t i = 0; i < sims.size(); ++i)
        sim_cpu[i] = std::max(sim_cpu[i], ProcessCpuSeconds(sims[i].pid()));
      if (!gateway.running()) {
        std::string log = gateway.Log();
        throw std::runtime_error("the gateway died during enrollment; its log ends:\n" +
                                 log.substr(log.size() > 3000 ? log.size() - 3000 : 0));
      }
      if (tick % 30 == 0) {
        for (auto& sim : sims) {
          std::string log = sim.Log();
          size_t last = log.rfind("simulate:");
          if (last != std::string::npos)
            std::printf("  %s\n", log.substr(last, log.find('\n', last) - last).c_str());
        }
        std::fflush(stdout);
      }
      if (tick > 1900) break;
    }
    for (auto& sim : sims) {
      auto c = sim.Wait(1s);
      if (c != 0) {
        code = c;
        std::string log = sim.Log();
        std::printf("simulator exit %d; last output:\n%s\n", c ? *c : -1,
                    log.substr(log.size() > 2000 ? log.size() - 2000 : 0).c_str());
      }
    }
    double sim_s = Seconds(Clock::now() - t0);
    const CpuSample cpu1 = CpuSample::Take(broker.pid(), gateway.pid(), upstream.pid());
    testing::WaitUntil([&] { return counter.Devices() >= static_cast<size_t>(f.devices) &&
                                    counter.others() >= 3ull * f.devices; }, 60s);
    std::printf("fleet: %s in %.1f s (simulator exit %d)\n",
                code == 0 ? "every device enrolled through the gateway, reconnected with its "
                            "operational certificate and sent >= 3 telemetry messages"
                          : "NOT every device finished",
                sim_s, code ? *code : -1);
    auto active = CountActive(b.site.store);
    std::printf("fleet: upstream received %llu messages from %zu distinct devices; store: %s active "
                "devices\n",
                static_cast<unsigned long long>(counter.others()), counter.Devices(),
                active.ok() ? std::to_string(*active).c_str() : active.error().ToString().c_str());
    std::printf("gateway RSS with %d devices: VmHWM %s, VmRSS %s = RssAnon %s + RssFile %s "
                "(RssFile: mostly the store's LMDB map, page cache) (goal <= 64 MiB)\n",
                f.devices, StatusField(gateway.pid(), "VmHWM").c_str(),
                StatusField(gateway.pid(), "VmRSS").c_str(),
                StatusField(gateway.pid(), "RssAnon").c_str(),
                StatusField(gateway.pid(), "RssFile").c_str());
    std::printf("gateway RSS, highest sampled each second during the fleet phase: %ld kB = "
                "RssAnon %ld kB + RssFile %ld kB, at %.0f s\n",
                peak.total(), peak.anon_kb, peak.file_kb, peak.at_s);
    std::printf("fleet phase CPU seconds: site broker %.1f, gateway %.1f, upstream %.1f, "
                "simulators %.1f (at their last sample), in %.1f s on %ld cores\n",
                cpu1.site - cpu0.site, cpu1.gateway - cpu0.gateway, cpu1.upstream - cpu0.upstream,
                std::accumulate(sim_cpu.begin(), sim_cpu.end(), 0.0), sim_s,
                sysconf(_SC_NPROCESSORS_ONLN));
    std::fflush(stdout);
    if (f.hold > 0) {
      std::printf("holding the fleet's gateway (pid %d) for %d s\n", gateway.pid(), f.hold);
      std::fflush(stdout);
      std::this_thread::sleep_for(std::chrono::seconds(f.hold));
    }
    gateway.Stop(10s);
    counter.Stop();
    broker.Stop();
    upstream.Stop();
  }

  // ---- Phase 2: throughput, A and B, repeated.
  std::vector<PublisherFleet::Device> pubs;
  for (int i = 0; i < f.publishers; i++) {
    const auto& d = b.site.devices[i];
    std::string identity = b.state_dir + "/" + d.id + "/operational.pem";
    struct stat st {};
    if (stat(identity.c_str(), &st) != 0) {
      std::printf("no operational identity for %s (%s): it did not enroll\n", d.id.c_str(),
                  identity.c_str());
      return 1;
    }
    pubs.push_back({d.id, identity});
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::vector<RunResult> a_runs, b_runs;
  // A B, B A, A B, …: a fixed order would hand any drift of the machine's speed over the minutes
  // of the rounds to one side.
  for (int r = 0; r < f.rounds; r++) {
    for (bool edgetrust : {r % 2 == 0, r % 2 != 0}) {
      if (edgetrust ? f.run_a : f.run_b) {
        (edgetrust ? a_runs : b_runs).push_back(RunOnce(b, edgetrust, r, &loop, pubs));
      }
    }
  }
  auto median = [](const std::vector<RunResult>& runs, auto field) {
    std::vector<double> v;
    for (const RunResult& run : runs) v.push_back(field(run));
    return MedianOf(v);
  };
  auto rate_of = [](const RunResult& r) { return r.rate; };
  uv_run(&loop, UV_RUN_DEFAULT);
  int loop_close = uv_loop_close(&loop);
  double ma = median(a_runs, rate_of), mb = median(b_runs, rate_of);
  // Where the CPU went, medians over the rounds: with every process on the same few cores the
  // rates follow the totals, and the site broker's and the gateway's shares show what the hop
  // through the gateway costs against the bridge inside the broker.
  auto cpu = [&](const std::vector<RunResult>& runs) {
    CpuSplit c;
    c.site = median(runs, [](const RunResult& r) { return r.cpu.site; });
    c.gateway = median(runs, [](const RunResult& r) { return r.cpu.gateway; });
    c.upstream = median(runs, [](const RunResult& r) { return r.cpu.upstream; });
    c.bench = median(runs, [](const RunResult& r) { return r.cpu.bench; });
    return c;
  };
  const CpuSplit ca = cpu(a_runs), cb = cpu(b_runs);
  std::printf("CPU per delivered message (median of %d, microseconds; %ld CPUs online):\n",
              f.rounds, sysconf(_SC_NPROCESSORS_ONLN));
  std::printf("  %-22s %11s %8s %9s %22s %6s\n", "", "site broker", "gateway", "upstream",
              "publishers+subscriber", "total");
  if (!a_runs.empty()) {
    std::printf("  %-22s %11.0f %8.0f %9.0f %22.0f %6.0f\n", "A edgetrust", ca.site, ca.gateway,
                ca.upstream, ca.bench, ca.total());
  }
  if (!b_runs.empty()) {
    std::printf("  %-22s %11.0f %8s %9.0f %22.0f %6.0f\n", "B mosquitto bridge", cb.site, "-",
                cb.upstream, cb.bench, cb.total());
  }
  if (!a_runs.empty() && !b_runs.empty() && ca.total() > ca.gateway) {
    std::printf("  A without the gateway's own CPU: %.0f us per message; B's total / that = %.2fx, "
                "about what A/B would be with a gateway that cost nothing, as long as the site "
                "broker delivers to it over MQTT (when the processes share the CPUs: see CPUs busy)\n",
                ca.total() - ca.gateway, cb.total() / (ca.total() - ca.gateway));
  }
  std::printf("throughput (median of %d): A edgetrust %.0f msg/s, B mosquitto bridge %.0f msg/s\n",
              f.rounds, ma, mb);
  std::printf("ratio A/B = %.2fx (goal >= 1.0x)\n", mb > 0 ? ma / mb : 0.0);
  auto failed = [](const RunResult& r) { return r.rate == 0; };
  bool ok = loop_close == 0 && std::ranges::none_of(a_runs, failed) &&
            std::ranges::none_of(b_runs, failed);
  if (f.keep) {
    std::string cmd = "cp -a " + b.tmp.path() + " " + b.tmp.path() + "-kept";
    std::printf("logs and configs copied to %s-kept (exit %d)\n", b.tmp.path().c_str(),
                std::system(cmd.c_str()));
  }
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_forward: %s\n", e.what());
    return 1;
  }
}
