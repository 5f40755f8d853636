// TrustAnchors: wolfSSL's CertManager does the chain check; the parsed anchors are kept beside
// it so an expired anchor is reported as kExpired rather than as an unknown issuer.
#include "wolf.h"
// wolf.h first: it carries wolfSSL's options.h.
#include <wolfssl/ssl.h>

#include <mutex>

#include "edgetrust/pki/certificate.h"

namespace edgetrust::pki {

namespace internal {

struct AnchorsImpl {
  WOLFSSL_CERT_MANAGER* cm = nullptr;
  std::vector<Certificate> anchors;

  AnchorsImpl() {
    static std::once_flag once;
    std::call_once(once, [] { wolfSSL_Init(); });
    cm = wolfSSL_CertManagerNew();
  }
  ~AnchorsImpl() {
    if (cm) wolfSSL_CertManagerFree(cm);
  }
  AnchorsImpl(const AnchorsImpl&) = delete;
  AnchorsImpl& operator=(const AnchorsImpl&) = delete;
};

}  // namespace internal

TrustAnchors::TrustAnchors() : impl_(std::make_unique<internal::AnchorsImpl>()) {}
TrustAnchors::TrustAnchors(TrustAnchors&&) noexcept = default;
TrustAnchors& TrustAnchors::operator=(TrustAnchors&&) noexcept = default;
TrustAnchors::~TrustAnchors() = default;

size_t TrustAnchors::size() const { return impl_ ? impl_->anchors.size() : 0; }

Status TrustAnchors::AddDer(ByteView der) {
  if (!impl_ || !impl_->cm) return MakeError(ErrorCode::kCrypto, "no certificate manager");
  ET_ASSIGN_OR_RETURN(Certificate ca, ParseCertificateDer(der));
  if (!ca.is_ca) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "not a CA certificate: " + ca.subject.ToString());
  }
  int ret = wolfSSL_CertManagerLoadCABuffer(impl_->cm, der.data(), static_cast<long>(der.size()),
                                            WOLFSSL_FILETYPE_ASN1);
  if (ret != WOLFSSL_SUCCESS) {
    if (ret == ASN_AFTER_DATE_E || ret == ASN_BEFORE_DATE_E) {
      return MakeError(ErrorCode::kExpired, "anchor outside its validity: " + ca.subject.ToString());
    }
    return internal::WolfError(ErrorCode::kInvalidArgument, "add trust anchor", ret);
  }
  impl_->anchors.push_back(std::move(ca));
  return OkStatus();
}

Status TrustAnchors::AddPem(std::string_view pem) {
  ET_ASSIGN_OR_RETURN(std::vector<Certificate> certs, ParseCertificateBundlePem(pem));
  for (const Certificate& c : certs) ET_RETURN_IF_ERROR(AddDer(c.der));
  return OkStatus();
}

Status TrustAnchors::Verify(ByteView leaf_der) const {
  ET_ASSIGN_OR_RETURN(Certificate leaf, ParseCertificateDer(leaf_der));
  return Verify(leaf);
}

Status TrustAnchors::Verify(const Certificate& leaf) const {
  if (!impl_ || !impl_->cm) return MakeError(ErrorCode::kCrypto, "no certificate manager");
  const int64_t now = UnixNow();
  const Certificate* issuer = nullptr;
  for (const Certificate& a : impl_->anchors) {
    // With two anchors of one name (a CA rollover), prefer the one valid now.
    if (a.subject_id == leaf.issuer_id && (!issuer || a.ValidAt(now))) issuer = &a;
  }
  if (!issuer) {
    return MakeError(ErrorCode::kUnauthenticated, "unknown issuer: " + leaf.issuer.ToString());
  }
  if (!leaf.ValidAt(now)) {
    return MakeError(ErrorCode::kExpired, "certificate outside its validity: " + leaf.subject.ToString());
  }
  if (!issuer->ValidAt(now)) {
    return MakeError(ErrorCode::kExpired, "issuer outside its validity: " + issuer->subject.ToString());
  }
  int ret = wolfSSL_CertManagerVerifyBuffer(impl_->cm, leaf.der.data(),
                                            static_cast<long>(leaf.der.size()), WOLFSSL_FILETYPE_ASN1);
  if (ret == WOLFSSL_SUCCESS) return OkStatus();
  if (ret == ASN_AFTER_DATE_E || ret == ASN_BEFORE_DATE_E) {
    return MakeError(ErrorCode::kExpired, "certificate outside its validity: " + leaf.subject.ToString());
  }
  return internal::WolfError(ErrorCode::kUnauthenticated, "chain verification failed", ret);
}

}  // namespace edgetrust::pki
