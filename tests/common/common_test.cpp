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

}  // namespace
}  // namespace edgetrust
