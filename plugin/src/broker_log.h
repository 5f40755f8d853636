// Log lines through the broker's own logging, every one prefixed "edgetrust: ".
#pragma once

#include <string>
#include <string_view>

#include "edgetrust/common/bytes.h"

namespace edgetrust::plugin::internal {

void LogInfo(std::string_view message);
void LogNotice(std::string_view message);
void LogWarning(std::string_view message);
void LogError(std::string_view message);
void LogDebug(std::string_view message);

// Client ids and CNs come from the network: printable ASCII only, at most 80 characters.
std::string Printable(std::string_view text);
// First 16 hex digits: enough to find the certificate, short enough for a log line.
std::string ShortFingerprint(ByteView fingerprint);

}  // namespace edgetrust::plugin::internal
