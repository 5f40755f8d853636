#include "edgetrust/gateway/site_authority.h"

namespace edgetrust::gateway {

const ManufacturerCa* SiteAuthority::IssuerOf(const pki::Certificate& birth) const {
  for (const auto& m : manufacturers) {
    if (birth.issuer_id != m.ca.subject_id) continue;
    if (m.anchors.Verify(birth).ok()) return &m;
  }
  return nullptr;
}

Result<std::shared_ptr<const SiteAuthority>> LoadSiteAuthority(const AuthorityFiles& files) {
  auto authority = std::make_shared<SiteAuthority>();
  ET_ASSIGN_OR_RETURN(authority->policy, policies::LoadPolicyFile(files.policy_file));
  const policies::Policy& policy = authority->policy;

  for (const auto& [name, path] : policy.trust.manufacturers) {
    auto ca = pki::LoadCertificateFile(path);
    if (!ca.ok())
      return MakeError(ca.error().code, "manufacturer " + name + " CA " + path + ": " +
                                            ca.error().message);
    if (!ca->is_ca)
      return MakeError(ErrorCode::kInvalidArgument,
                       "manufacturer " + name + " CA " + path + " is not a CA certificate");
    ManufacturerCa m;
    m.name = name;
    ET_RETURN_IF_ERROR(m.anchors.AddCertificate(*ca));
    m.ca = std::move(ca).value();
    authority->manufacturers.push_back(std::move(m));
  }

  std::string ca_path = files.site_ca_file.empty() ? policy.trust.site_ca : files.site_ca_file;
  std::string key_path = files.site_ca_key_file;
  if (key_path.empty()) {
    size_t slash = files.policy_file.rfind('/');
    std::string dir = slash == std::string::npos ? "." : files.policy_file.substr(0, slash);
    key_path = dir + "/site-ca.key";
  }
  auto site_ca = pki::LoadCertificateFile(ca_path);
  if (!site_ca.ok())
    return MakeError(site_ca.error().code, "site CA " + ca_path + ": " + site_ca.error().message);
  auto key = pki::LoadPrivateKeyFile(key_path);
  if (!key.ok())
    return MakeError(key.error().code, "site CA key " + key_path + ": " + key.error().message);
  auto pub = key->PublicKeyDer();
  if (!pub.ok() || *pub != site_ca->public_key_der)
    return MakeError(ErrorCode::kInvalidArgument,
                     "site CA key " + key_path + " does not match " + ca_path);
  authority->site_ca = std::move(site_ca).value();
  authority->site_key = std::move(key).value();
  return std::shared_ptr<const SiteAuthority>(std::move(authority));
}

}  // namespace edgetrust::gateway
