// How the gateway records a certificate it has seen or issued in the store.
#pragma once

#include <string>

#include "edgetrust/common/bytes.h"
#include "edgetrust/pki/certificate.h"
#include "edgetrust/storage/records.h"

namespace edgetrust::gateway {

inline Bytes ToBytes(const Sha256Digest& d) { return Bytes(d.begin(), d.end()); }

inline storage::CertificateRecord CertificateRecordOf(const pki::Certificate& c,
                                                      const std::string& device_id,
                                                      storage::CertificateKind kind) {
  storage::CertificateRecord r;
  r.fingerprint = ToBytes(c.fingerprint);
  r.device_id = device_id;
  r.kind = kind;
  r.issuer_id = ToBytes(c.issuer_id);
  r.serial = c.serial;
  r.not_before = c.not_before;
  r.not_after = c.not_after;
  r.der = c.der;
  return r;
}

}  // namespace edgetrust::gateway
