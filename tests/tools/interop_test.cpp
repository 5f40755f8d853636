// What the CLI makes works with a real Mosquitto over real TLS: the broker loads the generated
// listener, trusts the manufacturer CA added to the site, accepts a birth certificate, and
// refuses a certificate from a factory the site never added and a client without one.
#include <csignal>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli_test_util.h"
#include "edgetrust/testing/mqtt_client.h"
#include "edgetrust/testing/process.h"
#include "edgetrust/testing/site_fixture.h"

namespace edgetrust::testing {
namespace {

using ::testing::HasSubstr;

class InteropTest : public ::testing::Test {
 protected:
  void SetUp() override {
    site_ = SiteFixture::Create(tmp_, {.site_id = "interop",
                                       .manufacturers = {{.name = "acme", .count = 2},
                                                         {.name = "rogue", .count = 1,
                                                          .trusted = false}}});
  }

  TempDir tmp_;
  SiteFixture site_;
};

TEST_F(InteropTest, PlainMosquittoWithTheGeneratedListener) {
  Broker broker = Broker::Start(tmp_.path(), site_.ListenerOnlyConfig(), {site_.port});

  TestClient device(site_.devices[0].id);
  EXPECT_EQ(device.Connect(site_.port, site_.DeviceTls(0)), 0) << broker.Log();
  ASSERT_EQ(device.Subscribe("hello/world", 1), 1);
  EXPECT_EQ(device.Publish("hello/world", "x", 1), 0);
  auto echoed = device.WaitMessage();
  ASSERT_TRUE(echoed.has_value());
  EXPECT_EQ(echoed->payload, "x");
  device.Disconnect();

  // The broker certificate is valid for "localhost" too (SAN), and TLS verification is on in
  // TestClient, so reaching CONNACK 0 above proves the broker's chain and name.
  TestClient gateway("edgetrust-gateway");
  EXPECT_EQ(gateway.Connect(site_.port, site_.GatewayTls()), 0);
  gateway.Disconnect();

  // Birth certificate of a factory the site never added: the TLS handshake fails.
  const DeviceFiles& rogue = site_.Device("rogue-000001");
  TestClient intruder(rogue.id);
  EXPECT_NE(intruder.Connect(site_.port, {site_.site_ca_cert, rogue.cert, rogue.key},
                             std::chrono::seconds(3)),
            0);

  // No client certificate at all.
  TestClient anonymous("nobody");
  EXPECT_NE(anonymous.Connect(site_.port, {site_.site_ca_cert, "", ""}, std::chrono::seconds(3)), 0);

  // The device key of another device does not go with this certificate: TLS refuses.
  TestClient mismatched(site_.devices[0].id);
  EXPECT_NE(mismatched.Connect(site_.port, {site_.site_ca_cert, site_.devices[0].cert,
                                            site_.devices[1].key},
                               std::chrono::seconds(3)),
            0);
}

TEST_F(InteropTest, AddingTheManufacturerLaterLetsItsDevicesIn) {
  auto added = Et({"site", "add-manufacturer", "--dir", site_.dir, "--name", "rogue", "--ca",
                   site_.manufacturers.at("rogue").ca_cert});
  ASSERT_EQ(added.exit_code, 0) << added.err;
  Broker broker = Broker::Start(tmp_.path(), site_.ListenerOnlyConfig(), {site_.port});
  const DeviceFiles& rogue = site_.Device("rogue-000001");
  TestClient device(rogue.id);
  EXPECT_EQ(device.Connect(site_.port, {site_.site_ca_cert, rogue.cert, rogue.key}), 0)
      << broker.Log();
}

// The same while the broker runs, with the plugin: mosquitto 2.0 never rereads its cafile, but
// finds the new CA in trust.d (capath), and the plugin takes the policy on SIGHUP. No restart.
TEST_F(InteropTest, ManufacturerAddedToARunningBrokerAfterSighup) {
  if (!Exists(BinPath("mosquitto_edgetrust.so"))) {
    GTEST_SKIP() << "mosquitto_edgetrust.so is not built";
  }
  Broker broker = Broker::Start(tmp_.path(), site_.MosquittoConfig(), {site_.port});
  const DeviceFiles& rogue = site_.Device("rogue-000001");
  TestClient before(rogue.id);
  ASSERT_NE(before.Connect(site_.port, {site_.site_ca_cert, rogue.cert, rogue.key},
                           std::chrono::seconds(3)),
            0);
  TestClient stays(site_.devices[0].id);
  ASSERT_EQ(stays.Connect(site_.port, site_.DeviceTls(0)), 0) << broker.Log();

  auto added = Et({"site", "add-manufacturer", "--dir", site_.dir, "--name", "rogue", "--ca",
                   site_.manufacturers.at("rogue").ca_cert});
  ASSERT_EQ(added.exit_code, 0) << added.err;
  EXPECT_NE(added.out.find("SIGHUP"), std::string::npos) << added.out;
  broker.process().Signal(SIGHUP);
  TestClient after(rogue.id);
  EXPECT_TRUE(WaitUntil([&] {
    return after.Connect(site_.port, {site_.site_ca_cert, rogue.cert, rogue.key},
                         std::chrono::seconds(3)) == 0;
  }, std::chrono::seconds(10)))
      << broker.Log();
  EXPECT_TRUE(stays.connected()) << "a session was dropped by the reload";
}

TEST_F(InteropTest, FullConfigWithThePlugin) {
  if (!Exists(BinPath("mosquitto_edgetrust.so"))) {
    GTEST_SKIP() << "mosquitto_edgetrust.so is not built";
  }
  Broker broker = Broker::Start(tmp_.path(), site_.MosquittoConfig(), {site_.port});
  // A birth certificate gets role enrolling: CONNACK 0.
  TestClient device(site_.devices[0].id);
  EXPECT_EQ(device.Connect(site_.port, site_.DeviceTls(0)), 0) << broker.Log();
  // The plugin, unlike plain mosquitto, checks that the client id is the certificate's CN.
  TestClient impostor("someone-else");
  EXPECT_NE(impostor.Connect(site_.port, site_.DeviceTls(1), std::chrono::seconds(3)), 0);
  // The gateway principal connects.
  TestClient gateway("edgetrust-gateway");
  EXPECT_EQ(gateway.Connect(site_.port, site_.GatewayTls()), 0) << broker.Log();
  // Unknown CA: refused at TLS.
  const DeviceFiles& rogue = site_.Device("rogue-000001");
  TestClient intruder(rogue.id);
  EXPECT_NE(intruder.Connect(site_.port, {site_.site_ca_cert, rogue.cert, rogue.key},
                             std::chrono::seconds(3)),
            0);
}

// Revoking with the CLI while the broker runs: the plugin re-reads the revocation log and
// refuses the certificate on the next connect.
TEST_F(InteropTest, RevokedBirthCertificateIsRefusedByThePlugin) {
  if (!Exists(BinPath("mosquitto_edgetrust.so"))) {
    GTEST_SKIP() << "mosquitto_edgetrust.so is not built";
  }
  Broker broker = Broker::Start(tmp_.path(), site_.MosquittoConfig(), {site_.port});
  const DeviceFiles& d = site_.devices[1];
  {
    TestClient before(d.id);
    ASSERT_EQ(before.Connect(site_.port, site_.DeviceTls(1)), 0) << broker.Log();
  }
  auto fp = OpenSsl({"x509", "-in", d.cert, "-noout", "-fingerprint", "-sha256"});
  std::string hex = fp.out.substr(fp.out.find('=') + 1);
  while (!hex.empty() && (hex.back() == '\n' || hex.back() == '\r')) hex.pop_back();
  auto revoked = Et({"revoke", "--store", site_.store, "--fingerprint", hex});
  ASSERT_EQ(revoked.exit_code, 0) << revoked.err;
  EXPECT_TRUE(WaitUntil(
      [&] {
        TestClient after(d.id);
        return after.Connect(site_.port, site_.DeviceTls(1), std::chrono::seconds(2)) != 0;
      },
      std::chrono::seconds(10)))
      << broker.Log();
}

}  // namespace
}  // namespace edgetrust::testing
