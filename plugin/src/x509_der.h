// The one place that touches OpenSSL: Mosquitto hands over the client certificate as an
// OpenSSL X509*, everything after this is DER bytes parsed by wolfSSL (pki). OpenSSL and
// wolfSSL headers must never meet in one translation unit (their names collide).
#pragma once

#include <optional>

#include "edgetrust/common/bytes.h"
#include "edgetrust/common/result.h"

struct mosquitto;

namespace edgetrust::plugin::internal {

// nullopt when the client presented no certificate.
Result<std::optional<Bytes>> ClientCertificateDer(const struct mosquitto* client);

}  // namespace edgetrust::plugin::internal
