// Unit tests of the gateway's small pieces: command line and rate limiter.
#include <gtest/gtest.h>

#include "edgetrust/gateway/options.h"
#include "edgetrust/gateway/rate_limiter.h"

namespace edgetrust::gateway {
namespace {

std::vector<std::string> Base() {
  return {"--policy", "p.yaml", "--store", "s", "--broker", "mqtts://127.0.0.1:8884",
          "--ca", "ca.pem", "--cert", "g.pem", "--key", "g.key"};
}

TEST(GatewayOptions, ParsesTheDocumentedFlags) {
  auto args = Base();
  args.insert(args.end(), {"--site-ca", "x.pem", "--site-ca-key", "x.key", "--log-level", "warn",
                           "--rate", "3/7"});
  auto o = ParseGatewayOptions(args);
  ASSERT_TRUE(o.ok()) << o.error().ToString();
  EXPECT_EQ(o->broker_host, "127.0.0.1");
  EXPECT_EQ(o->broker_port, 8884);
  EXPECT_EQ(o->site_ca_key_file, "x.key");
  EXPECT_EQ(o->log_level, LogLevel::kWarn);
  EXPECT_EQ(o->rate_burst, 3);
  EXPECT_EQ(o->rate_window_seconds, 7);
  auto v6 = Base();
  v6[5] = "mqtts://[::1]";
  ASSERT_TRUE(ParseGatewayOptions(v6).ok());
  EXPECT_EQ(ParseGatewayOptions(v6)->broker_host, "::1");
  EXPECT_EQ(ParseGatewayOptions(v6)->broker_port, 8883);
}

TEST(GatewayOptions, RefusesBadInput) {
  for (auto [i, bad] : std::vector<std::pair<int, std::string>>{
           {5, "mqtt://127.0.0.1"}, {5, "mqtts://:1"}, {5, "mqtts://h:99999"}, {5, "mqtts://[::1"}}) {
    auto a = Base();
    a[i] = bad;
    EXPECT_FALSE(ParseGatewayOptions(a).ok()) << bad;
  }
  auto a = Base();
  a.resize(10);  // no --key
  EXPECT_FALSE(ParseGatewayOptions(a).ok());
  a = Base();
  a.push_back("--bogus");
  EXPECT_FALSE(ParseGatewayOptions(a).ok());
  a = Base();
  a.insert(a.end(), {"--rate", "5"});
  EXPECT_FALSE(ParseGatewayOptions(a).ok());
  EXPECT_NE(GatewayUsage().find("site-ca.key beside the policy"), std::string::npos);
}

TEST(RateLimiter, BurstThenRefillPerKey) {
  RateLimiter r(5, 10);
  for (int i = 0; i < 5; i++) EXPECT_TRUE(r.Allow("a", 1000));
  EXPECT_FALSE(r.Allow("a", 1000));
  EXPECT_TRUE(r.Allow("b", 1000));          // buckets are per device
  EXPECT_FALSE(r.Allow("a", 2999));         // one token takes 2 s
  EXPECT_TRUE(r.Allow("a", 3000));
  EXPECT_FALSE(r.Allow("a", 3000));
  r.Prune(3000);
  EXPECT_EQ(r.size(), 1u);                  // b is full again and forgotten; a is not
  r.Prune(100000);
  EXPECT_EQ(r.size(), 0u);
}

}  // namespace
}  // namespace edgetrust::gateway
