#include "der.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <optional>

namespace edgetrust::pki::internal {

namespace {

Error Malformed(const char* what, const char* why) {
  return MakeError(ErrorCode::kInvalidArgument, std::string("malformed DER (") + what + "): " + why);
}

void AppendLength(Bytes& out, size_t len) {
  if (len < 0x80) {
    out.push_back(static_cast<uint8_t>(len));
    return;
  }
  uint8_t buf[8];
  int n = 0;
  while (len > 0) {
    buf[n++] = static_cast<uint8_t>(len & 0xff);
    len >>= 8;
  }
  out.push_back(static_cast<uint8_t>(0x80 | n));
  while (n > 0) out.push_back(buf[--n]);
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

void CivilFromDays(int64_t z, int64_t* y, unsigned* m, unsigned* d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = static_cast<int64_t>(yoe) + era * 400 + (*m <= 2);
}

bool Digits(std::string_view s, size_t pos, size_t n, int* out) {
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::optional<Bytes> Base64Decode(std::string_view in) {
  std::array<int, 256> map;
  map.fill(-1);
  for (int i = 0; i < 64; ++i) map[static_cast<uint8_t>(kB64[i])] = i;
  Bytes out;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  int pad = 0;
  size_t symbols = 0;
  for (char c : in) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      ++pad;
      ++symbols;
      continue;
    }
    if (pad > 0) return std::nullopt;  // data after padding
    int v = map[static_cast<uint8_t>(c)];
    if (v < 0) return std::nullopt;
    ++symbols;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>((acc >> bits) & 0xff));
    }
  }
  if (symbols % 4 != 0 || pad > 2) return std::nullopt;
  return out;
}

std::string Base64Encode(ByteView in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint32_t{in[i]} << 16) | (uint32_t{in[i + 1]} << 8) | in[i + 2];
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += kB64[v & 63];
  }
  if (i < in.size()) {
    uint32_t v = uint32_t{in[i]} << 16;
    if (i + 1 < in.size()) v |= uint32_t{in[i + 1]} << 8;
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += i + 1 < in.size() ? kB64[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

}  // namespace

Result<Tlv> DerReader::Next() {
  const size_t start = pos_;
  if (pos_ >= data_.size()) return Malformed("tlv", "unexpected end");
  const uint8_t t = data_[pos_++];
  if ((t & 0x1f) == 0x1f) return Malformed("tlv", "high tag number");
  if (pos_ >= data_.size()) return Malformed("tlv", "missing length");
  size_t len = data_[pos_++];
  if (len & 0x80) {
    const size_t n = len & 0x7f;
    if (n == 0) return Malformed("tlv", "indefinite length");
    if (n > 4) return Malformed("tlv", "length too large");
    if (data_.size() - pos_ < n) return Malformed("tlv", "truncated length");
    len = 0;
    for (size_t i = 0; i < n; ++i) len = (len << 8) | data_[pos_++];
    if (len < 0x80 || (n > 1 && (len >> (8 * (n - 1))) == 0)) {
      return Malformed("tlv", "non-minimal length");
    }
  }
  if (data_.size() - pos_ < len) return Malformed("tlv", "truncated value");
  Tlv out;
  out.tag = t;
  out.content = data_.subspan(pos_, len);
  pos_ += len;
  out.whole = data_.subspan(start, pos_ - start);
  return out;
}

Result<Tlv> DerReader::Expect(uint8_t expected, const char* what) {
  if (empty()) return Malformed(what, "missing");
  if (data_[pos_] != expected) return Malformed(what, "unexpected tag");
  return Next();
}

Result<Tlv> ParseSingle(ByteView data, uint8_t expected, const char* what) {
  DerReader r(data);
  ET_ASSIGN_OR_RETURN(Tlv t, r.Expect(expected, what));
  if (!r.empty()) return Malformed(what, "trailing data");
  return t;
}

Bytes DerTlv(uint8_t t, ByteView content) {
  Bytes out;
  out.reserve(content.size() + 6);
  out.push_back(t);
  AppendLength(out, content.size());
  out.insert(out.end(), content.begin(), content.end());
  return out;
}

Bytes DerConcat(std::initializer_list<ByteView> parts) {
  size_t n = 0;
  for (auto p : parts) n += p.size();
  Bytes out;
  out.reserve(n);
  for (auto p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Bytes DerSeq(std::initializer_list<ByteView> parts) {
  return DerTlv(tag::kSequence, DerConcat(parts));
}

Bytes DerUnsignedInteger(ByteView magnitude) {
  size_t i = 0;
  while (i + 1 < magnitude.size() && magnitude[i] == 0) ++i;
  Bytes content;
  if (magnitude.empty()) {
    content.push_back(0);
  } else {
    if (magnitude[i] & 0x80) content.push_back(0);
    content.insert(content.end(), magnitude.begin() + i, magnitude.end());
  }
  return DerTlv(tag::kInteger, content);
}

Bytes DerSmallInteger(int64_t v) {
  Bytes content;
  bool more = true;
  while (more) {
    content.insert(content.begin(), static_cast<uint8_t>(v & 0xff));
    const int64_t next = v >> 8;
    more = !((next == 0 && !(content.front() & 0x80)) || (next == -1 && (content.front() & 0x80)));
    v = next;
  }
  return DerTlv(tag::kInteger, content);
}

Bytes DerBitString(ByteView bits, uint8_t unused_bits) {
  Bytes content;
  content.reserve(bits.size() + 1);
  content.push_back(unused_bits);
  content.insert(content.end(), bits.begin(), bits.end());
  return DerTlv(tag::kBitString, content);
}

Bytes DerOctetString(ByteView v) { return DerTlv(tag::kOctetString, v); }

Bytes DerBoolean(bool v) {
  const uint8_t b = v ? 0xff : 0x00;
  return DerTlv(tag::kBoolean, ByteView(&b, 1));
}

Bytes DerTime(int64_t unix_seconds) {
  int64_t days = unix_seconds / 86400;
  int64_t secs = unix_seconds % 86400;
  if (secs < 0) {
    secs += 86400;
    --days;
  }
  int64_t y;
  unsigned m, d;
  CivilFromDays(days, &y, &m, &d);
  char buf[32];
  const int hh = static_cast<int>(secs / 3600), mm = static_cast<int>(secs / 60 % 60),
            ss = static_cast<int>(secs % 60);
  if (y >= 1950 && y < 2050) {
    snprintf(buf, sizeof buf, "%02d%02u%02u%02d%02d%02dZ", static_cast<int>(y % 100), m, d, hh, mm,
             ss);
    return DerTlv(tag::kUtcTime, AsBytes(buf));
  }
  if (y < 0) y = 0;
  if (y > 9999) y = 9999;
  snprintf(buf, sizeof buf, "%04d%02u%02u%02d%02d%02dZ", static_cast<int>(y), m, d, hh, mm, ss);
  return DerTlv(tag::kGeneralizedTime, AsBytes(buf));
}

Result<Bytes> IntegerMagnitude(ByteView content) {
  if (content.empty()) return Malformed("integer", "empty");
  size_t i = 0;
  while (i + 1 < content.size() && content[i] == 0) ++i;
  return Bytes(content.begin() + i, content.end());
}

Result<int64_t> ParseTime(const Tlv& t) {
  std::string_view s = AsChars(t.content);
  int year = 0, mon, day, hh, mm, ss;
  size_t p = 0;
  if (t.tag == tag::kUtcTime) {
    if (s.size() != 13 || !Digits(s, 0, 2, &year)) return Malformed("time", "bad UTCTime");
    year += year < 50 ? 2000 : 1900;
    p = 2;
  } else if (t.tag == tag::kGeneralizedTime) {
    if (s.size() != 15 || !Digits(s, 0, 4, &year)) return Malformed("time", "bad GeneralizedTime");
    p = 4;
  } else {
    return Malformed("time", "not a time");
  }
  if (!Digits(s, p, 2, &mon) || !Digits(s, p + 2, 2, &day) || !Digits(s, p + 4, 2, &hh) ||
      !Digits(s, p + 6, 2, &mm) || !Digits(s, p + 8, 2, &ss) || s[p + 10] != 'Z') {
    return Malformed("time", "bad digits");
  }
  if (mon < 1 || mon > 12 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60) {
    return Malformed("time", "out of range");
  }
  return DaysFromCivil(year, static_cast<unsigned>(mon), static_cast<unsigned>(day)) * 86400 +
         hh * 3600 + mm * 60 + ss;
}

Result<Bytes> PemDecode(std::string_view text, std::string_view label, size_t* pos) {
  const std::string begin = "-----BEGIN " + std::string(label) + "-----";
  const std::string end = "-----END " + std::string(label) + "-----";
  const size_t from = pos ? *pos : 0;
  const size_t b = text.find(begin, from);
  if (b == std::string_view::npos) {
    return MakeError(ErrorCode::kNotFound, "no PEM block " + std::string(label));
  }
  const size_t body = b + begin.size();
  const size_t e = text.find(end, body);
  if (e == std::string_view::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "PEM block " + std::string(label) + " not terminated");
  }
  auto der = Base64Decode(text.substr(body, e - body));
  if (!der || der->empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "PEM block " + std::string(label) + ": bad base64");
  }
  if (pos) *pos = e + end.size();
  return std::move(*der);
}

std::string PemFirstLabel(std::string_view text) {
  constexpr std::string_view kBegin = "-----BEGIN ";
  const size_t b = text.find(kBegin);
  if (b == std::string_view::npos) return {};
  const size_t start = b + kBegin.size();
  const size_t e = text.find("-----", start);
  if (e == std::string_view::npos) return {};
  return std::string(text.substr(start, e - start));
}

std::string PemEncode(ByteView der, std::string_view label) {
  const std::string b64 = Base64Encode(der);
  std::string out = "-----BEGIN " + std::string(label) + "-----\n";
  for (size_t i = 0; i < b64.size(); i += 64) {
    out.append(b64, i, 64);
    out += '\n';
  }
  out += "-----END " + std::string(label) + "-----\n";
  return out;
}

}  // namespace edgetrust::pki::internal
