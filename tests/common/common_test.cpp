#include <gtest/gtest.h>

#include "edgetrust/common/bytes.h"
#include "edgetrust/common/result.h"

namespace edgetrust {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return MakeError(ErrorCode::kInvalidArgument, "odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  ET_ASSIGN_OR_RETURN(int h, Half(x));
  return Half(h);
}

TEST(ResultTest, PropagatesErrorsAndValues) {
  EXPECT_EQ(*Quarter(8), 2);
  auto r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().ToString(), "invalid_argument: odd");
}

TEST(BytesTest, HexRoundTrip) {
  Bytes b{0x00, 0xab, 0xff};
  EXPECT_EQ(HexEncode(b), "00abff");
  EXPECT_EQ(*HexDecode("00:AB:ff"), b);
  EXPECT_FALSE(HexDecode("0g").has_value());
  EXPECT_FALSE(HexDecode("abc").has_value());
  EXPECT_FALSE(HexDecode("a:bc").has_value());
}

TEST(DeviceIdTest, FollowsDesignRule) {
  EXPECT_TRUE(IsValidDeviceId("thermo-000001"));
  EXPECT_TRUE(IsValidDeviceId("A.b_c-9"));
  EXPECT_TRUE(IsValidDeviceId(std::string(64, 'a')));
  EXPECT_FALSE(IsValidDeviceId(std::string(65, 'a')));
  EXPECT_FALSE(IsValidDeviceId(""));
  EXPECT_FALSE(IsValidDeviceId("-lead"));
  EXPECT_FALSE(IsValidDeviceId("a/b"));
  EXPECT_FALSE(IsValidDeviceId("a+b"));
  EXPECT_FALSE(IsValidDeviceId("a#b"));
  EXPECT_FALSE(IsValidDeviceId(std::string("a\0b", 3)));
}

TEST(MqttUtf8Test, FollowsTheBrokersRule) {
  EXPECT_TRUE(IsValidMqttUtf8(""));
  EXPECT_TRUE(IsValidMqttUtf8("cmd/edge-01/+/#"));
  EXPECT_TRUE(IsValidMqttUtf8("caf\xC3\xA9/\xE2\x82\xAC/\xF0\x9F\x8C\xA1"));  // é € 🌡
  EXPECT_TRUE(IsValidMqttUtf8("\xC2\xA0 \xEF\xBF\xBD \xF4\x8F\xBF\xBD"));     // U+A0 U+FFFD U+10FFFD
  EXPECT_TRUE(IsValidMqttUtf8(std::string(65535, 'a')));
  EXPECT_FALSE(IsValidMqttUtf8(std::string(65536, 'a')));
  EXPECT_FALSE(IsValidMqttUtf8(std::string("a\0b", 3)));
  EXPECT_FALSE(IsValidMqttUtf8("tab\there"));
  EXPECT_FALSE(IsValidMqttUtf8("del\x7F"));
  EXPECT_FALSE(IsValidMqttUtf8("\xC2\x85"));          // U+0085, a C1 control
  EXPECT_FALSE(IsValidMqttUtf8("\xFF"));
  EXPECT_FALSE(IsValidMqttUtf8("\x80"));              // a continuation byte first
  EXPECT_FALSE(IsValidMqttUtf8("\xC3"));              // cut short
  EXPECT_FALSE(IsValidMqttUtf8("\xE2\x82"));
  EXPECT_FALSE(IsValidMqttUtf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(IsValidMqttUtf8("\xE0\x80\xAF"));
  EXPECT_FALSE(IsValidMqttUtf8("\xF0\x80\x80\xAF"));
  EXPECT_FALSE(IsValidMqttUtf8("\xED\xA0\x80"));      // a surrogate
  EXPECT_FALSE(IsValidMqttUtf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidMqttUtf8("\xEF\xB7\x90"));      // U+FDD0
  EXPECT_FALSE(IsValidMqttUtf8("\xEF\xBF\xBE"));      // U+FFFE
  EXPECT_FALSE(IsValidMqttUtf8("\xF0\x9F\xBF\xBF"));  // U+1FFFF
}

}  // namespace
}  // namespace edgetrust
