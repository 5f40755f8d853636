// X.509 certificates: parse, issue, write, and verify against trust anchors.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "edgetrust/common/bytes.h"
#include "edgetrust/common/result.h"
#include "edgetrust/pki/key.h"

namespace edgetrust::pki {

// The three name attributes edgetrust uses. Parsed values are the raw attribute bytes (an
// embedded NUL, '/', '+', '#' is kept as is) so callers can reject what they do not like;
// check cn with IsValidDeviceId before using it as an id.
struct DistinguishedName {
  std::string cn;
  std::string o;
  std::string ou;

  // "CN=x, O=y, OU=z" (empty attributes omitted).
  std::string ToString() const;
  bool operator==(const DistinguishedName&) const = default;
};

enum class ExtendedUsage { kNone, kClientAuth, kServerAuth, kClientAndServer };

struct Certificate {
  Bytes der;
  Sha256Digest fingerprint{};  // SHA-256 of der
  DistinguishedName subject;
  DistinguishedName issuer;
  Bytes serial;                // big-endian magnitude, as encoded (no sign byte)
  int64_t not_before = 0;      // unix seconds
  int64_t not_after = 0;
  bool is_ca = false;
  Bytes public_key_der;        // SubjectPublicKeyInfo
  KeyType key_type = KeyType::kEcdsaP256;
  Bytes ski;                   // empty when absent
  Bytes aki;                   // keyIdentifier of the AKI extension, empty when absent
  Sha256Digest subject_id{};   // SHA-256 of the raw subject Name DER
  Sha256Digest issuer_id{};    // SHA-256 of the raw issuer Name DER (== issuer's subject_id)
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;  // textual, e.g. "127.0.0.1", "::1"
  ExtendedUsage extended_usage = ExtendedUsage::kNone;

  // not_before <= now <= not_after
  bool ValidAt(int64_t now) const { return not_before <= now && now <= not_after; }
};

// Every parser takes hostile input: garbage or truncated data gives kInvalidArgument, never a crash.
Result<Certificate> ParseCertificateDer(ByteView der);
// The first CERTIFICATE block of the text.
Result<Certificate> ParseCertificatePem(std::string_view pem);
// Every CERTIFICATE block, in order; kInvalidArgument if none or one is bad.
Result<std::vector<Certificate>> ParseCertificateBundlePem(std::string_view pem);
// PEM (one or more blocks: the first is returned) or DER.
Result<Certificate> LoadCertificateFile(const std::string& path);
// Every certificate of a PEM file (e.g. trust.pem).
Result<std::vector<Certificate>> LoadCertificateBundleFile(const std::string& path);

std::string CertificateToPem(ByteView der);
// Writes PEM text with mode 0644. kAlreadyExists if the file exists and !force.
Status WriteCertificateFile(const std::string& path, std::string_view pem, bool force);

struct IssueRequest {
  DistinguishedName subject;
  Bytes public_key_der;      // SubjectPublicKeyInfo of the subject (P-256 or Ed25519)
  int64_t not_before = 0;    // unix seconds
  int64_t not_after = 0;
  bool is_ca = false;
  int path_len = -1;         // CA only; -1 = no pathLenConstraint
  ExtendedUsage extended_usage = ExtendedUsage::kNone;
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;  // IPv4 or IPv6 text
  Bytes serial;              // empty: 16 random bytes, positive
};

// Signs with ecdsa-with-SHA256 (P-256 issuer key) or Ed25519 (Ed25519 issuer key); the issuer key
// may live in a PKCS#11 token. Sets SKI, AKI (= issuer's SKI), basicConstraints (critical),
// keyUsage (critical; CA: keyCertSign|cRLSign|digitalSignature, leaf: digitalSignature
// (+keyAgreement for EC keys)), EKU, SAN. The issuer name is copied byte-for-byte from
// issuer.der, so result.issuer_id == issuer.subject_id.
Result<Certificate> IssueCertificate(const Certificate& issuer, const PrivateKey& issuer_key,
                                     const IssueRequest& request);

// A self-signed CA certificate valid from now - 1h for `days` days, pathLen unset.
Result<Certificate> CreateSelfSignedCa(const PrivateKey& key, const DistinguishedName& subject,
                                       int days);

namespace internal {
struct AnchorsImpl;
}

// A set of trusted CA certificates (a wolfSSL CertManager). Move-only.
class TrustAnchors {
 public:
  TrustAnchors();
  TrustAnchors(TrustAnchors&&) noexcept;
  TrustAnchors& operator=(TrustAnchors&&) noexcept;
  TrustAnchors(const TrustAnchors&) = delete;
  TrustAnchors& operator=(const TrustAnchors&) = delete;
  ~TrustAnchors();

  // Adds every CERTIFICATE of a PEM text. Each must be a CA certificate.
  Status AddPem(std::string_view pem);
  Status AddDer(ByteView der);
  Status AddCertificate(const Certificate& ca) { return AddDer(ca.der); }
  // Number of anchors added.
  size_t size() const;

  // Chain check of `leaf` against the anchors at the current time: kUnauthenticated for an
  // unknown issuer or a bad signature, kExpired when leaf or issuer is outside its validity.
  Status Verify(const Certificate& leaf) const;
  Status Verify(ByteView leaf_der) const;

 private:
  std::unique_ptr<internal::AnchorsImpl> impl_;
};

// Signature-only check that `issuer`'s key signed `cert` and the names chain (no time check).
Status VerifyIssuedBy(const Certificate& cert, const Certificate& issuer);

}  // namespace edgetrust::pki
