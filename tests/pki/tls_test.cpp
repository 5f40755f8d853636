// What we issue works where it matters: Mosquitto's TLS listener (OpenSSL) accepts our broker
// certificate and key, and our client certificates, and refuses a client from another CA.
#include <sys/stat.h>

#include "edgetrust/testing/mqtt_client.h"
#include "pki_support.h"

namespace edgetrust::pki::test {
namespace {

using testing::Broker;
using testing::TempDir;
using testing::TestClient;
using testing::WriteFile;

void WriteKeyForBroker(const std::string& path, const PrivateKey& key) {
  ASSERT_OK(WritePrivateKeyFile(path, key, false));
  chmod(path.c_str(), 0644);  // the broker reads it after dropping to the mosquitto user
}

TEST(Tls, MosquittoAcceptsOurCertificatesAndKeys) {
  TempDir dir;
  TestCa ca = MakeCa("Site CA");
  TestCa rogue = MakeCa("Rogue CA");
  auto server_key = PrivateKey::Generate(KeyType::kEcdsaP256);
  IssueRequest sreq = LeafRequest("broker", *server_key);
  sreq.extended_usage = ExtendedUsage::kServerAuth;
  sreq.dns_names = {"localhost"};
  sreq.ip_addresses = {"127.0.0.1"};
  auto server = IssueCertificate(ca.cert, ca.key, sreq);
  ASSERT_OK(server);
  auto client_key = PrivateKey::Generate(KeyType::kEcdsaP256);
  auto client = IssueCertificate(ca.cert, ca.key, LeafRequest("dev-000001", *client_key));
  ASSERT_OK(client);
  auto rogue_client = IssueCertificate(rogue.cert, rogue.key, LeafRequest("dev-000002", *client_key));
  ASSERT_OK(rogue_client);

  WriteFile(dir / "ca.pem", CertificateToPem(ca.cert.der));
  WriteFile(dir / "server.pem", CertificateToPem(server->der));
  WriteKeyForBroker(dir / "server.key", *server_key);
  WriteFile(dir / "client.pem", CertificateToPem(client->der));
  WriteKeyForBroker(dir / "client.key", *client_key);
  WriteFile(dir / "rogue.pem", CertificateToPem(rogue_client->der));

  const int port = testing::FreeLoopbackPort();
  const std::string config = "listener " + std::to_string(port) + " 127.0.0.1\n" +
                             "cafile " + (dir / "ca.pem") + "\n" +
                             "certfile " + (dir / "server.pem") + "\n" +
                             "keyfile " + (dir / "server.key") + "\n" +
                             "require_certificate true\nallow_anonymous true\n";
  Broker broker = Broker::Start(dir.path(), config, {port});

  TestClient good("dev-000001");
  EXPECT_EQ(good.Connect(port, {dir / "ca.pem", dir / "client.pem", dir / "client.key"}), 0)
      << broker.Log();
  TestClient bad("dev-000002");
  EXPECT_NE(bad.Connect(port, {dir / "ca.pem", dir / "rogue.pem", dir / "client.key"}), 0)
      << broker.Log();
}

}  // namespace
}  // namespace edgetrust::pki::test
