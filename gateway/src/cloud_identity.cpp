#include "cloud_identity.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "certificate_record.h"
#include "edgetrust/pki/key.h"
#include "edgetrust/storage/tables.h"

namespace edgetrust::gateway {
namespace {

constexpr int64_t kBackdateSeconds = 300;  // tolerate cloud clocks slightly behind ours
constexpr std::string_view kActor = "gateway";

// Upstream names become a directory: one plain path component.
bool IsPlainName(std::string_view name) {
  if (name.empty() || name.size() > 128 || name[0] == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

Status MakePrivateDir(const std::string& path) {
  if (mkdir(path.c_str(), 0700) == 0 || errno == EEXIST) return OkStatus();
  return MakeError(ErrorCode::kIo, "cannot create " + path + ": " + std::strerror(errno));
}

Result<storage::DeviceRecord> ActiveDevice(const storage::Txn& txn, const std::string& id) {
  ET_ASSIGN_OR_RETURN(auto device, storage::FindDevice(txn, id));
  if (!device) return MakeError(ErrorCode::kFailedPrecondition, "device " + id + " is unknown");
  if (device->state != storage::DeviceState::kActive) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "device " + id + " is " + std::string(storage::DeviceStateName(device->state)) +
                         ", not active");
  }
  return std::move(device).value();
}

// The kept certificate's not_after when the kept pair may still be used; nullopt when it must be
// replaced. Only store errors are errors.
Result<std::optional<int64_t>> Reusable(const storage::Txn& txn, const SiteAuthority& authority,
                                        const std::string& id, const forwarding::CloudIdentity& files,
                                        int64_t renew_before_seconds, int64_t now) {
  const std::optional<int64_t> replace;
  auto cert = pki::LoadCertificateFile(files.cert_file);
  if (!cert.ok()) return replace;
  if (cert->subject.cn != id) return replace;
  if (!pki::VerifyIssuedBy(*cert, authority.site_ca).ok()) return replace;  // the site CA changed
  if (cert->not_after - renew_before_seconds <= now) return replace;
  const Bytes fp = ToBytes(cert->fingerprint);
  ET_ASSIGN_OR_RETURN(bool recorded,
                      storage::IsCertificateOf(txn, fp, storage::CertificateKind::kCloud, id));
  if (!recorded) return replace;
  ET_ASSIGN_OR_RETURN(bool fp_revoked, storage::IsFingerprintRevoked(txn, fp));
  if (fp_revoked) return replace;
  ET_ASSIGN_OR_RETURN(bool serial_revoked,
                      storage::IsSerialRevoked(txn, ToBytes(cert->issuer_id), cert->serial));
  if (serial_revoked) return replace;
  auto key = pki::LoadPrivateKeyFile(files.key_file);
  if (!key.ok()) return replace;
  auto pub = key->PublicKeyDer();
  if (!pub.ok() || *pub != cert->public_key_der) return replace;
  struct stat st {};
  if (stat(files.key_file.c_str(), &st) != 0 || (st.st_mode & 077) != 0) return replace;
  return std::optional<int64_t>(cert->not_after);
}

}  // namespace

CloudIdentities::CloudIdentities(storage::Store* store, AuthoritySource authority,
                                 CloudIdentityOptions options, IssuedHook on_issued)
    : store_(store),
      authority_(std::move(authority)),
      options_(std::move(options)),
      on_issued_(std::move(on_issued)) {
  options_.cert_days = std::max(options_.cert_days, 2);
  // A renewal window as long as the validity would reissue on every open.
  options_.renew_before_days =
      std::clamp(options_.renew_before_days, 0, options_.cert_days / 2);
}

Result<forwarding::CloudIdentity> CloudIdentities::Get(std::string_view upstream,
                                                       std::string_view device_id) {
  if (!IsPlainName(upstream)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "upstream name '" + std::string(upstream) + "' cannot name a directory");
  }
  const std::string id(device_id);
  if (!IsValidDeviceId(id)) {
    return MakeError(ErrorCode::kFailedPrecondition, "'" + id + "' is not a device id");
  }
  std::shared_ptr<const SiteAuthority> authority = authority_ ? authority_() : nullptr;
  if (!authority || !authority->site_key) {
    return MakeError(ErrorCode::kUnavailable, "no site CA to issue cloud certificates with");
  }
  const std::string dir = options_.dir + "/" + std::string(upstream);
  forwarding::CloudIdentity files;
  files.cert_file = dir + "/" + id + ".pem";
  files.key_file = dir + "/" + id + ".key";
  const int64_t now = UnixNow();
  {
    ET_ASSIGN_OR_RETURN(storage::ReadTxn txn, store_->BeginRead());
    ET_RETURN_IF_ERROR(ActiveDevice(txn, id));
    ET_ASSIGN_OR_RETURN(std::optional<int64_t> kept,
                        Reusable(txn, *authority, id, files,
                                 int64_t{options_.renew_before_days} * 86400, now));
    if (kept) {
      files.not_after = *kept;
      return files;
    }
  }
  return Issue(*authority, upstream, id, std::move(files), now);
}

Result<forwarding::CloudIdentity> CloudIdentities::Issue(const SiteAuthority& authority,
                                                         std::string_view upstream,
                                                         const std::string& device_id,
                                                         forwarding::CloudIdentity files,
                                                         int64_t now) {
  ET_ASSIGN_OR_RETURN(pki::PrivateKey key, pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256));
  pki::IssueRequest ir;
  ir.subject.cn = device_id;
  ir.subject.o = authority.policy.site;
  ir.subject.ou = std::string(upstream);
  ET_ASSIGN_OR_RETURN(ir.public_key_der, key.PublicKeyDer());
  ir.not_before = now - kBackdateSeconds;
  ir.not_after = now + int64_t{options_.cert_days} * 86400;
  ir.extended_usage = pki::ExtendedUsage::kClientAuth;
  ET_ASSIGN_OR_RETURN(pki::Certificate cert,
                      pki::IssueCertificate(authority.site_ca, *authority.site_key, ir));

  // Files first: they count only once the store records the certificate, so a crash in between
  // costs one more issuance, never a kept key without its record.
  ET_RETURN_IF_ERROR(MakePrivateDir(options_.dir));
  ET_RETURN_IF_ERROR(MakePrivateDir(options_.dir + "/" + std::string(upstream)));
  ET_RETURN_IF_ERROR(pki::WritePrivateKeyFile(files.key_file, key, /*force=*/true));
  ET_RETURN_IF_ERROR(
      pki::WriteCertificateFile(files.cert_file, pki::CertificateToPem(cert.der), /*force=*/true));

  ET_ASSIGN_OR_RETURN(storage::WriteTxn txn, store_->BeginWrite());
  // Another writer (the CLI) may have revoked the device since the read.
  ET_RETURN_IF_ERROR(ActiveDevice(txn, device_id));
  ET_RETURN_IF_ERROR(storage::PutCertificate(
      txn, CertificateRecordOf(cert, device_id, storage::CertificateKind::kCloud)));
  storage::AuditRecord audit;
  audit.actor = std::string(kActor);
  audit.action = "cloud_cert_issue";
  audit.device_id = device_id;
  audit.detail = "upstream=" + std::string(upstream) + " cert=" + HexEncode(cert.fingerprint) +
                 " not_after=" + std::to_string(cert.not_after);
  ET_RETURN_IF_ERROR(storage::AppendAudit(txn, audit));
  ET_RETURN_IF_ERROR(txn.Commit());
  ++issued_;
  if (on_issued_) on_issued_(upstream, device_id, cert);
  files.not_after = cert.not_after;
  return files;
}

forwarding::CloudIdentityProvider CloudIdentities::Provider() {
  return [this](std::string_view upstream, std::string_view device_id) {
    return Get(upstream, device_id);
  };
}

}  // namespace edgetrust::gateway
