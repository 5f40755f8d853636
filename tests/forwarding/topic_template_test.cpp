// down_topic templates: the filter subscribed upstream and what a delivered topic maps back to.
#include "topic_template.h"

#include <gtest/gtest.h>

namespace edgetrust::forwarding::internal {
namespace {

TEST(DownTopicMatcher, MapsATopicBackToDeviceAndChannel) {
  auto m = DownTopicMatcher::Create("cmd/{site}/{group}/{device}/{channel}", "edge-01");
  ASSERT_TRUE(m.ok()) << m.error().ToString();
  EXPECT_EQ(m->filter(), "cmd/edge-01/+/+/#");
  auto match = m->Parse("cmd/edge-01/meters/dev-2/led/red");
  ASSERT_TRUE(match.has_value());
  EXPECT_EQ(match->device_id, "dev-2");
  EXPECT_EQ(match->channel, "led/red");
  EXPECT_FALSE(m->Parse("cmd/edge-02/meters/dev-2/led"));  // another site
  EXPECT_FALSE(m->Parse("cmd/edge-01/meters/dev-2"));      // no channel level
  EXPECT_FALSE(m->Parse("cmd/edge-01/meters/dev-2/led/"));  // an empty one
  EXPECT_FALSE(m->Parse("cmd/edge-01//dev-2/led"));         // an empty group
  EXPECT_FALSE(m->Parse("cmd/edge-01/meters/-dev/led"));    // not a device id
}

TEST(DownTopicMatcher, ADeviceNamedTwiceMustBeTheSameDevice) {
  auto m = DownTopicMatcher::Create("to/{device}/from/{device}", "edge-01");
  ASSERT_TRUE(m.ok()) << m.error().ToString();
  EXPECT_EQ(m->filter(), "to/+/from/+");
  auto same = m->Parse("to/dev-1/from/dev-1");
  ASSERT_TRUE(same.has_value());
  EXPECT_EQ(same->device_id, "dev-1");
  EXPECT_EQ(same->channel, "");
  EXPECT_FALSE(m->Parse("to/dev-1/from/dev-2"));
  EXPECT_FALSE(m->Parse("to//from/dev-2"));
}

TEST(DownTopicMatcher, AWildcardFirstLevelNeverMatchesADollarTopic) {
  auto m = DownTopicMatcher::Create("{group}/{device}", "edge-01");
  ASSERT_TRUE(m.ok()) << m.error().ToString();
  EXPECT_TRUE(m->Parse("meters/dev-1"));
  EXPECT_FALSE(m->Parse("$SYS/dev-1"));  // a broker would not deliver it on "+/+"
  auto literal = DownTopicMatcher::Create("$aws/{device}", "edge-01");
  ASSERT_TRUE(literal.ok()) << literal.error().ToString();
  EXPECT_TRUE(literal->Parse("$aws/dev-1"));
}

TEST(DownTopicMatcher, RefusesTemplatesNoBrokerWouldTake) {
  EXPECT_FALSE(DownTopicMatcher::Create("cmd/{channel}", "edge-01").ok());  // no {device}
  EXPECT_FALSE(DownTopicMatcher::Create("cmd/{channel}/{device}", "edge-01").ok());
  EXPECT_FALSE(DownTopicMatcher::Create("cmd/x{device}", "edge-01").ok());
  EXPECT_FALSE(DownTopicMatcher::Create("cmd/x{device}/{device}", "edge-01").ok());
  EXPECT_FALSE(DownTopicMatcher::Create("cmd/{group}x/{device}", "edge-01").ok());
  auto site_in_level = DownTopicMatcher::Create("cmd/s-{site}/{device}", "edge-01");
  ASSERT_TRUE(site_in_level.ok()) << site_in_level.error().ToString();
  EXPECT_EQ(site_in_level->filter(), "cmd/s-edge-01/+");
  EXPECT_FALSE(DownTopicMatcher::Create("cmd/+/{device}", "edge-01").ok());
  auto bad_text = DownTopicMatcher::Create("cmd/\xff/{device}", "edge-01");
  ASSERT_FALSE(bad_text.ok());
  EXPECT_NE(bad_text.error().message.find("UTF-8"), std::string::npos) << bad_text.error().message;
  EXPECT_FALSE(DownTopicMatcher::Create("cmd/tab\there/{device}", "edge-01").ok());
}

}  // namespace
}  // namespace edgetrust::forwarding::internal
