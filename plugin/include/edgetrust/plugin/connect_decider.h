// The CONNECT decision of DESIGN.md ("What the plugin decides at CONNECT"), free of any broker
// type so the benchmark and the tests call exactly what the MOSQ_EVT_BASIC_AUTH callback calls.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "edgetrust/common/result.h"
#include "edgetrust/pki/certificate.h"
#include "edgetrust/plugin/trust_index.h"
#include "edgetrust/policies/policy.h"
#include "edgetrust/protocol/topics.h"
#include "edgetrust/storage/store.h"

namespace edgetrust::plugin {

// The role a principal the policy names (site CA certificate) connects with.
inline protocol::Role RoleOf(policies::PrincipalRole principal) {
  return principal == policies::PrincipalRole::kGateway ? protocol::Role::kGateway
                                                        : protocol::Role::kAdmin;
}

// Why a CONNECT (or a running session) was refused. Each has its own counter and log reason.
enum class DenyReason : uint8_t {
  kNone,
  kNoCertificate,          // 1
  kBadCertificate,         // 1: the DER Mosquitto handed over does not parse
  kNoCommonName,           // 2
  kInvalidCommonName,      // 2: not a device id and not a principal
  kClientIdMismatch,       // 2
  kRevoked,                // 3
  kExpired,                // 4
  kNotYetValid,            // 4
  kUnknownIssuer,          // neither the site CA nor a manufacturer CA of the policy
  kDeviceRetired,          // 5
  kDeviceCompromised,      // 5
  kEnrollmentNotAllowed,   // 5: no group, allowlist only, re-enrollment off, other manufacturer
  kNotCurrentCertificate,  // 6: site-issued but neither the current nor an unrevoked earlier
                           //    operational certificate of the device (renewal grace)
  kDeviceNotActive,        // 6
  kStoreUnavailable,       // 7
  kPolicyUnavailable,      // no policy loaded (cannot happen after a successful init)
};
inline constexpr size_t kDenyReasonCount = static_cast<size_t>(DenyReason::kPolicyUnavailable) + 1;

// Stable snake_case names: log lines and $SYS counter topics use them.
std::string_view DenyReasonName(DenyReason reason);

struct Decision {
  DenyReason reason = DenyReason::kNone;
  protocol::Role role = protocol::Role::kEnrolling;  // meaningful only when allowed()
  std::string detail;  // extra words for the log (store errors); empty on the hot path

  bool allowed() const { return reason == DenyReason::kNone; }
};

class ConnectDecider {
 public:
  ConnectDecider() = default;
  ConnectDecider(const ConnectDecider&) = delete;
  ConnectDecider& operator=(const ConnectDecider&) = delete;

  // The store may be null (unreadable): every decision is then kStoreUnavailable.
  void SetStore(const storage::Store* store);
  void SetPolicy(std::shared_ptr<const PolicySnapshot> policy);
  const PolicySnapshot* policy() const { return policy_.get(); }
  bool has_store() const { return store_ != nullptr; }

  // `cert` null = the client presented no certificate. First failure wins, in DESIGN.md order.
  Decision Decide(std::string_view client_id, const pki::Certificate* cert, int64_t now);

  // A read snapshot of the latest committed data, reused across calls (Reset/Renew), for other
  // readers on the same thread (the tick's revocation log). Call Release() when done.
  Result<const storage::ReadTxn*> Acquire();
  void Release();

 private:
  Result<Decision> DecideWithStore(std::string_view cn, const pki::Certificate& cert,
                                   const IssuerInfo& issuer, const storage::Txn& txn);

  const storage::Store* store_ = nullptr;
  std::shared_ptr<const PolicySnapshot> policy_;
  storage::ReadTxn txn_;
};

}  // namespace edgetrust::plugin
