// Per-device cloud certificates for upstreams that authenticate each device (aws-iot with
// `identity: device`). The first time an active device's connection to such an upstream opens,
// the gateway makes a P-256 key and a client certificate issued by the site CA (CN = device id,
// O = site, OU = upstream, EKU clientAuth), records the certificate in the store (kind `cloud`)
// and keeps both files:
//
//   <dir>/<upstream>/<device>.key   PKCS#8 PEM, mode 0600 (directories 0700)
//   <dir>/<upstream>/<device>.pem   the certificate
//
// Later opens, in this process or after a restart, re-use them while they are valid: same CN,
// issued by the current site CA, recorded for this device and not revoked, key matching, not
// within `renew_before_days` of expiry. Otherwise a new pair replaces them. A cloud certificate
// is never accepted by the site's own broker (the plugin admits only operational certificates).
//
// AWS IoT Core registers these on first use by just-in-time provisioning: the operator registers
// the site CA with AWS (register-ca-certificate --allow-auto-registration) with a provisioning
// template that makes the thing from the certificate's CommonName.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "edgetrust/common/result.h"
#include "edgetrust/forwarding/upstream.h"
#include "edgetrust/gateway/site_authority.h"
#include "edgetrust/pki/certificate.h"
#include "edgetrust/storage/store.h"

namespace edgetrust::gateway {

struct CloudIdentityOptions {
  std::string dir;  // e.g. <store dir>/cloud
  int cert_days = 365;
  int renew_before_days = 30;  // reissue when less validity than this is left
};

class CloudIdentities {
 public:
  // The current site authority (it changes on SIGHUP; its site CA issues the certificates).
  using AuthoritySource = std::function<std::shared_ptr<const SiteAuthority>()>;
  // Told after each issuance (for the gateway's log).
  using IssuedHook = std::function<void(std::string_view upstream, std::string_view device_id,
                                        const pki::Certificate& cert)>;

  // `store` must outlive this object; all calls on the thread that writes the store.
  CloudIdentities(storage::Store* store, AuthoritySource authority, CloudIdentityOptions options,
                  IssuedHook on_issued = {});

  // The device's identity for `upstream`: kept files when still good, else newly issued ones.
  // kFailedPrecondition when the device is unknown or not active (nothing is issued then).
  Result<forwarding::CloudIdentity> Get(std::string_view upstream, std::string_view device_id);

  // Get() as the Forwarder's hook (UpstreamTuning::cloud_identity); this object must outlive
  // the Forwarder.
  forwarding::CloudIdentityProvider Provider();

  uint64_t issued() const { return issued_; }

 private:
  Result<forwarding::CloudIdentity> Issue(const SiteAuthority& authority, std::string_view upstream,
                                          const std::string& device_id,
                                          forwarding::CloudIdentity files, int64_t now);

  storage::Store* store_;
  AuthoritySource authority_;
  CloudIdentityOptions options_;
  IssuedHook on_issued_;
  uint64_t issued_ = 0;
};

}  // namespace edgetrust::gateway
