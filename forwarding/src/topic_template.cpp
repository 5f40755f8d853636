#include "topic_template.h"

#include "edgetrust/common/bytes.h"
#include "edgetrust/protocol/topics.h"

namespace edgetrust::forwarding::internal {

std::vector<std::string_view> SplitLevels(std::string_view topic) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t slash = topic.find('/', start);
    if (slash == std::string_view::npos) {
      out.push_back(topic.substr(start));
      return out;
    }
    out.push_back(topic.substr(start, slash - start));
    start = slash + 1;
  }
}

Result<std::string> ExpandTopic(std::string_view tmpl, const TemplateFields& f) {
  std::string out;
  out.reserve(tmpl.size() + f.device.size() + f.channel.size() + f.site.size());
  for (size_t i = 0; i < tmpl.size();) {
    if (tmpl[i] != '{') {
      out.push_back(tmpl[i++]);
      continue;
    }
    size_t close = tmpl.find('}', i);
    if (close == std::string_view::npos) {
      return MakeError(ErrorCode::kInvalidArgument, "topic template has an unclosed '{'");
    }
    std::string_view name = tmpl.substr(i + 1, close - i - 1);
    if (name == "site") {
      out += f.site;
    } else if (name == "device") {
      out += f.device;
    } else if (name == "channel") {
      out += f.channel;
    } else if (name == "group") {
      out += f.group;
    } else if (name == "model") {
      out += f.model;
    } else if (name == "manufacturer") {
      out += f.manufacturer;
    } else {
      return MakeError(ErrorCode::kInvalidArgument,
                       "topic template has an unknown placeholder {" + std::string(name) + "}");
    }
    i = close + 1;
  }
  return out;
}

Result<DownTopicMatcher> DownTopicMatcher::Create(std::string_view tmpl, std::string_view site) {
  DownTopicMatcher m;
  bool has_device = false;
  auto levels = SplitLevels(tmpl);
  for (size_t i = 0; i < levels.size(); ++i) {
    std::string_view l = levels[i];
    Level level{LevelKind::kLiteral, {}};
    if (l == "{device}") {
      level.kind = LevelKind::kDevice;
      has_device = true;
    } else if (l == "{channel}") {
      if (i + 1 != levels.size()) {
        return MakeError(ErrorCode::kInvalidArgument, "down_topic: {channel} must be the last level");
      }
      level.kind = LevelKind::kChannel;
    } else if (l == "{group}" || l == "{model}" || l == "{manufacturer}") {
      level.kind = LevelKind::kAny;
    } else {
      std::string without_site(l);
      for (size_t at; (at = without_site.find("{site}")) != std::string::npos;) {
        without_site.erase(at, 6);
      }
      ET_ASSIGN_OR_RETURN(level.text, ExpandTopic(l, TemplateFields{.site = site}));
      if (without_site.find_first_of("{}") != std::string::npos ||
          level.text.find_first_of("{}+#") != std::string::npos) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "down_topic: placeholders other than {site} must fill a whole level");
      }
      if (!IsValidMqttUtf8(level.text)) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "down_topic: not UTF-8 without control characters, as MQTT topics are");
      }
    }
    m.levels_.push_back(std::move(level));
  }
  if (!has_device) {
    return MakeError(ErrorCode::kInvalidArgument, "down_topic needs a {device} level");
  }
  for (size_t i = 0; i < m.levels_.size(); ++i) {
    if (i > 0) m.filter_ += '/';
    switch (m.levels_[i].kind) {
      case LevelKind::kLiteral: m.filter_ += m.levels_[i].text; break;
      case LevelKind::kDevice:
      case LevelKind::kAny: m.filter_ += '+'; break;
      case LevelKind::kChannel: m.filter_ += '#'; break;
    }
  }
  return m;
}

std::optional<DownTopicMatcher::Match> DownTopicMatcher::Parse(std::string_view topic) const {
  // As in a broker, a wildcard level never matches a first level that starts with '$'.
  if (topic.starts_with('$') && levels_.front().kind != LevelKind::kLiteral) return std::nullopt;
  auto parts = SplitLevels(topic);
  Match out;
  bool have_device = false;
  size_t i = 0;
  for (; i < levels_.size(); ++i) {
    const Level& level = levels_[i];
    if (level.kind == LevelKind::kChannel) {
      if (i >= parts.size()) return std::nullopt;
      size_t offset = 0;
      for (size_t k = 0; k < i; ++k) offset += parts[k].size() + 1;
      out.channel = std::string(topic.substr(offset));
      if (!protocol::IsValidChannel(out.channel)) return std::nullopt;
      break;
    }
    if (i >= parts.size()) return std::nullopt;
    switch (level.kind) {
      case LevelKind::kLiteral:
        if (parts[i] != level.text) return std::nullopt;
        break;
      case LevelKind::kDevice:  // a template may name the device twice; both must agree
        if (have_device && parts[i] != out.device_id) return std::nullopt;
        out.device_id = std::string(parts[i]);
        have_device = true;
        break;
      case LevelKind::kAny:
        if (parts[i].empty()) return std::nullopt;
        break;
      case LevelKind::kChannel:
        break;
    }
  }
  if (levels_.back().kind != LevelKind::kChannel) {
    if (parts.size() != levels_.size()) return std::nullopt;
    out.channel.clear();
  }
  if (!IsValidDeviceId(out.device_id)) return std::nullopt;
  return out;
}

}  // namespace edgetrust::forwarding::internal
