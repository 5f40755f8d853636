#include "edgetrust/protocol/topics.h"

#include <array>

#include "edgetrust/common/bytes.h"

namespace edgetrust::protocol {
namespace internal {
namespace {

constexpr std::string_view kAdminReqSuffix = "_admin/v1/req";
constexpr std::string_view kAdminResSuffix = "_admin/v1/res";

struct SuffixEntry {
  std::string_view suffix;
  TopicKind kind;
};

// Exact suffixes; up/down take channels and are handled separately.
constexpr std::array<SuffixEntry, 10> kExactSuffixes{{
    {"enroll/req", TopicKind::kEnrollReq},
    {"enroll/res", TopicKind::kEnrollRes},
    {"cert/req", TopicKind::kCertReq},
    {"cert/res", TopicKind::kCertRes},
    {"state", TopicKind::kState},
    {"ota/offer", TopicKind::kOtaOffer},
    {"ota/get", TopicKind::kOtaGet},
    {"ota/chunk", TopicKind::kOtaChunk},
    {"ota/status", TopicKind::kOtaStatus},
    {"lifecycle", TopicKind::kLifecycle},
}};

// Walks the '/'-separated levels of a string without copying. An empty string has one empty level
// (as in MQTT), so callers check emptiness themselves where it matters.
class LevelReader {
 public:
  explicit LevelReader(std::string_view s) : rest_(s) {}

  bool Done() const { return done_; }

  std::string_view Next() {
    size_t slash = rest_.find('/');
    std::string_view level;
    if (slash == std::string_view::npos) {
      level = rest_;
      rest_ = {};
      done_ = true;
    } else {
      level = rest_.substr(0, slash);
      rest_.remove_prefix(slash + 1);
    }
    return level;
  }

 private:
  std::string_view rest_;
  bool done_ = false;
};

// A subscription pattern made of up to three pieces joined by '/', each possibly several levels,
// so that "{prefix}/{id}/down/#" needs no concatenation.
struct Pattern {
  std::array<std::string_view, 3> parts;
  size_t count;
};

class PatternLevels {
 public:
  explicit PatternLevels(const Pattern& p) : pattern_(p), reader_(p.parts[0]) {}

  // Returns false at the end of the pattern.
  bool Next(std::string_view* level) {
    while (reader_.Done()) {
      if (++part_ >= pattern_.count) return false;
      reader_ = LevelReader(pattern_.parts[part_]);
    }
    *level = reader_.Next();
    return true;
  }

 private:
  const Pattern& pattern_;
  size_t part_ = 0;
  LevelReader reader_;
};

// True if every topic matched by `filter` is matched by `pattern`. Both are valid filters. Because
// a '+' or '#' in the filter matches infinitely many level values, coverage by a union of our
// disjoint patterns reduces to coverage by one of them.
bool Covers(const Pattern& pattern, std::string_view filter) {
  PatternLevels p(pattern);
  LevelReader f(filter);
  while (true) {
    std::string_view pl;
    bool have_p = p.Next(&pl);
    if (have_p && pl == "#") return true;  // '#' also matches the parent level, so F may end here
    if (f.Done()) return !have_p;
    std::string_view fl = f.Next();
    if (!have_p) return false;
    if (fl == "#") return false;
    if (fl == "+") {
      if (pl != "+") return false;
      continue;
    }
    if (pl != "+" && pl != fl) return false;
  }
}

bool IsExactly(std::string_view topic, std::string_view prefix, std::string_view suffix) {
  return topic.size() == prefix.size() + 1 + suffix.size() && topic.starts_with(prefix) &&
         topic[prefix.size()] == '/' && topic.ends_with(suffix);
}

bool HasEmptyLevel(std::string_view s) {
  return s.empty() || s.front() == '/' || s.back() == '/' || s.find("//") != std::string_view::npos;
}

template <size_t N>
bool AnyCovers(const std::array<Pattern, N>& patterns, std::string_view filter) {
  for (const Pattern& p : patterns) {
    if (Covers(p, filter)) return true;
  }
  return false;
}

// `filter` is already known to be valid (a topic name is a valid filter).
bool MayReceiveFilter(Role role, std::string_view prefix, std::string_view id,
                      std::string_view filter) {
  switch (role) {
    case Role::kEnrolling: {
      if (!IsValidDeviceId(id)) return false;
      const std::array<Pattern, 1> patterns{{{{prefix, id, "enroll/res"}, 3}}};
      return AnyCovers(patterns, filter);
    }
    case Role::kDevice: {
      if (!IsValidDeviceId(id)) return false;
      const std::array<Pattern, 5> patterns{{
          {{prefix, id, "down/#"}, 3},
          {{prefix, id, "cert/res"}, 3},
          {{prefix, id, "ota/offer"}, 3},
          {{prefix, id, "ota/chunk"}, 3},
          {{prefix, id, "lifecycle"}, 3},
      }};
      return AnyCovers(patterns, filter);
    }
    case Role::kGateway: {
      const std::array<Pattern, 3> patterns{{
          {{prefix, "+", "#"}, 3},
          {{prefix, kAdminReqSuffix, {}}, 2},
          {{kControlResponseTopic, {}, {}}, 1},
      }};
      return AnyCovers(patterns, filter);
    }
    case Role::kAdmin: {
      const std::array<Pattern, 2> patterns{{
          {{prefix, kAdminResSuffix, {}}, 2},
          {{kControlResponseTopic, {}, {}}, 1},
      }};
      return AnyCovers(patterns, filter);
    }
  }
  return false;
}

}  // namespace
}  // namespace internal

std::string_view TopicSuffix(TopicKind kind) {
  switch (kind) {
    case TopicKind::kUp:
      return "up";
    case TopicKind::kDown:
      return "down";
    default:
      break;
  }
  for (const auto& e : internal::kExactSuffixes) {
    if (e.kind == kind) return e.suffix;
  }
  return {};
}

std::string BuildTopic(std::string_view prefix, std::string_view device_id, TopicKind kind,
                       std::string_view channel) {
  std::string_view suffix = TopicSuffix(kind);
  bool with_channel = (kind == TopicKind::kUp || kind == TopicKind::kDown) && !channel.empty();
  std::string topic;
  topic.reserve(prefix.size() + device_id.size() + suffix.size() + channel.size() + 3);
  topic.append(prefix).append("/").append(device_id).append("/").append(suffix);
  if (with_channel) topic.append("/").append(channel);
  return topic;
}

bool IsValidChannel(std::string_view channel) {
  return !internal::HasEmptyLevel(channel) && channel.find_first_of("+#") == std::string_view::npos &&
         IsValidMqttUtf8(channel);
}

std::string AdminRequestTopic(std::string_view prefix) {
  return std::string(prefix) + "/" + std::string(internal::kAdminReqSuffix);
}

std::string AdminResponseTopic(std::string_view prefix) {
  return std::string(prefix) + "/" + std::string(internal::kAdminResSuffix);
}

std::optional<DeviceTopic> ParseDeviceTopic(std::string_view prefix, std::string_view topic) {
  if (prefix.empty() || topic.size() <= prefix.size() + 1 || !topic.starts_with(prefix) ||
      topic[prefix.size()] != '/') {
    return std::nullopt;
  }
  if (topic.find_first_of("+#") != std::string_view::npos) return std::nullopt;
  std::string_view rest = topic.substr(prefix.size() + 1);
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  std::string_view id = rest.substr(0, slash);
  if (!IsValidDeviceId(id)) return std::nullopt;
  std::string_view suffix = rest.substr(slash + 1);

  for (std::string_view head : {std::string_view("up"), std::string_view("down")}) {
    if (!suffix.starts_with(head)) continue;
    TopicKind kind = head == "up" ? TopicKind::kUp : TopicKind::kDown;
    if (suffix.size() == head.size()) return DeviceTopic{id, kind, {}};
    if (suffix[head.size()] != '/') break;
    std::string_view channel = suffix.substr(head.size() + 1);
    if (internal::HasEmptyLevel(channel)) return std::nullopt;
    return DeviceTopic{id, kind, channel};
  }
  for (const auto& e : internal::kExactSuffixes) {
    if (suffix == e.suffix) return DeviceTopic{id, e.kind, {}};
  }
  return std::nullopt;
}

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kEnrolling:
      return "enrolling";
    case Role::kDevice:
      return "device";
    case Role::kGateway:
      return "gateway";
    case Role::kAdmin:
      return "admin";
  }
  return "unknown";
}

bool MayPublish(Role role, std::string_view prefix, std::string_view own_device_id,
                std::string_view topic) {
  if (!IsValidTopicName(topic) || prefix.empty()) return false;
  switch (role) {
    case Role::kEnrolling: {
      auto t = ParseDeviceTopic(prefix, topic);
      return t && t->device_id == own_device_id && t->kind == TopicKind::kEnrollReq;
    }
    case Role::kDevice: {
      auto t = ParseDeviceTopic(prefix, topic);
      if (!t || t->device_id != own_device_id) return false;
      switch (t->kind) {
        case TopicKind::kUp:
        case TopicKind::kState:
        case TopicKind::kCertReq:
        case TopicKind::kOtaGet:
        case TopicKind::kOtaStatus:
          return true;
        default:
          return false;
      }
    }
    case Role::kGateway:
      return topic == kControlTopic || internal::IsExactly(topic, prefix, internal::kAdminResSuffix) ||
             ParseDeviceTopic(prefix, topic).has_value();
    case Role::kAdmin:
      return topic == kControlTopic || internal::IsExactly(topic, prefix, internal::kAdminReqSuffix);
  }
  return false;
}

bool MaySubscribe(Role role, std::string_view prefix, std::string_view own_device_id,
                  std::string_view filter) {
  if (prefix.empty() || !IsValidTopicFilter(filter)) return false;
  return internal::MayReceiveFilter(role, prefix, own_device_id, filter);
}

bool MayReceive(Role role, std::string_view prefix, std::string_view own_device_id,
                std::string_view topic) {
  if (prefix.empty() || !IsValidTopicName(topic)) return false;
  return internal::MayReceiveFilter(role, prefix, own_device_id, topic);
}

bool IsValidTopicFilter(std::string_view filter) {
  if (filter.empty() || filter.size() > 65535) return false;
  internal::LevelReader levels(filter);
  while (!levels.Done()) {
    std::string_view level = levels.Next();
    if (level.find_first_of("+#") == std::string_view::npos) continue;
    if (level == "+") continue;
    if (level == "#" && levels.Done()) continue;
    return false;
  }
  return true;
}

bool IsValidTopicName(std::string_view topic) {
  return !topic.empty() && topic.size() <= 65535 &&
         topic.find_first_of("+#") == std::string_view::npos;
}

bool TopicMatches(std::string_view filter, std::string_view topic) {
  if (!IsValidTopicFilter(filter) || !IsValidTopicName(topic)) return false;
  if (topic.front() == '$' && (filter.front() == '+' || filter.front() == '#')) return false;
  internal::LevelReader f(filter);
  internal::LevelReader t(topic);
  while (true) {
    if (f.Done()) return t.Done();
    std::string_view fl = f.Next();
    if (fl == "#") return true;
    if (t.Done()) return false;
    std::string_view tl = t.Next();
    if (fl != "+" && fl != tl) return false;
  }
}

}  // namespace edgetrust::protocol
