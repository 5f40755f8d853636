// Helpers shared by the pki test files: OpenSSL as the independent judge, and a tiny DER
// builder for certificates no well-behaved tool would make.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "edgetrust/pki/pki.h"
#include "edgetrust/testing/process.h"

namespace edgetrust::pki::test {

inline testing::CommandResult Openssl(std::vector<std::string> args) {
  args.insert(args.begin(), "/usr/bin/openssl");
  return testing::RunCommand(args);
}

#define ASSERT_OK(expr)                                              \
  do {                                                               \
    const auto& et_r_ = (expr);                                      \
    ASSERT_TRUE(et_r_.ok()) << #expr << ": " << et_r_.error().ToString(); \
  } while (0)
#define EXPECT_OK(expr)                                              \
  do {                                                               \
    const auto& et_r_ = (expr);                                      \
    EXPECT_TRUE(et_r_.ok()) << #expr << ": " << et_r_.error().ToString(); \
  } while (0)
#define EXPECT_ERROR_CODE(expr, ec)                                  \
  do {                                                               \
    const auto& et_r_ = (expr);                                      \
    ASSERT_FALSE(et_r_.ok()) << #expr << " unexpectedly succeeded"; \
    EXPECT_EQ(et_r_.error().code, ec) << et_r_.error().ToString();   \
  } while (0)

// A CA (self-signed) and its key, kept together for tests.
struct TestCa {
  PrivateKey key;
  Certificate cert;
};

inline TestCa MakeCa(const std::string& cn, KeyType type = KeyType::kEcdsaP256) {
  auto key = PrivateKey::Generate(type);
  EXPECT_TRUE(key.ok());
  auto cert = CreateSelfSignedCa(*key, {cn, "edgetrust-test", ""}, 30);
  EXPECT_TRUE(cert.ok()) << cert.error().ToString();
  return TestCa{std::move(key).value(), std::move(cert).value()};
}

inline IssueRequest LeafRequest(const std::string& cn, const PrivateKey& subject_key) {
  IssueRequest req;
  req.subject = {cn, "acme", "thermo-1"};
  req.public_key_der = *subject_key.PublicKeyDer();
  req.not_before = UnixNow() - 60;
  req.not_after = UnixNow() + 86400;
  req.extended_usage = ExtendedUsage::kClientAuth;
  return req;
}

namespace der {
inline Bytes Tlv(uint8_t tag, const Bytes& content) {
  Bytes out{tag};
  const size_t n = content.size();
  if (n < 0x80) {
    out.push_back(static_cast<uint8_t>(n));
  } else if (n < 0x100) {
    out.insert(out.end(), {0x81, static_cast<uint8_t>(n)});
  } else {
    out.insert(out.end(), {0x82, static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)});
  }
  out.insert(out.end(), content.begin(), content.end());
  return out;
}
inline Bytes Cat(const std::vector<Bytes>& parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}
inline Bytes Seq(const std::vector<Bytes>& parts) { return Tlv(0x30, Cat(parts)); }
inline Bytes Str(const std::string& s) { return Bytes(s.begin(), s.end()); }
inline const Bytes kCnOid{0x55, 0x04, 0x03};
inline const Bytes kOOid{0x55, 0x04, 0x0a};
// One attribute per RDN, UTF8String unless a tag is given.
inline Bytes Name(const std::vector<std::pair<Bytes, std::string>>& attrs, uint8_t string_tag = 0x0c) {
  Bytes rdns;
  for (const auto& [oid, value] : attrs) {
    const Bytes rdn = Tlv(0x31, Seq({Tlv(0x06, oid), Tlv(string_tag, Str(value))}));
    rdns.insert(rdns.end(), rdn.begin(), rdn.end());
  }
  return Tlv(0x30, rdns);
}
// A v3 certificate without extensions, signed (ecdsa-with-SHA256) by `issuer_key`.
inline Bytes SignedCert(const PrivateKey& issuer_key, const Bytes& issuer_name,
                        const Bytes& subject_name, const Bytes& spki) {
  const Bytes alg = Seq({Tlv(0x06, {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02})});
  const Bytes tbs = Seq({Tlv(0xa0, Tlv(0x02, {0x02})), Tlv(0x02, {0x01, 0x23}), alg, issuer_name,
                         Seq({Tlv(0x17, Str("200101000000Z")), Tlv(0x17, Str("491231235959Z"))}),
                         subject_name, spki});
  const Bytes sig = *issuer_key.Sign(tbs);
  Bytes bits{0x00};
  bits.insert(bits.end(), sig.begin(), sig.end());
  return Seq({tbs, alg, Tlv(0x03, bits)});
}
}  // namespace der

}  // namespace edgetrust::pki::test
