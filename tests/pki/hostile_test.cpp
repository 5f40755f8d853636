// Hostile and broken input: every parser answers with an error or a faithful value, never a crash.
#include <random>

#include "pki_support.h"

namespace edgetrust::pki::test {
namespace {

using testing::ReadFile;
using testing::TempDir;

// A certificate made by OpenSSL with the given -subj, issued by a fresh OpenSSL CA.
Result<Certificate> OpenSslCert(const TempDir& dir, const std::string& subj) {
  auto r = Openssl({"req", "-new", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", dir / "h.key", "-subj", subj, "-days", "2", "-outform",
                    "DER", "-out", dir / "h.der"});
  if (r.exit_code != 0) return MakeError(ErrorCode::kInternal, "openssl: " + r.err);
  const std::string der = ReadFile(dir / "h.der");
  return ParseCertificateDer(AsBytes(der));
}

TEST(Hostile, OpenSslSubjectsParseFaithfully) {
  TempDir dir;
  auto no_cn = OpenSslCert(dir, "/O=acme/OU=thermo");
  ASSERT_OK(no_cn);
  EXPECT_EQ(no_cn->subject.cn, "");
  EXPECT_EQ(no_cn->subject.o, "acme");
  EXPECT_FALSE(IsValidDeviceId(no_cn->subject.cn));

  auto specials = OpenSslCert(dir, "/CN=dev\\/1\\+x\\#y/O=acme");
  ASSERT_OK(specials);
  EXPECT_EQ(specials->subject.cn, "dev/1+x#y");
  EXPECT_FALSE(IsValidDeviceId(specials->subject.cn));

  // A multi-valued RDN (CN + O in one SET).
  auto multi = OpenSslCert(dir, "/CN=dev-1+O=acme");
  ASSERT_OK(multi);
  EXPECT_EQ(multi->subject.cn, "dev-1");
  EXPECT_EQ(multi->subject.o, "acme");

  auto wildcard = OpenSslCert(dir, "/CN=#/OU=+");
  ASSERT_OK(wildcard);
  EXPECT_EQ(wildcard->subject.cn, "#");
  EXPECT_FALSE(IsValidDeviceId(wildcard->subject.cn));
}

TEST(Hostile, HandMadeNamesParseFaithfully) {
  auto key = PrivateKey::Generate(KeyType::kEcdsaP256);
  ASSERT_OK(key);
  const Bytes spki = *key->PublicKeyDer();
  const Bytes issuer = der::Name({{der::kCnOid, "Hostile CA"}});

  // 65 and 300 characters: longer than any device id.
  for (size_t n : {65u, 300u}) {
    const std::string cn(n, 'a');
    auto c = ParseCertificateDer(der::SignedCert(*key, issuer, der::Name({{der::kCnOid, cn}}), spki));
    ASSERT_OK(c);
    EXPECT_EQ(c->subject.cn, cn);
    EXPECT_FALSE(IsValidDeviceId(c->subject.cn));
  }
  // An embedded NUL: the CN keeps all its bytes so "dev-1\0evil" never looks like "dev-1".
  const std::string nul_cn("dev-1\0evil", 10);
  auto nul = ParseCertificateDer(der::SignedCert(*key, issuer, der::Name({{der::kCnOid, nul_cn}}), spki));
  ASSERT_OK(nul);
  EXPECT_EQ(nul->subject.cn.size(), 10u);
  EXPECT_EQ(nul->subject.cn, nul_cn);
  EXPECT_NE(nul->subject.cn, "dev-1");
  EXPECT_FALSE(IsValidDeviceId(nul->subject.cn));

  // Two CNs: which one is "the" identity is ambiguous, so the certificate is refused.
  EXPECT_ERROR_CODE(ParseCertificateDer(der::SignedCert(
                        *key, issuer, der::Name({{der::kCnOid, "dev-1"}, {der::kCnOid, "dev-2"}}), spki)),
                    ErrorCode::kInvalidArgument);
  // A BMPString CN is returned as its raw bytes (and is never a valid id).
  auto bmp = ParseCertificateDer(
      der::SignedCert(*key, issuer, der::Name({{der::kCnOid, std::string("\0d\0e\0v", 6)}}, 0x1e), spki));
  ASSERT_OK(bmp);
  EXPECT_FALSE(IsValidDeviceId(bmp->subject.cn));
  // An empty subject.
  auto empty = ParseCertificateDer(der::SignedCert(*key, issuer, der::Seq({}), spki));
  ASSERT_OK(empty);
  EXPECT_TRUE(empty->subject.cn.empty());
  // A v3 certificate without extensions is not a CA.
  EXPECT_FALSE(empty->is_ca);
  // Unsupported key algorithm in the certificate: clear error.
  const Bytes rsa_like = der::Seq({der::Seq({der::Tlv(0x06, {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01}),
                                             der::Tlv(0x05, {})}),
                                   der::Tlv(0x03, {0x00, 0x30, 0x00})});
  EXPECT_ERROR_CODE(ParseCertificateDer(der::SignedCert(*key, issuer, issuer, rsa_like)),
                    ErrorCode::kInvalidArgument);
}

TEST(Hostile, TruncatedAndMutatedInputNeverCrashes) {
  TestCa ca = MakeCa("Fuzz CA");
  auto key = PrivateKey::Generate(KeyType::kEcdsaP256);
  IssueRequest req = LeafRequest("dev-1", *key);
  req.dns_names = {"a.example"};
  req.ip_addresses = {"10.0.0.1"};
  auto leaf = IssueCertificate(ca.cert, ca.key, req);
  ASSERT_OK(leaf);
  const Bytes csr = *CreateCsr(*key, {"dev-1", "acme", "m"});
  const Bytes pkcs8 = *key->ToDer();
  const Bytes spki = *key->PublicKeyDer();

  // Every truncation is an error, never a crash or a partial success.
  for (size_t n = 0; n < leaf->der.size(); ++n) {
    EXPECT_FALSE(ParseCertificateDer(ByteView(leaf->der).first(n)).ok()) << n;
  }
  for (size_t n = 0; n < csr.size(); ++n) {
    EXPECT_FALSE(ParseCsrDer(ByteView(csr).first(n)).ok()) << n;
  }
  for (size_t n = 0; n < pkcs8.size(); ++n) {
    EXPECT_FALSE(PrivateKey::FromDer(ByteView(pkcs8).first(n)).ok()) << n;
  }
  for (size_t n = 0; n < spki.size(); ++n) {
    EXPECT_FALSE(VerifySignature(ByteView(spki).first(n), AsBytes("m"), Bytes(64, 1)).ok()) << n;
  }
  // Trailing bytes are refused too.
  Bytes longer = leaf->der;
  longer.push_back(0);
  EXPECT_FALSE(ParseCertificateDer(longer).ok());

  // Random single- and multi-byte mutations: whatever the answer, it must be an answer. A CSR
  // whose signed part changed must never verify.
  std::mt19937 rng(1234);
  TrustAnchors anchors;
  ASSERT_OK(anchors.AddDer(ca.cert.der));
  for (int i = 0; i < 3000; ++i) {
    Bytes c = leaf->der;
    Bytes r = csr;
    Bytes k = pkcs8;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      c[rng() % c.size()] = static_cast<uint8_t>(rng());
      r[rng() % r.size()] = static_cast<uint8_t>(rng());
      k[rng() % k.size()] = static_cast<uint8_t>(rng());
    }
    auto pc = ParseCertificateDer(c);
    if (pc.ok() && c != leaf->der) {
      Status v = anchors.Verify(*pc);
      // A changed certificate may still verify only if the change is outside the signed bytes
      // and the signature (e.g. a BIT STRING padding octet is rejected, so effectively never).
      if (v.ok()) ADD_FAILURE() << "mutated certificate verified, iteration " << i;
    }
    auto pr = ParseCsrDer(r);
    if (pr.ok() && r != csr) {
      // ECDSA signatures are malleable only by whoever holds the key; a random change that
      // still verifies would be a bug.
      ADD_FAILURE() << "mutated CSR verified, iteration " << i;
    }
    (void)PrivateKey::FromDer(k);
  }

  // Garbage of every size to every parser.
  for (int i = 0; i < 2000; ++i) {
    Bytes g(rng() % 600);
    for (auto& b : g) b = static_cast<uint8_t>(rng());
    if (i % 3 == 0 && !g.empty()) g[0] = 0x30;
    EXPECT_FALSE(ParseCertificateDer(g).ok());
    EXPECT_FALSE(ParseCsrDer(g).ok());
    EXPECT_FALSE(PrivateKey::FromDer(g).ok());
    EXPECT_FALSE(VerifySignature(g, g, g).ok());
    EXPECT_FALSE(PublicKeyType(g).ok());
    const std::string text(AsChars(g));
    EXPECT_FALSE(ParseCertificatePem(text).ok());
    EXPECT_FALSE(ParseCertificateBundlePem(text).ok());
    EXPECT_FALSE(ParseCsrPem(text).ok());
    EXPECT_FALSE(PrivateKey::FromPem(text).ok());
    EXPECT_FALSE(anchors.Verify(ByteView(g)).ok());
  }
  // PEM wrappers around garbage, bad base64, unterminated blocks, encrypted keys.
  for (const char* pem : {
           "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
           "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
           "-----BEGIN CERTIFICATE-----\nMIIB",
           "-----BEGIN CERTIFICATE-----\nA===\n-----END CERTIFICATE-----\n",
           "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
           "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
           "-----BEGIN EC PRIVATE KEY-----\n-----END EC PRIVATE KEY-----\n",
           "",
       }) {
    EXPECT_FALSE(ParseCertificatePem(pem).ok()) << pem;
    EXPECT_FALSE(PrivateKey::FromPem(pem).ok()) << pem;
    EXPECT_FALSE(ParseCsrPem(pem).ok()) << pem;
  }
  // Deeply nested SEQUENCEs do not recurse without bound.
  Bytes nested = {0x05, 0x00};
  for (int i = 0; i < 2000; ++i) nested = der::Seq({nested});
  EXPECT_FALSE(ParseCertificateDer(nested).ok());
  EXPECT_FALSE(ParseCsrDer(nested).ok());
  EXPECT_FALSE(PrivateKey::FromDer(nested).ok());
}

}  // namespace
}  // namespace edgetrust::pki::test
