#include <gtest/gtest.h>

#include <atomic>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "edgetrust/protocol/topics.h"

// Counts heap allocations so the test can prove the role checks never allocate. GCC cannot see
// that the replaced operator new is malloc-backed and warns about every delete in this file.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
static std::atomic<size_t> g_allocations{0};

void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace edgetrust::protocol {
namespace {

constexpr std::string_view kP = "et";
constexpr std::string_view kMe = "dev-001";

TEST(Topics, BuildAndParseEveryKind) {
  const std::vector<std::pair<TopicKind, std::string>> cases = {
      {TopicKind::kEnrollReq, "et/dev-001/enroll/req"}, {TopicKind::kEnrollRes, "et/dev-001/enroll/res"},
      {TopicKind::kCertReq, "et/dev-001/cert/req"},     {TopicKind::kCertRes, "et/dev-001/cert/res"},
      {TopicKind::kState, "et/dev-001/state"},          {TopicKind::kUp, "et/dev-001/up"},
      {TopicKind::kDown, "et/dev-001/down"},            {TopicKind::kOtaOffer, "et/dev-001/ota/offer"},
      {TopicKind::kOtaGet, "et/dev-001/ota/get"},       {TopicKind::kOtaChunk, "et/dev-001/ota/chunk"},
      {TopicKind::kOtaStatus, "et/dev-001/ota/status"}, {TopicKind::kLifecycle, "et/dev-001/lifecycle"},
  };
  for (const auto& [kind, topic] : cases) {
    EXPECT_EQ(BuildTopic(kP, kMe, kind), topic);
    auto parsed = ParseDeviceTopic(kP, topic);
    ASSERT_TRUE(parsed) << topic;
    EXPECT_EQ(parsed->device_id, kMe);
    EXPECT_EQ(parsed->kind, kind);
    EXPECT_TRUE(parsed->channel.empty());
  }
  EXPECT_EQ(BuildTopic(kP, kMe, TopicKind::kUp, "telemetry/temp"), "et/dev-001/up/telemetry/temp");
  EXPECT_EQ(BuildTopic(kP, kMe, TopicKind::kDown, "cmd"), "et/dev-001/down/cmd");
  EXPECT_EQ(BuildTopic(kP, kMe, TopicKind::kState, "ignored"), "et/dev-001/state");
  auto up = ParseDeviceTopic(kP, "et/dev-001/up/telemetry/temp");
  ASSERT_TRUE(up);
  EXPECT_EQ(up->kind, TopicKind::kUp);
  EXPECT_EQ(up->channel, "telemetry/temp");
  auto multi = ParseDeviceTopic("site/a", "site/a/x.y_z-1/down/c");
  ASSERT_TRUE(multi);
  EXPECT_EQ(multi->device_id, "x.y_z-1");
  EXPECT_EQ(multi->channel, "c");
  EXPECT_EQ(AdminRequestTopic(kP), "et/_admin/v1/req");
  EXPECT_EQ(AdminResponseTopic(kP), "et/_admin/v1/res");
}

TEST(Topics, ChannelFromOutside) {
  EXPECT_TRUE(IsValidChannel("led"));
  EXPECT_TRUE(IsValidChannel("temp/in side/\xC3\xBC"));
  for (const char* bad : {"", "/led", "led/", "a//b", "a/+", "#", "tab\there", "\xC3"}) {
    EXPECT_FALSE(IsValidChannel(bad)) << bad;
  }
  EXPECT_FALSE(IsValidChannel(std::string("a\0b", 3)));
}

TEST(Topics, ParseRejects) {
  for (const char* t : {
           "", "et", "et/", "et/dev-001", "et/dev-001/", "et/dev-001/nope", "et/dev-001/enroll",
           "et/dev-001/enroll/req/x", "et/dev-001/state/", "et/dev-001/upx", "et/dev-001/up/",
           "et/dev-001/up//a", "et/dev-001/up/a/", "et/dev-001/down/+", "et/dev-001/down/#",
           "et/+/state", "et/#", "et//state", "et/_admin/state", "et/-bad/state", "et/a b/state",
           "xt/dev-001/state", "etx/dev-001/state", "/et/dev-001/state", "$SYS/dev-001/state",
           "et/_admin/v1/req",
       }) {
    EXPECT_FALSE(ParseDeviceTopic(kP, t)) << t;
  }
  EXPECT_FALSE(ParseDeviceTopic(kP, "et/" + std::string(65, 'a') + "/state"));
  EXPECT_TRUE(ParseDeviceTopic(kP, "et/" + std::string(64, 'a') + "/state"));
  EXPECT_FALSE(ParseDeviceTopic("", "/dev-001/state"));
}

struct Case {
  Role role;
  const char* topic;
  bool allowed;
};

void CheckPublish(const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    EXPECT_EQ(MayPublish(c.role, kP, kMe, c.topic), c.allowed)
        << RoleName(c.role) << " publish " << c.topic;
  }
}

void CheckSubscribe(const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    EXPECT_EQ(MaySubscribe(c.role, kP, kMe, c.topic), c.allowed)
        << RoleName(c.role) << " subscribe " << c.topic;
  }
}

TEST(Roles, EnrollingPublish) {
  const Role r = Role::kEnrolling;
  CheckPublish({
      {r, "et/dev-001/enroll/req", true},
      {r, "et/dev-002/enroll/req", false},
      {r, "et/dev-001/enroll/res", false},
      {r, "et/dev-001/state", false},
      {r, "et/dev-001/up/x", false},
      {r, "et/dev-001/cert/req", false},
      {r, "et/dev-001/ota/get", false},
      {r, "et/_admin/v1/req", false},
      {r, "$CONTROL/edgetrust/v1", false},
      {r, "et/dev-001/enroll/+", false},
      {r, "other/topic", false},
  });
}

TEST(Roles, EnrollingSubscribe) {
  const Role r = Role::kEnrolling;
  CheckSubscribe({
      {r, "et/dev-001/enroll/res", true},
      {r, "et/dev-001/enroll/req", false},
      {r, "et/dev-001/enroll/+", false},
      {r, "et/dev-001/#", false},
      {r, "et/+/enroll/res", false},
      {r, "et/dev-002/enroll/res", false},
      {r, "et/dev-001/cert/res", false},
      {r, "et/dev-001/down/#", false},
      {r, "#", false},
      {r, "$SYS/#", false},
  });
}

TEST(Roles, DevicePublish) {
  const Role r = Role::kDevice;
  CheckPublish({
      {r, "et/dev-001/up", true},
      {r, "et/dev-001/up/telemetry", true},
      {r, "et/dev-001/up/a/b/c", true},
      {r, "et/dev-001/state", true},
      {r, "et/dev-001/cert/req", true},
      {r, "et/dev-001/ota/get", true},
      {r, "et/dev-001/ota/status", true},
      {r, "et/dev-001/enroll/req", false},
      {r, "et/dev-001/enroll/res", false},
      {r, "et/dev-001/cert/res", false},
      {r, "et/dev-001/down/x", false},
      {r, "et/dev-001/ota/offer", false},
      {r, "et/dev-001/ota/chunk", false},
      {r, "et/dev-001/lifecycle", false},
      {r, "et/dev-002/up/telemetry", false},
      {r, "et/dev-002/state", false},
      {r, "et/dev-001/up/+", false},
      {r, "et/dev-001/up/#", false},
      {r, "et/dev-001/up//x", false},
      {r, "et/_admin/v1/req", false},
      {r, "et/_admin/v1/res", false},
      {r, "$CONTROL/edgetrust/v1", false},
      {r, "$SYS/broker/uptime", false},
      {r, "et/dev-001", false},
      {r, "ET/dev-001/state", false},
      {r, "", false},
  });
}

TEST(Roles, DeviceSubscribe) {
  const Role r = Role::kDevice;
  CheckSubscribe({
      {r, "et/dev-001/down/#", true},
      {r, "et/dev-001/down", true},
      {r, "et/dev-001/down/cmd", true},
      {r, "et/dev-001/down/+", true},
      {r, "et/dev-001/down/+/x/#", true},
      {r, "et/dev-001/cert/res", true},
      {r, "et/dev-001/ota/offer", true},
      {r, "et/dev-001/ota/chunk", true},
      {r, "et/dev-001/lifecycle", true},
      {r, "#", false},
      {r, "+", false},
      {r, "et/#", false},
      {r, "et/+", false},
      {r, "et/+/#", false},
      {r, "et/+/down/#", false},
      {r, "et/+/down/cmd", false},
      {r, "+/dev-001/down/#", false},
      {r, "+/+/down/#", false},
      {r, "et/dev-001/#", false},
      {r, "et/dev-001/+", false},
      {r, "et/dev-001/ota/+", false},
      {r, "et/dev-001/+/res", false},
      {r, "et/dev-001/+/#", false},
      {r, "et/dev-002/down/#", false},
      {r, "et/dev-002/lifecycle", false},
      {r, "et/dev-001/up/#", false},
      {r, "et/dev-001/state", false},
      {r, "et/dev-001/enroll/res", false},
      {r, "et/dev-001/cert/req", false},
      {r, "et/_admin/v1/res", false},
      {r, "et/_admin/#", false},
      {r, "$SYS/#", false},
      {r, "$SYS/broker/uptime", false},
      {r, "$CONTROL/edgetrust/v1/response", false},
      {r, "$CONTROL/#", false},
      {r, "et/dev-001/down/#/x", false},  // malformed
      {r, "et/dev-001/down#", false},     // malformed
      {r, "et/dev-001/down/a+", false},   // malformed
      {r, "", false},
  });
  // An invalid own id never grants anything (e.g. a CN that slipped through with a '/').
  EXPECT_FALSE(MaySubscribe(Role::kDevice, kP, "a/b", "et/a/b/down/#"));
  EXPECT_FALSE(MaySubscribe(Role::kDevice, kP, "+", "et/+/down/#"));
  EXPECT_FALSE(MaySubscribe(Role::kDevice, kP, "", "et//down/#"));
  EXPECT_FALSE(MayPublish(Role::kDevice, kP, "+", "et/+/state"));
}

TEST(Roles, GatewayPublish) {
  const Role r = Role::kGateway;
  CheckPublish({
      {r, "et/dev-001/enroll/res", true},
      {r, "et/dev-777/cert/res", true},
      {r, "et/dev-777/ota/offer", true},
      {r, "et/dev-777/ota/chunk", true},
      {r, "et/dev-777/lifecycle", true},
      {r, "et/dev-777/down/cmd/x", true},
      {r, "et/dev-777/state", true},
      {r, "et/_admin/v1/res", true},
      {r, "$CONTROL/edgetrust/v1", true},
      {r, "et/_admin/v1/req", false},
      {r, "et/_admin/v1/res/x", false},
      {r, "$CONTROL/edgetrust/v1/response", false},
      {r, "$CONTROL/dynamic-security/v1", false},
      {r, "$SYS/x", false},
      {r, "et/dev-777/bogus", false},
      {r, "et/+/down/x", false},
      {r, "other/x", false},
  });
}

TEST(Roles, GatewaySubscribe) {
  const Role r = Role::kGateway;
  CheckSubscribe({
      {r, "et/+/enroll/req", true},
      {r, "et/+/cert/req", true},
      {r, "et/+/state", true},
      {r, "et/+/up/#", true},
      {r, "et/+/ota/get", true},
      {r, "et/+/ota/status", true},
      {r, "et/+/#", true},
      {r, "et/dev-001/up/#", true},
      {r, "et/_admin/v1/req", true},
      {r, "$CONTROL/edgetrust/v1/response", true},
      {r, "et/#", false},
      {r, "#", false},
      {r, "+/+/state", false},
      {r, "et/_admin/v1/+", true},  // covered by et/+/#: both are gateway topics
      {r, "et", false},
      {r, "$CONTROL/edgetrust/v1", false},
      {r, "$CONTROL/edgetrust/#", false},
      {r, "$CONTROL/+/v1/response", false},
      {r, "$SYS/#", false},
      {r, "other/#", false},
  });
}

TEST(Roles, AdminPublishAndSubscribe) {
  const Role r = Role::kAdmin;
  CheckPublish({
      {r, "et/_admin/v1/req", true},
      {r, "$CONTROL/edgetrust/v1", true},
      {r, "et/_admin/v1/res", false},
      {r, "et/dev-001/lifecycle", false},
      {r, "et/dev-001/enroll/res", false},
      {r, "$CONTROL/dynamic-security/v1", false},
      {r, "$SYS/x", false},
  });
  CheckSubscribe({
      {r, "et/_admin/v1/res", true},
      {r, "$CONTROL/edgetrust/v1/response", true},
      {r, "et/_admin/v1/req", false},
      {r, "et/_admin/v1/+", false},
      {r, "et/_admin/#", false},
      {r, "et/+/state", false},
      {r, "#", false},
      {r, "$SYS/#", false},
      {r, "$CONTROL/#", false},
  });
}

TEST(Roles, ControlTopicOnlyForGatewayAndAdmin) {
  for (Role r : {Role::kEnrolling, Role::kDevice}) {
    EXPECT_FALSE(MayPublish(r, kP, kMe, kControlTopic));
    EXPECT_FALSE(MaySubscribe(r, kP, kMe, kControlResponseTopic));
    EXPECT_FALSE(MayReceive(r, kP, kMe, kControlResponseTopic));
  }
  for (Role r : {Role::kGateway, Role::kAdmin}) {
    EXPECT_TRUE(MayPublish(r, kP, kMe, kControlTopic));
    EXPECT_TRUE(MaySubscribe(r, kP, kMe, kControlResponseTopic));
    EXPECT_TRUE(MayReceive(r, kP, kMe, kControlResponseTopic));
  }
}

TEST(Roles, SysIsRefusedForEveryone) {
  for (Role r : {Role::kEnrolling, Role::kDevice, Role::kGateway, Role::kAdmin}) {
    for (const char* t : {"$SYS/#", "$SYS/broker/uptime", "$SYS/+/x", "$share/g/et/+/state"}) {
      EXPECT_FALSE(MaySubscribe(r, kP, kMe, t)) << RoleName(r) << " " << t;
    }
    EXPECT_FALSE(MayReceive(r, kP, kMe, "$SYS/broker/uptime"));
    EXPECT_FALSE(MayPublish(r, kP, kMe, "$SYS/broker/uptime"));
  }
}

TEST(Roles, MayReceive) {
  EXPECT_TRUE(MayReceive(Role::kDevice, kP, kMe, "et/dev-001/down/cmd"));
  EXPECT_TRUE(MayReceive(Role::kDevice, kP, kMe, "et/dev-001/lifecycle"));
  EXPECT_FALSE(MayReceive(Role::kDevice, kP, kMe, "et/dev-002/down/cmd"));
  EXPECT_FALSE(MayReceive(Role::kDevice, kP, kMe, "et/dev-001/up/x"));
  EXPECT_FALSE(MayReceive(Role::kDevice, kP, kMe, "et/dev-001/down/+"));
  EXPECT_TRUE(MayReceive(Role::kEnrolling, kP, kMe, "et/dev-001/enroll/res"));
  EXPECT_FALSE(MayReceive(Role::kEnrolling, kP, kMe, "et/dev-001/cert/res"));
  EXPECT_TRUE(MayReceive(Role::kGateway, kP, kMe, "et/dev-9/state"));
  EXPECT_TRUE(MayReceive(Role::kGateway, kP, kMe, "et/_admin/v1/req"));
  EXPECT_TRUE(MayReceive(Role::kAdmin, kP, kMe, "et/_admin/v1/res"));
  EXPECT_FALSE(MayReceive(Role::kAdmin, kP, kMe, "et/dev-9/state"));
}

TEST(Roles, OtherPrefix) {
  EXPECT_TRUE(MayPublish(Role::kDevice, "site/7", kMe, "site/7/dev-001/state"));
  EXPECT_FALSE(MayPublish(Role::kDevice, "site/7", kMe, "et/dev-001/state"));
  EXPECT_TRUE(MaySubscribe(Role::kDevice, "site/7", kMe, "site/7/dev-001/down/#"));
  EXPECT_FALSE(MaySubscribe(Role::kDevice, "site/7", kMe, "site/+/dev-001/down/#"));
  EXPECT_TRUE(MaySubscribe(Role::kGateway, "site/7", kMe, "site/7/+/up/#"));
  EXPECT_FALSE(MaySubscribe(Role::kGateway, "site/7", kMe, "site/#"));
  EXPECT_TRUE(MayPublish(Role::kAdmin, "site/7", kMe, "site/7/_admin/v1/req"));
  EXPECT_FALSE(MayPublish(Role::kAdmin, "site/7", kMe, "et/_admin/v1/req"));
}

TEST(Filters, ValidityAndMatching) {
  for (const char* f : {"#", "+", "a/#", "a/+/b", "+/+", "/", "a//b", "$SYS/#"}) {
    EXPECT_TRUE(IsValidTopicFilter(f)) << f;
  }
  for (const char* f : {"", "a#", "a/#/b", "a/b+", "+a", "##", "a/++"}) {
    EXPECT_FALSE(IsValidTopicFilter(f)) << f;
  }
  EXPECT_TRUE(TopicMatches("a/#", "a"));
  EXPECT_TRUE(TopicMatches("a/#", "a/b/c"));
  EXPECT_TRUE(TopicMatches("a/+/c", "a/b/c"));
  EXPECT_FALSE(TopicMatches("a/+/c", "a/b/d"));
  EXPECT_FALSE(TopicMatches("a/+", "a"));
  EXPECT_TRUE(TopicMatches("+/+", "/x"));
  EXPECT_FALSE(TopicMatches("#", "$SYS/x"));
  EXPECT_FALSE(TopicMatches("+/x", "$SYS/x"));
  EXPECT_TRUE(TopicMatches("$SYS/#", "$SYS/x"));
  EXPECT_FALSE(TopicMatches("a/b", "a/+"));
}

// Whatever a role may subscribe, every concrete topic it then matches is one it may receive: the
// coverage rule and the per-message check agree.
TEST(Filters, SubscribeImpliesReceive) {
  const std::vector<std::string> topics = {
      "et/dev-001/down/x", "et/dev-001/down", "et/dev-001/cert/res", "et/dev-001/ota/offer",
      "et/dev-001/up/x",   "et/dev-002/down/x", "et/_admin/v1/req", "et/_admin/v1/res",
      "et/dev-001/state",  "$CONTROL/edgetrust/v1/response", "$SYS/x", "et", "other/x"};
  const std::vector<std::string> filters = {
      "#", "et/#", "et/+/#", "et/+/down/#", "et/dev-001/#", "et/dev-001/down/#", "et/dev-001/+/res",
      "et/dev-001/ota/+", "et/_admin/v1/+", "$CONTROL/edgetrust/v1/response", "et/+/state",
      "et/dev-001/cert/res"};
  for (Role r : {Role::kEnrolling, Role::kDevice, Role::kGateway, Role::kAdmin}) {
    for (const std::string& f : filters) {
      if (!MaySubscribe(r, kP, kMe, f)) continue;
      for (const std::string& t : topics) {
        if (TopicMatches(f, t)) {
          EXPECT_TRUE(MayReceive(r, kP, kMe, t)) << RoleName(r) << " " << f << " -> " << t;
        }
      }
    }
  }
}

TEST(Performance, ChecksNeverAllocate) {
  // The plugin runs these on every publish and subscribe: no heap allocation on any path.
  const std::vector<std::string> topics = {"et/dev-001/up/telemetry/temp", "et/dev-002/state", "#",
                                           "et/+/down/#", "$SYS/broker/uptime", "et/dev-001/down/#"};
  size_t before = g_allocations.load();
  int allowed = 0;
  for (int i = 0; i < 1000; ++i) {
    for (const std::string& t : topics) {
      for (Role r : {Role::kEnrolling, Role::kDevice, Role::kGateway, Role::kAdmin}) {
        allowed += MayPublish(r, kP, kMe, t);
        allowed += MaySubscribe(r, kP, kMe, t);
        allowed += MayReceive(r, kP, kMe, t);
      }
      allowed += ParseDeviceTopic(kP, t).has_value();
    }
  }
  EXPECT_EQ(g_allocations.load(), before);
  EXPECT_GT(allowed, 0);

  // CPU time, not wall time: the figure stays meaningful on a busy machine.
  std::clock_t start = std::clock();
  constexpr int kRounds = 1000000;
  for (int i = 0; i < kRounds; ++i) {
    allowed += MayPublish(Role::kDevice, kP, kMe, "et/dev-001/up/telemetry/temp");
    allowed += MaySubscribe(Role::kDevice, kP, kMe, "et/dev-001/down/#");
  }
  double ns = 1e9 * static_cast<double>(std::clock() - start) / CLOCKS_PER_SEC;
  std::printf("MayPublish + MaySubscribe (device): %.1f ns CPU per pair\n", ns / kRounds);
}

}  // namespace
}  // namespace edgetrust::protocol
