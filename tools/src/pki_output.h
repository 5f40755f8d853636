// Writing and naming certificates and keys the way every command does.
#pragma once

#include <optional>
#include <string>

#include "edgetrust/common/bytes.h"
#include "edgetrust/common/result.h"
#include "edgetrust/pki/certificate.h"
#include "edgetrust/pki/key.h"
#include "files.h"

namespace edgetrust::tools {

inline constexpr int64_t kSecondsPerDay = 86400;
// Certificates start an hour in the past so a device whose clock lags a little accepts them.
inline constexpr int64_t kBackdateSeconds = 3600;

// PKCS#8 PEM, mode 0600; handed to `owner` when given (the broker's key).
Status WriteKeyFile(const std::string& path, const pki::PrivateKey& key, bool force,
                    const std::optional<Owner>& owner = std::nullopt,
                    Durability durability = Durability::kSync);
// PEM, mode 0644.
Status WriteCertFile(const std::string& path, const pki::Certificate& cert, bool force,
                     Durability durability = Durability::kSync);

// The first 8 bytes of a fingerprint in hex: enough for a person to tell certificates apart.
std::string ShortFingerprint(ByteView fingerprint);

// Loads a certificate file with its path in the error.
Result<pki::Certificate> LoadCertificate(const std::string& path);

// "2045-03-01" (UTC).
std::string FormatDate(int64_t unix_seconds);

// Name of a manufacturer, a site, a model: same alphabet as device ids so it is safe in file
// names, topics and YAML keys.
inline bool IsValidName(std::string_view name) { return IsValidDeviceId(name); }

}  // namespace edgetrust::tools
