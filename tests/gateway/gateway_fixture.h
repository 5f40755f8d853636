// What the gateway's end-to-end tests share: a site made by the real CLI with its mosquitto and
// the edgetrust plugin, the real edgetrust-gateway process (started, watched, stopped), plain
// local mosquittos standing in for the cloud, and a device speaking the enrollment protocol by
// hand over real TLS (so every refusal can be provoked precisely).
//
//   struct Suite { GatewaySite site; … };             // made once in SetUpTestSuite
//   class MyTest : public GatewayTestBase {
//     GatewaySite& gateway_site() override { return g_suite->site; }
//   };
//   TEST_F(MyTest, X) { StartGateway(); EnrollingDevice d(site(), "acme-000001"); d.Enroll(); … }
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "edgetrust/pki/pki.h"
#include "edgetrust/protocol/messages.h"
#include "edgetrust/testing/mqtt_client.h"
#include "edgetrust/testing/process.h"
#include "edgetrust/testing/site_fixture.h"

namespace edgetrust::testing {

// One site and its broker per suite: the CLI and the broker take seconds to set up.
struct GatewaySite {
  TempDir tmp;
  SiteFixture fx;
  Broker broker;
};

// A plain local mosquitto standing in for the cloud, on a fixed loopback port so it can be
// stopped and started again where the gateway expects it.
struct UpstreamBroker {
  std::string dir;
  int port = 0;
  std::string extra_config = "persistence false\n";
  Broker broker;

  void Start() {
    broker = Broker::Start(dir,
                           "listener " + std::to_string(port) + " 127.0.0.1\nallow_anonymous true\n" +
                               extra_config,
                           {port});
  }
};

// A catch-all auto-enrolling group routed to `route`, and plain-MQTT upstreams (name, port)
// with the topic templates the forwarding tests expect.
inline std::string ForwardingPolicy(const SiteFixture& s, const std::string& route,
                                    const std::vector<std::pair<std::string, int>>& upstreams,
                                    const std::string& extra = "") {
  std::string y = "site: " + s.site_id + "\n" +
                  "trust:\n"
                  "  site_ca: " + s.site_ca_cert + "\n" +
                  "  manufacturers:\n";
  for (const auto& [name, m] : s.manufacturers) {
    if (m.trusted) y += "    " + name + ": " + m.ca_cert + "\n";
  }
  y += "principals: { gateway: [edgetrust-gateway], admin: [ops-admin] }\n"
       "groups:\n"
       "  - name: thermostats\n"
       "    match: { manufacturer: \"*\", model: \"*\" }\n"
       "    enrollment: { mode: auto }\n"
       "    route: " + route + "\n" +
       "upstreams:\n";
  for (const auto& [name, port] : upstreams) {
    y += "  " + name + ": { kind: mqtt, url: \"mqtt://127.0.0.1:" + std::to_string(port) +
         "\", topic: \"sites/{site}/{device}/{channel}\", down_topic: "
         "\"cmd/{site}/{device}/{channel}\", qos: 1 }\n";
  }
  return y + extra;
}

inline Bytes BirthDer(const DeviceFiles& d) {
  auto c = pki::LoadCertificateFile(d.cert);
  EXPECT_TRUE(c.ok());
  return c.ok() ? c->der : Bytes{};
}

// A device speaking the enrollment protocol by hand: birth connection, requests, operational
// connection with the certificate it obtained.
class EnrollingDevice {
 public:
  EnrollingDevice(const SiteFixture& s, std::string id) : s_(s), id_(std::move(id)) {
    auto k = pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256);
    EXPECT_TRUE(k.ok());
    key_ = std::make_unique<pki::PrivateKey>(std::move(k).value());
  }
  const std::string& id() const { return id_; }
  const DeviceFiles& files() const { return s_.Device(id_); }

  // Connects with the birth certificate and subscribes to the enroll answers.
  int ConnectBirth() {
    client_ = std::make_unique<TestClient>(id_);
    int rc = client_->Connect(s_.port, s_.DeviceTls(id_));
    if (rc != 0) return rc;
    return client_->Subscribe("et/" + id_ + "/enroll/res", 1) == 1 ? 0 : -2;
  }
  // Connects with an operational certificate (written to files with the current key).
  int ConnectOperational(const Bytes& cert_der) {
    std::string dir = s_.dir + "/../op-" + id_ + "-" + std::to_string(++files_);
    mkdir(dir.c_str(), 0755);
    WriteFile(dir + "/cert.pem", pki::CertificateToPem(cert_der));
    WriteFile(dir + "/key.pem", *key_->ToPem());
    operational_ = {s_.site_ca_cert, dir + "/cert.pem", dir + "/key.pem"};
    client_ = std::make_unique<TestClient>(id_);
    return client_->Connect(s_.port, operational_);
  }
  // Enrolls through the running gateway, then stays connected with the operational certificate,
  // subscribed to its down-links.
  void Enroll() {
    ASSERT_EQ(ConnectBirth(), 0);
    auto res = Send(EnrollRequest("r-" + id_), false, std::chrono::seconds(15));
    ASSERT_TRUE(res.has_value()) << "no enrollment answer";
    ASSERT_TRUE(res->ok) << res->err << " " << res->msg;
    client_->Disconnect();
    ASSERT_EQ(ConnectOperational(res->cert), 0);
    ASSERT_EQ(client_->Subscribe("et/" + id_ + "/down/#", 1), 1);
  }
  // The files of the last operational connection, for more clients of the same device.
  const TlsFiles& operational_tls() const { return operational_; }

  TestClient& client() { return *client_; }
  int Up(const std::string& channel, const std::string& payload) {
    return client_->Publish("et/" + id_ + "/up/" + channel, payload, 1);
  }
  void NewKey() {
    key_ = std::make_unique<pki::PrivateKey>(
        pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256).value());
  }
  const pki::PrivateKey& key() const { return *key_; }

  protocol::EnrollRequest Request(const std::string& rid, const Bytes& presented) {
    protocol::EnrollRequest r;
    r.rid = rid;
    r.csr = *pki::CreateCsr(*key_, {.cn = id_});
    r.birth = presented;
    r.fw = "1.0.0";
    r.model = files().model;
    return r;
  }
  protocol::EnrollRequest EnrollRequest(const std::string& rid) {
    return Request(rid, BirthDer(files()));
  }

  // Sends raw bytes to a request topic and waits for the answer on the matching response topic.
  std::optional<protocol::EnrollResponse> SendRaw(
      const std::string& payload, bool renew = false,
      std::chrono::milliseconds wait = std::chrono::seconds(10)) {
    std::string req = "et/" + id_ + (renew ? "/cert/req" : "/enroll/req");
    std::string res = "et/" + id_ + (renew ? "/cert/res" : "/enroll/res");
    if (client_->Publish(req, payload, 1) != 0) return std::nullopt;
    auto deadline = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < deadline) {
      auto m = client_->WaitMessage(std::chrono::milliseconds(200));
      if (!m || m->topic != res) continue;
      auto d = protocol::DecodeEnrollResponse(AsBytes(m->payload));
      EXPECT_TRUE(d.ok()) << (d.ok() ? "" : d.error().ToString());
      if (d.ok()) return std::move(d).value();
    }
    return std::nullopt;
  }
  std::optional<protocol::EnrollResponse> Send(
      const protocol::EnrollRequest& r, bool renew = false,
      std::chrono::milliseconds wait = std::chrono::seconds(10)) {
    Bytes b = protocol::EncodeEnrollRequest(r);
    return SendRaw(std::string(b.begin(), b.end()), renew, wait);
  }

 private:
  const SiteFixture& s_;
  std::string id_;
  std::unique_ptr<pki::PrivateKey> key_;
  std::unique_ptr<TestClient> client_;
  TlsFiles operational_;
  int files_ = 0;
};

// A test case with the real gateway process of its suite's site. TearDown stops a running
// gateway with SIGTERM and expects a clean exit; on failure it prints the gateway's log and
// the tail of the broker's.
class GatewayTestBase : public ::testing::Test {
 protected:
  virtual GatewaySite& gateway_site() = 0;
  const SiteFixture& site() { return gateway_site().fx; }

  void TearDown() override {
    if (gateway_.running()) {
      gateway_.Signal(SIGTERM);
      auto rc = gateway_.Wait(std::chrono::seconds(20));
      EXPECT_EQ(rc, std::optional<int>(0)) << "gateway did not stop cleanly\n" << gateway_.Log();
    }
    if (HasFailure()) {
      std::string b = gateway_site().broker.Log();
      std::cerr << "---- gateway log ----\n" << gateway_.Log() << "---- broker log (tail) ----\n"
                << (b.size() > 6000 ? b.substr(b.size() - 6000) : b) << "\n";
    }
  }

  // Starts the gateway (one log file per start) and waits until it is ready.
  void StartGateway(const std::map<std::string, std::string>& env = {},
                    const std::vector<std::string>& extra_args = {}) {
    const SiteFixture& s = site();
    std::string log = gateway_site().tmp /
                      ("gateway-" + std::to_string(++starts_) + "-" +
                       ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".log");
    std::vector<std::string> args = {
        BinPath("edgetrust-gateway"), "--policy", s.policy, "--store", s.store, "--broker",
        "mqtts://127.0.0.1:" + std::to_string(s.port), "--ca", s.site_ca_cert, "--cert",
        s.gateway_cert, "--key", s.gateway_key, "--log-level", "debug"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    gateway_ = Subprocess::Start(args, log, env);
    ASSERT_TRUE(WaitUntil([&] { return Logged("gateway_ready") || !gateway_.running(); },
                          std::chrono::seconds(20)));
    ASSERT_TRUE(gateway_.running()) << gateway_.Log();
  }

  // True once the current gateway's log holds `what` at least `times` times.
  bool Logged(const std::string& what, size_t times = 1) {
    return CountOf(gateway_.Log(), what) >= times;
  }

  Subprocess gateway_;
  int starts_ = 0;
};

}  // namespace edgetrust::testing
