// A strict, bounds-checked DER reader and a small DER writer: X.509 and PKCS#10 structure is
// handled here; every cryptographic operation is wolfCrypt's. Kept wolfSSL-free.
#pragma once

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "edgetrust/common/bytes.h"
#include "edgetrust/common/result.h"

namespace edgetrust::pki::internal {

namespace tag {
inline constexpr uint8_t kBoolean = 0x01;
inline constexpr uint8_t kInteger = 0x02;
inline constexpr uint8_t kBitString = 0x03;
inline constexpr uint8_t kOctetString = 0x04;
inline constexpr uint8_t kNull = 0x05;
inline constexpr uint8_t kOid = 0x06;
inline constexpr uint8_t kUtf8String = 0x0c;
inline constexpr uint8_t kPrintableString = 0x13;
inline constexpr uint8_t kIa5String = 0x16;
inline constexpr uint8_t kUtcTime = 0x17;
inline constexpr uint8_t kGeneralizedTime = 0x18;
inline constexpr uint8_t kSequence = 0x30;
inline constexpr uint8_t kSet = 0x31;
inline constexpr uint8_t kContext0 = 0xa0;  // [0] constructed
inline constexpr uint8_t kContext1 = 0xa1;
inline constexpr uint8_t kContext3 = 0xa3;
}  // namespace tag

struct Tlv {
  uint8_t tag = 0;
  ByteView content;  // the value
  ByteView whole;    // tag + length + value
};

// Reads consecutive TLVs from a buffer. Rejects high tag numbers, indefinite and non-minimal
// lengths, and anything running past the end.
class DerReader {
 public:
  explicit DerReader(ByteView data) : data_(data) {}
  bool empty() const { return pos_ >= data_.size(); }
  // Next TLV whatever its tag.
  Result<Tlv> Next();
  // Next TLV, which must have tag `expected`.
  Result<Tlv> Expect(uint8_t expected, const char* what);
  // True if the next TLV has tag `t` (false at the end).
  bool PeekTag(uint8_t t) const { return !empty() && data_[pos_] == t; }

 private:
  ByteView data_;
  size_t pos_ = 0;
};

// Reads exactly one TLV that fills `data` entirely.
Result<Tlv> ParseSingle(ByteView data, uint8_t expected, const char* what);

// Writer: each returns the full encoding.
Bytes DerTlv(uint8_t t, ByteView content);
Bytes DerSeq(std::initializer_list<ByteView> parts);
Bytes DerConcat(std::initializer_list<ByteView> parts);
// INTEGER from a big-endian magnitude (adds the sign byte, strips leading zeros).
Bytes DerUnsignedInteger(ByteView magnitude);
Bytes DerSmallInteger(int64_t v);
Bytes DerBitString(ByteView bits, uint8_t unused_bits = 0);
Bytes DerOctetString(ByteView v);
Bytes DerBoolean(bool v);
Bytes DerTime(int64_t unix_seconds);  // UTCTime for 1950..2049, else GeneralizedTime

// Magnitude of an INTEGER's content (leading zero bytes stripped; at least one byte).
Result<Bytes> IntegerMagnitude(ByteView content);
// UTCTime / GeneralizedTime content (must end in Z, seconds present) to unix seconds.
Result<int64_t> ParseTime(const Tlv& t);

// Well-known OID encodings (the content of the OBJECT IDENTIFIER).
namespace oid {
inline constexpr uint8_t kEcPublicKey[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};
inline constexpr uint8_t kPrime256v1[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
inline constexpr uint8_t kEd25519[] = {0x2b, 0x65, 0x70};
inline constexpr uint8_t kEcdsaWithSha256[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
inline constexpr uint8_t kCommonName[] = {0x55, 0x04, 0x03};
inline constexpr uint8_t kOrganization[] = {0x55, 0x04, 0x0a};
inline constexpr uint8_t kOrganizationalUnit[] = {0x55, 0x04, 0x0b};
inline constexpr uint8_t kSubjectKeyId[] = {0x55, 0x1d, 0x0e};
inline constexpr uint8_t kKeyUsage[] = {0x55, 0x1d, 0x0f};
inline constexpr uint8_t kSubjectAltName[] = {0x55, 0x1d, 0x11};
inline constexpr uint8_t kBasicConstraints[] = {0x55, 0x1d, 0x13};
inline constexpr uint8_t kAuthorityKeyId[] = {0x55, 0x1d, 0x23};
inline constexpr uint8_t kExtKeyUsage[] = {0x55, 0x1d, 0x25};
inline constexpr uint8_t kServerAuth[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01};
inline constexpr uint8_t kClientAuth[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02};
}  // namespace oid

inline bool Equal(ByteView a, ByteView b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

// PEM: the DER of the first block labelled `label` at or after `*pos` (advanced past it);
// kNotFound when there is no further block.
Result<Bytes> PemDecode(std::string_view text, std::string_view label, size_t* pos = nullptr);
// The label of the first PEM block ("CERTIFICATE", "PRIVATE KEY", ...), empty if none.
std::string PemFirstLabel(std::string_view text);
std::string PemEncode(ByteView der, std::string_view label);

}  // namespace edgetrust::pki::internal
