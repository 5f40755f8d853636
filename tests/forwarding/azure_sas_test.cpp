// SAS tokens checked against vectors computed independently by Python's hmac/hashlib/base64.
#include <gtest/gtest.h>

#include <string>

#include "edgetrust/forwarding/azure_sas.h"
#include "edgetrust/testing/process.h"

namespace edgetrust::forwarding {
namespace {

using testing::RunCommand;

std::string Python(const std::string& program, const std::vector<std::string>& args) {
  std::vector<std::string> argv{"/usr/bin/python3", "-c", program};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = RunCommand(argv);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string out = r.out;
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

constexpr const char* kDerivePy = R"(
import sys, hmac, hashlib, base64
key = base64.b64decode(sys.argv[1])
print(base64.b64encode(hmac.new(key, sys.argv[2].encode(), hashlib.sha256).digest()).decode())
)";

constexpr const char* kSasPy = R"(
import sys, hmac, hashlib, base64, urllib.parse
uri, key, se = sys.argv[1], sys.argv[2], sys.argv[3]
sr = urllib.parse.quote(uri, safe='')
sig = base64.b64encode(hmac.new(base64.b64decode(key), (sr + '\n' + se).encode(), hashlib.sha256).digest()).decode()
print('SharedAccessSignature sr=' + sr + '&sig=' + urllib.parse.quote(sig, safe='') + '&se=' + se)
)";

constexpr const char* kQuotePy = R"(
import sys, urllib.parse
print(urllib.parse.quote(sys.argv[1], safe=''))
)";

TEST(AzureSas, DeriveDeviceKeyMatchesPython) {
  const std::string group_key = "c2VjcmV0IGdyb3VwIGtleSBvZiAzMiBieXRlcyEhIQ==";
  for (std::string id : {"dev-000001", "acme.thermo_17", "a"}) {
    auto key = DeriveDeviceKey(group_key, id);
    ASSERT_TRUE(key.ok()) << key.error().ToString();
    EXPECT_EQ(*key, Python(kDerivePy, {group_key, id})) << id;
  }
}

TEST(AzureSas, TokenMatchesPythonIncludingEncodedCharacters) {
  const std::string key = "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=";
  // Characters that must be escaped: '/', ' ', '&', '=', '+', ':', '%', non-ASCII.
  for (std::string uri : {"myhub.azure-devices.net/devices/dev-1",
                          "my-hub.azure-devices.net/devices/a b&c=d+e:f%g~h_i.j",
                          "hub.example/devices/caf\xc3\xa9"}) {
    for (int64_t se : {int64_t{1700000000}, int64_t{4102444800}}) {
      auto token = MakeSasToken(uri, key, se);
      ASSERT_TRUE(token.ok()) << token.error().ToString();
      EXPECT_EQ(*token, Python(kSasPy, {uri, key, std::to_string(se)})) << uri;
    }
  }
  // The signature itself usually holds '+', '/' or '=' and must be escaped too: find one that does.
  bool saw_escaped_sig = false;
  for (int i = 0; i < 20 && !saw_escaped_sig; ++i) {
    auto token = MakeSasToken("hub.example/devices/d" + std::to_string(i), key, 1700000000);
    ASSERT_TRUE(token.ok());
    size_t sig = token->find("&sig=");
    saw_escaped_sig = token->find('%', sig) < token->find("&se=");
  }
  EXPECT_TRUE(saw_escaped_sig);
}

TEST(AzureSas, UrlEncodeMatchesPythonQuote) {
  std::string all;
  for (int c = 1; c < 256; ++c) all.push_back(static_cast<char>(c));
  std::string printable;
  for (int c = 32; c < 127; ++c) printable.push_back(static_cast<char>(c));
  EXPECT_EQ(UrlEncode(printable), Python(kQuotePy, {printable}));
  auto round = UrlDecode(UrlEncode(all));
  ASSERT_TRUE(round.ok());
  EXPECT_EQ(*round, all);
}

TEST(AzureSas, BadInputIsAnError) {
  EXPECT_FALSE(DeriveDeviceKey("not base64!!", "dev").ok());
  EXPECT_FALSE(DeriveDeviceKey("", "dev").ok());
  EXPECT_FALSE(DeriveDeviceKey("c2VjcmV0", "").ok());
  EXPECT_FALSE(MakeSasToken("hub/devices/d", "%%%", 1).ok());
  EXPECT_FALSE(MakeSasToken("", "c2VjcmV0", 1).ok());
  EXPECT_FALSE(UrlDecode("abc%2").ok());
  EXPECT_FALSE(UrlDecode("abc%zz").ok());
  EXPECT_EQ(*UrlDecode("a%2Fb%2fc"), "a/b/c");
}

TEST(AzureSas, DeviceboundChannelIsTheDecodedChannelProperty) {
  EXPECT_EQ(*DeviceboundChannel("%24.mid=7&%24.to=%2Fdevices%2Fd1&channel=led%2Fred"), "led/red");
  EXPECT_EQ(*DeviceboundChannel("%63hannel=fan&x"), "fan");  // the name is decoded too
  EXPECT_EQ(*DeviceboundChannel("channel="), "");
  EXPECT_EQ(*DeviceboundChannel(""), "");
  EXPECT_EQ(*DeviceboundChannel("%24.mid=7&channels=no&Channel=no&&=&%zz=1"), "");
  EXPECT_EQ(*DeviceboundChannel("channel=a=b"), "a=b");
  auto bad = DeviceboundChannel("%24.mid=7&channel=led%2");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(bad.error().message.find("channel"), std::string::npos) << bad.error().message;
  EXPECT_FALSE(DeviceboundChannel("channel=a&channel=a").ok());
  EXPECT_FALSE(DeviceboundChannel("channel=%zz").ok());
  // Not a channel a device topic can carry: refused, counted by the upstream as such.
  for (const char* bad : {"led%2F%2B", "%23", "%00", "tab%09", "%C3", "a%2F%2Fb", "%2Fa", "a%2F"}) {
    EXPECT_FALSE(DeviceboundChannel(std::string("channel=") + bad).ok()) << bad;
  }
  // Whatever UrlEncode writes of a valid channel, DeviceboundChannel reads back.
  const std::string channel = "temp/in side;\xC3\xBC\xE2\x82\xAC=&%";
  EXPECT_EQ(*DeviceboundChannel("%24.mid=1&channel=" + UrlEncode(channel) + "&x=y"), channel);
}

}  // namespace
}  // namespace edgetrust::forwarding
