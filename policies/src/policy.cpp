#include <charconv>

#include "edgetrust/policies/policy.h"

namespace edgetrust::policies {

std::string_view EnrollmentModeName(EnrollmentMode mode) {
  switch (mode) {
    case EnrollmentMode::kAuto:
      return "auto";
    case EnrollmentMode::kAllowlist:
      return "allowlist";
    case EnrollmentMode::kClaim:
      return "claim";
  }
  return "unknown";
}

std::string_view LifecycleActionName(LifecycleAction action) {
  switch (action) {
    case LifecycleAction::kRevokeOperational:
      return "revoke_operational";
    case LifecycleAction::kRevokeAll:
      return "revoke_all";
    case LifecycleAction::kWipe:
      return "wipe";
  }
  return "unknown";
}

std::string_view UpstreamKindName(UpstreamKind kind) {
  switch (kind) {
    case UpstreamKind::kMqtt:
      return "mqtt";
    case UpstreamKind::kAwsIot:
      return "aws-iot";
    case UpstreamKind::kAzureIotHub:
      return "azure-iot-hub";
  }
  return "unknown";
}

bool GlobMatch(std::string_view pattern, std::string_view text) {
  // Iterative matcher with one backtrack point for the last '*': linear for typical patterns and
  // never exponential, since a later '*' makes earlier backtracking unnecessary.
  size_t p = 0;
  size_t t = 0;
  size_t star = std::string_view::npos;
  size_t star_text = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_text = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++star_text;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool GroupMatch::Matches(std::string_view manufacturer_name, std::string_view model_name) const {
  if (manufacturer != "*" && manufacturer != manufacturer_name) return false;
  return GlobMatch(model, model_name);
}

std::optional<uint64_t> ParseByteSize(std::string_view text) {
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  if (text.empty() || text.front() < '0' || text.front() > '9') return std::nullopt;
  uint64_t number = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (ec != std::errc()) return std::nullopt;
  std::string_view unit(end, static_cast<size_t>(text.data() + text.size() - end));
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);

  struct Unit {
    std::string_view name;
    uint64_t factor;
  };
  static constexpr Unit kUnits[] = {
      {"", 1},           {"B", 1},
      {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}, {"TiB", 1ull << 40},
      {"KB", 1000ull},   {"MB", 1000ull * 1000}, {"GB", 1000ull * 1000 * 1000},
      {"TB", 1000ull * 1000 * 1000 * 1000},
      {"K", 1ull << 10}, {"M", 1ull << 20},     {"G", 1ull << 30},
  };
  for (const Unit& u : kUnits) {
    if (unit != u.name) continue;
    if (number > UINT64_MAX / u.factor) return std::nullopt;
    return number * u.factor;
  }
  return std::nullopt;
}

const Group* Policy::MatchGroup(std::string_view manufacturer, std::string_view model) const {
  for (const Group& g : groups) {
    if (g.match.Matches(manufacturer, model)) return &g;
  }
  return nullptr;
}

const Group* Policy::FindGroup(std::string_view name) const {
  for (const Group& g : groups) {
    if (g.name == name) return &g;
  }
  return nullptr;
}

const Upstream* Policy::FindUpstream(std::string_view name) const {
  auto it = upstreams.find(std::string(name));
  return it == upstreams.end() ? nullptr : &it->second;
}

std::optional<PrincipalRole> Policy::PrincipalRoleOf(std::string_view cn) const {
  for (const std::string& g : principals.gateway) {
    if (g == cn) return PrincipalRole::kGateway;
  }
  for (const std::string& a : principals.admin) {
    if (a == cn) return PrincipalRole::kAdmin;
  }
  return std::nullopt;
}

std::vector<std::string> Policy::ManufacturerNames() const {
  std::vector<std::string> names;
  names.reserve(trust.manufacturers.size());
  for (const auto& [name, path] : trust.manufacturers) names.push_back(name);
  return names;
}

}  // namespace edgetrust::policies
