#include "broker_log.h"

#include <algorithm>

#include <mosquitto.h>
#include <mosquitto_broker.h>

namespace edgetrust::plugin::internal {
namespace {

void Log(int level, std::string_view message) {
  mosquitto_log_printf(level, "edgetrust: %.*s", static_cast<int>(message.size()), message.data());
}

}  // namespace

void LogInfo(std::string_view message) { Log(MOSQ_LOG_INFO, message); }
void LogNotice(std::string_view message) { Log(MOSQ_LOG_NOTICE, message); }
void LogWarning(std::string_view message) { Log(MOSQ_LOG_WARNING, message); }
void LogError(std::string_view message) { Log(MOSQ_LOG_ERR, message); }
void LogDebug(std::string_view message) { Log(MOSQ_LOG_DEBUG, message); }

std::string Printable(std::string_view text) {
  constexpr size_t kMax = 80;
  std::string out;
  out.reserve(std::min(text.size(), kMax + 3));
  for (char c : text.substr(0, kMax)) {
    out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  }
  if (text.size() > kMax) out += "...";
  return out;
}

std::string ShortFingerprint(ByteView fingerprint) {
  return HexEncode(fingerprint.first(std::min<size_t>(fingerprint.size(), 8)));
}

}  // namespace edgetrust::plugin::internal
