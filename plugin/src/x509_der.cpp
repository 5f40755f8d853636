#include "x509_der.h"

#include <memory>

#include <mosquitto_broker.h>
#include <openssl/x509.h>

namespace edgetrust::plugin::internal {
namespace {

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

}  // namespace

Result<std::optional<Bytes>> ClientCertificateDer(const struct mosquitto* client) {
  // mosquitto_client_certificate returns a new reference the caller must free.
  X509Ptr cert(static_cast<X509*>(mosquitto_client_certificate(client)));
  if (!cert) return std::optional<Bytes>();
  int len = i2d_X509(cert.get(), nullptr);
  if (len <= 0) return MakeError(ErrorCode::kInvalidArgument, "certificate does not encode to DER");
  Bytes der(static_cast<size_t>(len));
  unsigned char* out = der.data();
  if (i2d_X509(cert.get(), &out) != len) {
    return MakeError(ErrorCode::kInvalidArgument, "certificate does not encode to DER");
  }
  return std::optional<Bytes>(std::move(der));
}

}  // namespace edgetrust::plugin::internal
