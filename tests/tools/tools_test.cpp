// The edgetrust CLI through its real binary: every command with good and bad arguments, the
// files it writes (modes, no overwrite without --force), and OpenSSL accepting its PKI.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>

#include "cli_test_util.h"
#include "edgetrust/common/bytes.h"
#include "edgetrust/pki/certificate.h"
#include "edgetrust/policies/policy.h"
#include "edgetrust/storage/lifecycle.h"
#include "edgetrust/storage/store.h"
#include "edgetrust/storage/tables.h"
#include "edgetrust/testing/process.h"
#include "edgetrust/testing/site_fixture.h"

namespace edgetrust::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// Wrong arguments: exit 2, one line naming the problem, then the usage hint.
void ExpectUsageError(const CommandResult& r, const std::string& fragment) {
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr(fragment));
  EXPECT_THAT(r.err, HasSubstr("--help"));
  EXPECT_EQ(CountLines(r.err), 2) << r.err;
  EXPECT_EQ(r.out, "");
}

// Runtime failure: exit 1, exactly one "edgetrust: ..." line.
void ExpectFailure(const CommandResult& r, const std::string& fragment) {
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, StartsWith("edgetrust: "));
  EXPECT_THAT(r.err, HasSubstr(fragment));
  EXPECT_EQ(CountLines(r.err), 1) << r.err;
}

storage::Store OpenStore(const std::string& dir, bool read_only = true) {
  auto s = storage::Store::Open({.path = dir, .read_only = read_only});
  EXPECT_TRUE(s.ok()) << s.error().ToString();
  return std::move(s).value();
}

std::optional<storage::DeviceRecord> FindDevice(const std::string& store_dir,
                                                const std::string& id) {
  auto store = OpenStore(store_dir);
  auto txn = store.BeginRead();
  EXPECT_TRUE(txn.ok());
  auto d = storage::FindDevice(*txn, id);
  EXPECT_TRUE(d.ok());
  return *d;
}

uint64_t CountDevices(const std::string& store_dir) {
  auto store = OpenStore(store_dir);
  auto txn = store.BeginRead();
  auto n = storage::CountDevices(*txn);
  EXPECT_TRUE(n.ok());
  return n.ok() ? *n : 0;
}

TEST(CliHelp, TopLevelListsEveryCommand) {
  auto r = Et({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* c : {"site init", "site add-manufacturer", "site import-manifest", "factory init",
                        "factory provision", "factory sign-csr", "revoke", "claim", "device list",
                        "device show", "version"}) {
    EXPECT_THAT(r.out, HasSubstr(c));
  }
}

TEST(CliHelp, EveryCommandHasHelp) {
  const std::vector<std::vector<std::string>> commands = {
      {"site", "init"},       {"site", "add-manufacturer"}, {"site", "import-manifest"},
      {"factory", "init"},    {"factory", "provision"},     {"factory", "sign-csr"},
      {"revoke"},             {"claim"},                    {"device", "list"},
      {"device", "show"},     {"version"}};
  for (auto args : commands) {
    std::string path;
    for (const auto& a : args) path += (path.empty() ? "" : " ") + a;
    args.push_back("--help");
    auto r = Et(args);
    EXPECT_EQ(r.exit_code, 0) << path;
    EXPECT_THAT(r.out, HasSubstr("usage: edgetrust " + path)) << path;
    EXPECT_EQ(r.err, "") << path;
  }
  // --help wins over anything else on the line, even a missing required option.
  EXPECT_EQ(Et({"site", "init", "--bogus", "--help"}).exit_code, 0);
  auto group = Et({"factory", "--help"});
  EXPECT_EQ(group.exit_code, 0);
  EXPECT_THAT(group.out, HasSubstr("factory provision"));
  EXPECT_THAT(group.out, Not(HasSubstr("site init")));
}

TEST(CliHelp, RevokeHelpExplainsScopes) {
  auto r = Et({"revoke", "--help"});
  EXPECT_THAT(r.out, HasSubstr("compromised"));
  EXPECT_THAT(r.out, HasSubstr("--all"));
}

TEST(CliUsage, WrongArgumentsExitTwoWithOneLine) {
  TempDir tmp;
  ExpectUsageError(Et({}), "no command");
  ExpectUsageError(Et({"frobnicate"}), "unknown command 'frobnicate'");
  ExpectUsageError(Et({"site"}), "missing command");
  ExpectUsageError(Et({"site", "explode"}), "unknown command 'explode'");
  ExpectUsageError(Et({"site", "init", "--dir", tmp / "s"}), "missing --site");
  ExpectUsageError(Et({"site", "init", "--dir", tmp / "s", "--site", "x", "--port", "http"}),
                   "--port");
  ExpectUsageError(Et({"site", "init", "--dir", tmp / "s", "--site", "x", "--port", "70000"}),
                   "--port");
  ExpectUsageError(Et({"site", "init", "--dir", tmp / "s", "--site", "x", "--colour", "red"}),
                   "unknown option '--colour'");
  ExpectUsageError(Et({"site", "init", "--dir", tmp / "s", "--site", "x", "stray"}),
                   "unexpected argument 'stray'");
  ExpectUsageError(Et({"site", "init", "--dir", tmp / "s", "--site", "bad/site"}),
                   "invalid site id");
  ExpectUsageError(Et({"site", "init", "--dir", tmp / "s", "--site", "x", "--dir", tmp / "t"}),
                   "more than once");
  ExpectUsageError(Et({"site", "init", "--dir"}), "needs a value");
  ExpectUsageError(Et({"site", "init", "--dir", tmp / "s", "--site", "x", "--host", "a b"}),
                   "invalid --host");
  ExpectUsageError(Et({"factory", "provision", "--factory", tmp / "f", "--count", "0",
                       "--prefix", "d-", "--model", "m", "--out", tmp / "o"}),
                   "--count");
  ExpectUsageError(Et({"factory", "provision", "--factory", tmp / "f", "--count", "1",
                       "--prefix", "bad prefix", "--model", "m", "--out", tmp / "o"}),
                   "invalid --prefix");
  ExpectUsageError(Et({"factory", "init", "--dir", tmp / "f", "--manufacturer", "acme", "--token",
                       "t1", "--pin", "1"}),
                   "--pkcs11-module");
  ExpectUsageError(Et({"factory", "init", "--dir", tmp / "f", "--manufacturer", "acme",
                       "--pkcs11-module", "/x.so", "--token", "t1"}),
                   "--pin");
  ExpectUsageError(Et({"revoke", "--store", tmp / "st"}), "exactly one of --device or --fingerprint");
  ExpectUsageError(Et({"revoke", "--store", tmp / "st", "--device", "d1", "--fingerprint", "ab"}),
                   "exactly one");
  ExpectUsageError(Et({"revoke", "--store", tmp / "st", "--fingerprint", "abcd"}), "SHA-256");
  ExpectUsageError(Et({"revoke", "--store", tmp / "st", "--fingerprint", std::string(64, 'a'),
                       "--all"}),
                   "--all goes with --device");
  ExpectUsageError(Et({"device", "list", "--store", tmp / "st", "--state", "sleepy"}), "--state");
  // Nothing was created by any of these.
  EXPECT_FALSE(Exists(tmp / "s"));
  EXPECT_FALSE(Exists(tmp / "f"));
  EXPECT_FALSE(Exists(tmp / "o"));
}

TEST(CliVersion, PrintsVersion) {
  auto r = Et({"version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, StartsWith("edgetrust "));
  EXPECT_EQ(Et({"--version"}).out, r.out);
}

class SiteInitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_ / "site";
    auto r = Et({"site", "init", "--dir", dir_, "--site", "edge-01", "--host", "broker.example",
                 "--host", "10.1.2.3", "--port", "18883", "--plugin", "/opt/et/plugin.so"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  std::string F(const std::string& name) const { return dir_ + "/" + name; }
  // trust.d by file name → content.
  std::map<std::string, std::string> TrustDir() const {
    std::map<std::string, std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(F("trust.d"))) {
      out[e.path().filename().string()] = ReadFile(e.path().string());
    }
    return out;
  }
  // What OpenSSL's own CLI says the subject hash is.
  static std::string OpenSslHash(const std::string& pem) {
    CommandResult r = RunCommand({"/usr/bin/openssl", "x509", "-hash", "-noout", "-in", pem});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out.substr(0, r.out.find('\n'));
  }

  TempDir tmp_;
  std::string dir_;
};

TEST_F(SiteInitTest, WritesEveryFileWithTheRightMode) {
  for (const char* key : {"site-ca.key", "broker.key", "gateway.key", "admin.key"}) {
    EXPECT_EQ(FileMode(F(key)), 0600u) << key;
    EXPECT_THAT(ReadFile(F(key)), HasSubstr("-----BEGIN PRIVATE KEY-----")) << key;
  }
  for (const char* pub : {"site-ca.pem", "broker.pem", "gateway.pem", "admin.pem", "trust.pem",
                          "policy.yaml", "mosquitto.conf"}) {
    EXPECT_EQ(FileMode(F(pub)), 0644u) << pub;
  }
  EXPECT_TRUE(Exists(F("store")));
  // Running as root with a `mosquitto` user: the broker's key and the store are handed over.
  if (geteuid() == 0) {
    if (passwd* pw = getpwnam("mosquitto")) {
      EXPECT_EQ(FileOwner(F("broker.key")), pw->pw_uid);
      EXPECT_EQ(FileOwner(F("store")), pw->pw_uid);
      EXPECT_EQ(FileOwner(F("store/lock.mdb")), pw->pw_uid);
      EXPECT_EQ(FileOwner(F("site-ca.key")), 0u);
    }
  }
  // The store opens read-only (as the plugin will) and knows the two principals.
  auto store = OpenStore(F("store"));
  auto txn = store.BeginRead();
  ASSERT_TRUE(txn.ok());
  auto gw = pki::LoadCertificateFile(F("gateway.pem"));
  ASSERT_TRUE(gw.ok());
  auto rec = storage::FindCertificate(*txn, gw->fingerprint);
  ASSERT_TRUE(rec.ok());
  ASSERT_TRUE(rec->has_value());
  EXPECT_EQ((*rec)->kind, storage::CertificateKind::kPrincipal);
  EXPECT_EQ((*rec)->device_id, "edgetrust-gateway");
}

TEST_F(SiteInitTest, OpenSslAcceptsTheSitePki) {
  auto ca = OpenSsl({"x509", "-in", F("site-ca.pem"), "-noout", "-subject"});
  EXPECT_THAT(ca.out, HasSubstr("edge-01 site CA"));
  auto broker = OpenSsl({"verify", "-purpose", "sslserver", "-CAfile", F("site-ca.pem"),
                         F("broker.pem")});
  EXPECT_EQ(broker.exit_code, 0) << broker.out << broker.err;
  for (const char* client : {"gateway.pem", "admin.pem"}) {
    auto r = OpenSsl({"verify", "-purpose", "sslclient", "-CAfile", F("site-ca.pem"), F(client)});
    EXPECT_EQ(r.exit_code, 0) << client << r.out << r.err;
  }
  // A client certificate is not a server certificate.
  EXPECT_NE(OpenSsl({"verify", "-purpose", "sslserver", "-CAfile", F("site-ca.pem"),
                     F("gateway.pem")}).exit_code,
            0);
  auto san = OpenSsl({"x509", "-in", F("broker.pem"), "-noout", "-ext", "subjectAltName"});
  for (const char* name : {"DNS:broker.example", "DNS:localhost", "IP Address:10.1.2.3",
                           "IP Address:127.0.0.1"}) {
    EXPECT_THAT(san.out, HasSubstr(name));
  }
  EXPECT_THAT(OpenSsl({"x509", "-in", F("gateway.pem"), "-noout", "-subject"}).out,
              HasSubstr("CN = edgetrust-gateway"));
  EXPECT_THAT(OpenSsl({"x509", "-in", F("admin.pem"), "-noout", "-subject"}).out,
              HasSubstr("CN = ops-admin"));
  // Each key matches its certificate.
  for (const char* name : {"broker", "gateway", "admin", "site-ca"}) {
    auto from_cert = OpenSsl({"x509", "-in", F(std::string(name) + ".pem"), "-noout", "-pubkey"});
    auto from_key = OpenSsl({"pkey", "-in", F(std::string(name) + ".key"), "-pubout"});
    EXPECT_EQ(from_cert.out, from_key.out) << name;
    EXPECT_FALSE(from_key.out.empty());
  }
}

TEST_F(SiteInitTest, MosquittoConfAndPolicy) {
  std::string conf = ReadFile(F("mosquitto.conf"));
  for (const std::string& line : std::vector<std::string>{
           "listener 18883\n", "cafile " + F("trust.pem") + "\n", "certfile " + F("broker.pem") + "\n",
        "keyfile " + F("broker.key") + "\n", "require_certificate true\n",
        "use_identity_as_username false\n", "set_tcp_nodelay true\n",
        "per_listener_settings false\n", "plugin /opt/et/plugin.so\n",
        "capath " + F("trust.d") + "\n", "max_queued_messages 100000\n",
        "plugin_opt_store " + F("store") + "\n", "plugin_opt_policy " + F("policy.yaml") + "\n"}) {
    EXPECT_THAT(conf, HasSubstr(line));
  }
  // per_listener_settings must come before the listener or mosquitto refuses the file.
  EXPECT_LT(conf.find("per_listener_settings"), conf.find("listener 18883"));
  auto policy = policies::LoadPolicyFile(F("policy.yaml"));
  ASSERT_TRUE(policy.ok()) << policy.error().ToString();
  EXPECT_EQ(policy->site, "edge-01");
  EXPECT_EQ(policy->principals.gateway, std::vector<std::string>{"edgetrust-gateway"});
  EXPECT_EQ(policy->principals.admin, std::vector<std::string>{"ops-admin"});
  EXPECT_EQ(policy->trust.site_ca, F("site-ca.pem"));
  EXPECT_TRUE(policy->trust.manufacturers.empty());
  EXPECT_EQ(ReadFile(F("trust.pem")), ReadFile(F("site-ca.pem")));
  EXPECT_EQ(TrustDir(), (std::map<std::string, std::string>{
                            {OpenSslHash(F("site-ca.pem")) + ".0", ReadFile(F("site-ca.pem"))}}));
}

TEST_F(SiteInitTest, RefusesToOverwriteWithoutForce) {
  std::string ca_before = ReadFile(F("site-ca.pem"));
  std::string key_before = ReadFile(F("site-ca.key"));
  auto again = Et({"site", "init", "--dir", dir_, "--site", "edge-01"});
  ExpectFailure(again, "already exists (use --force to overwrite)");
  EXPECT_EQ(ReadFile(F("site-ca.pem")), ca_before);
  EXPECT_EQ(ReadFile(F("site-ca.key")), key_before);

  auto forced = Et({"site", "init", "--dir", dir_, "--site", "edge-01", "--force"});
  EXPECT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_NE(ReadFile(F("site-ca.pem")), ca_before);
  EXPECT_EQ(FileMode(F("site-ca.key")), 0600u);
  EXPECT_EQ(OpenSsl({"verify", "-CAfile", F("site-ca.pem"), F("broker.pem")}).exit_code, 0);
  // No temporary file is left behind.
  auto ls = RunCommand({"/bin/ls", "-a", dir_});
  EXPECT_THAT(ls.out, Not(HasSubstr(".tmp-")));
}

TEST_F(SiteInitTest, PluginDefaultsBesideTheBinaryOrInstalled) {
  auto r = Et({"site", "init", "--dir", tmp_ / "other", "--site", "s2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string conf = ReadFile(tmp_ / "other/mosquitto.conf");
  if (Exists(BinPath("mosquitto_edgetrust.so"))) {
    EXPECT_THAT(conf, HasSubstr("plugin " + BinPath("mosquitto_edgetrust.so") + "\n"));
  } else {
    EXPECT_THAT(conf, HasSubstr("/edgetrust/mosquitto_edgetrust.so\n"));
    EXPECT_THAT(r.err, HasSubstr("warning"));
  }
  EXPECT_THAT(conf, HasSubstr("listener 8883\n"));
}

class FactoryTest : public SiteInitTest {
 protected:
  void SetUp() override {
    SiteInitTest::SetUp();
    factory_ = tmp_ / "factory";
    auto r = Et({"factory", "init", "--dir", factory_, "--manufacturer", "acme"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  CommandResult Provision(const std::vector<std::string>& extra) {
    std::vector<std::string> args{"factory", "provision", "--factory", factory_, "--prefix",
                                  "acme-", "--model", "thermo-1", "--out", tmp_ / "devices"};
    args.insert(args.end(), extra.begin(), extra.end());
    return Et(args);
  }
  std::string factory_;
};

TEST_F(FactoryTest, InitWritesCaKeyAndConfig) {
  EXPECT_EQ(FileMode(factory_ + "/ca.key"), 0600u);
  EXPECT_EQ(FileMode(factory_ + "/ca.pem"), 0644u);
  EXPECT_THAT(ReadFile(factory_ + "/factory.yaml"), HasSubstr("manufacturer: acme"));
  auto text = OpenSsl({"x509", "-in", factory_ + "/ca.pem", "-noout", "-text"});
  EXPECT_THAT(text.out, HasSubstr("CA:TRUE"));
  EXPECT_THAT(text.out, HasSubstr("O = acme"));
  ExpectFailure(Et({"factory", "init", "--dir", factory_, "--manufacturer", "acme"}),
                "already exists");
}

TEST_F(FactoryTest, AddManufacturerUpdatesPolicyAndTrust) {
  auto r = Et({"site", "add-manufacturer", "--dir", dir_, "--name", "acme", "--ca",
               factory_ + "/ca.pem"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFile(F("manufacturer-acme.pem")), ReadFile(factory_ + "/ca.pem"));
  auto policy = policies::LoadPolicyFile(F("policy.yaml"));
  ASSERT_TRUE(policy.ok()) << policy.error().ToString();
  ASSERT_EQ(policy->trust.manufacturers.count("acme"), 1u);
  EXPECT_EQ(policy->trust.manufacturers.at("acme"), F("manufacturer-acme.pem"));
  std::string trust = ReadFile(F("trust.pem"));
  EXPECT_EQ(CountOf(trust, "BEGIN CERTIFICATE"), 2);
  EXPECT_THAT(trust, HasSubstr(ReadFile(F("site-ca.pem"))));
  EXPECT_THAT(trust, HasSubstr(ReadFile(factory_ + "/ca.pem")));
  // trust.d: what `openssl rehash` would make of the same CAs.
  EXPECT_EQ(TrustDir(), (std::map<std::string, std::string>{
                            {OpenSslHash(F("site-ca.pem")) + ".0", ReadFile(F("site-ca.pem"))},
                            {OpenSslHash(factory_ + "/ca.pem") + ".0", ReadFile(factory_ + "/ca.pem")}}));
  CommandResult verify = RunCommand({"/usr/bin/openssl", "verify", "-CApath", F("trust.d"),
                                     "-no-CAfile", "-no-CAstore", factory_ + "/ca.pem"});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;

  // Same name again: refused without --force, nothing changes.
  std::string policy_before = ReadFile(F("policy.yaml"));
  ExpectFailure(Et({"site", "add-manufacturer", "--dir", dir_, "--name", "acme", "--ca",
                    factory_ + "/ca.pem"}),
                "already trusted");
  EXPECT_EQ(ReadFile(F("policy.yaml")), policy_before);

  // --force replaces acme's CA: trust.pem holds the new one, not the old.
  ASSERT_EQ(Et({"factory", "init", "--dir", tmp_ / "f2", "--manufacturer", "acme"}).exit_code, 0);
  auto forced = Et({"site", "add-manufacturer", "--dir", dir_, "--name", "acme", "--ca",
                    tmp_ / "f2/ca.pem", "--force"});
  ASSERT_EQ(forced.exit_code, 0) << forced.err;
  trust = ReadFile(F("trust.pem"));
  EXPECT_EQ(CountOf(trust, "BEGIN CERTIFICATE"), 2);
  EXPECT_THAT(trust, HasSubstr(ReadFile(tmp_ / "f2/ca.pem")));
  EXPECT_THAT(trust, Not(HasSubstr(ReadFile(factory_ + "/ca.pem"))));
  // Both acme CAs have the subject "acme …": the old one's file is gone, not kept beside.
  std::map<std::string, std::string> dir = TrustDir();
  EXPECT_EQ(dir.size(), 2u);
  EXPECT_EQ(dir[OpenSslHash(tmp_ / "f2/ca.pem") + ".0"], ReadFile(tmp_ / "f2/ca.pem"));

  // A second manufacturer is appended.
  ASSERT_EQ(Et({"factory", "init", "--dir", tmp_ / "f3", "--manufacturer", "globex"}).exit_code, 0);
  ASSERT_EQ(Et({"site", "add-manufacturer", "--dir", dir_, "--name", "globex", "--ca",
                tmp_ / "f3/ca.pem"}).exit_code,
            0);
  EXPECT_EQ(CountOf(ReadFile(F("trust.pem")), "BEGIN CERTIFICATE"), 3);
  auto both = policies::LoadPolicyFile(F("policy.yaml"));
  ASSERT_TRUE(both.ok());
  EXPECT_EQ(both->ManufacturerNames(), (std::vector<std::string>{"acme", "globex"}));
}

TEST_F(FactoryTest, AddManufacturerRefusesBadInput) {
  ExpectFailure(Et({"site", "add-manufacturer", "--dir", dir_, "--name", "acme", "--ca",
                    F("broker.pem")}),
                "not a CA certificate");
  ExpectFailure(Et({"site", "add-manufacturer", "--dir", dir_, "--name", "acme", "--ca",
                    tmp_ / "missing.pem"}),
                "missing.pem");
  WriteFile(tmp_ / "garbage.pem", "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n");
  ExpectFailure(Et({"site", "add-manufacturer", "--dir", dir_, "--name", "acme", "--ca",
                    tmp_ / "garbage.pem"}),
                "garbage.pem");
  ExpectUsageError(Et({"site", "add-manufacturer", "--dir", dir_, "--name", "a b", "--ca",
                       factory_ + "/ca.pem"}),
                   "invalid manufacturer name");
  ExpectFailure(Et({"site", "add-manufacturer", "--dir", tmp_ / "nosite", "--name", "acme", "--ca",
                    factory_ + "/ca.pem"}),
                "policy.yaml");
  EXPECT_FALSE(Exists(F("manufacturer-acme.pem")));
  EXPECT_EQ(CountOf(ReadFile(F("trust.pem")), "BEGIN CERTIFICATE"), 1);
}

TEST_F(FactoryTest, ProvisionMakesDevicesAndManifest) {
  auto r = Provision({"--count", "3", "--firmware", "1.0.0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("provisioned 3 devices"));
  std::string manifest = ReadFile(tmp_ / "devices/manifest.csv");
  EXPECT_THAT(manifest, StartsWith("id,serial,sha256,model\n"));
  EXPECT_EQ(CountLines(manifest), 4);
  for (const char* id : {"acme-000001", "acme-000002", "acme-000003"}) {
    std::string d = tmp_ / "devices/" + std::string(id);
    EXPECT_EQ(FileMode(d + "/birth.key"), 0600u) << id;
    EXPECT_EQ(FileMode(d + "/birth.pem"), 0644u) << id;
    EXPECT_EQ(ReadFile(d + "/firmware"), "1.0.0\n");
    auto v = OpenSsl({"verify", "-purpose", "sslclient", "-CAfile", factory_ + "/ca.pem",
                      d + "/birth.pem"});
    EXPECT_EQ(v.exit_code, 0) << id << v.out << v.err;
    auto subject = OpenSsl({"x509", "-in", d + "/birth.pem", "-noout", "-subject", "-nameopt",
                            "RFC2253"});
    EXPECT_THAT(subject.out, HasSubstr("CN=" + std::string(id)));
    EXPECT_THAT(subject.out, HasSubstr("O=acme"));
    EXPECT_THAT(subject.out, HasSubstr("OU=thermo-1"));
    auto cert = pki::LoadCertificateFile(d + "/birth.pem");
    ASSERT_TRUE(cert.ok());
    EXPECT_GT(cert->not_after - UnixNow(), int64_t{19} * 365 * 86400);
    EXPECT_THAT(manifest, HasSubstr(std::string(id) + "," + HexEncode(cert->serial) + "," +
                                    HexEncode(cert->fingerprint) + ",thermo-1\n"));
    auto from_cert = OpenSsl({"x509", "-in", d + "/birth.pem", "-noout", "-pubkey"});
    auto from_key = OpenSsl({"pkey", "-in", d + "/birth.key", "-pubout"});
    EXPECT_EQ(from_cert.out, from_key.out);
  }
  // Keys are all different.
  EXPECT_NE(ReadFile(tmp_ / "devices/acme-000001/birth.key"),
            ReadFile(tmp_ / "devices/acme-000002/birth.key"));

  // Again: existing ids are skipped, the manifest grows, its header stays single.
  auto more = Provision({"--count", "2"});
  ASSERT_EQ(more.exit_code, 0) << more.err;
  EXPECT_TRUE(Exists(tmp_ / "devices/acme-000005/birth.pem"));
  EXPECT_FALSE(Exists(tmp_ / "devices/acme-000006"));
  manifest = ReadFile(tmp_ / "devices/manifest.csv");
  EXPECT_EQ(CountLines(manifest), 6);
  EXPECT_EQ(CountOf(manifest, "id,serial"), 1);

  auto started = Provision({"--count", "1", "--start", "100"});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  EXPECT_TRUE(Exists(tmp_ / "devices/acme-000100/birth.pem"));
}

TEST_F(FactoryTest, ProvisionFailsCleanlyWithoutAFactory) {
  ExpectFailure(Et({"factory", "provision", "--factory", tmp_ / "nofactory", "--count", "1",
                    "--prefix", "x-", "--model", "m", "--out", tmp_ / "out"}),
                "factory.yaml");
  EXPECT_FALSE(Exists(tmp_ / "out"));
}

TEST_F(FactoryTest, SignCsr) {
  std::string key = tmp_ / "se.key";
  std::string csr = tmp_ / "se.csr";
  ASSERT_EQ(OpenSsl({"ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key}).exit_code,
            0);
  ASSERT_EQ(OpenSsl({"req", "-new", "-key", key, "-subj", "/CN=se-device-7/OU=sensor-2", "-out",
                     csr}).exit_code,
            0);
  auto r = Et({"factory", "sign-csr", "--factory", factory_, "--csr", csr, "--out",
               tmp_ / "se.pem", "--manifest", tmp_ / "se-manifest.csv"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto v = OpenSsl({"verify", "-purpose", "sslclient", "-CAfile", factory_ + "/ca.pem",
                    tmp_ / "se.pem"});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  auto subject = OpenSsl({"x509", "-in", tmp_ / "se.pem", "-noout", "-subject", "-nameopt",
                          "RFC2253"});
  EXPECT_THAT(subject.out, HasSubstr("CN=se-device-7"));
  EXPECT_THAT(subject.out, HasSubstr("O=acme"));
  EXPECT_THAT(subject.out, HasSubstr("OU=sensor-2"));
  // The certificate carries the CSR's key.
  EXPECT_EQ(OpenSsl({"x509", "-in", tmp_ / "se.pem", "-noout", "-pubkey"}).out,
            OpenSsl({"pkey", "-in", key, "-pubout"}).out);
  EXPECT_THAT(ReadFile(tmp_ / "se-manifest.csv"), HasSubstr("se-device-7,"));

  // Not again without --force; --model overrides the OU.
  ExpectFailure(Et({"factory", "sign-csr", "--factory", factory_, "--csr", csr, "--out",
                    tmp_ / "se.pem"}),
                "already exists");
  ASSERT_EQ(Et({"factory", "sign-csr", "--factory", factory_, "--csr", csr, "--out",
                tmp_ / "se.pem", "--model", "sensor-3", "--force"}).exit_code,
            0);
  EXPECT_THAT(OpenSsl({"x509", "-in", tmp_ / "se.pem", "-noout", "-subject"}).out,
              HasSubstr("sensor-3"));
}

TEST_F(FactoryTest, SignCsrRefusesBadRequests) {
  std::string key = tmp_ / "se.key";
  ASSERT_EQ(OpenSsl({"ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key}).exit_code,
            0);
  // A CN that is not a device id (it would escape an MQTT topic level).
  ASSERT_EQ(OpenSsl({"req", "-new", "-key", key, "-subj", "/CN=evil device/OU=m", "-out",
                     tmp_ / "bad-cn.csr"}).exit_code,
            0);
  ExpectFailure(Et({"factory", "sign-csr", "--factory", factory_, "--csr", tmp_ / "bad-cn.csr",
                    "--out", tmp_ / "x.pem"}),
                "not a valid device id");
  // A CSR whose signature does not match: flip a byte inside the signature (end of the DER).
  ASSERT_EQ(OpenSsl({"req", "-new", "-key", key, "-subj", "/CN=good-1/OU=m", "-outform", "DER",
                     "-out", tmp_ / "good.der"}).exit_code,
            0);
  std::string der = ReadFile(tmp_ / "good.der");
  der[der.size() - 3] ^= 0x01;
  WriteFile(tmp_ / "tampered.der", der);
  auto tampered = Et({"factory", "sign-csr", "--factory", factory_, "--csr", tmp_ / "tampered.der",
                      "--out", tmp_ / "x.pem"});
  EXPECT_EQ(tampered.exit_code, 1) << tampered.err;
  // No OU and no --model.
  ASSERT_EQ(OpenSsl({"req", "-new", "-key", key, "-subj", "/CN=good-2", "-out",
                     tmp_ / "no-ou.csr"}).exit_code,
            0);
  ExpectUsageError(Et({"factory", "sign-csr", "--factory", factory_, "--csr", tmp_ / "no-ou.csr",
                       "--out", tmp_ / "x.pem"}),
                   "--model");
  WriteFile(tmp_ / "junk.csr", "not a csr");
  ExpectFailure(Et({"factory", "sign-csr", "--factory", factory_, "--csr", tmp_ / "junk.csr",
                    "--out", tmp_ / "x.pem"}),
                "junk.csr");
  EXPECT_FALSE(Exists(tmp_ / "x.pem"));
}

class StoreCommandsTest : public FactoryTest {
 protected:
  void SetUp() override {
    FactoryTest::SetUp();
    ASSERT_EQ(Provision({"--count", "3"}).exit_code, 0);
    manifest_ = tmp_ / "devices/manifest.csv";
    store_ = F("store");
  }
  std::string manifest_;
  std::string store_;
};

TEST_F(StoreCommandsTest, ImportManifest) {
  auto r = Et({"site", "import-manifest", "--store", store_, "--manifest", manifest_,
               "--manufacturer", "acme"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("imported 3 devices"));
  auto d = FindDevice(store_, "acme-000002");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->state, storage::DeviceState::kManufactured);
  EXPECT_EQ(d->manufacturer, "acme");
  EXPECT_EQ(d->model, "thermo-1");
  auto birth = pki::LoadCertificateFile(tmp_ / "devices/acme-000002/birth.pem");
  ASSERT_TRUE(birth.ok());
  {
    auto store = OpenStore(store_);
    auto txn = store.BeginRead();
    auto allow = storage::FindAllowlistEntry(*txn, "acme-000002");
    ASSERT_TRUE(allow.ok());
    ASSERT_TRUE(allow->has_value());
    EXPECT_EQ((*allow)->fingerprint, Bytes(birth->fingerprint.begin(), birth->fingerprint.end()));
    EXPECT_EQ((*allow)->serial, birth->serial);
  }
  // Idempotent.
  auto again = Et({"site", "import-manifest", "--store", store_, "--manifest", manifest_,
                   "--manufacturer", "acme"});
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_THAT(again.out, HasSubstr("3 unchanged"));
  EXPECT_EQ(CountDevices(store_), 3u);
}

TEST_F(StoreCommandsTest, MalformedManifestImportsNothing) {
  std::string text = ReadFile(manifest_);
  WriteFile(tmp_ / "bad.csv", text + "acme-000009,zz,00,thermo-1\n");
  auto r = Et({"site", "import-manifest", "--store", store_, "--manifest", tmp_ / "bad.csv",
               "--manufacturer", "acme"});
  ExpectFailure(r, "bad.csv:5:");
  EXPECT_THAT(r.err, HasSubstr("serial"));
  EXPECT_EQ(CountDevices(store_), 0u);

  WriteFile(tmp_ / "noheader.csv", "a,b,c,d\n");
  ExpectFailure(Et({"site", "import-manifest", "--store", store_, "--manifest",
                    tmp_ / "noheader.csv", "--manufacturer", "acme"}),
                "noheader.csv:1: expected the header");
  WriteFile(tmp_ / "short.csv", "id,serial,sha256,model\nacme-1,01\n");
  ExpectFailure(Et({"site", "import-manifest", "--store", store_, "--manifest",
                    tmp_ / "short.csv", "--manufacturer", "acme"}),
                "short.csv:2: expected 4 fields");
  WriteFile(tmp_ / "badid.csv", "id,serial,sha256,model\nbad/id,01," + std::string(64, 'a') +
                                    ",m\n");
  ExpectFailure(Et({"site", "import-manifest", "--store", store_, "--manifest",
                    tmp_ / "badid.csv", "--manufacturer", "acme"}),
                "invalid device id");
  ExpectFailure(Et({"site", "import-manifest", "--store", tmp_ / "nostore", "--manifest",
                    manifest_, "--manufacturer", "acme"}),
                "no store");
  EXPECT_FALSE(Exists(tmp_ / "nostore"));
  EXPECT_EQ(CountDevices(store_), 0u);
}

TEST_F(StoreCommandsTest, ClaimIsStoredHashed) {
  auto r = Et({"claim", "--store", store_, "--device", "acme-000001", "--code", "K7-PLUM-42"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto store = OpenStore(store_);
  auto txn = store.BeginRead();
  auto ok = storage::CheckClaim(*txn, "acme-000001", "K7-PLUM-42");
  ASSERT_TRUE(ok.ok());
  EXPECT_TRUE(*ok);
  auto wrong = storage::CheckClaim(*txn, "acme-000001", "K7-PLUM-43");
  ASSERT_TRUE(wrong.ok());
  EXPECT_FALSE(*wrong);
  auto d = storage::GetDevice(*txn, "acme-000001");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->claim_code_sha256.size(), 32u);
  ExpectUsageError(Et({"claim", "--store", store_, "--device", "acme-000001", "--code", ""}),
                   "--code");
  ExpectUsageError(Et({"claim", "--store", store_, "--device", "no such", "--code", "x"}),
                   "invalid device id");
}

TEST_F(StoreCommandsTest, RevokeFingerprintAndDevice) {
  ASSERT_EQ(Et({"site", "import-manifest", "--store", store_, "--manifest", manifest_,
                "--manufacturer", "acme"}).exit_code,
            0);
  auto birth1 = pki::LoadCertificateFile(tmp_ / "devices/acme-000001/birth.pem");
  auto birth2 = pki::LoadCertificateFile(tmp_ / "devices/acme-000002/birth.pem");
  ASSERT_TRUE(birth1.ok() && birth2.ok());

  auto by_fp = Et({"revoke", "--store", store_, "--fingerprint", HexEncode(birth1->fingerprint),
                   "--reason", "lost in transit"});
  ASSERT_EQ(by_fp.exit_code, 0) << by_fp.err;
  EXPECT_THAT(by_fp.out, HasSubstr(HexEncode(birth1->fingerprint)));

  // Operational only: the birth certificate stays good, the state stays.
  auto op = Et({"revoke", "--store", store_, "--device", "acme-000002"});
  ASSERT_EQ(op.exit_code, 0) << op.err;
  EXPECT_THAT(op.out, HasSubstr("operational"));
  {
    auto store = OpenStore(store_);
    auto txn = store.BeginRead();
    auto r1 = storage::IsFingerprintRevoked(*txn, birth1->fingerprint);
    ASSERT_TRUE(r1.ok());
    EXPECT_TRUE(*r1);
    auto entry = storage::FindRevocation(*txn, birth1->fingerprint);
    ASSERT_TRUE(entry.ok() && entry->has_value());
    EXPECT_EQ((*entry)->reason, "lost in transit");
    auto r2 = storage::IsFingerprintRevoked(*txn, birth2->fingerprint);
    ASSERT_TRUE(r2.ok());
    EXPECT_FALSE(*r2);
    EXPECT_EQ(storage::GetDevice(*txn, "acme-000002")->state,
              storage::DeviceState::kManufactured);
  }

  // --all: birth too, state compromised.
  auto all = Et({"revoke", "--store", store_, "--device", "acme-000002", "--all"});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  EXPECT_THAT(all.out, HasSubstr(HexEncode(birth2->fingerprint)));
  EXPECT_THAT(all.out, HasSubstr("compromised"));
  {
    auto store = OpenStore(store_);
    auto txn = store.BeginRead();
    auto r2 = storage::IsFingerprintRevoked(*txn, birth2->fingerprint);
    ASSERT_TRUE(r2.ok());
    EXPECT_TRUE(*r2);
    EXPECT_EQ(storage::GetDevice(*txn, "acme-000002")->state,
              storage::DeviceState::kCompromised);
    auto latest = storage::LatestRevocationSeq(*txn);
    ASSERT_TRUE(latest.ok());
    EXPECT_GE(*latest, 2u);
  }
  ExpectFailure(Et({"revoke", "--store", store_, "--device", "acme-999999"}), "not in the store");
  ExpectFailure(Et({"revoke", "--store", tmp_ / "nostore", "--device", "acme-000001"}), "no store");
}

TEST_F(StoreCommandsTest, DeviceListAndShow) {
  ASSERT_EQ(Et({"site", "import-manifest", "--store", store_, "--manifest", manifest_,
                "--manufacturer", "acme"}).exit_code,
            0);
  auto list = Et({"device", "list", "--store", store_});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("acme-000001"));
  EXPECT_THAT(list.out, HasSubstr("manufactured"));
  EXPECT_THAT(list.out, HasSubstr("3 devices"));
  auto filtered = Et({"device", "list", "--store", store_, "--state", "active"});
  EXPECT_THAT(filtered.out, HasSubstr("0 devices"));

  auto birth = pki::LoadCertificateFile(tmp_ / "devices/acme-000003/birth.pem");
  ASSERT_TRUE(birth.ok());
  auto show = Et({"device", "show", "--store", store_, "--device", "acme-000003"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("manufactured"));
  EXPECT_THAT(show.out, HasSubstr("thermo-1"));
  EXPECT_THAT(show.out, HasSubstr(HexEncode(birth->fingerprint)));
  ExpectFailure(Et({"device", "show", "--store", store_, "--device", "acme-000042"}),
                "not in the store");
}

// A factory whose CA key lives in a SoftHSM2 token.
class Pkcs11FactoryTest : public ::testing::Test {
 protected:
  static constexpr const char* kModule = "/usr/lib/softhsm/libsofthsm2.so";

  void SetUp() override {
    if (!Exists(kModule) || !Exists("/usr/bin/softhsm2-util")) {
      GTEST_SKIP() << "SoftHSM2 is not installed";
    }
    std::string tokens = tmp_ / "tokens";
    ASSERT_EQ(RunCommand({"/bin/mkdir", "-p", tokens}).exit_code, 0);
    WriteFile(tmp_ / "softhsm2.conf", "directories.tokendir = " + tokens +
                                          "\nobjectstore.backend = file\nlog.level = ERROR\n");
    // Child processes (softhsm2-util, edgetrust) inherit it.
    setenv("SOFTHSM2_CONF", (tmp_ / "softhsm2.conf").c_str(), 1);
    auto init = RunCommand({"/usr/bin/softhsm2-util", "--init-token", "--free", "--label", "f1",
                            "--pin", "1234", "--so-pin", "5678"});
    ASSERT_EQ(init.exit_code, 0) << init.out << init.err;
  }
  void TearDown() override { unsetenv("SOFTHSM2_CONF"); }

  TempDir tmp_;
};

TEST_F(Pkcs11FactoryTest, KeyStaysInTheToken) {
  std::string factory = tmp_ / "factory";
  setenv("ET_TEST_FACTORY_PIN", "1234", 1);
  auto init = Et({"factory", "init", "--dir", factory, "--manufacturer", "acme", "--pkcs11-module",
                  kModule, "--token", "f1", "--pin-env", "ET_TEST_FACTORY_PIN"});
  ASSERT_EQ(init.exit_code, 0) << init.err;
  EXPECT_FALSE(Exists(factory + "/ca.key"));
  std::string config = ReadFile(factory + "/factory.yaml");
  EXPECT_THAT(config, HasSubstr("pkcs11"));
  EXPECT_THAT(config, HasSubstr("f1"));
  EXPECT_THAT(config, HasSubstr("ET_TEST_FACTORY_PIN"));
  EXPECT_THAT(config, Not(HasSubstr("1234")));

  // The PIN comes from the variable factory.yaml names.
  auto provision = Et({"factory", "provision", "--factory", factory, "--count", "3", "--prefix",
                       "hsm-", "--model", "m1", "--out", tmp_ / "devices"});
  ASSERT_EQ(provision.exit_code, 0) << provision.err;
  for (const char* id : {"hsm-000001", "hsm-000002", "hsm-000003"}) {
    auto v = OpenSsl({"verify", "-purpose", "sslclient", "-CAfile", factory + "/ca.pem",
                      tmp_ / "devices/" + std::string(id) + "/birth.pem"});
    EXPECT_EQ(v.exit_code, 0) << id << v.out << v.err;
  }
  unsetenv("ET_TEST_FACTORY_PIN");

  // Without the variable: a clear failure. With a wrong --pin: refused by the token.
  ExpectFailure(Et({"factory", "provision", "--factory", factory, "--count", "1", "--prefix",
                    "hsm-", "--model", "m1", "--out", tmp_ / "devices"}),
                "ET_TEST_FACTORY_PIN");
  auto wrong = Et({"factory", "provision", "--factory", factory, "--count", "1", "--prefix",
                   "hsm-", "--model", "m1", "--out", tmp_ / "devices", "--pin", "9999"});
  EXPECT_EQ(wrong.exit_code, 1) << wrong.err;
  auto right = Et({"factory", "provision", "--factory", factory, "--count", "1", "--prefix",
                   "hsm-", "--model", "m1", "--out", tmp_ / "devices", "--pin", "1234"});
  EXPECT_EQ(right.exit_code, 0) << right.err;

  // The label is taken: a second init into another directory needs another label or --force.
  ExpectFailure(Et({"factory", "init", "--dir", tmp_ / "factory2", "--manufacturer", "acme",
                    "--pkcs11-module", kModule, "--token", "f1", "--pin", "1234"}),
                "already holds a key");
  auto other = Et({"factory", "init", "--dir", tmp_ / "factory2", "--manufacturer", "acme",
                   "--pkcs11-module", kModule, "--token", "f1", "--pin", "1234", "--key-label",
                   "second"});
  EXPECT_EQ(other.exit_code, 0) << other.err;
  EXPECT_THAT(ReadFile(tmp_ / "factory2/factory.yaml"), Not(HasSubstr("1234")));
}

TEST(SiteFixtureTest, MakesASiteWithDevices) {
  TempDir tmp;
  auto site = SiteFixture::Create(
      tmp, {.site_id = "edge-9",
            .manufacturers = {{.name = "acme", .model = "t-1", .count = 2},
                              {.name = "rogue", .count = 1, .trusted = false}},
            .import_manifests = true});
  EXPECT_EQ(site.devices.size(), 3u);
  EXPECT_EQ(site.devices[0].id, "acme-000001");
  EXPECT_EQ(site.devices[2].id, "rogue-000001");
  for (const auto& d : site.devices) {
    EXPECT_TRUE(Exists(d.cert)) << d.id;
    EXPECT_EQ(FileMode(d.key), 0600u) << d.id;
  }
  EXPECT_THAT(site.MosquittoConfig(), HasSubstr("listener " + std::to_string(site.port)));
  EXPECT_THAT(site.ListenerOnlyConfig(), Not(HasSubstr("\nplugin")));
  EXPECT_THAT(site.ListenerOnlyConfig(), HasSubstr("\nallow_anonymous true\n"));
  EXPECT_EQ(CountOf(ReadFile(site.trust), "BEGIN CERTIFICATE"), 2);
  EXPECT_EQ(CountDevices(site.store), 2u);
  EXPECT_THROW(SiteFixture::Cli({"site", "init"}), std::runtime_error);
}

}  // namespace
}  // namespace edgetrust::testing
