// Enrollment, renewal and device state: what the gateway does with et/{id}/enroll/req,
// et/{id}/cert/req and et/{id}/state. Pure decisions plus writes into the caller's WriteTxn;
// no I/O of its own, so the loop decides when to commit and when to publish the answers.
//
// Idempotency. A request repeated with the same rid gets the same answer: recent successful
// answers are kept per device (Remember, after the commit), and across a restart the store
// itself answers — a device that is `active` and asks again with a CSR for the key of its
// current operational certificate gets that certificate back instead of a new one. Nothing
// has to be persisted for this beyond what enrollment writes anyway.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "edgetrust/common/bytes.h"
#include "edgetrust/common/result.h"
#include "edgetrust/gateway/event_log.h"
#include "edgetrust/gateway/site_authority.h"
#include "edgetrust/pki/csr.h"
#include "edgetrust/protocol/topics.h"
#include "edgetrust/storage/store.h"

namespace edgetrust::gateway {

struct DeviceRequest {
  protocol::TopicKind kind = protocol::TopicKind::kEnrollReq;  // kEnrollReq, kCertReq or kState
  std::string prefix = "et";  // the policy's topic prefix
  std::string device_id;
  Bytes payload;
  std::string stamp;  // et-cert-sha256 the plugin attached (hex), empty when absent
  // The request's CSR, parsed and its self-signature checked ahead of the transaction (the
  // gateway does it on a thread of its own, see CheckCsr); unset: Handle checks it itself.
  std::optional<Result<pki::Csr>> csr;
};

// Parses the CSR of an enroll/cert request and checks its self-signature (pki::ParseCsrDer),
// into request.csr; a payload that does not decode is left for Handle to refuse. Touches no
// store and no shared state: safe on any thread, one request per call. Hands back the
// calling thread's ECC point cache after each, which only ever holds the CSR's one-off key.
void CheckCsr(DeviceRequest& request);

struct Reply {
  std::string topic;
  Bytes payload;
};

struct Outcome {
  std::optional<Reply> reply;
  bool wrote = false;   // changed the store inside the transaction (commit needed)
  bool issued = false;  // a new certificate was issued
  LogLevel level = LogLevel::kInfo;
  std::string event;    // e.g. "enroll_ok", "enroll_refused"
  LogFields fields;
  std::vector<Bytes> revoked;  // fingerprints revoked by this request
  // Set on success: Remember() them once the transaction is committed.
  std::optional<std::string> rid;
  Bytes cert;  // the certificate granted (DER)
};

class EnrollmentService {
 public:
  // The store error that makes the whole transaction unusable; the caller aborts and
  // retries each request alone.
  Result<Outcome> Handle(storage::WriteTxn& txn, const SiteAuthority& authority,
                         const DeviceRequest& request, int64_t now);

  // Records a committed successful answer for (device, rid).
  void Remember(const DeviceRequest& request, const std::string& rid, const Bytes& cert);
  // True when Handle will answer `request` from what was remembered (a repeat): its CSR need
  // not be checked (CheckCsr).
  bool Remembers(const DeviceRequest& request) const;
  size_t remembered() const { return answers_.size(); }

 private:
  struct Answer {
    protocol::TopicKind kind;
    std::string rid;
    Bytes cert;  // the answer is rebuilt from it (a third of the answer's size)
  };
  const Answer* Find(const DeviceRequest& request, std::string_view rid) const;
  Result<Outcome> Enroll(storage::WriteTxn& txn, const SiteAuthority& authority,
                         const DeviceRequest& request, int64_t now);
  Result<Outcome> Renew(storage::WriteTxn& txn, const SiteAuthority& authority,
                        const DeviceRequest& request, int64_t now);
  Result<Outcome> State(storage::WriteTxn& txn, const DeviceRequest& request);

  std::unordered_map<std::string, Answer> answers_;  // by device id: its latest answer
};

}  // namespace edgetrust::gateway
