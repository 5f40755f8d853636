// Keys, signatures, CSRs, issuance and chain checks, with OpenSSL as the independent judge.
#include <malloc.h>
#include <sys/stat.h>

#include <thread>
#include <utility>
#include <vector>

#include <wolfssl/options.h>  // FP_ECC: whether the cache under test exists in this build

#include "pki_support.h"

namespace edgetrust::pki::test {
namespace {

using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

class KeyTypes : public ::testing::TestWithParam<KeyType> {};
INSTANTIATE_TEST_SUITE_P(Pki, KeyTypes, ::testing::Values(KeyType::kEcdsaP256, KeyType::kEd25519),
                         [](const auto& info) { return std::string(KeyTypeName(info.param) == "ed25519" ? "Ed25519" : "P256"); });

TEST_P(KeyTypes, PemAndDerRoundTrip) {
  auto key = PrivateKey::Generate(GetParam());
  ASSERT_OK(key);
  EXPECT_EQ(key->type(), GetParam());
  EXPECT_FALSE(key->in_token());
  auto pem = key->ToPem();
  ASSERT_OK(pem);
  EXPECT_NE(pem->find("-----BEGIN PRIVATE KEY-----"), std::string::npos);
  auto back = PrivateKey::FromPem(*pem);
  ASSERT_OK(back);
  EXPECT_EQ(back->type(), GetParam());
  EXPECT_EQ(*back->PublicKeyDer(), *key->PublicKeyDer());
  auto der = key->ToDer();
  ASSERT_OK(der);
  auto from_der = PrivateKey::FromDer(*der);
  ASSERT_OK(from_der);
  EXPECT_EQ(*from_der->PublicKeyDer(), *key->PublicKeyDer());
  EXPECT_EQ(*PublicKeyType(*key->PublicKeyDer()), GetParam());
}

TEST_P(KeyTypes, OpenSslReadsOurKeyAndAgreesOnThePublicKey) {
  TempDir dir;
  auto key = PrivateKey::Generate(GetParam());
  ASSERT_OK(key);
  ASSERT_OK(WritePrivateKeyFile(dir / "k.pem", *key, false));
  auto r = Openssl({"pkey", "-in", dir / "k.pem", "-pubout", "-outform", "DER", "-out", dir / "pub.der"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string pub = ReadFile(dir / "pub.der");
  EXPECT_EQ(Bytes(pub.begin(), pub.end()), *key->PublicKeyDer());

  // OpenSSL checks our signature.
  const std::string msg = "firmware manifest v1";
  WriteFile(dir / "msg", msg);
  auto sig = key->Sign(AsBytes(msg));
  ASSERT_OK(sig);
  WriteFile(dir / "sig", std::string(AsChars(*sig)));
  r = Openssl({"pkey", "-in", dir / "k.pem", "-pubout", "-out", dir / "pub.pem"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  if (GetParam() == KeyType::kEcdsaP256) {
    r = Openssl({"dgst", "-sha256", "-verify", dir / "pub.pem", "-signature", dir / "sig", dir / "msg"});
  } else {
    r = Openssl({"pkeyutl", "-verify", "-pubin", "-inkey", dir / "pub.pem", "-rawin", "-in",
                 dir / "msg", "-sigfile", dir / "sig"});
  }
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

TEST_P(KeyTypes, DetachedSignatures) {
  auto key = PrivateKey::Generate(GetParam());
  auto other = PrivateKey::Generate(GetParam());
  ASSERT_OK(key);
  ASSERT_OK(other);
  const Bytes spki = *key->PublicKeyDer();
  const std::string msg = "lifecycle: wipe, nonce 42";
  auto sig = key->Sign(AsBytes(msg));
  ASSERT_OK(sig);
  EXPECT_OK(VerifySignature(spki, AsBytes(msg), *sig));
  // Tampered message.
  EXPECT_ERROR_CODE(VerifySignature(spki, AsBytes("lifecycle: wipe, nonce 43"), *sig),
                    ErrorCode::kUnauthenticated);
  // Tampered signature, at several positions.
  for (size_t i : {size_t{0}, sig->size() / 2, sig->size() - 1}) {
    Bytes bad = *sig;
    bad[i] ^= 0x01;
    EXPECT_FALSE(VerifySignature(spki, AsBytes(msg), bad).ok()) << "flip at " << i;
  }
  // Truncated and empty signatures.
  EXPECT_FALSE(VerifySignature(spki, AsBytes(msg), ByteView(*sig).first(sig->size() - 1)).ok());
  EXPECT_FALSE(VerifySignature(spki, AsBytes(msg), {}).ok());
  // Someone else's key.
  EXPECT_ERROR_CODE(VerifySignature(*other->PublicKeyDer(), AsBytes(msg), *sig),
                    ErrorCode::kUnauthenticated);
  // Garbage key.
  EXPECT_ERROR_CODE(VerifySignature(AsBytes("not a key"), AsBytes(msg), *sig),
                    ErrorCode::kInvalidArgument);
  // Empty message is a message too.
  auto empty_sig = key->Sign({});
  ASSERT_OK(empty_sig);
  EXPECT_OK(VerifySignature(spki, {}, *empty_sig));
}

TEST_P(KeyTypes, CsrCreateParseAndOpenSslAgrees) {
  TempDir dir;
  auto key = PrivateKey::Generate(GetParam());
  ASSERT_OK(key);
  auto csr_der = CreateCsr(*key, {"dev-000001", "acme", "thermo-1"});
  ASSERT_OK(csr_der);
  auto csr = ParseCsrDer(*csr_der);
  ASSERT_OK(csr);
  EXPECT_EQ(csr->subject, (DistinguishedName{"dev-000001", "acme", "thermo-1"}));
  EXPECT_EQ(csr->public_key_der, *key->PublicKeyDer());
  EXPECT_EQ(csr->key_type, GetParam());
  WriteFile(dir / "csr.pem", CsrToPem(*csr_der));
  auto r = Openssl({"req", "-in", dir / "csr.pem", "-verify", "-noout", "-subject"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("CN = dev-000001"), std::string::npos) << r.out;
  auto pem = ParseCsrPem(ReadFile(dir / "csr.pem"));
  ASSERT_OK(pem);
  EXPECT_EQ(pem->der, *csr_der);
}

TEST_P(KeyTypes, CsrWithBadSignatureIsRefused) {
  auto key = PrivateKey::Generate(GetParam());
  ASSERT_OK(key);
  auto csr = CreateCsr(*key, {"dev-000002", "acme", ""});
  ASSERT_OK(csr);
  // Last byte is inside the signature.
  Bytes bad_sig = *csr;
  bad_sig.back() ^= 0x01;
  EXPECT_ERROR_CODE(ParseCsrDer(bad_sig), ErrorCode::kUnauthenticated);
  // A subject byte changed after signing ("dev-000002" -> "dev-000003").
  Bytes bad_subject = *csr;
  const std::string needle = "dev-000002";
  auto it = std::search(bad_subject.begin(), bad_subject.end(), needle.begin(), needle.end());
  ASSERT_NE(it, bad_subject.end());
  it[needle.size() - 1] = '3';
  EXPECT_ERROR_CODE(ParseCsrDer(bad_subject), ErrorCode::kUnauthenticated);
}

TEST(Pki, KeysMadeByOpenSslLoad) {
  TempDir dir;
  struct Case {
    std::vector<std::string> gen;
    KeyType type;
    const char* label;
  };
  const std::vector<Case> cases = {
      {{"ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", dir / "sec1.pem"}, KeyType::kEcdsaP256, "sec1.pem"},
      {{"ecparam", "-name", "prime256v1", "-genkey", "-out", dir / "sec1p.pem"}, KeyType::kEcdsaP256, "sec1p.pem"},
      {{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", dir / "p8.pem"}, KeyType::kEcdsaP256, "p8.pem"},
      {{"genpkey", "-algorithm", "ed25519", "-out", dir / "ed.pem"}, KeyType::kEd25519, "ed.pem"},
  };
  for (const Case& c : cases) {
    auto r = Openssl(c.gen);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto key = LoadPrivateKeyFile(dir / c.label);
    ASSERT_OK(key);
    EXPECT_EQ(key->type(), c.type) << c.label;
    r = Openssl({"pkey", "-in", dir / c.label, "-pubout", "-outform", "DER", "-out", dir / "pub.der"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string pub = ReadFile(dir / "pub.der");
    EXPECT_EQ(Bytes(pub.begin(), pub.end()), *key->PublicKeyDer()) << c.label;
  }
  // An OpenSSL CSR verifies.
  auto r = Openssl({"req", "-new", "-key", dir / "p8.pem", "-subj", "/CN=dev-000003/O=acme/OU=m1",
                    "-outform", "DER", "-out", dir / "csr.der"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string csr_der = ReadFile(dir / "csr.der");
  auto csr = ParseCsrDer(AsBytes(csr_der));
  ASSERT_OK(csr);
  EXPECT_EQ(csr->subject, (DistinguishedName{"dev-000003", "acme", "m1"}));
  // RSA and other curves are refused with a clear error.
  r = Openssl({"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", dir / "p384.pem"});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_ERROR_CODE(LoadPrivateKeyFile(dir / "p384.pem"), ErrorCode::kInvalidArgument);
  EXPECT_ERROR_CODE(LoadPrivateKeyFile(dir / "missing.pem"), ErrorCode::kNotFound);
}

TEST(Pki, KeyFilesAre0600AndNotOverwritten) {
  TempDir dir;
  auto key = PrivateKey::Generate(KeyType::kEcdsaP256);
  ASSERT_OK(key);
  ASSERT_OK(WritePrivateKeyFile(dir / "k.pem", *key, false));
  struct stat st{};
  ASSERT_EQ(stat((dir / "k.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto other = PrivateKey::Generate(KeyType::kEcdsaP256);
  EXPECT_ERROR_CODE(WritePrivateKeyFile(dir / "k.pem", *other, false), ErrorCode::kAlreadyExists);
  EXPECT_EQ(*LoadPrivateKeyFile(dir / "k.pem")->PublicKeyDer(), *key->PublicKeyDer());
  ASSERT_OK(WritePrivateKeyFile(dir / "k.pem", *other, true));
  EXPECT_EQ(*LoadPrivateKeyFile(dir / "k.pem")->PublicKeyDer(), *other->PublicKeyDer());
  ASSERT_EQ(stat((dir / "k.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  TestCa ca = MakeCa("Files CA");
  const std::string pem = CertificateToPem(ca.cert.der);
  ASSERT_OK(WriteCertificateFile(dir / "ca.pem", pem, false));
  ASSERT_EQ(stat((dir / "ca.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  EXPECT_ERROR_CODE(WriteCertificateFile(dir / "ca.pem", pem, false), ErrorCode::kAlreadyExists);
  auto loaded = LoadCertificateFile(dir / "ca.pem");
  ASSERT_OK(loaded);
  EXPECT_EQ(loaded->fingerprint, ca.cert.fingerprint);
}

TEST(Pki, IssuedCertificatesPassOpenSsl) {
  TempDir dir;
  TestCa ca = MakeCa("Site CA edge-01");
  auto leaf_key = PrivateKey::Generate(KeyType::kEcdsaP256);
  ASSERT_OK(leaf_key);
  // A 64-character CN: the longest device id.
  const std::string long_id(64, 'd');
  IssueRequest req = LeafRequest(long_id, *leaf_key);
  auto leaf = IssueCertificate(ca.cert, ca.key, req);
  ASSERT_OK(leaf);

  auto server_key = PrivateKey::Generate(KeyType::kEcdsaP256);
  IssueRequest sreq = LeafRequest("broker", *server_key);
  sreq.subject = {"broker", "edge-01", ""};
  sreq.extended_usage = ExtendedUsage::kServerAuth;
  sreq.dns_names = {"localhost", "broker.edge-01.local"};
  sreq.ip_addresses = {"127.0.0.1", "::1"};
  auto server = IssueCertificate(ca.cert, ca.key, sreq);
  ASSERT_OK(server);

  WriteFile(dir / "ca.pem", CertificateToPem(ca.cert.der));
  WriteFile(dir / "leaf.pem", CertificateToPem(leaf->der));
  WriteFile(dir / "server.pem", CertificateToPem(server->der));
  auto r = Openssl({"verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", dir / "ca.pem", dir / "leaf.pem"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  r = Openssl({"verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", dir / "ca.pem", dir / "server.pem"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  // The EKU is enforced: a client certificate is not a server certificate.
  r = Openssl({"verify", "-purpose", "sslserver", "-CAfile", dir / "ca.pem", dir / "leaf.pem"});
  EXPECT_NE(r.exit_code, 0) << r.out;
  // Another CA does not vouch for it.
  TestCa other = MakeCa("Other CA");
  WriteFile(dir / "other.pem", CertificateToPem(other.cert.der));
  r = Openssl({"verify", "-CAfile", dir / "other.pem", dir / "leaf.pem"});
  EXPECT_NE(r.exit_code, 0) << r.out;

  r = Openssl({"x509", "-in", dir / "server.pem", "-noout", "-text"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* want : {"TLS Web Server Authentication", "Subject Key Identifier",
                           "Authority Key Identifier", "DNS:localhost", "DNS:broker.edge-01.local",
                           "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1", "CA:FALSE",
                           "Digital Signature", "ecdsa-with-SHA256"}) {
    EXPECT_NE(r.out.find(want), std::string::npos) << want << "\n" << r.out;
  }
  r = Openssl({"x509", "-in", dir / "leaf.pem", "-noout", "-text"});
  EXPECT_NE(r.out.find("TLS Web Client Authentication"), std::string::npos) << r.out;
  r = Openssl({"x509", "-in", dir / "ca.pem", "-noout", "-text"});
  EXPECT_NE(r.out.find("CA:TRUE"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Certificate Sign, CRL Sign"), std::string::npos) << r.out;

  // Our parse of what we issued.
  EXPECT_EQ(leaf->subject, (DistinguishedName{long_id, "acme", "thermo-1"}));
  EXPECT_EQ(leaf->issuer, ca.cert.subject);
  EXPECT_EQ(leaf->issuer_id, ca.cert.subject_id);
  EXPECT_NE(leaf->subject_id, ca.cert.subject_id);
  EXPECT_EQ(leaf->aki, ca.cert.ski);
  EXPECT_EQ(leaf->ski.size(), 20u);
  EXPECT_EQ(ca.cert.aki, ca.cert.ski);
  EXPECT_TRUE(ca.cert.is_ca);
  EXPECT_FALSE(leaf->is_ca);
  EXPECT_EQ(leaf->serial.size(), 16u);
  EXPECT_EQ(leaf->not_before, req.not_before);
  EXPECT_EQ(leaf->not_after, req.not_after);
  EXPECT_EQ(leaf->public_key_der, *leaf_key->PublicKeyDer());
  EXPECT_EQ(leaf->extended_usage, ExtendedUsage::kClientAuth);
  EXPECT_EQ(leaf->fingerprint, Sha256(leaf->der));
  EXPECT_EQ(server->dns_names, (std::vector<std::string>{"localhost", "broker.edge-01.local"}));
  EXPECT_EQ(server->ip_addresses, (std::vector<std::string>{"127.0.0.1", "::1"}));
  EXPECT_EQ(server->extended_usage, ExtendedUsage::kServerAuth);

  // OpenSSL's view of serial and fingerprint matches ours.
  r = Openssl({"x509", "-in", dir / "leaf.pem", "-noout", "-serial", "-fingerprint", "-sha256"});
  std::string fp = HexEncode(leaf->fingerprint);
  std::string upper_fp;
  for (size_t i = 0; i < fp.size(); i += 2) {
    if (i) upper_fp += ':';
    upper_fp += static_cast<char>(std::toupper(fp[i]));
    upper_fp += static_cast<char>(std::toupper(fp[i + 1]));
  }
  EXPECT_NE(r.out.find(upper_fp), std::string::npos) << r.out;
  std::string serial = HexEncode(leaf->serial);
  for (auto& ch : serial) ch = static_cast<char>(std::toupper(ch));
  EXPECT_NE(r.out.find("serial=" + serial), std::string::npos) << r.out << " want " << serial;

  EXPECT_OK(VerifyIssuedBy(*leaf, ca.cert));
  EXPECT_ERROR_CODE(VerifyIssuedBy(*leaf, other.cert), ErrorCode::kUnauthenticated);
}

TEST(Pki, IssuanceFromCsrWithExplicitSerialAndPathLen) {
  TempDir dir;
  TestCa root = MakeCa("Root CA");
  auto sub_key = PrivateKey::Generate(KeyType::kEcdsaP256);
  IssueRequest sreq;
  sreq.subject = {"Acme Factory CA", "acme", ""};
  sreq.public_key_der = *sub_key->PublicKeyDer();
  sreq.not_before = UnixNow() - 60;
  sreq.not_after = UnixNow() + 10 * 86400;
  sreq.is_ca = true;
  sreq.path_len = 0;
  sreq.serial = {0x00, 0x00, 0x80, 0x01};  // leading zeros stripped, sign octet added
  auto sub = IssueCertificate(root.cert, root.key, sreq);
  ASSERT_OK(sub);
  EXPECT_EQ(sub->serial, (Bytes{0x80, 0x01}));

  auto dev_key = PrivateKey::Generate(KeyType::kEcdsaP256);
  auto csr = ParseCsrDer(*CreateCsr(*dev_key, {"dev-000009", "acme", "m"}));
  ASSERT_OK(csr);
  IssueRequest req;
  req.subject = csr->subject;
  req.public_key_der = csr->public_key_der;
  req.not_before = UnixNow() - 60;
  req.not_after = UnixNow() + 86400;
  req.extended_usage = ExtendedUsage::kClientAndServer;
  auto leaf = IssueCertificate(*sub, *sub_key, req);
  ASSERT_OK(leaf);
  EXPECT_EQ(leaf->extended_usage, ExtendedUsage::kClientAndServer);
  WriteFile(dir / "root.pem", CertificateToPem(root.cert.der));
  WriteFile(dir / "sub.pem", CertificateToPem(sub->der));
  WriteFile(dir / "leaf.pem", CertificateToPem(leaf->der));
  auto r = Openssl({"verify", "-x509_strict", "-CAfile", dir / "root.pem", "-untrusted", dir / "sub.pem", dir / "leaf.pem"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  r = Openssl({"x509", "-in", dir / "sub.pem", "-noout", "-text"});
  EXPECT_NE(r.out.find("pathlen:0"), std::string::npos) << r.out;

  // Refusals: wrong issuer key, non-CA issuer, bad window, bad SAN.
  EXPECT_ERROR_CODE(IssueCertificate(*sub, root.key, req), ErrorCode::kInvalidArgument);
  EXPECT_ERROR_CODE(IssueCertificate(*leaf, *dev_key, req), ErrorCode::kInvalidArgument);
  IssueRequest bad = req;
  bad.not_after = bad.not_before;
  EXPECT_ERROR_CODE(IssueCertificate(*sub, *sub_key, bad), ErrorCode::kInvalidArgument);
  bad = req;
  bad.ip_addresses = {"300.1.1.1"};
  EXPECT_ERROR_CODE(IssueCertificate(*sub, *sub_key, bad), ErrorCode::kInvalidArgument);
  bad = req;
  bad.subject.cn = std::string(65, 'x');
  EXPECT_ERROR_CODE(IssueCertificate(*sub, *sub_key, bad), ErrorCode::kInvalidArgument);
  bad = req;
  bad.subject.cn = std::string("a\0b", 3);
  EXPECT_ERROR_CODE(IssueCertificate(*sub, *sub_key, bad), ErrorCode::kInvalidArgument);
  bad = req;
  bad.public_key_der = {0x30, 0x00};
  EXPECT_ERROR_CODE(IssueCertificate(*sub, *sub_key, bad), ErrorCode::kInvalidArgument);
}

TEST(Pki, Ed25519CaAndLeavesPassOpenSsl) {
  TempDir dir;
  TestCa ca = MakeCa("Firmware CA", KeyType::kEd25519);
  EXPECT_EQ(ca.cert.key_type, KeyType::kEd25519);
  auto leaf_key = PrivateKey::Generate(KeyType::kEd25519);
  auto leaf = IssueCertificate(ca.cert, ca.key, LeafRequest("fw-signer-1", *leaf_key));
  ASSERT_OK(leaf);
  EXPECT_EQ(leaf->key_type, KeyType::kEd25519);
  WriteFile(dir / "ca.pem", CertificateToPem(ca.cert.der));
  WriteFile(dir / "leaf.pem", CertificateToPem(leaf->der));
  auto r = Openssl({"verify", "-CAfile", dir / "ca.pem", dir / "leaf.pem"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  TrustAnchors anchors;
  ASSERT_OK(anchors.AddDer(ca.cert.der));
  EXPECT_OK(VerifyIssuedBy(*leaf, ca.cert));
}

TEST(Pki, TrustAnchorsVerifyChains) {
  TestCa site = MakeCa("Site CA");
  TestCa acme = MakeCa("Acme CA");
  TestCa rogue = MakeCa("Rogue CA");
  TrustAnchors anchors;
  ASSERT_OK(anchors.AddPem(CertificateToPem(site.cert.der) + CertificateToPem(acme.cert.der)));
  EXPECT_EQ(anchors.size(), 2u);

  auto key = PrivateKey::Generate(KeyType::kEcdsaP256);
  auto good = IssueCertificate(acme.cert, acme.key, LeafRequest("dev-1", *key));
  ASSERT_OK(good);
  EXPECT_OK(anchors.Verify(*good));
  EXPECT_OK(anchors.Verify(good->der));

  auto unknown = IssueCertificate(rogue.cert, rogue.key, LeafRequest("dev-1", *key));
  ASSERT_OK(unknown);
  EXPECT_ERROR_CODE(anchors.Verify(*unknown), ErrorCode::kUnauthenticated);

  // Same issuer name as a trusted CA, different key: the signature check catches it.
  auto impostor_key = PrivateKey::Generate(KeyType::kEcdsaP256);
  auto impostor_ca = CreateSelfSignedCa(*impostor_key, acme.cert.subject, 30);
  ASSERT_OK(impostor_ca);
  auto forged = IssueCertificate(*impostor_ca, *impostor_key, LeafRequest("dev-1", *key));
  ASSERT_OK(forged);
  EXPECT_EQ(forged->issuer_id, acme.cert.subject_id);
  EXPECT_ERROR_CODE(anchors.Verify(*forged), ErrorCode::kUnauthenticated);

  // Expired and not yet valid.
  IssueRequest old = LeafRequest("dev-1", *key);
  old.not_before = UnixNow() - 10 * 86400;
  old.not_after = UnixNow() - 86400;
  auto expired = IssueCertificate(acme.cert, acme.key, old);
  ASSERT_OK(expired);
  EXPECT_ERROR_CODE(anchors.Verify(*expired), ErrorCode::kExpired);
  IssueRequest future = LeafRequest("dev-1", *key);
  future.not_before = UnixNow() + 86400;
  future.not_after = UnixNow() + 2 * 86400;
  auto early = IssueCertificate(acme.cert, acme.key, future);
  ASSERT_OK(early);
  EXPECT_ERROR_CODE(anchors.Verify(*early), ErrorCode::kExpired);

  // A tampered certificate (one byte of the subject changed) no longer verifies.
  Bytes tampered = good->der;
  const std::string needle = "dev-1";
  auto it = std::search(tampered.begin(), tampered.end(), needle.begin(), needle.end());
  ASSERT_NE(it, tampered.end());
  it[4] = '2';
  auto parsed = ParseCertificateDer(tampered);
  ASSERT_OK(parsed);
  EXPECT_EQ(parsed->subject.cn, "dev-2");
  EXPECT_ERROR_CODE(anchors.Verify(*parsed), ErrorCode::kUnauthenticated);

  // Only CA certificates may be anchors.
  EXPECT_ERROR_CODE(anchors.AddDer(good->der), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(anchors.AddPem("garbage").ok());
  TrustAnchors empty;
  EXPECT_ERROR_CODE(empty.Verify(*good), ErrorCode::kUnauthenticated);
}

TEST(Pki, ExpiredAnchorIsReportedAsExpired) {
  // An anchor whose own window is over: made by hand with a past validity.
  auto key = PrivateKey::Generate(KeyType::kEcdsaP256);
  IssueRequest req;
  req.subject = {"Old CA", "x", ""};
  req.public_key_der = *key->PublicKeyDer();
  req.not_before = UnixNow() - 20 * 86400;
  req.not_after = UnixNow() - 10 * 86400;
  req.is_ca = true;
  // Self-issue through a throwaway CA with the same name and key.
  auto seed = CreateSelfSignedCa(*key, req.subject, 1);
  ASSERT_OK(seed);
  auto old_ca = IssueCertificate(*seed, *key, req);
  ASSERT_OK(old_ca);
  TrustAnchors anchors;
  Status added = anchors.AddDer(old_ca->der);
  if (!added.ok()) {
    EXPECT_EQ(added.error().code, ErrorCode::kExpired) << added.error().ToString();
    return;
  }
  auto leaf_key = PrivateKey::Generate(KeyType::kEcdsaP256);
  IssueRequest lreq = LeafRequest("dev-1", *leaf_key);
  auto leaf = IssueCertificate(*old_ca, *key, lreq);
  ASSERT_OK(leaf);
  EXPECT_ERROR_CODE(anchors.Verify(*leaf), ErrorCode::kExpired);
}

TEST(Pki, BundleParsing) {
  TestCa a = MakeCa("A");
  TestCa b = MakeCa("B");
  const std::string bundle = "# trust\n" + CertificateToPem(a.cert.der) + "\n" + CertificateToPem(b.cert.der);
  auto certs = ParseCertificateBundlePem(bundle);
  ASSERT_OK(certs);
  ASSERT_EQ(certs->size(), 2u);
  EXPECT_EQ((*certs)[0].subject.cn, "A");
  EXPECT_EQ((*certs)[1].subject.cn, "B");
  EXPECT_EQ(ParseCertificatePem(bundle)->subject.cn, "A");
  EXPECT_FALSE(ParseCertificateBundlePem("").ok());
  EXPECT_FALSE(ParseCertificateBundlePem(CertificateToPem(a.cert.der) +
                                         "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                   .ok());
  EXPECT_EQ((DistinguishedName{"x", "y", "z"}).ToString(), "CN=x, O=y, OU=z");
  EXPECT_EQ((DistinguishedName{"x", "", ""}).ToString(), "CN=x");
}

TEST(Pki, ReleaseThreadCachesHandsBackWhatFreshKeysLeftAndVerifyingGoesOn) {
  // Verifying with keys never seen before (as a gateway does with every CSR) leaves wolfCrypt's
  // per-thread point cache full. Released, the heap shrinks by at least a MiB and the next
  // verification works as before. Measured on a thread of its own, so nothing else uses the cache.
  size_t before = 0, filled = 0, released = 0;
  bool verified_after = false;
  std::thread worker([&] {
    auto signer = PrivateKey::Generate(KeyType::kEcdsaP256);
    ASSERT_OK(signer);
    const std::string msg = "csr";
    auto sig = signer->Sign(AsBytes(msg));
    ASSERT_OK(sig);
    std::vector<std::pair<Bytes, Bytes>> fresh;  // (spki, signature) of keys used once
    for (int i = 0; i < 20; ++i) {
      auto k = PrivateKey::Generate(KeyType::kEcdsaP256);
      ASSERT_OK(k);
      fresh.emplace_back(*k->PublicKeyDer(), *k->Sign(AsBytes(msg)));
    }
    ReleaseThreadCaches();
    before = mallinfo2().uordblks;
    for (const auto& [spki, s] : fresh) ASSERT_OK(VerifySignature(spki, AsBytes(msg), s));
    filled = mallinfo2().uordblks;
    ReleaseThreadCaches();
    released = mallinfo2().uordblks;
    verified_after = VerifySignature(*signer->PublicKeyDer(), AsBytes(msg), *sig).ok();
    ReleaseThreadCaches();
  });
  worker.join();
#ifdef FP_ECC
  EXPECT_GT(filled, before + (size_t{1} << 20)) << "the cache this guards against is gone?";
  EXPECT_LT(released + (size_t{1} << 20), filled);
#endif
  EXPECT_TRUE(verified_after);
}

}  // namespace
}  // namespace edgetrust::pki::test
