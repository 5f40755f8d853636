// libFuzzer target for every pki parser that takes bytes from the network or a file:
// certificates (DER and PEM), CSRs, private keys, SubjectPublicKeyInfo + signature.
#include <cstddef>
#include <cstdint>

#include "edgetrust/pki/pki.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace pki = edgetrust::pki;
  const edgetrust::ByteView in(data, size);
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto c = pki::ParseCertificateDer(in); c.ok()) {
    (void)c->subject.ToString();
    (void)pki::VerifyIssuedBy(*c, *c);
  }
  (void)pki::ParseCertificateBundlePem(text);
  (void)pki::ParseCsrDer(in);
  (void)pki::ParseCsrPem(text);
  (void)pki::PrivateKey::FromDer(in);
  (void)pki::PrivateKey::FromPem(text);
  // Split the input into key | signature to reach the verifier with structured keys.
  const size_t cut = size / 2;
  (void)pki::VerifySignature(in.first(cut), in.subspan(cut), in.subspan(cut));
  return 0;
}
