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

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

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

  // `store` and `loop` must outlive this object; all calls on the loop's thread, which writes
  // the store. `on_settled` runs on the loop each time a prepared answer is waiting.
  CloudIdentities(uv_loop_t* loop, storage::Store* store, AuthoritySource authority,
                  CloudIdentityOptions options, std::function<void()> on_settled,
                  IssuedHook on_issued = {});
  ~CloudIdentities();
  CloudIdentities(const CloudIdentities&) = delete;
  CloudIdentities& operator=(const CloudIdentities&) = delete;

  // The device's identity for `upstream`: kept files when still good, else newly issued ones.
  // kUnavailable while it is being prepared (ask again after `on_settled`); kFailedPrecondition
  // when the device is unknown or not active (nothing is issued then).
  Result<forwarding::CloudIdentity> Get(std::string_view upstream, std::string_view device_id);

  // Get() as the Forwarder's hook (UpstreamTuning::cloud_identity); this object must outlive
  // the Forwarder.
  forwarding::CloudIdentityProvider Provider();

  // Destroys the device's kept pairs whose certificate the store has revoked or whose device is no
  // longer active (revocation, end of life, transfer), in every upstream's directory. Returns the
  // destroyed certificates by upstream, so the operator can revoke them in the cloud as well.
  struct Destroyed {
    std::string upstream;
    Bytes fingerprint;
  };
  Result<std::vector<Destroyed>> Forget(const std::string& device_id);

  uint64_t issued() const { return issued_; }
  // Identities being prepared or waiting to be asked for.
  size_t pending() const { return jobs_.size() + settled_.size(); }

  struct Job;  // one device's preparation (cloud_identity.cpp)

 private:
  struct Settled {
    Result<forwarding::CloudIdentity> answer;
    uint64_t at_ms;
  };

  void StartNext();
  void Finished(std::unique_ptr<Job> job);
  // On the loop, with the store: a kept pair the store still vouches for (nullopt: replace it),
  // and the commit of a new one.
  Result<std::optional<forwarding::CloudIdentity>> Confirm(const Job& job);
  Result<forwarding::CloudIdentity> Record(const Job& job);
  void Settle(const std::string& key, Result<forwarding::CloudIdentity> answer);

  uv_loop_t* loop_;
  storage::Store* store_;
  AuthoritySource authority_;
  CloudIdentityOptions options_;
  std::function<void()> on_settled_;
  IssuedHook on_issued_;
  uint64_t issued_ = 0;
  std::unordered_map<std::string, Job*> jobs_;  // by "<upstream>/<device>": queued or running
  std::deque<std::unique_ptr<Job>> queue_;
  Job* running_ = nullptr;  // owned by its uv_work_t until the loop gets it back
  std::unordered_map<std::string, Settled> settled_;  // answers not yet asked for
};

}  // namespace edgetrust::gateway
