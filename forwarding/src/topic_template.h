// Topic templates of the policy: `topic` maps a device message upwards, `down_topic` is the
// filter subscribed upstream and maps a down-link message back to (device, channel).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "edgetrust/common/result.h"

namespace edgetrust::forwarding::internal {

struct TemplateFields {
  std::string_view site;
  std::string_view device;
  std::string_view channel;
  std::string_view group;
  std::string_view model;
  std::string_view manufacturer;
};

// Replaces {site} {device} {channel} {group} {model} {manufacturer}. kInvalidArgument for an
// unknown or unclosed placeholder.
Result<std::string> ExpandTopic(std::string_view tmpl, const TemplateFields& fields);

// A down_topic such as "cmd/{site}/{device}/{channel}". {device} must be a whole level and
// {channel}, when present, the whole last level (it stands for one or more levels); {site} is
// known, {group}/{model}/{manufacturer} stand for any one level.
class DownTopicMatcher {
 public:
  static Result<DownTopicMatcher> Create(std::string_view tmpl, std::string_view site);

  // The subscription filter ("cmd/edge-01/+/#").
  const std::string& filter() const { return filter_; }

  struct Match {
    std::string device_id;
    std::string channel;
  };
  // nullopt when the topic does not fit the template or the device id is invalid.
  std::optional<Match> Parse(std::string_view topic) const;

 private:
  enum class LevelKind { kLiteral, kDevice, kAny, kChannel };
  struct Level {
    LevelKind kind;
    std::string text;
  };
  std::vector<Level> levels_;
  std::string filter_;
};

std::vector<std::string_view> SplitLevels(std::string_view topic);

}  // namespace edgetrust::forwarding::internal
