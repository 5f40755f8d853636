// The device agent against the real thing: a site made by the `edgetrust` CLI, mosquitto with the
// edgetrust plugin, the real gateway, and edgetrust-device (simulator and single device), over
// real TLS.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "edgetrust/common/bytes.h"
#include "edgetrust/pki/certificate.h"
#include "edgetrust/protocol/messages.h"
#include "edgetrust/testing/mqtt_client.h"
#include "edgetrust/testing/process.h"
#include "edgetrust/testing/site_fixture.h"

namespace edgetrust::testing {
namespace {

using namespace std::chrono_literals;

bool Exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::string MissingBinary() {
  for (const char* name :
       {"edgetrust", "edgetrust-gateway", "edgetrust-device", "mosquitto_edgetrust.so"}) {
    if (!Exists(BinPath(name))) return BinPath(name);
  }
  return "";
}

// The last "simulate: E/N enrolled, C connected, T telemetry sent" line of a log.
struct Progress {
  int enrolled = -1;
  int connected = -1;
  long telemetry = -1;
};
Progress LastProgress(const std::string& log) {
  static const std::regex re(R"(simulate: (\d+)/\d+ enrolled, (\d+) connected, (\d+) telemetry)");
  Progress p;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), re); it != std::sregex_iterator();
       ++it) {
    p.enrolled = std::stoi((*it)[1]);
    p.connected = std::stoi((*it)[2]);
    p.telemetry = std::stol((*it)[3]);
  }
  return p;
}

class DeviceE2e : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string missing = MissingBinary(); !missing.empty())
      GTEST_SKIP() << "needs " << missing << " (not built yet)";
    site_ = SiteFixture::Create(
        tmp_, {.site_id = "edge-01",
               .manufacturers = {{.name = "acme", .model = "thermo-1", .count = 5}}});
    factory_out_ = site_.manufacturers.at("acme").devices_dir;
    state_ = tmp_ / "device-state";
    broker_ = Broker::Start(tmp_.path(), site_.MosquittoConfig(), {site_.port});
  }

  void StartGateway(const std::map<std::string, std::string>& env = {}) {
    gateway_ = Subprocess::Start(
        {BinPath("edgetrust-gateway"), "--policy", site_.policy, "--store", site_.store, "--broker",
         Url(), "--ca", site_.site_ca_cert, "--cert", site_.gateway_cert, "--key",
         site_.gateway_key},
        tmp_ / ("gateway-" + std::to_string(++gateway_runs_) + ".log"), env);
  }

  std::string Url() const { return "mqtts://127.0.0.1:" + std::to_string(site_.port); }

  std::vector<std::string> SimulatorArgs(int n) const {
    return {BinPath("edgetrust-device"), "--broker", Url(), "--ca", site_.site_ca_cert,
            "--simulate", std::to_string(n), "--factory-out", factory_out_, "--state", state_,
            "--response-timeout", "2", "--stagger-ms", "10"};
  }

  std::vector<std::string> SingleArgs(const DeviceFiles& d) const {
    return {BinPath("edgetrust-device"), "--broker", Url(), "--ca", site_.site_ca_cert,
            "--birth-cert", d.cert, "--birth-key", d.key, "--state", state_ + "/" + d.id,
            "--response-timeout", "2"};
  }

  std::string Diagnostics() const {
    return "\n--- broker log ---\n" + broker_.Log() + "\n--- gateway log ---\n" + gateway_.Log();
  }

  TempDir tmp_;
  SiteFixture site_;
  std::string factory_out_;
  std::string state_;
  Broker broker_;
  Subprocess gateway_;
  int gateway_runs_ = 0;
};

// The whole life: the fleet enrolls (the gateway comes up only after the devices asked, so pending
// requests must be retried), the store shows them active, a restarted device keeps its certificate,
// telemetry and state arrive, and a broker restart is survived.
TEST_F(DeviceE2e, FleetEnrollsKeepsIdentityAndSurvivesBrokerRestart) {
  // 1. Devices first: they connect with their birth certificates and ask; nobody answers yet.
  Subprocess sim = Subprocess::Start(
      [&] {
        auto a = SimulatorArgs(5);
        a.insert(a.end(), {"--exit-after-enroll", "--duration", "120", "--interval", "0"});
        return a;
      }(),
      tmp_ / "sim-enroll.log");
  ASSERT_TRUE(WaitUntil(
      [&] {
        const std::string log = sim.Log();
        for (const auto& d : site_.devices)
          if (log.find("device " + d.id + ": enrollment request") == std::string::npos) return false;
        return true;
      },
      30s))
      << sim.Log() << Diagnostics();

  // 2. The gateway arrives; every device enrolls, reconnects with its operational certificate.
  StartGateway();
  auto code = sim.Wait(90s);
  ASSERT_TRUE(code.has_value()) << "simulator did not finish\n" << sim.Log() << Diagnostics();
  ASSERT_EQ(*code, 0) << sim.Log() << Diagnostics();
  const std::string enroll_log = sim.Log();
  EXPECT_EQ(CountOf(enroll_log, ": enrolled, cert expires"), 5u) << enroll_log;
  EXPECT_EQ(CountOf(enroll_log, ": connected, certificate expires"), 5u) << enroll_log;
  EXPECT_EQ(LastProgress(enroll_log).enrolled, 5) << enroll_log;

  // 3. The store agrees: five active devices.
  CommandResult list = RunCommand(
      {BinPath("edgetrust"), "device", "list", "--store", site_.store, "--state", "active"});
  ASSERT_EQ(list.exit_code, 0) << list.out << list.err;
  EXPECT_NE(list.out.find("5 devices"), std::string::npos) << list.out;
  for (const auto& d : site_.devices) EXPECT_NE(list.out.find(d.id), std::string::npos) << list.out;

  // From here on no enrollment may happen: the gateway goes away, and its principal observes.
  gateway_.Stop();
  TestClient observer("edgetrust-gateway");
  ASSERT_EQ(observer.Connect(site_.port, site_.GatewayTls()), 0) << Diagnostics();
  ASSERT_LT(observer.Subscribe("et/+/up/#", 1), 0x80);
  ASSERT_LT(observer.Subscribe("et/+/state", 1), 0x80);

  // 4. One device restarted: same certificate, no enrollment, state then telemetry.
  const DeviceFiles& dev = site_.devices[0];
  const std::string identity_file = state_ + "/" + dev.id + "/operational.pem";
  const std::string identity_before = ReadFile(identity_file);
  auto op_cert = pki::ParseCertificatePem(identity_before);
  ASSERT_TRUE(op_cert.ok()) << op_cert.error().ToString();
  EXPECT_EQ(op_cert->subject.cn, dev.id);
  CommandResult single = RunCommand(
      [&] {
        auto a = SingleArgs(dev);
        a.insert(a.end(), {"--interval", "1", "--count", "3", "--fw", "1.2.3"});
        return a;
      }(),
      60s);
  ASSERT_EQ(single.exit_code, 0) << single.out << single.err << Diagnostics();
  EXPECT_NE(single.out.find("operational certificate on file"), std::string::npos) << single.out;
  EXPECT_EQ(single.out.find("enrolled"), std::string::npos) << single.out;
  EXPECT_EQ(single.out.find("birth certificate"), std::string::npos) << single.out;
  EXPECT_EQ(ReadFile(identity_file), identity_before) << "the identity must not change";

  std::vector<ReceivedMessage> got;
  ASSERT_TRUE(WaitUntil(
      [&] {
        for (auto& m : observer.TakeMessages()) got.push_back(std::move(m));
        return got.size() >= 4;
      },
      10s))
      << "received " << got.size() << " messages";
  std::set<std::string> seqs;
  bool saw_state = false;
  for (const auto& m : got) {
    if (m.topic == "et/" + dev.id + "/state") {
      saw_state = true;
      auto state = protocol::DecodeStateMessage(AsBytes(m.payload));
      ASSERT_TRUE(state.ok()) << state.error().ToString();
      EXPECT_EQ(state->fw, "1.2.3");
      EXPECT_EQ(state->model, "thermo-1");
      continue;
    }
    ASSERT_EQ(m.topic, "et/" + dev.id + "/up/telemetry");
    std::smatch seq;
    ASSERT_TRUE(std::regex_search(m.payload, seq, std::regex(R"("seq":(\d+))"))) << m.payload;
    seqs.insert(seq[1]);
    // The plugin names the certificate that spoke: the device's operational one.
    auto fp = m.user_properties.find("et-cert-sha256");
    ASSERT_NE(fp, m.user_properties.end());
    EXPECT_EQ(fp->second, HexEncode(op_cert->fingerprint));
  }
  EXPECT_TRUE(saw_state);
  EXPECT_EQ(seqs, (std::set<std::string>{"1", "2", "3"}));

  // 5. The whole fleet online, then the broker restarts under it.
  Subprocess fleet = Subprocess::Start(
      [&] {
        auto a = SimulatorArgs(5);
        a.insert(a.end(), {"--interval", "1", "--duration", "100"});
        return a;
      }(),
      tmp_ / "sim-online.log");
  ASSERT_TRUE(WaitUntil([&] { return LastProgress(fleet.Log()).connected == 5; }, 20s))
      << fleet.Log() << Diagnostics();
  EXPECT_EQ(fleet.Log().find(": enrolled"), std::string::npos) << fleet.Log();

  observer.Disconnect();
  broker_.process().Stop();
  ASSERT_TRUE(WaitUntil([&] { return LastProgress(fleet.Log()).connected == 0; }, 15s))
      << fleet.Log();
  broker_ = Broker::Start(tmp_.path(), site_.MosquittoConfig(), {site_.port});

  TestClient observer2("edgetrust-gateway");
  ASSERT_EQ(observer2.Connect(site_.port, site_.GatewayTls()), 0) << Diagnostics();
  ASSERT_LT(observer2.Subscribe("et/+/up/#", 1), 0x80);
  std::set<std::string> heard;
  ASSERT_TRUE(WaitUntil(
      [&] {
        for (const auto& m : observer2.TakeMessages()) {
          auto second_slash = m.topic.find('/', 3);
          heard.insert(m.topic.substr(3, second_slash - 3));
        }
        return heard.size() == 5;
      },
      45s))
      << "telemetry after the restart from " << heard.size() << " devices\n"
      << fleet.Log() << Diagnostics();
  EXPECT_EQ(LastProgress(fleet.Log()).enrolled, 5);
  EXPECT_EQ(fleet.Log().find(": enrolled"), std::string::npos) << "nobody re-enrolled";

  // 6. SIGTERM: clean disconnect, exit 0.
  fleet.Signal(SIGTERM);
  auto fleet_code = fleet.Wait(15s);
  ASSERT_TRUE(fleet_code.has_value()) << fleet.Log();
  EXPECT_EQ(*fleet_code, 0) << fleet.Log();
}

// Renewal over MQTT (forced early with --renew-after), then the operator revokes the operational
// certificate: the device is refused, falls back to its birth certificate, enrolls again (the
// policy allows re-enrollment here) and is back online with a new certificate.
TEST_F(DeviceE2e, RenewsThenReenrollsAfterRevocation) {
  std::string policy = ReadFile(site_.policy);
  const auto pos = policy.find("reenroll: false");
  ASSERT_NE(pos, std::string::npos) << policy;
  policy.replace(pos, 15, "reenroll: true");
  WriteFile(site_.policy, policy);
  broker_.process().Stop();
  broker_ = Broker::Start(tmp_.path(), site_.MosquittoConfig(), {site_.port});
  StartGateway();

  const DeviceFiles& dev = site_.devices[1];
  const std::string identity_file = state_ + "/" + dev.id + "/operational.pem";
  Subprocess device = Subprocess::Start(
      [&] {
        auto a = SingleArgs(dev);
        a.insert(a.end(), {"--interval", "1", "--renew-after", "1"});
        return a;
      }(),
      tmp_ / "single.log");
  auto online_count = [&] { return CountOf(device.Log(), ": connected, certificate expires"); };

  ASSERT_TRUE(WaitUntil([&] { return online_count() >= 1; }, 30s)) << device.Log() << Diagnostics();
  const std::string enrolled_identity = ReadFile(identity_file);
  ASSERT_TRUE(WaitUntil([&] { return online_count() >= 2; }, 30s)) << device.Log() << Diagnostics();
  std::string log = device.Log();
  EXPECT_EQ(CountOf(log, ": enrolled, cert expires"), 1u) << log;
  EXPECT_EQ(CountOf(log, ": renewed, cert expires"), 1u) << log;
  EXPECT_NE(log.find("renewal request"), std::string::npos) << log;
  const std::string renewed_identity = ReadFile(identity_file);
  auto first = pki::ParseCertificatePem(enrolled_identity);
  auto second = pki::ParseCertificatePem(renewed_identity);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_NE(first->fingerprint, second->fingerprint);
  EXPECT_NE(first->public_key_der, second->public_key_der) << "renewal uses a new key";
  EXPECT_EQ(second->subject.cn, dev.id);

  CommandResult revoke =
      RunCommand({BinPath("edgetrust"), "revoke", "--store", site_.store, "--device", dev.id});
  ASSERT_EQ(revoke.exit_code, 0) << revoke.out << revoke.err;

  ASSERT_TRUE(WaitUntil([&] { return online_count() >= 3; }, 60s))
      << "no re-enrollment after the revocation\n"
      << device.Log() << Diagnostics();
  log = device.Log();
  EXPECT_NE(log.find("reconnecting with the birth certificate"), std::string::npos) << log;
  EXPECT_EQ(CountOf(log, ": enrolled, cert expires"), 2u) << log;
  auto third = pki::ParseCertificatePem(ReadFile(identity_file));
  ASSERT_TRUE(third.ok());
  EXPECT_NE(third->fingerprint, second->fingerprint);

  device.Signal(SIGTERM);
  auto code = device.Wait(15s);
  ASSERT_TRUE(code.has_value()) << device.Log();
  EXPECT_EQ(*code, 0) << device.Log();
}

// The answer to an enrollment lost to two crashes: the gateway dies right after committing it,
// and the device dies too before the gateway is back. The starter policy has re-enrollment off,
// yet the device must not be locked out: its new certificate was never used, so its birth
// certificate may ask again. Once it has been used, the birth certificate is refused again.
TEST_F(DeviceE2e, AnswerLostToGatewayAndDeviceCrashesDoesNotLockTheDeviceOut) {
  ASSERT_NE(ReadFile(site_.policy).find("reenroll: false"), std::string::npos);
  StartGateway({{"ET_GATEWAY_FAULT", "after_commit:enroll"}});
  const DeviceFiles& dev = site_.devices[2];
  Subprocess device = Subprocess::Start(SingleArgs(dev), tmp_ / "lost-1.log");
  ASSERT_TRUE(WaitUntil([&] { return !gateway_.running(); }, 30s)) << Diagnostics();
  device.Signal(SIGKILL);
  device.Wait(5s);
  CommandResult show = RunCommand({BinPath("edgetrust"), "device", "show", "--store", site_.store,
                                   "--device", dev.id});
  ASSERT_EQ(show.exit_code, 0) << show.out << show.err;
  ASSERT_NE(show.out.find("active"), std::string::npos) << "the grant was not committed: " << show.out;

  StartGateway();
  Subprocess again = Subprocess::Start(SingleArgs(dev), tmp_ / "lost-2.log");
  ASSERT_TRUE(WaitUntil([&] { return again.Log().find(": connected, certificate expires") !=
                                     std::string::npos; }, 30s))
      << again.Log() << Diagnostics();
  // In use now (the agent published its state): the birth certificate is an ordinary
  // re-enrollment attempt again, which this group refuses. (Waited for before the agent is
  // stopped: a SIGTERM right after "connected" could stop it before its state went out.)
  ASSERT_TRUE(WaitUntil([&] {
    CommandResult r = RunCommand({BinPath("edgetrust"), "device", "show", "--store", site_.store,
                                  "--device", dev.id});
    return r.out.find("unconfirmed") == std::string::npos;
  }, 15s)) << again.Log() << Diagnostics();
  again.Signal(SIGTERM);
  again.Wait(15s);
  TestClient birth(dev.id);
  EXPECT_NE(birth.Connect(site_.port, {site_.site_ca_cert, dev.cert, dev.key}), 0)
      << "birth certificate of a device in use let in where re-enrollment is off";
}

// The device cannot write its new certificate (here its temp file's name is taken by a directory;
// in the field: out of descriptors or disk). The site already counts that certificate as the
// device's, so the agent keeps it and writes it again later; it must not ask again, which would
// make the gateway issue another certificate and revoke this one (with 10,000 simulated devices
// out of descriptors, 9,088 of them did that, some four times).
TEST_F(DeviceE2e, CertificateThatCannotBeWrittenIsKeptAndWrittenLaterNotAskedForAgain) {
  StartGateway();
  const DeviceFiles& dev = site_.devices[3];
  const std::string dir = state_ + "/" + dev.id;
  const std::string blocker = dir + "/operational.pem.tmp";
  ASSERT_EQ(::mkdir(state_.c_str(), 0700), 0);
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::mkdir(blocker.c_str(), 0700), 0);
  Subprocess device = Subprocess::Start(SingleArgs(dev), tmp_ / "unwritable.log");
  const std::string failed = ": cannot store the new certificate: ";
  ASSERT_TRUE(WaitUntil([&] { return CountOf(device.Log(), failed) >= 2; }, 30s))
      << device.Log() << Diagnostics();
  // Meanwhile the connection breaks: the agent reconnects on its birth certificate, which on its
  // own would enroll; it must not ask while the certificate waits, nor once it is written.
  const std::string birth_connect = ": connected with the birth certificate, enrolling";
  broker_.process().Stop();
  broker_ = Broker::Start(tmp_.path(), site_.MosquittoConfig(), {site_.port});
  ASSERT_TRUE(WaitUntil([&] { return CountOf(device.Log(), birth_connect) >= 2; }, 30s))
      << device.Log() << Diagnostics();
  ASSERT_EQ(::rmdir(blocker.c_str()), 0);
  ASSERT_TRUE(WaitUntil([&] { return device.Log().find(": connected, certificate expires") !=
                                     std::string::npos; }, 30s))
      << device.Log() << Diagnostics();
  // A request would go out as soon as the answer topic is subscribed: give it time to show.
  std::this_thread::sleep_for(3s);

  const std::string log = device.Log();
  EXPECT_EQ(CountOf(log, ": enrolled, cert expires"), 1u) << log;
  EXPECT_EQ(log.find("renewal request"), std::string::npos) << log;
  EXPECT_EQ(CountOf(gateway_.Log(), "enroll_ok device=" + dev.id + " "), 1u)
      << Diagnostics();
  EXPECT_EQ(gateway_.Log().find("renew_ok device=" + dev.id + " "), std::string::npos)
      << Diagnostics();
  auto stored = pki::ParseCertificatePem(ReadFile(dir + "/operational.pem"));
  ASSERT_TRUE(stored.ok()) << ReadFile(dir + "/operational.pem");
  const std::string cert = HexEncode(ByteView(stored->fingerprint.data(), 8));
  EXPECT_NE(gateway_.Log().find(" cert=" + cert), std::string::npos)
      << "the written certificate (" << cert << ") is not the one the gateway issued"
      << Diagnostics();

  device.Signal(SIGTERM);
  auto code = device.Wait(15s);
  ASSERT_TRUE(code.has_value()) << device.Log();
  EXPECT_EQ(*code, 0) << device.Log();
}

// Wrong command lines fail with exit 2 and a message, before touching the network.
TEST(DeviceCli, UsageErrorsExitTwo) {
  if (!Exists(BinPath("edgetrust-device"))) GTEST_SKIP() << "needs " << BinPath("edgetrust-device");
  CommandResult r = RunCommand({BinPath("edgetrust-device"), "--broker", "mqtt://x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("mqtts://"), std::string::npos) << r.err;
  r = RunCommand({BinPath("edgetrust-device"), "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("--simulate"), std::string::npos);
  TempDir tmp;
  r = RunCommand({BinPath("edgetrust-device"), "--broker", "mqtts://127.0.0.1:1", "--ca", "x",
                  "--birth-cert", tmp / "missing.pem", "--birth-key", tmp / "missing.key",
                  "--state", tmp / "st"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("birth certificate"), std::string::npos) << r.out;
}

// --simulate --exit-after-enroll --duration: not everyone enrolled in time (here: no broker at
// all) is exit 1 with the devices named; the per-device state directories are made on the way.
TEST(DeviceCli, SimulationThatDoesNotFinishExitsOne) {
  if (!Exists(BinPath("edgetrust-device")) || !Exists(BinPath("edgetrust")))
    GTEST_SKIP() << "needs edgetrust-device and edgetrust";
  TempDir tmp;
  SiteFixture::Cli({"factory", "init", "--dir", tmp / "factory", "--manufacturer", "acme"});
  SiteFixture::Cli({"factory", "provision", "--factory", tmp / "factory", "--count", "2", "--prefix",
                    "acme-", "--model", "thermo-1", "--out", tmp / "out"});
  const int port = FreeLoopbackPort();
  CommandResult r = RunCommand(
      {BinPath("edgetrust-device"), "--broker", "mqtts://127.0.0.1:" + std::to_string(port), "--ca",
       tmp / "factory/ca.pem", "--simulate", "2", "--factory-out", tmp / "out", "--state",
       tmp / "state", "--exit-after-enroll", "--duration", "2"},
      30s);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("2 device(s) did not finish in 2 s: acme-000001 acme-000002"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("simulate: 0/2 enrolled"), std::string::npos) << r.out;
  EXPECT_TRUE(Exists(tmp / "state/acme-000002/.lock"));

  r = RunCommand({BinPath("edgetrust-device"), "--broker", "mqtts://127.0.0.1:1", "--ca", "x",
                  "--simulate", "3", "--factory-out", tmp / "out"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("holds 2 provisioned device(s), --simulate asks for 3"), std::string::npos)
      << r.out;
}

}  // namespace
}  // namespace edgetrust::testing
