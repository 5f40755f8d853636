// Azure IoT Hub's encodings: shared-access-signature tokens, computed as the Azure IoT SDKs do so
// a hub (or DPS enrollment group) accepts them unchanged, and the property bag of its topics.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "edgetrust/common/result.h"

namespace edgetrust::forwarding {

// RFC 3986 percent-encoding: everything but ALPHA / DIGIT / "-" / "." / "_" / "~" becomes %XX
// with uppercase hex (what the SDKs and urllib.parse.quote(s, safe='') produce).
std::string UrlEncode(std::string_view text);
// Inverse of UrlEncode ('+' is kept as is). kInvalidArgument on a malformed escape.
Result<std::string> UrlDecode(std::string_view text);

// The `channel` property of a cloud-to-device topic's property bag, the part after
// "devices/{device}/messages/devicebound/" ("%24.mid=7&%24.to=...&channel=led%2Fred"): its
// decoded value, or "" when the bag has none. Pairs without '=' and other properties are skipped,
// whatever they hold; kInvalidArgument when the channel's value has a malformed escape, is not a
// device topic's channel (UTF-8 topic levels, none empty, no '+' or '#'), or the bag names a
// channel twice (the message cannot be placed, and guessing would misroute it).
Result<std::string> DeviceboundChannel(std::string_view property_bag);

// DPS enrollment-group key derivation: base64(HMAC-SHA256(base64decode(group_key), registration_id)).
// kInvalidArgument when the group key is not base64 or the id is empty.
Result<std::string> DeriveDeviceKey(std::string_view group_key_base64,
                                    std::string_view registration_id);

// "SharedAccessSignature sr=<enc(uri)>&sig=<enc(base64(HMAC-SHA256(key, enc(uri) + "\n" +
// expiry)))>&se=<expiry>", enc = UrlEncode. resource_uri is e.g. "myhub.azure-devices.net/devices/d1".
Result<std::string> MakeSasToken(std::string_view resource_uri, std::string_view key_base64,
                                 int64_t expiry_unix);

}  // namespace edgetrust::forwarding
