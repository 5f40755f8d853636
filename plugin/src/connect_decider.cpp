#include "edgetrust/plugin/connect_decider.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "edgetrust/common/bytes.h"
#include "edgetrust/storage/records.h"
#include "edgetrust/storage/tables.h"

namespace edgetrust::plugin {
namespace {

using protocol::Role;
using storage::DeviceState;

Decision Deny(DenyReason reason, std::string detail = {}) {
  Decision d;
  d.reason = reason;
  d.detail = std::move(detail);
  return d;
}

Decision Allow(Role role) {
  Decision d;
  d.role = role;
  return d;
}

bool SameBytes(ByteView a, ByteView b) { return std::equal(a.begin(), a.end(), b.begin(), b.end()); }

}  // namespace

std::string_view DenyReasonName(DenyReason reason) {
  switch (reason) {
    case DenyReason::kNone: return "none";
    case DenyReason::kNoCertificate: return "no_certificate";
    case DenyReason::kBadCertificate: return "bad_certificate";
    case DenyReason::kNoCommonName: return "no_common_name";
    case DenyReason::kInvalidCommonName: return "invalid_common_name";
    case DenyReason::kClientIdMismatch: return "client_id_mismatch";
    case DenyReason::kRevoked: return "revoked";
    case DenyReason::kExpired: return "expired";
    case DenyReason::kNotYetValid: return "not_yet_valid";
    case DenyReason::kUnknownIssuer: return "unknown_issuer";
    case DenyReason::kDeviceRetired: return "device_retired";
    case DenyReason::kDeviceCompromised: return "device_compromised";
    case DenyReason::kEnrollmentNotAllowed: return "enrollment_not_allowed";
    case DenyReason::kNotCurrentCertificate: return "not_current_certificate";
    case DenyReason::kDeviceNotActive: return "device_not_active";
    case DenyReason::kStoreUnavailable: return "store_unavailable";
    case DenyReason::kPolicyUnavailable: return "policy_unavailable";
  }
  return "unknown";
}

void ConnectDecider::SetStore(const storage::Store* store) {
  txn_ = storage::ReadTxn();  // a snapshot of the old store must not outlive it
  store_ = store;
}

void ConnectDecider::SetPolicy(std::shared_ptr<const PolicySnapshot> policy) {
  policy_ = std::move(policy);
}

Result<const storage::ReadTxn*> ConnectDecider::Acquire() {
  if (store_ == nullptr) {
    return MakeError(ErrorCode::kUnavailable, "store is not open");
  }
  if (txn_.active()) {
    if (!txn_.is_reset()) return &txn_;
    if (txn_.Renew().ok()) return &txn_;
    txn_ = storage::ReadTxn();  // the slot went bad: start over with a fresh one
  }
  ET_ASSIGN_OR_RETURN(txn_, store_->BeginRead());
  return &txn_;
}

void ConnectDecider::Release() {
  if (txn_.active() && !txn_.is_reset()) txn_.Reset();
}

Decision ConnectDecider::Decide(std::string_view client_id, const pki::Certificate* cert,
                                int64_t now) {
  if (!policy_) return Deny(DenyReason::kPolicyUnavailable);
  // 1
  if (cert == nullptr) return Deny(DenyReason::kNoCertificate);
  // 2: exact bytes; a CN with an embedded NUL can never equal a C-string client id.
  const std::string& cn = cert->subject.cn;
  if (cn.empty()) return Deny(DenyReason::kNoCommonName);
  if (cn != client_id) return Deny(DenyReason::kClientIdMismatch);
  if (!IsValidDeviceId(cn) && !policy_->policy.PrincipalRoleOf(cn)) {
    return Deny(DenyReason::kInvalidCommonName);
  }

  auto txn = Acquire();
  if (!txn.ok()) return Deny(DenyReason::kStoreUnavailable, txn.error().ToString());
  const IssuerInfo* issuer = policy_->trust.Find(cert->issuer_id);

  Result<Decision> decision = [&]() -> Result<Decision> {
    // 3
    ET_ASSIGN_OR_RETURN(bool fp_revoked, storage::IsFingerprintRevoked(**txn, cert->fingerprint));
    if (fp_revoked) return Deny(DenyReason::kRevoked, "fingerprint revoked");
    ET_ASSIGN_OR_RETURN(bool serial_revoked,
                        storage::IsSerialRevoked(**txn, cert->issuer_id, cert->serial));
    if (serial_revoked) return Deny(DenyReason::kRevoked, "issuer and serial revoked");
    // 4
    if (now > cert->not_after) return Deny(DenyReason::kExpired);
    if (now < cert->not_before) return Deny(DenyReason::kNotYetValid);
    // 5, 6: Mosquitto verified the chain against its cafile; the policy decides which of those
    // CAs mean what. A cafile CA the policy does not name confers nothing.
    if (issuer == nullptr) return Deny(DenyReason::kUnknownIssuer);
    if (!issuer->ski.empty() && !cert->aki.empty() && !SameBytes(issuer->ski, cert->aki)) {
      return Deny(DenyReason::kUnknownIssuer, "authority key id does not match the CA");
    }
    return DecideWithStore(cn, *cert, *issuer, **txn);
  }();
  Release();
  if (!decision.ok()) {
    return Deny(DenyReason::kStoreUnavailable, decision.error().ToString());
  }
  return std::move(decision).value();
}

Result<Decision> ConnectDecider::DecideWithStore(std::string_view cn, const pki::Certificate& cert,
                                                 const IssuerInfo& issuer,
                                                 const storage::Txn& txn) {
  const policies::Policy& policy = policy_->policy;

  if (issuer.kind == IssuerInfo::Kind::kSiteCa) {
    // 6
    if (auto principal = policy.PrincipalRoleOf(cn)) {
      return Allow(RoleOf(*principal));
    }
    // The hot path of every device reconnect: read in place, nothing allocated.
    storage::DeviceAuthView device;
    ET_ASSIGN_OR_RETURN(bool known, storage::FindDeviceAuthView(txn, cn, &device));
    if (!known) return Deny(DenyReason::kDeviceNotActive, "unknown device");
    if (device.state() == DeviceState::kRetired) return Deny(DenyReason::kDeviceRetired);
    if (device.state() == DeviceState::kCompromised) return Deny(DenyReason::kDeviceCompromised);
    if (device.state() != DeviceState::kActive) {
      return Deny(DenyReason::kDeviceNotActive, std::string(storage::DeviceStateName(device.state())));
    }
    if (!SameBytes(device.operational_fingerprint(), cert.fingerprint)) {
      // A renewal records the new certificate as the device's operational one but leaves the
      // previous one unrevoked until the device first uses the new one: if the renewal answer
      // was lost, the old certificate must still get the device in. Any other operational
      // certificate of this device that nobody revoked counts the same; step 3 already
      // refused this certificate if it is revoked by fingerprint or by issuer and serial.
      ET_ASSIGN_OR_RETURN(bool still_its_own,
                          storage::IsCertificateOf(txn, cert.fingerprint,
                                                   storage::CertificateKind::kOperational, cn));
      if (!still_its_own) return Deny(DenyReason::kNotCurrentCertificate);
    }
    return Allow(Role::kDevice);
  }

  // 5: a birth certificate. A principal's name on one would, once enrolled, come back as a
  // site-issued certificate with that principal's role: never let it start.
  if (policy.PrincipalRoleOf(cn)) {
    return Deny(DenyReason::kInvalidCommonName, "principal name on a birth certificate");
  }
  storage::DeviceAuthView device;
  ET_ASSIGN_OR_RETURN(bool known, storage::FindDeviceAuthView(txn, cn, &device));
  std::string_view manufacturer;
  std::string_view model = cert.subject.ou;
  std::optional<storage::DeviceRecord> full;  // only for names longer than a certificate's
  if (known) {
    if (device.names_fit()) {
      manufacturer = device.manufacturer();
      if (!device.model().empty()) model = device.model();
    } else {
      ET_ASSIGN_OR_RETURN(full, storage::FindDevice(txn, cn));
      if (!full) return MakeError(ErrorCode::kDataLoss, "device record vanished inside one snapshot");
      manufacturer = full->manufacturer;
      if (!full->model.empty()) model = full->model;
    }
  }
  const policies::Group* group = policy.MatchGroup(issuer.manufacturer, model);

  if (!known) {
    if (group == nullptr) return Deny(DenyReason::kEnrollmentNotAllowed, "no policy group matches");
    if (group->enrollment.mode == policies::EnrollmentMode::kAllowlist ||
        !group->enrollment.allow_unknown) {
      return Deny(DenyReason::kEnrollmentNotAllowed, "unknown device");
    }
    return Allow(Role::kEnrolling);
  }
  if (device.state() == DeviceState::kRetired) return Deny(DenyReason::kDeviceRetired);
  if (device.state() == DeviceState::kCompromised) return Deny(DenyReason::kDeviceCompromised);
  // The id is the manufacturer's: another trusted manufacturer's certificate with the same CN,
  // or another birth certificate than the one on record, is a clone, not this device.
  if (!manufacturer.empty() && manufacturer != issuer.manufacturer) {
    return Deny(DenyReason::kEnrollmentNotAllowed, "device belongs to another manufacturer");
  }
  if (!device.birth_fingerprint().empty() &&
      !SameBytes(device.birth_fingerprint(), cert.fingerprint)) {
    return Deny(DenyReason::kNotCurrentCertificate, "not the birth certificate on record");
  }
  if (group == nullptr) return Deny(DenyReason::kEnrollmentNotAllowed, "no policy group matches");
  // An operational certificate never seen in use may not have reached the device (the gateway
  // or the device died after the commit): its birth certificate may still ask again.
  if (device.state() == DeviceState::kActive && !group->enrollment.reenroll &&
      !device.operational_unconfirmed()) {
    return Deny(DenyReason::kEnrollmentNotAllowed, "active and re-enrollment is off");
  }
  return Allow(Role::kEnrolling);
}

}  // namespace edgetrust::plugin
