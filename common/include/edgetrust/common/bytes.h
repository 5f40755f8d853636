// Byte buffers, hex, and the few identity rules every part agrees on.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace edgetrust {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;
using Sha256Digest = std::array<uint8_t, 32>;

inline ByteView AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
inline std::string_view AsChars(ByteView b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// Lower-case hex.
std::string HexEncode(ByteView bytes);
// Value of one hex digit (either case), or -1 when `c` is not one.
int HexDigitValue(char c);
// Accepts upper or lower case and optional ':' separators ("AB:CD" or "abcd"); nullopt if malformed.
std::optional<Bytes> HexDecode(std::string_view hex);

// Device id rule from DESIGN.md: [A-Za-z0-9][A-Za-z0-9._-]{0,63}. It is safe inside an MQTT topic level.
bool IsValidDeviceId(std::string_view id);

// Text a broker takes in a topic, by Mosquitto's rule (mosquitto_validate_utf8): well-formed
// UTF-8 (no overlong forms, surrogates or code points above U+10FFFF), no U+0000, no control
// characters (U+0001-U+001F, U+007F-U+009F), no non-characters (U+FDD0-U+FDEF, U+xFFFE,
// U+xFFFF), at most 65535 bytes (an MQTT string's limit; Mosquitto's check alone allows 65536).
bool IsValidMqttUtf8(std::string_view text);

// Seconds since the Unix epoch, from the real-time clock.
int64_t UnixNow();

}  // namespace edgetrust
