#include "edgetrust/device/identity.h"

#include <ctime>

#include "edgetrust/pki/key.h"

namespace edgetrust::device {
namespace {

std::string Relabel(std::string pem, std::string_view from, std::string_view to) {
  for (std::string_view edge : {"-----BEGIN ", "-----END "}) {
    std::string needle = std::string(edge) + std::string(from) + "-----";
    auto pos = pem.find(needle);
    if (pos != std::string::npos)
      pem.replace(pos, needle.size(), std::string(edge) + std::string(to) + "-----");
  }
  return pem;
}

Status KeyMatches(const pki::PrivateKey& key, const pki::Certificate& cert) {
  ET_ASSIGN_OR_RETURN(Bytes spki, key.PublicKeyDer());
  if (spki != cert.public_key_der)
    return MakeError(ErrorCode::kInvalidArgument, "the private key does not match the certificate");
  return OkStatus();
}

}  // namespace

Result<BirthIdentity> LoadBirthIdentity(const std::string& cert_file, const std::string& key_file) {
  auto cert = pki::LoadCertificateFile(cert_file);
  if (!cert.ok())
    return MakeError(cert.error().code, "birth certificate " + cert_file + ": " + cert.error().message);
  auto key = pki::LoadPrivateKeyFile(key_file);
  if (!key.ok())
    return MakeError(key.error().code, "birth key " + key_file + ": " + key.error().message);
  if (auto s = KeyMatches(*key, *cert); !s.ok())
    return MakeError(ErrorCode::kInvalidArgument, key_file + ": " + s.error().message + " " + cert_file);
  if (!IsValidDeviceId(cert->subject.cn))
    return MakeError(ErrorCode::kInvalidArgument,
                     cert_file + ": subject CN is not a valid device id");
  BirthIdentity birth;
  birth.device_id = cert->subject.cn;
  birth.model = cert->subject.ou;
  birth.cert = std::move(cert).value();
  birth.cert_file = cert_file;
  birth.key_file = key_file;
  return birth;
}

Result<OperationalIdentity> CheckIdentity(const StoredIdentity& stored, const std::string& device_id) {
  auto cert = pki::ParseCertificatePem(stored.cert_pem);
  if (!cert.ok()) return MakeError(ErrorCode::kDataLoss, "stored certificate: " + cert.error().message);
  auto key = pki::PrivateKey::FromPem(stored.key_pem);
  if (!key.ok()) return MakeError(ErrorCode::kDataLoss, "stored key: " + key.error().message);
  if (auto s = KeyMatches(*key, *cert); !s.ok())
    return MakeError(ErrorCode::kDataLoss, "stored identity: " + s.error().message);
  if (cert->subject.cn != device_id)
    return MakeError(ErrorCode::kDataLoss, "stored certificate is for '" + cert->subject.cn +
                                               "', not '" + device_id + "'");
  OperationalIdentity identity;
  identity.cert = std::move(cert).value();
  identity.key_pem = stored.key_pem;
  identity.site = stored.site;
  if (!stored.lifecycle_ca_pem.empty()) {
    auto ca = pki::ParseCertificatePem(
        Relabel(stored.lifecycle_ca_pem, StateDir::kLifecycleCaLabel, "CERTIFICATE"));
    // A damaged lifecycle CA only disables signed commands; the identity itself is fine.
    if (ca.ok()) identity.lifecycle_ca = std::move(ca).value();
  }
  return identity;
}

StoredIdentity ToStored(const pki::Certificate& cert, const std::string& key_pem,
                        const std::string& site, const Bytes& lifecycle_ca_der) {
  StoredIdentity stored;
  stored.cert_pem = pki::CertificateToPem(cert.der);
  stored.key_pem = key_pem;
  stored.site = site;
  if (!lifecycle_ca_der.empty())
    stored.lifecycle_ca_pem = Relabel(pki::CertificateToPem(lifecycle_ca_der), "CERTIFICATE",
                                      StateDir::kLifecycleCaLabel);
  return stored;
}

std::string FormatUtc(int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace edgetrust::device
