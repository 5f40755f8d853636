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

// Seconds since the Unix epoch, from the real-time clock.
int64_t UnixNow();

}  // namespace edgetrust
