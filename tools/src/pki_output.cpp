#include "pki_output.h"

#include <ctime>

namespace edgetrust::tools {

Status WriteKeyFile(const std::string& path, const pki::PrivateKey& key, bool force,
                    const std::optional<Owner>& owner, Durability durability) {
  auto pem = key.ToPem();
  if (!pem.ok()) return MakeError(pem.error().code, path + ": " + pem.error().message);
  ET_RETURN_IF_ERROR(WriteFileAtomic(path, *pem, kPrivateKeyMode, force, durability));
  if (owner) ET_RETURN_IF_ERROR(ChangeOwner(path, *owner));
  return OkStatus();
}

Status WriteCertFile(const std::string& path, const pki::Certificate& cert, bool force,
                     Durability durability) {
  return WriteFileAtomic(path, pki::CertificateToPem(cert.der), kPublicFileMode, force,
                         durability);
}

std::string ShortFingerprint(ByteView fingerprint) {
  return HexEncode(fingerprint.subspan(0, std::min<size_t>(8, fingerprint.size())));
}

Result<pki::Certificate> LoadCertificate(const std::string& path) {
  auto cert = pki::LoadCertificateFile(path);
  if (!cert.ok()) {
    const std::string& msg = cert.error().message;
    // pki may already name the file; do not say it twice.
    if (msg.find(path) != std::string::npos) return cert.error();
    return MakeError(cert.error().code, path + ": " + msg);
  }
  return cert;
}

std::string FormatDate(int64_t unix_seconds) {
  time_t t = static_cast<time_t>(unix_seconds);
  tm utc{};
  gmtime_r(&t, &utc);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%d", &utc);
  return buf;
}

}  // namespace edgetrust::tools
