// Any bytes as what an upstream hands back for the way down: "template\ntopic\nbag", a policy's
// down_topic, a topic an upstream broker delivered, and an Azure devicebound property bag.
// Nothing throws, hangs or crashes; a down_topic that is accepted gives a filter the broker
// accepts; a topic that is placed names a valid device, is one the filter matches, and is what the
// template expands to for that device and channel; the bag's channel and any percent-decoding
// survive a re-encoding; IsValidMqttUtf8 agrees with mosquitto_validate_utf8.
#include <mosquitto.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "edgetrust/common/bytes.h"
#include "edgetrust/forwarding/azure_sas.h"
#include "edgetrust/protocol/topics.h"
#include "topic_template.h"

using namespace edgetrust;
using namespace edgetrust::forwarding;
using namespace edgetrust::forwarding::internal;

namespace {

constexpr std::string_view kSite = "edge-01";

void Check(bool ok) {
  if (!ok) std::abort();
}

std::string_view NextPart(std::string_view* rest) {
  const size_t nl = rest->find('\n');
  std::string_view part = rest->substr(0, nl);
  *rest = nl == std::string_view::npos ? std::string_view{} : rest->substr(nl + 1);
  return part;
}

bool IsTopicName(const std::string& topic) {
  return mosquitto_validate_utf8(topic.data(), static_cast<int>(topic.size())) == MOSQ_ERR_SUCCESS &&
         mosquitto_pub_topic_check2(topic.data(), topic.size()) == MOSQ_ERR_SUCCESS;
}

void DownTopic(std::string_view tmpl, std::string_view topic_bytes) {
  auto matcher = DownTopicMatcher::Create(tmpl, kSite);
  if (!matcher.ok()) {
    Check(!matcher.error().message.empty());
    return;
  }
  const std::string& filter = matcher->filter();
  Check(mosquitto_validate_utf8(filter.data(), static_cast<int>(filter.size())) == MOSQ_ERR_SUCCESS);
  Check(mosquitto_sub_topic_check2(filter.data(), filter.size()) == MOSQ_ERR_SUCCESS);

  const std::string topic(topic_bytes);
  auto match = matcher->Parse(topic);
  if (!match) return;
  Check(IsValidDeviceId(match->device_id));
  if (IsTopicName(topic)) {
    bool matches = false;
    Check(mosquitto_topic_matches_sub2(filter.data(), filter.size(), topic.data(), topic.size(),
                                       &matches) == MOSQ_ERR_SUCCESS);
    Check(matches);
  }
  // With only {site}, {device} and {channel} in it, the template rebuilds the topic.
  if (tmpl.find("{group}") == std::string_view::npos &&
      tmpl.find("{model}") == std::string_view::npos &&
      tmpl.find("{manufacturer}") == std::string_view::npos) {
    auto again = ExpandTopic(
        tmpl, TemplateFields{.site = kSite, .device = match->device_id, .channel = match->channel});
    Check(again.ok() && *again == topic);
  }
}

// Our check of topic text against the broker's own (which alone would let 65536 bytes by).
void Utf8(std::string_view bytes) {
  if (bytes.size() > 65535) return;
  const std::string text(bytes);
  const bool ours = IsValidMqttUtf8(text);
  const bool theirs =
      mosquitto_validate_utf8(text.c_str(), static_cast<int>(text.size())) == MOSQ_ERR_SUCCESS;
  Check(ours == theirs);
}

void PropertyBag(std::string_view bag) {
  auto channel = DeviceboundChannel(bag);
  if (!channel.ok()) {
    Check(!channel.error().message.empty());
  } else {
    Check(channel->empty() || protocol::IsValidChannel(*channel));
    auto again = DeviceboundChannel("%24.mid=1&channel=" + UrlEncode(*channel));
    Check(again.ok() && *again == *channel);
  }
  auto decoded = UrlDecode(bag);
  if (decoded.ok()) {
    auto again = UrlDecode(UrlEncode(*decoded));
    Check(again.ok() && *again == *decoded);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  const std::string_view tmpl = NextPart(&rest);
  const std::string_view topic = NextPart(&rest);
  DownTopic(tmpl, topic);
  PropertyBag(rest);
  Utf8(rest);
  return 0;
}
