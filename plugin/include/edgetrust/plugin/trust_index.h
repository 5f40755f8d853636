// The policy as the plugin uses it: the parsed Policy plus the CA certificates it names, read
// once at init and at reload (never per connection) and reduced to what CONNECT compares.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "edgetrust/common/bytes.h"
#include "edgetrust/common/result.h"
#include "edgetrust/policies/policy.h"

namespace edgetrust::plugin {

struct IssuerInfo {
  enum class Kind { kSiteCa, kManufacturerCa };
  Kind kind = Kind::kSiteCa;
  std::string manufacturer;  // policy name of a manufacturer CA
  Sha256Digest subject_id{};
  Bytes ski;                 // compared with a leaf's AKI when both are present
};

class TrustIndex {
 public:
  // Reads trust.site_ca and every trust.manufacturers file; each must be a CA certificate.
  static Result<TrustIndex> Load(const policies::TrustPolicy& trust);

  // The issuer a leaf names (leaf.issuer_id), or null when the policy does not trust it.
  const IssuerInfo* Find(const Sha256Digest& issuer_id) const;
  size_t size() const { return issuers_.size(); }

 private:
  std::vector<IssuerInfo> issuers_;  // a handful: linear search beats hashing
};

// One immutable generation of the policy; a reload builds a new one and swaps the pointer.
struct PolicySnapshot {
  policies::Policy policy;
  TrustIndex trust;
};

// LoadPolicyFile + TrustIndex::Load: a policy whose CA files cannot be read is refused whole.
Result<std::shared_ptr<const PolicySnapshot>> LoadPolicySnapshot(const std::string& path);

}  // namespace edgetrust::plugin
