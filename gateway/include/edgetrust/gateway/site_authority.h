// Everything the gateway decides with, loaded once per (re)load and never mutated: the policy,
// the manufacturer CAs it names (as trust anchors), and the site CA that signs operational
// certificates. A SIGHUP builds a new one and swaps it in only if it loads completely.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "edgetrust/common/result.h"
#include "edgetrust/pki/certificate.h"
#include "edgetrust/pki/key.h"
#include "edgetrust/policies/policy.h"

namespace edgetrust::gateway {

struct ManufacturerCa {
  std::string name;
  pki::Certificate ca;
  pki::TrustAnchors anchors;  // just this CA: which manufacturer issued a birth is decisive
};

struct SiteAuthority {
  policies::Policy policy;
  std::vector<ManufacturerCa> manufacturers;
  pki::Certificate site_ca;
  std::optional<pki::PrivateKey> site_key;  // always set once loaded

  // The manufacturer whose CA issued `birth` (chain and validity checked), or nullptr.
  const ManufacturerCa* IssuerOf(const pki::Certificate& birth) const;
};

struct AuthorityFiles {
  std::string policy_file;
  std::string site_ca_file;      // empty: policy.trust.site_ca
  std::string site_ca_key_file;  // empty: site-ca.key beside the policy file
};

// Loads and cross-checks (the key matches the site CA certificate; each manufacturer file is
// a CA certificate). Errors name the file.
Result<std::shared_ptr<const SiteAuthority>> LoadSiteAuthority(const AuthorityFiles& files);

}  // namespace edgetrust::gateway
