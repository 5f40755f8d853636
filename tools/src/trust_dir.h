// DIR/trust.d: the trusted CAs as an OpenSSL hashed directory (`capath` in mosquitto.conf).
//
// Mosquitto 2.0 reads its `cafile` only at start (SIGHUP reloads the server certificate and the
// CRL, not the CAs), but OpenSSL looks CAs up in a `capath` directory when a handshake needs one,
// by the hash of their subject. So a manufacturer CA written here is trusted by the running
// broker's TLS layer at once, and the plugin, which checks every chain against the policy, takes
// it on the broker's next SIGHUP: no restart, no session dropped.
#pragma once

#include <string>
#include <vector>

#include "edgetrust/common/bytes.h"
#include "edgetrust/common/result.h"

namespace edgetrust::tools {

// OpenSSL's subject-name hash of a DER certificate (what `openssl x509 -hash` prints), as 8
// lowercase hex digits: the name OpenSSL looks the CA up by.
Result<std::string> SubjectHash(ByteView certificate_der);

// Makes `dir` hold exactly `ca_ders`, each as PEM in `<hash>.<n>` (n = 0, 1, … for CAs whose
// subjects hash alike); files of that name pattern not in the set are removed. Other files are
// left alone.
Status WriteTrustDirectory(const std::string& dir, const std::vector<Bytes>& ca_ders);

}  // namespace edgetrust::tools
