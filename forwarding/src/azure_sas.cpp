#include "edgetrust/forwarding/azure_sas.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/coding.h>
#include <wolfssl/wolfcrypt/hmac.h>

#include <optional>
#include <string>
#include <vector>

#include "edgetrust/common/bytes.h"
#include "edgetrust/protocol/topics.h"

namespace edgetrust::forwarding {
namespace {

Result<Bytes> Base64Decode(std::string_view text) {
  if (text.empty()) return MakeError(ErrorCode::kInvalidArgument, "empty base64 key");
  // wolfCrypt's decoder skips characters it does not know; a key must be exact.
  const size_t pad = text.size() - text.find_last_not_of('=') - 1;
  bool valid = text.size() % 4 == 0 && pad <= 2;
  for (size_t i = 0; valid && i < text.size() - pad; ++i) {
    const char c = text[i];
    valid = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
            c == '/';
  }
  if (!valid) return MakeError(ErrorCode::kInvalidArgument, "key is not valid base64");
  Bytes out(text.size() * 3 / 4 + 4);
  word32 len = static_cast<word32>(out.size());
  if (Base64_Decode(reinterpret_cast<const byte*>(text.data()), static_cast<word32>(text.size()),
                    out.data(), &len) != 0) {
    return MakeError(ErrorCode::kInvalidArgument, "key is not valid base64");
  }
  out.resize(len);
  return out;
}

Result<std::string> Base64Encode(ByteView data) {
  std::string out(data.size() * 4 / 3 + 8, '\0');
  word32 len = static_cast<word32>(out.size());
  if (Base64_Encode_NoNl(data.data(), static_cast<word32>(data.size()),
                         reinterpret_cast<byte*>(out.data()), &len) != 0) {
    return MakeError(ErrorCode::kCrypto, "base64 encoding failed");
  }
  out.resize(len);
  return out;
}

Result<Bytes> HmacSha256(ByteView key, std::string_view message) {
  Hmac hmac;
  if (wc_HmacInit(&hmac, nullptr, INVALID_DEVID) != 0) {
    return MakeError(ErrorCode::kCrypto, "HMAC init failed");
  }
  Bytes mac(WC_SHA256_DIGEST_SIZE);
  int rc = wc_HmacSetKey(&hmac, WC_SHA256, key.data(), static_cast<word32>(key.size()));
  if (rc == 0) {
    rc = wc_HmacUpdate(&hmac, reinterpret_cast<const byte*>(message.data()),
                       static_cast<word32>(message.size()));
  }
  if (rc == 0) rc = wc_HmacFinal(&hmac, mac.data());
  wc_HmacFree(&hmac);
  if (rc != 0) return MakeError(ErrorCode::kCrypto, "HMAC-SHA256 failed (" + std::to_string(rc) + ")");
  return mac;
}

}  // namespace

std::string UrlEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size() * 3);
  for (unsigned char c : text) {
    bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    }
  }
  return out;
}

Result<std::string> UrlDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 2 >= text.size()) {
      return MakeError(ErrorCode::kInvalidArgument, "truncated percent escape");
    }
    int hi = HexDigitValue(text[i + 1]);
    int lo = HexDigitValue(text[i + 2]);
    if (hi < 0 || lo < 0) return MakeError(ErrorCode::kInvalidArgument, "bad percent escape");
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

Result<std::string> DeviceboundChannel(std::string_view bag) {
  std::optional<std::string> channel;
  while (!bag.empty()) {
    const size_t amp = bag.find('&');
    const std::string_view pair = bag.substr(0, amp);
    bag = amp == std::string_view::npos ? std::string_view{} : bag.substr(amp + 1);
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos) continue;
    auto name = UrlDecode(pair.substr(0, eq));
    if (!name.ok() || *name != "channel") continue;
    if (channel) return MakeError(ErrorCode::kInvalidArgument, "the property bag names a channel twice");
    auto value = UrlDecode(pair.substr(eq + 1));
    if (!value.ok()) {
      return MakeError(ErrorCode::kInvalidArgument, "channel property: " + value.error().message);
    }
    if (!value->empty() && !protocol::IsValidChannel(*value)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "channel property: not a device topic channel (UTF-8 topic levels, none "
                       "empty, no wildcards)");
    }
    channel = std::move(*value);
  }
  return channel.value_or(std::string{});
}

Result<std::string> DeriveDeviceKey(std::string_view group_key_base64,
                                    std::string_view registration_id) {
  if (registration_id.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "empty registration id");
  }
  ET_ASSIGN_OR_RETURN(Bytes group_key, Base64Decode(group_key_base64));
  if (group_key.empty()) return MakeError(ErrorCode::kInvalidArgument, "empty group key");
  ET_ASSIGN_OR_RETURN(Bytes mac, HmacSha256(group_key, registration_id));
  return Base64Encode(mac);
}

Result<std::string> MakeSasToken(std::string_view resource_uri, std::string_view key_base64,
                                 int64_t expiry_unix) {
  if (resource_uri.empty()) return MakeError(ErrorCode::kInvalidArgument, "empty resource uri");
  ET_ASSIGN_OR_RETURN(Bytes key, Base64Decode(key_base64));
  if (key.empty()) return MakeError(ErrorCode::kInvalidArgument, "empty signing key");
  const std::string encoded_uri = UrlEncode(resource_uri);
  const std::string expiry = std::to_string(expiry_unix);
  ET_ASSIGN_OR_RETURN(Bytes mac, HmacSha256(key, encoded_uri + "\n" + expiry));
  ET_ASSIGN_OR_RETURN(std::string sig, Base64Encode(mac));
  return "SharedAccessSignature sr=" + encoded_uri + "&sig=" + UrlEncode(sig) + "&se=" + expiry;
}

}  // namespace edgetrust::forwarding
