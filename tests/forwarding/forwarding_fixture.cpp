#include "forwarding_fixture.h"

#include <sys/stat.h>
#include <unistd.h>

#include <stdexcept>

#include "edgetrust/pki/certificate.h"
#include "edgetrust/pki/key.h"

namespace edgetrust::forwarding::test {

using testing::Broker;
using testing::WriteFile;

namespace {

template <typename T>
T Must(Result<T> r, const char* what) {
  if (!r.ok()) throw std::runtime_error(std::string(what) + ": " + r.error().ToString());
  return std::move(r).value();
}

void WritePem(const std::string& path, const std::string& pem) {
  WriteFile(path, pem);
  chmod(path.c_str(), 0644);  // the broker runs as `mosquitto`
}

}  // namespace

TestPki MakeTestPki(const std::string& dir) {
  TestPki out;
  const int64_t now = UnixNow();
  auto ca_key = Must(pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256), "ca key");
  auto ca = Must(pki::CreateSelfSignedCa(ca_key, {.cn = "forwarding test CA"}, 2), "ca");
  out.ca = dir + "/ca.pem";
  WritePem(out.ca, pki::CertificateToPem(ca.der));

  auto issue = [&](const std::string& cn, pki::ExtendedUsage usage, bool san, std::string* cert_path,
                   std::string* key_path, const std::string& stem) {
    auto key = Must(pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256), "key");
    pki::IssueRequest req;
    req.subject.cn = cn;
    req.public_key_der = Must(key.PublicKeyDer(), "spki");
    req.not_before = now - 3600;
    req.not_after = now + 86400;
    req.extended_usage = usage;
    if (san) {
      req.dns_names = {"localhost"};
      req.ip_addresses = {"127.0.0.1"};
    }
    auto cert = Must(pki::IssueCertificate(ca, ca_key, req), "issue");
    *cert_path = dir + "/" + stem + ".pem";
    *key_path = dir + "/" + stem + ".key";
    WritePem(*cert_path, pki::CertificateToPem(cert.der));
    WritePem(*key_path, Must(key.ToPem(), "key pem"));
  };
  issue("localhost", pki::ExtendedUsage::kServerAuth, true, &out.server_cert, &out.server_key, "server");
  issue("edge-01", pki::ExtendedUsage::kClientAuth, false, &out.client_cert, &out.client_key, "thing");
  return out;
}

Broker StartPlainBroker(const std::string& dir, int port, int observer_port,
                        const std::string& password_file) {
  std::string conf = "per_listener_settings true\n";
  conf += "listener " + std::to_string(port) + " 127.0.0.1\nallow_anonymous false\npassword_file " +
          password_file + "\n";
  conf += "listener " + std::to_string(observer_port) + " 127.0.0.1\nallow_anonymous true\n";
  return Broker::Start(dir, conf, {port, observer_port});
}

Broker StartAwsLikeBroker(const std::string& dir, int port, int observer_port, const TestPki& pki) {
  std::string conf = "per_listener_settings true\n";
  conf += "listener " + std::to_string(port) + " 127.0.0.1\n";
  conf += "cafile " + pki.ca + "\ncertfile " + pki.server_cert + "\nkeyfile " + pki.server_key + "\n";
  conf += "require_certificate true\nuse_identity_as_username true\nallow_anonymous false\n";
  conf += "listener " + std::to_string(observer_port) + " 127.0.0.1\nallow_anonymous true\n";
  return Broker::Start(dir, conf, {port, observer_port});
}

Broker StartAzureLikeBroker(const std::string& dir, int port, int observer_port, const TestPki& pki,
                            const std::string& hostname, const std::string& group_key) {
  std::string conf = "per_listener_settings true\n";
  conf += "listener " + std::to_string(port) + " 127.0.0.1\n";
  conf += "certfile " + pki.server_cert + "\nkeyfile " + pki.server_key + "\n";
  conf += "allow_anonymous false\n";
  conf += "plugin " + std::string(ET_AZURE_AUTH_PLUGIN) + "\n";
  conf += "plugin_opt_hostname " + hostname + "\nplugin_opt_group_key " + group_key + "\n";
  conf += "listener " + std::to_string(observer_port) + " 127.0.0.1\nallow_anonymous true\n";
  return Broker::Start(dir, conf, {port, observer_port});
}

std::shared_ptr<policies::Policy> MakePolicy(
    const std::vector<policies::Upstream>& upstreams,
    const std::vector<std::pair<std::string, std::string>>& group_routes,
    policies::QueuePolicy queue) {
  auto p = std::make_shared<policies::Policy>();
  p->source = "test";
  p->site = "edge-01";
  for (const auto& u : upstreams) p->upstreams[u.name] = u;
  for (const auto& [group, route] : group_routes) {
    policies::Group g;
    g.name = group;
    g.route = route;
    p->groups.push_back(g);
  }
  p->queue = queue;
  return p;
}

Bytes Payload(const std::string& device, int seq) {
  std::string s = device + "|" + std::to_string(seq);
  return Bytes(s.begin(), s.end());
}

std::pair<std::string, int> ParsePayload(const std::string& payload) {
  size_t bar = payload.find('|');
  if (bar == std::string::npos) return {"", -1};
  return {payload.substr(0, bar), std::stoi(payload.substr(bar + 1))};
}

Observer::Observer(int port, const std::string& filter, int qos)
    : client_("observer-" + std::to_string(port) + "-" + std::to_string(getpid()), 5) {
  if (client_.Connect(port, {}) != 0) throw std::runtime_error("observer cannot connect");
  if (client_.Subscribe(filter, qos) != qos) throw std::runtime_error("observer cannot subscribe");
}

void Observer::Poll() {
  for (auto& m : client_.TakeMessages()) messages_.push_back(std::move(m));
}

void ForwardingTest::SetUp() {
  ASSERT_EQ(uv_loop_init(&loop_), 0);
  // Wakes uv_run(UV_RUN_ONCE) often enough for RunUntil to look at its condition.
  uv_timer_init(&loop_, &tick_);
  uv_timer_start(&tick_, [](uv_timer_t*) {}, 5, 5);
  auto s = storage::Store::Open({.path = tmp_ / "store", .sync = false});
  ASSERT_TRUE(s.ok()) << s.error().ToString();
  store_.emplace(std::move(s).value());
}

void ForwardingTest::TearDown() {
  if (forwarder_) {
    forwarder_->Stop();
    EXPECT_TRUE(RunUntil([&] { return forwarder_->closed(); }, std::chrono::seconds(10)));
    forwarder_.reset();
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
  // Let close callbacks free what is left; a guard keeps a leak from hanging the test.
  for (int i = 0; i < 2000 && uv_run(&loop_, UV_RUN_NOWAIT) != 0; ++i) usleep(1000);
  EXPECT_EQ(uv_loop_close(&loop_), 0) << "a libuv handle was not closed";
  store_.reset();
}

bool ForwardingTest::RunUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return done();
    uv_run(&loop_, UV_RUN_ONCE);
  }
  return true;
}

void ForwardingTest::RunFor(std::chrono::milliseconds duration) {
  RunUntil([] { return false; }, duration);
}

void ForwardingTest::CreateForwarder(std::shared_ptr<const policies::Policy> policy,
                                     ForwarderOptions options) {
  options.tuning.reconnect_min = std::chrono::milliseconds(100);
  options.tuning.reconnect_max = std::chrono::milliseconds(500);
  auto f = Forwarder::Create(&loop_, &*store_, std::move(policy), options);
  ASSERT_TRUE(f.ok()) << f.error().ToString();
  forwarder_ = std::move(f).value();
  forwarder_->OnDownlink([this](Downlink d) { downlinks_.push_back(std::move(d)); });
}

void ForwardingTest::Submit(const std::string& device, const std::string& group,
                            const std::string& channel, Bytes payload, int qos) {
  ++submitted_;
  forwarder_->Submit(device, group, channel, std::move(payload), qos, [this](Status st) {
    if (st.ok()) {
      ++ok_;
    } else {
      ++failed_;
      errors_.push_back(st.error());
    }
  });
}

}  // namespace edgetrust::forwarding::test
