#include "edgetrust/plugin/trust_index.h"

#include <algorithm>
#include <utility>

#include "edgetrust/pki/certificate.h"

namespace edgetrust::plugin {
namespace {

Result<IssuerInfo> LoadCa(const std::string& path, IssuerInfo::Kind kind, std::string name) {
  auto cert = pki::LoadCertificateFile(path);
  if (!cert.ok()) {
    return MakeError(cert.error().code, "CA file " + path + ": " + cert.error().message);
  }
  if (!cert->is_ca) {
    return MakeError(ErrorCode::kInvalidArgument, "CA file " + path + " is not a CA certificate");
  }
  IssuerInfo info;
  info.kind = kind;
  info.manufacturer = std::move(name);
  info.subject_id = cert->subject_id;
  info.ski = cert->ski;
  return info;
}

}  // namespace

Result<TrustIndex> TrustIndex::Load(const policies::TrustPolicy& trust) {
  TrustIndex index;
  if (trust.site_ca.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "policy has no trust.site_ca");
  }
  ET_ASSIGN_OR_RETURN(IssuerInfo site, LoadCa(trust.site_ca, IssuerInfo::Kind::kSiteCa, {}));
  index.issuers_.push_back(std::move(site));
  for (const auto& [name, path] : trust.manufacturers) {
    ET_ASSIGN_OR_RETURN(IssuerInfo m, LoadCa(path, IssuerInfo::Kind::kManufacturerCa, name));
    // Two trusted CAs with one subject name would make the issuer of a leaf ambiguous.
    for (const IssuerInfo& other : index.issuers_) {
      if (other.subject_id == m.subject_id) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "manufacturer CA '" + name + "' has the same subject as another trusted CA");
      }
    }
    index.issuers_.push_back(std::move(m));
  }
  return index;
}

const IssuerInfo* TrustIndex::Find(const Sha256Digest& issuer_id) const {
  auto it = std::find_if(issuers_.begin(), issuers_.end(),
                         [&](const IssuerInfo& i) { return i.subject_id == issuer_id; });
  return it == issuers_.end() ? nullptr : &*it;
}

Result<std::shared_ptr<const PolicySnapshot>> LoadPolicySnapshot(const std::string& path) {
  ET_ASSIGN_OR_RETURN(policies::Policy policy, policies::LoadPolicyFile(path));
  ET_ASSIGN_OR_RETURN(TrustIndex trust, TrustIndex::Load(policy.trust));
  auto snapshot = std::make_shared<PolicySnapshot>();
  snapshot->policy = std::move(policy);
  snapshot->trust = std::move(trust);
  return std::shared_ptr<const PolicySnapshot>(std::move(snapshot));
}

}  // namespace edgetrust::plugin
