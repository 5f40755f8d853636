// `aws-iot` with `identity: device`: one connection per device with the device's own cloud
// certificate, issued from the site CA by the gateway's CloudIdentities. The "AWS" here is a
// mosquitto that requires client certificates, takes the certificate's CN as the identity and
// lets each connection publish and subscribe only under topics naming that identity, as an AWS
// IoT policy written with ${iot:Connection.Thing.ThingName} does; it supports QoS 1 at most.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <map>
#include <set>
#include <stdexcept>

#include "cloud_identity.h"
#include "edgetrust/pki/certificate.h"
#include "edgetrust/pki/key.h"
#include "edgetrust/storage/tables.h"
#include "forwarding_fixture.h"

namespace edgetrust::forwarding::test {
namespace {

using gateway::CloudIdentities;
using gateway::CloudIdentityOptions;
using gateway::SiteAuthority;
using testing::Broker;
using testing::CountOf;
using testing::FreeLoopbackPort;
using testing::WriteFile;

template <typename T>
T Must(Result<T> r, const char* what) {
  if (!r.ok()) throw std::runtime_error(std::string(what) + ": " + r.error().ToString());
  return std::move(r).value();
}

// A site CA (as the gateway's SiteAuthority) and a broker certificate it issued.
struct Site {
  std::shared_ptr<SiteAuthority> authority;
  std::string ca_file, server_cert, server_key;
};

Site MakeSite(const std::string& dir, const std::string& stem = "site-ca") {
  Site s;
  auto ca_key = Must(pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256), "ca key");
  auto ca = Must(pki::CreateSelfSignedCa(ca_key, {.cn = "edge-01 site CA", .o = "edge-01"}, 3650),
                 "ca");
  s.ca_file = dir + "/" + stem + ".pem";
  WriteFile(s.ca_file, pki::CertificateToPem(ca.der));
  chmod(s.ca_file.c_str(), 0644);

  auto key = Must(pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256), "server key");
  pki::IssueRequest req;
  req.subject.cn = "localhost";
  req.public_key_der = Must(key.PublicKeyDer(), "spki");
  req.not_before = UnixNow() - 3600;
  req.not_after = UnixNow() + 86400;
  req.extended_usage = pki::ExtendedUsage::kServerAuth;
  req.dns_names = {"localhost"};
  req.ip_addresses = {"127.0.0.1"};
  auto server = Must(pki::IssueCertificate(ca, ca_key, req), "server");
  s.server_cert = dir + "/" + stem + "-server.pem";
  s.server_key = dir + "/" + stem + "-server.key";
  WriteFile(s.server_cert, pki::CertificateToPem(server.der));
  WriteFile(s.server_key, Must(key.ToPem(), "server key pem"));
  chmod(s.server_cert.c_str(), 0644);
  chmod(s.server_key.c_str(), 0644);  // the broker runs as `mosquitto`

  s.authority = std::make_shared<SiteAuthority>();
  s.authority->policy.site = "edge-01";
  s.authority->site_ca = std::move(ca);
  s.authority->site_key = std::move(ca_key);
  return s;
}

void PutDevice(storage::Store& store, const std::string& id, storage::DeviceState state) {
  auto txn = Must(store.BeginWrite(), "begin");
  storage::DeviceRecord d;
  d.id = id;
  d.state = state;
  d.manufacturer = "acme";
  d.model = "thermo-1";
  d.group = "thermostats";
  if (auto st = storage::PutDevice(txn, d); !st.ok()) throw std::runtime_error(st.error().ToString());
  if (auto st = txn.Commit(); !st.ok()) throw std::runtime_error(st.error().ToString());
}

// AWS IoT Core's door as far as a device identity goes: the certificate's CN is the thing name
// (%u), and the policy allows only that thing's own topics. QoS 2 is not supported.
Broker StartThingPolicyBroker(const std::string& dir, int port, int observer_port, const Site& site) {
  const std::string acl = dir + "/thing-policy.acl";
  WriteFile(acl,
            "pattern write dt/edge-01/%u/#\n"
            "pattern read cmd/edge-01/%u/#\n");
  chmod(acl.c_str(), 0644);
  std::string conf = "per_listener_settings true\n";
  conf += "listener " + std::to_string(port) + " 127.0.0.1\n";
  conf += "cafile " + site.ca_file + "\ncertfile " + site.server_cert + "\nkeyfile " +
          site.server_key + "\n";
  conf += "require_certificate true\nuse_identity_as_username true\nallow_anonymous false\n";
  conf += "max_qos 1\nacl_file " + acl + "\n";
  conf += "listener " + std::to_string(observer_port) + " 127.0.0.1\nallow_anonymous true\n";
  return Broker::Start(dir, conf, {port, observer_port});
}

class AwsDeviceIdentityTest : public ForwardingTest {
 protected:
  void SetUp() override {
    ForwardingTest::SetUp();
    site_ = MakeSite(tmp_.path());
    port_ = FreeLoopbackPort();
    observer_port_ = FreeLoopbackPort();
    broker_ = StartThingPolicyBroker(tmp_.path(), port_, observer_port_, site_);
    observer_ = std::make_unique<Observer>(observer_port_, "dt/#", 1);
    for (const char* id : {"dev-1", "dev-2", "dev-3"}) {
      PutDevice(store(), id, storage::DeviceState::kActive);
    }
    PutDevice(store(), "dev-retired", storage::DeviceState::kRetired);
    identities_ = std::make_unique<CloudIdentities>(
        &loop_, &store(), [this] { return std::shared_ptr<const SiteAuthority>(site_.authority); },
        CloudIdentityOptions{.dir = tmp_ / "cloud"}, [this] {
          if (forwarder_) forwarder_->Wake();
        });
  }

  void TearDown() override {
    ForwardingTest::TearDown();  // the Forwarder goes first: it holds the provider
    identities_.reset();
  }

  policies::Upstream Aws() const {
    policies::Upstream u;
    u.name = "aws";
    u.kind = policies::UpstreamKind::kAwsIot;
    u.endpoint = "localhost:" + std::to_string(port_);
    u.host = "localhost";
    u.port = static_cast<uint16_t>(port_);
    u.tls = true;
    u.ca = site_.ca_file;
    u.identity = policies::UpstreamIdentity::kDevice;
    u.topic = "dt/{site}/{device}/{channel}";
    u.down_topic = "cmd/{site}/{device}/{channel}";
    u.qos = 1;
    return u;
  }

  ForwarderOptions Options(std::chrono::milliseconds idle = std::chrono::minutes(5)) {
    ForwarderOptions options;
    options.tuning.cloud_identity = identities_->Provider();
    options.tuning.aws_device_idle = idle;
    return options;
  }

  Site site_;
  int port_ = 0, observer_port_ = 0;
  Broker broker_;
  std::unique_ptr<Observer> observer_;
  std::unique_ptr<CloudIdentities> identities_;
};

TEST_F(AwsDeviceIdentityTest, EachDeviceHasItsOwnConnectionLimitsDownlinksAndIdleClose) {
  CreateForwarder(MakePolicy({Aws()}, {{"thermostats", "aws"}}),
                  Options(std::chrono::milliseconds(1500)));
  Submit("dev-1", "thermostats", "temp", Payload("dev-1", 0), 2);  // QoS 2: sent with QoS 1
  Submit("dev-2", "thermostats", "temp", Payload("dev-2", 0), 1);
  Submit("dev-3", "thermostats", "temp", Payload("dev-3", 0), 1);
  Submit("dev-1", "thermostats", "temp", Payload("dev-1", 1), 1);
  Submit("dev-3", "thermostats", "big", Bytes(128 * 1024 + 1, 'x'), 1);      // over 128 KB
  Submit("dev-2", "thermostats", "a/b/c/d/e/f", Payload("dev-2", 1), 1);  // 8 '/'
  Submit("dev-3", "thermostats", "temp", Payload("dev-3", 1), 1);
  ASSERT_TRUE(RunUntil([&] {
    observer_->Poll();
    return observer_->messages().size() == 5 && forwarder_->QueueUsage("aws")->count == 0;
  })) << broker_.Log();
  RunFor(std::chrono::milliseconds(200));
  observer_->Poll();
  ASSERT_EQ(observer_->messages().size(), 5u);
  std::map<std::string, std::vector<int>> seqs;
  for (const auto& m : observer_->messages()) {
    auto [device, seq] = ParsePayload(m.payload);
    EXPECT_EQ(m.topic, "dt/edge-01/" + device + "/temp");
    EXPECT_EQ(m.qos, 1);
    seqs[device].push_back(seq);
  }
  EXPECT_EQ(seqs["dev-1"], (std::vector<int>{0, 1}));
  EXPECT_EQ(seqs["dev-2"], (std::vector<int>{0}));
  EXPECT_EQ(seqs["dev-3"], (std::vector<int>{0, 1}));

  // Three connections, each authenticated as its own thing; the thing policy let every
  // message through, so each went out on the connection of the device it names.
  const std::string log = broker_.Log();
  for (const char* id : {"dev-1", "dev-2", "dev-3"}) {
    EXPECT_EQ(CountOf(log, std::string(" as ") + id + " ("), 1) << log;
    EXPECT_EQ(CountOf(log, std::string("u'") + id + "'"), 1) << log;
  }
  EXPECT_EQ(CountOf(log, "Denied PUBLISH"), 0) << log;
  UpstreamCounters c = forwarder_->Counters("aws");
  EXPECT_EQ(c.connects, 3u);
  EXPECT_EQ(c.limit_violations, 2u);
  EXPECT_EQ(c.qos_downgraded, 1u);
  EXPECT_EQ(c.acked, 5u);
  EXPECT_EQ(identities_->issued(), 3u);

  // A down-link reaches only the device it names, on that device's own subscription.
  ASSERT_TRUE(RunUntil([&] { return CountOf(broker_.Log(), "cmd/edge-01/dev-2/#") > 0; }));
  ASSERT_LT(observer_->client().Publish("cmd/edge-01/dev-2/setpoint/high", "22", 1), 0x80);
  ASSERT_TRUE(RunUntil([&] { return downlinks_.size() == 1; }));
  RunFor(std::chrono::milliseconds(200));
  ASSERT_EQ(downlinks_.size(), 1u);
  EXPECT_EQ(downlinks_[0].device_id, "dev-2");
  EXPECT_EQ(downlinks_[0].channel, "setpoint/high");
  EXPECT_EQ(std::string(downlinks_[0].payload.begin(), downlinks_[0].payload.end()), "22");

  // Idle connections close; the next message opens one again with the kept certificate.
  ASSERT_TRUE(RunUntil([&] { return forwarder_->Counters("aws").disconnects == 3; },
                       std::chrono::seconds(6)));
  Submit("dev-2", "thermostats", "temp", Payload("dev-2", 2), 1);
  ASSERT_TRUE(RunUntil([&] {
    observer_->Poll();
    return observer_->messages().size() == 6;
  }));
  EXPECT_EQ(forwarder_->Counters("aws").connects, 4u);
  EXPECT_EQ(identities_->issued(), 3u) << "the kept certificate is re-used";
}

TEST_F(AwsDeviceIdentityTest, PublishRateIsLimitedPerDeviceConnection) {
  ForwarderOptions options = Options();
  options.tuning.aws_publishes_per_second = 50;
  CreateForwarder(MakePolicy({Aws()}, {{"thermostats", "aws"}}), options);
  // Connections first, so the clock below measures sending only.
  Submit("dev-1", "thermostats", "t", Payload("dev-1", 0), 1);
  Submit("dev-2", "thermostats", "t", Payload("dev-2", 0), 1);
  ASSERT_TRUE(RunUntil([&] { return forwarder_->Counters("aws").acked == 2; }));
  RunFor(std::chrono::milliseconds(1100));  // both buckets full again
  const auto start = std::chrono::steady_clock::now();
  for (int i = 1; i <= 100; ++i) {
    Submit("dev-1", "thermostats", "t", Payload("dev-1", i), 1);
    Submit("dev-2", "thermostats", "t", Payload("dev-2", i), 1);
  }
  ASSERT_TRUE(RunUntil([&] { return forwarder_->Counters("aws").acked == 202; },
                       std::chrono::seconds(10)));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Each connection: a full bucket of 50, then 50 per second: the other 50 take 1 s. One
  // bucket shared by both devices would need 3 s.
  EXPECT_GE(seconds, 0.9);
  EXPECT_LE(seconds, 2.2);
  ASSERT_TRUE(RunUntil([&] {
    observer_->Poll();
    return observer_->messages().size() == 202;
  }));
  std::map<std::string, int> next;
  for (const auto& m : observer_->messages()) {
    auto [device, seq] = ParsePayload(m.payload);
    EXPECT_EQ(seq, next[device]++) << device;
  }
}

TEST_F(AwsDeviceIdentityTest, TheThingPolicyRefusesAnotherDevicesTopics) {
  // The emulator itself must catch a connection that speaks or listens for another device.
  Result<CloudIdentity> identity = MakeError(ErrorCode::kUnavailable, "not asked");
  ASSERT_TRUE(RunUntil([&] {
    identity = identities_->Get("aws", "dev-1");
    return identity.ok() || identity.error().code != ErrorCode::kUnavailable;
  }));
  auto dev1 = Must(std::move(identity), "identity");
  testing::TestClient thing("dev-1", 5);
  ASSERT_EQ(thing.Connect(port_, {site_.ca_file, dev1.cert_file, dev1.key_file}), 0);
  EXPECT_GE(thing.Publish("dt/edge-01/dev-2/temp", "forged", 1), 0x80);
  EXPECT_LT(thing.Publish("dt/edge-01/dev-1/temp", "own", 1), 0x80);
  ASSERT_TRUE(RunUntil([&] {
    observer_->Poll();
    return observer_->messages().size() == 1;
  }));
  EXPECT_EQ(observer_->messages()[0].payload, "own");
  // mosquitto grants the subscription and applies `read` to each delivery.
  ASSERT_EQ(thing.Subscribe("cmd/edge-01/+/#", 1), 1);
  ASSERT_LT(observer_->client().Publish("cmd/edge-01/dev-2/x", "not yours", 1), 0x80);
  ASSERT_LT(observer_->client().Publish("cmd/edge-01/dev-1/x", "yours", 1), 0x80);
  auto m = thing.WaitMessage();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->payload, "yours");
  EXPECT_FALSE(thing.WaitMessage(std::chrono::milliseconds(200)).has_value());

  // QoS 2 closes the connection, as on AWS: the upstream must never send it.
  testing::TestClient v311("dev-1-v311", 4);
  ASSERT_EQ(v311.Connect(port_, {site_.ca_file, dev1.cert_file, dev1.key_file}), 0);
  v311.Publish("dt/edge-01/dev-1/temp", "qos2", 2, false, {}, std::chrono::milliseconds(500));
  EXPECT_TRUE(v311.WaitDisconnected());
  RunFor(std::chrono::milliseconds(200));
  observer_->Poll();
  EXPECT_EQ(observer_->messages().size(), 1u);
}

TEST_F(AwsDeviceIdentityTest, InactiveDevicesGetNoConnectionAndTheirMessagesAreDropped) {
  CreateForwarder(MakePolicy({Aws()}, {{"thermostats", "aws"}}), Options());
  Submit("dev-retired", "thermostats", "temp", Payload("dev-retired", 0), 1);
  Submit("dev-1", "thermostats", "temp", Payload("dev-1", 0), 1);
  ASSERT_TRUE(RunUntil([&] {
    observer_->Poll();
    return observer_->messages().size() == 1 && forwarder_->QueueUsage("aws")->count == 0;
  }));
  EXPECT_EQ(observer_->messages()[0].payload, "dev-1|0");
  EXPECT_EQ(forwarder_->Counters("aws").connects, 1u);
  EXPECT_EQ(identities_->issued(), 1u);
  struct stat st {};
  EXPECT_NE(stat((tmp_ / "cloud/aws/dev-retired.key").c_str(), &st), 0);
}

TEST_F(AwsDeviceIdentityTest, WithoutAProviderDeviceIdentityIsRefusedAtCreation) {
  UpstreamCounters counters;
  auto up = MakeUpstream(Aws(), "edge-01", &loop_, {}, &counters, {});
  ASSERT_FALSE(up.ok());
  EXPECT_EQ(up.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(up.error().message.find("provider"), std::string::npos) << up.error().message;
}

// ---- the provider on its own ----

class CloudIdentitiesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    site_ = MakeSite(tmp_.path());
    auto s = storage::Store::Open({.path = tmp_ / "store", .sync = false});
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    store_.emplace(std::move(s).value());
    PutDevice(*store_, "dev-1", storage::DeviceState::kActive);
    PutDevice(*store_, "dev-2", storage::DeviceState::kActive);
    PutDevice(*store_, "dev-x", storage::DeviceState::kCompromised);
    PutDevice(*store_, "dev-m", storage::DeviceState::kManufactured);
  }

  void TearDown() override {
    // Jobs still on a worker come back to the loop before it closes.
    for (int i = 0; i < 5000 && uv_run(&loop_, UV_RUN_NOWAIT) != 0; ++i) usleep(1000);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  std::unique_ptr<CloudIdentities> Make(CloudIdentityOptions options = {}) {
    options.dir = tmp_ / "store/cloud";
    return std::make_unique<CloudIdentities>(
        &loop_, &*store_, [this] { return std::shared_ptr<const SiteAuthority>(site_.authority); },
        options, [this] { ++settled_; });
  }

  // Asks until the answer is there, running the loop meanwhile (as the Forwarder does, woken by
  // `on_settled`).
  Result<CloudIdentity> GetNow(CloudIdentities& ids, std::string_view upstream, std::string_view id) {
    for (int i = 0; i < 10000; ++i) {
      auto r = ids.Get(upstream, id);
      if (r.ok() || r.error().code != ErrorCode::kUnavailable) return r;
      uv_run(&loop_, UV_RUN_ONCE);
    }
    return MakeError(ErrorCode::kInternal, "never settled");
  }

  std::vector<storage::CertificateRecord> CloudRecords(const std::string& id) {
    auto txn = Must(store_->BeginRead(), "read");
    std::vector<storage::CertificateRecord> out;
    for (auto& r : Must(storage::ListDeviceCertificates(txn, id), "list")) {
      if (r.kind == storage::CertificateKind::kCloud) out.push_back(std::move(r));
    }
    return out;
  }

  uv_loop_t loop_{};
  testing::TempDir tmp_;
  Site site_;
  std::optional<storage::Store> store_;
  int settled_ = 0;
};

TEST_F(CloudIdentitiesTest, IssuesOnceKeepsTheFilesAndReusesThemAfterARestart) {
  auto first = Make();
  auto a = Must(GetNow(*first, "aws", "dev-1"), "first get");
  EXPECT_EQ(a.cert_file, tmp_ / "store/cloud/aws/dev-1.pem");
  EXPECT_EQ(a.key_file, tmp_ / "store/cloud/aws/dev-1.key");
  const std::string pem = testing::ReadFile(a.cert_file);
  const std::string key = testing::ReadFile(a.key_file);
  auto again = Must(GetNow(*first, "aws", "dev-1"), "second get");
  EXPECT_EQ(first->issued(), 1u);
  EXPECT_EQ(testing::ReadFile(again.cert_file), pem);

  auto cert = Must(pki::LoadCertificateFile(a.cert_file), "cert");
  EXPECT_EQ(cert.subject.cn, "dev-1");
  EXPECT_EQ(cert.subject.o, "edge-01");
  EXPECT_EQ(cert.subject.ou, "aws");
  EXPECT_FALSE(cert.is_ca);
  EXPECT_EQ(a.not_after, cert.not_after);
  EXPECT_NEAR(static_cast<double>(cert.not_after - UnixNow()), 365.0 * 86400, 600);
  const auto pub = Must(Must(pki::LoadPrivateKeyFile(a.key_file), "key").PublicKeyDer(), "spki");
  EXPECT_EQ(pub, cert.public_key_der);

  struct stat st {};
  ASSERT_EQ(stat(a.key_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat((tmp_ / "store/cloud/aws").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);

  // It chains to the site CA and is a TLS client certificate, for OpenSSL too.
  auto verify = testing::RunCommand({"/usr/bin/openssl", "verify", "-CAfile", site_.ca_file, "-purpose",
                                     "sslclient", a.cert_file});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  EXPECT_NE(verify.out.find(": OK"), std::string::npos) << verify.out;

  // Recorded as the device's cloud certificate.
  auto records = CloudRecords("dev-1");
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].der, cert.der);
  EXPECT_EQ(records[0].device_id, "dev-1");

  // A new process (new provider, same directory and store) re-uses the pair.
  first.reset();
  auto second = Make();
  auto b = Must(GetNow(*second, "aws", "dev-1"), "after restart");
  EXPECT_EQ(second->issued(), 0u);
  EXPECT_EQ(testing::ReadFile(b.cert_file), pem);
  EXPECT_EQ(testing::ReadFile(b.key_file), key);

  // Another device, another upstream: their own pairs.
  auto c = Must(GetNow(*second, "aws", "dev-2"), "dev-2");
  auto d = Must(GetNow(*second, "aws-eu", "dev-1"), "other upstream");
  EXPECT_EQ(second->issued(), 2u);
  EXPECT_NE(testing::ReadFile(c.cert_file), pem);
  EXPECT_NE(testing::ReadFile(d.cert_file), pem);
  EXPECT_EQ(CloudRecords("dev-1").size(), 2u);
}

TEST_F(CloudIdentitiesTest, PreparesOffTheLoopOneAnswerPerDevice) {
  for (int i = 0; i < 6; ++i) PutDevice(*store_, "dev-b" + std::to_string(i), storage::DeviceState::kActive);
  auto ids = Make();
  // Nothing is made on the caller's thread: every first ask is "being prepared".
  for (int i = 0; i < 6; ++i) {
    auto r = ids->Get("aws", "dev-b" + std::to_string(i));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kUnavailable) << r.error().message;
  }
  EXPECT_FALSE(ids->Get("aws", "dev-b0").ok()) << "asked again while queued: still being prepared";
  EXPECT_EQ(ids->pending(), 6u);
  EXPECT_EQ(ids->issued(), 0u);
  for (int i = 0; i < 2000 && settled_ < 6; ++i) uv_run(&loop_, UV_RUN_ONCE);
  ASSERT_EQ(settled_, 6) << "each preparation tells its owner once";
  EXPECT_EQ(ids->issued(), 6u);
  for (int i = 0; i < 6; ++i) {
    const std::string id = "dev-b" + std::to_string(i);
    auto got = Must(ids->Get("aws", id), id.c_str());
    EXPECT_EQ(Must(pki::LoadCertificateFile(got.cert_file), id.c_str()).subject.cn, id);
    EXPECT_EQ(CloudRecords(id).size(), 1u);
  }
  EXPECT_EQ(ids->pending(), 0u) << "answers are handed out once, not kept";

  // Revoked while its certificate is being signed: the answer is a refusal and nothing is
  // recorded, though the worker had made the files.
  ASSERT_FALSE(ids->Get("aws", "dev-2").ok());
  PutDevice(*store_, "dev-2", storage::DeviceState::kCompromised);
  for (int i = 0; i < 2000 && settled_ < 7; ++i) uv_run(&loop_, UV_RUN_ONCE);
  ASSERT_EQ(settled_, 7);
  auto r = ids->Get("aws", "dev-2");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_TRUE(CloudRecords("dev-2").empty());
  struct stat st {};
  EXPECT_NE(stat((tmp_ / "store/cloud/aws/dev-2.key").c_str(), &st), 0) << "its key is not kept";
  EXPECT_EQ(ids->issued(), 6u);
  EXPECT_EQ(ids->pending(), 0u);
}

TEST_F(CloudIdentitiesTest, RefusesDevicesThatAreNotActive) {
  auto ids = Make();
  for (const char* id : {"dev-x", "dev-m", "dev-unknown"}) {
    auto r = GetNow(*ids, "aws", id);
    ASSERT_FALSE(r.ok()) << id;
    EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition) << id;
    EXPECT_TRUE(CloudRecords(id).empty()) << id;
  }
  EXPECT_EQ(ids->issued(), 0u);
  struct stat st {};
  EXPECT_NE(stat((tmp_ / "store/cloud/aws/dev-x.key").c_str(), &st), 0);
  EXPECT_FALSE(GetNow(*ids, "../etc", "dev-1").ok()) << "an upstream name is one path component";
  EXPECT_FALSE(GetNow(*ids, "aws", "../dev-1").ok());

  // Active once, then compromised: no more identity for it.
  ASSERT_TRUE(GetNow(*ids, "aws", "dev-1").ok());
  PutDevice(*store_, "dev-1", storage::DeviceState::kCompromised);
  auto r = GetNow(*ids, "aws", "dev-1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition);
}

TEST_F(CloudIdentitiesTest, ReissuesNearExpiryForANewSiteCaAndForABadKeyFile) {
  auto short_lived = Make({.cert_days = 40, .renew_before_days = 10});
  auto a = Must(GetNow(*short_lived, "aws", "dev-1"), "40 days");
  const std::string first = testing::ReadFile(a.cert_file);
  EXPECT_EQ(Must(GetNow(*short_lived, "aws", "dev-1"), "again").not_after, a.not_after);
  EXPECT_EQ(short_lived->issued(), 1u);

  // 40 days left is within a 60-day renewal window: a fresh one-year certificate.
  auto yearly = Make({.cert_days = 365, .renew_before_days = 60});
  auto b = Must(GetNow(*yearly, "aws", "dev-1"), "renewed");
  EXPECT_EQ(yearly->issued(), 1u);
  EXPECT_GT(b.not_after, a.not_after + 300 * 86400);
  const std::string second = testing::ReadFile(b.cert_file);
  EXPECT_NE(second, first);

  // A key file someone made readable is not trusted any more.
  chmod(b.key_file.c_str(), 0644);
  auto c = Must(GetNow(*yearly, "aws", "dev-1"), "after chmod");
  EXPECT_EQ(yearly->issued(), 2u);
  struct stat st {};
  ASSERT_EQ(stat(c.key_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // The site CA changed (rotation): what the old one issued is replaced.
  testing::TempDir other;
  site_ = MakeSite(other.path());
  auto d = Must(GetNow(*yearly, "aws", "dev-1"), "new CA");
  EXPECT_EQ(yearly->issued(), 3u);
  auto verify = testing::RunCommand({"/usr/bin/openssl", "verify", "-CAfile", site_.ca_file, d.cert_file});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  EXPECT_EQ(CloudRecords("dev-1").size(), 4u);
}

}  // namespace
}  // namespace edgetrust::forwarding::test
