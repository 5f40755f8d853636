// bench_enroll: N simulated devices enroll end to end — connect with the birth certificate,
// send a CSR, get the operational certificate from the real edgetrust-gateway, reconnect with
// it — against a real mosquitto with the edgetrust plugin. Compared, in the same run on the same
// machine, with 2·N plain mutual-TLS connects to a plain mosquitto (same TLS listener settings,
// no plugin). Prints both times, the ratio (goal <= 3x) and the gateway's peak RSS.
//
//   bench_enroll [--devices N] [--window W]
//
// The devices run in this process on one libuv loop (edgetrust_mqtt), at most W connections
// in progress at a time. Device keys and CSRs are made before the clock starts (a device makes
// them long before it talks to the site), the site and factory by the real CLI.
#include <sys/stat.h>
#include <uv.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "edgetrust/mqtt/uv_mqtt_client.h"
#include "edgetrust/pki/pki.h"
#include "edgetrust/protocol/messages.h"
#include "edgetrust/testing/process.h"
#include "edgetrust/testing/site_fixture.h"

namespace {

using namespace edgetrust;
using namespace std::chrono_literals;
using testing::SiteFixture;

struct SimDevice {
  std::string id;
  std::string birth_cert, birth_key;
  std::string op_cert, op_key;
  Bytes request;  // encoded EnrollRequest
  std::unique_ptr<mqtt::UvMqttClient> client;
  int step = 0;
};

// Runs `jobs` with at most `window` in flight; each job calls done() exactly once.
class Pacer {
 public:
  Pacer(size_t window, std::vector<std::function<void(std::function<void()>)>> jobs)
      : window_(window), jobs_(std::move(jobs)) {}
  void Start() {
    while (running_ < window_ && next_ < jobs_.size()) Launch();
  }
  size_t finished() const { return finished_; }
  bool all_done() const { return finished_ == jobs_.size(); }

 private:
  void Launch() {
    size_t i = next_++;
    running_++;
    jobs_[i]([this] {
      running_--;
      finished_++;
      Start();
    });
  }
  size_t window_;
  std::vector<std::function<void(std::function<void()>)>> jobs_;
  size_t next_ = 0, running_ = 0, finished_ = 0;
};

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

std::string VmHwm(pid_t pid) {
  std::string status = testing::ReadFile("/proc/" + std::to_string(pid) + "/status");
  size_t p = status.find("VmHWM:");
  if (p == std::string::npos) return "?";
  size_t e = status.find('\n', p);
  std::string v = status.substr(p + 6, e - p - 6);
  return v.substr(v.find_first_not_of(" \t"));
}

void RunLoopUntil(uv_loop_t* loop, const std::function<bool()>& done, std::chrono::seconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < deadline) uv_run(loop, UV_RUN_ONCE);
}

}  // namespace

int main(int argc, char** argv) {
  int n = 1000;
  size_t window = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--devices") n = std::atoi(argv[i + 1]);
    else if (a == "--window") window = static_cast<size_t>(std::atoi(argv[i + 1]));
  }
  std::printf("bench_enroll: %d devices, %zu connections in progress at most\n", n, window);

  testing::TempDir tmp;
  auto t_setup = std::chrono::steady_clock::now();
  SiteFixture site = SiteFixture::Create(
      tmp, {.site_id = "bench", .manufacturers = {{.name = "acme", .model = "thermo-1", .count = n}}});
  std::printf("setup: site + %d provisioned devices by the CLI in %.1f s\n", n,
              Seconds(std::chrono::steady_clock::now() - t_setup));

  // Plain mosquitto: the same listener (TLS, client certificates required) without the plugin.
  int plain_port = testing::FreeLoopbackPort();
  std::string plain_conf = site.ListenerOnlyConfig();
  std::string needle = "listener " + std::to_string(site.port);
  size_t lp = plain_conf.find(needle);
  if (lp == std::string::npos) {
    std::fprintf(stderr, "cannot find '%s' in the generated config\n", needle.c_str());
    return 1;
  }
  plain_conf.replace(lp, needle.size(), "listener " + std::to_string(plain_port));
  std::string plain_dir = tmp / "plain";
  mkdir(plain_dir.c_str(), 0755);
  auto plain = testing::Broker::Start(plain_dir, plain_conf + "max_connections -1\n", {plain_port});
  auto broker = testing::Broker::Start(tmp.path(), site.MosquittoConfig(), {site.port});
  auto gateway = testing::Subprocess::Start(
      {testing::BinPath("edgetrust-gateway"), "--policy", site.policy, "--store", site.store,
       "--broker", "mqtts://127.0.0.1:" + std::to_string(site.port), "--ca", site.site_ca_cert,
       "--cert", site.gateway_cert, "--key", site.gateway_key, "--rate", "5/10"},
      tmp / "gateway.log");
  if (!testing::WaitUntil([&] { return gateway.Log().find("gateway_ready") != std::string::npos; },
                          20s)) {
    std::fprintf(stderr, "gateway did not start:\n%s", gateway.Log().c_str());
    return 1;
  }

  std::vector<SimDevice> devices(n);
  std::string opdir = tmp / "op";
  mkdir(opdir.c_str(), 0755);
  for (int i = 0; i < n; i++) {
    SimDevice& d = devices[i];
    d.id = site.devices[i].id;
    d.birth_cert = site.devices[i].cert;
    d.birth_key = site.devices[i].key;
    d.op_cert = opdir + "/" + d.id + ".pem";
    d.op_key = opdir + "/" + d.id + ".key";
    auto key = pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256);
    testing::WriteFile(d.op_key, *key->ToPem());
    auto birth = pki::LoadCertificateFile(d.birth_cert);
    protocol::EnrollRequest r;
    r.rid = "bench-1";
    r.csr = *pki::CreateCsr(*key, {.cn = d.id});
    r.birth = birth->der;
    r.fw = "1.0.0";
    r.model = "thermo-1";
    d.request = protocol::EncodeEnrollRequest(r);
  }

  uv_loop_t loop;
  uv_loop_init(&loop);
  auto options = [&](const std::string& id, int port, const std::string& cert,
                     const std::string& key) {
    mqtt::ClientOptions o;
    o.port = port;
    o.client_id = id;
    o.ca = site.site_ca_cert;
    o.cert = cert;
    o.key = key;
    o.keepalive = 60;
    o.reconnect_min = 200ms;
    o.reconnect_max = 2000ms;
    return o;
  };

  // --- Baseline: 2N mutual-TLS connects (CONNECT/CONNACK, then DISCONNECT) to plain mosquitto.
  int failures = 0;
  std::vector<std::function<void(std::function<void()>)>> connects;
  std::vector<std::unique_ptr<mqtt::UvMqttClient>> baseline_clients(2 * n);
  for (int i = 0; i < 2 * n; i++) {
    connects.push_back([&, i](std::function<void()> done) {
      const SimDevice& d = devices[i % n];
      mqtt::ClientCallbacks cb;
      auto* slot = &baseline_clients[i];
      cb.on_connect = [slot, done, &failures](int reason) {
        if (reason != 0) failures++;
        (*slot)->Stop();
        done();
      };
      auto c = mqtt::UvMqttClient::Create(
          &loop, options(d.id + "-b" + std::to_string(i / n), plain_port, d.birth_cert, d.birth_key),
          cb);
      *slot = std::move(c).value();
      (void)(*slot)->Start();
    });
  }
  Pacer baseline(window, std::move(connects));
  auto t0 = std::chrono::steady_clock::now();
  baseline.Start();
  RunLoopUntil(&loop, [&] { return baseline.all_done(); }, 600s);
  double baseline_s = Seconds(std::chrono::steady_clock::now() - t0);
  baseline_clients.clear();
  std::printf("baseline: %zu/%d mutual-TLS connects to plain mosquitto in %.2f s (%.0f/s)\n",
              baseline.finished(), 2 * n, baseline_s, baseline.finished() / baseline_s);

  // --- Enrollment end to end.
  int enrolled = 0, refused = 0;
  std::vector<std::function<void(std::function<void()>)>> enrolls;
  for (int i = 0; i < n; i++) {
    enrolls.push_back([&, i](std::function<void()> done) {
      SimDevice& d = devices[i];
      mqtt::ClientCallbacks cb;
      cb.on_connect = [&d, &failures, done](int reason) {
        if (reason != 0) {
          failures++;
          d.client->Stop();
          done();
          return;
        }
        if (d.step == 0) {
          (void)d.client->Subscribe("et/" + d.id + "/enroll/res", 1);
        } else {
          d.client->Stop();  // connected with the operational certificate: enrolled
          done();
        }
      };
      cb.on_subscribe = [&d](int, const std::vector<int>&) {
        (void)d.client->Publish("et/" + d.id + "/enroll/req", d.request, 1);
      };
      cb.on_message = [&, i, done](const mqtt::Message& m) {
        SimDevice& dev = devices[i];
        auto res = protocol::DecodeEnrollResponse(m.payload);
        if (!res.ok() || !res->ok) {
          refused++;
          if (refused <= 5) {
            std::fprintf(stderr, "%s refused: %s %s\n", dev.id.c_str(),
                         res.ok() ? res->err.c_str() : "undecodable",
                         res.ok() ? res->msg.c_str() : "");
          }
          dev.client->Stop();
          done();
          return;
        }
        enrolled++;
        testing::WriteFile(dev.op_cert, pki::CertificateToPem(res->cert));
        dev.step = 1;
        dev.client->Stop();
        mqtt::ClientCallbacks cb2;
        cb2.on_connect = [&dev, &failures, done](int reason) {
          if (reason != 0) failures++;
          dev.client->Stop();
          done();
        };
        auto oc = mqtt::UvMqttClient::Create(&loop, options(dev.id, site.port, dev.op_cert, dev.op_key),
                                             cb2);
        // Replacing the client destroys the old one inside its own callback, which
        // UvMqttClient allows: it finishes closing on the loop.
        dev.client = std::move(oc).value();
        (void)dev.client->Start();
      };
      d.client = std::move(mqtt::UvMqttClient::Create(
                               &loop, options(d.id, site.port, d.birth_cert, d.birth_key), cb))
                     .value();
      (void)d.client->Start();
    });
  }
  Pacer enrollment(window, std::move(enrolls));
  auto t1 = std::chrono::steady_clock::now();
  enrollment.Start();
  RunLoopUntil(&loop, [&] { return enrollment.all_done(); }, 900s);
  double enroll_s = Seconds(std::chrono::steady_clock::now() - t1);
  for (auto& d : devices) d.client.reset();
  uv_run(&loop, UV_RUN_DEFAULT);
  int loop_close = uv_loop_close(&loop);

  std::printf("enrollment: %d/%d devices enrolled and reconnected with their operational "
              "certificate in %.2f s (%.0f/s); %d refused, %d connection failures\n",
              enrolled, n, enroll_s, enrolled / enroll_s, refused, failures);
  std::printf("ratio: enrollment / baseline = %.2fx (goal <= 3x)\n", enroll_s / baseline_s);
  std::printf("gateway peak RSS (VmHWM): %s\n", VmHwm(gateway.pid()).c_str());
  gateway.Stop();
  std::printf("uv_loop_close: %d\n", loop_close);
  return enrolled == n && loop_close == 0 ? 0 : 1;
}
