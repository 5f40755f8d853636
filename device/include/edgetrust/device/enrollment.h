// One certificate request in flight (first enrollment or renewal) and what an answer to it means.
// Pure logic: no network, no clock of its own. The agent re-sends Payload() unchanged (same rid,
// same CSR) until an answer with that rid arrives, so a gateway that answers twice, or a restarted
// gateway, sees one request.
#pragma once

#include <optional>
#include <string>

#include "edgetrust/common/bytes.h"
#include "edgetrust/common/result.h"
#include "edgetrust/device/identity.h"
#include "edgetrust/pki/key.h"

namespace edgetrust::device {

struct RequestParams {
  std::string device_id;
  Bytes connected_cert_der;  // `birth` on the wire: the certificate this connection uses
  std::string fw;
  std::string model;
  std::string claim;  // empty: none
};

enum class AnswerKind {
  kIgnored,   // not an answer to this request (undecodable, other rid): wait on
  kIssued,    // a certificate for our key: store it
  kRejected,  // the gateway said no (`err`, `msg`): back off and ask again
  kInvalid,   // ok:true but the certificate is unusable (wrong key, wrong CN, expired)
};

struct Answer {
  AnswerKind kind = AnswerKind::kIgnored;
  std::string err;     // kRejected: wire code; otherwise a reason for the log
  std::string msg;
  std::optional<OperationalIdentity> identity;  // kIssued
  StoredIdentity stored;                        // kIssued: what to write to the state directory
};

class CertificateRequest {
 public:
  // Generates a fresh P-256 key, a CSR with CN = device id, and a random rid.
  static Result<CertificateRequest> Create(const RequestParams& params);

  const std::string& rid() const { return rid_; }
  const Bytes& payload() const { return payload_; }  // msgpack EnrollRequest
  // Reads an enroll/res or cert/res payload at time `now`.
  Answer Read(ByteView response, int64_t now) const;

 private:
  CertificateRequest(std::string device_id, std::string rid, pki::PrivateKey key, Bytes spki,
                     std::string key_pem, Bytes payload)
      : device_id_(std::move(device_id)), rid_(std::move(rid)), key_(std::move(key)),
        spki_(std::move(spki)), key_pem_(std::move(key_pem)), payload_(std::move(payload)) {}

  std::string device_id_;
  std::string rid_;
  pki::PrivateKey key_;
  Bytes spki_;
  std::string key_pem_;
  Bytes payload_;
};

// 16 random bytes, hex.
std::string NewRequestId();

}  // namespace edgetrust::device
