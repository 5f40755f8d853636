// Writing policy text: the starter policy of `edgetrust site init` and the edit made by
// `edgetrust site add-manufacturer`. Edits keep the operator's comments and layout when the
// manufacturers mapping has a shape we can extend in place; otherwise the document is re-emitted.
// Either way the result is parsed again before it is returned.
#include <yaml-cpp/yaml.h>

#include "edgetrust/common/bytes.h"
#include "edgetrust/policies/policy.h"
#include "policy_internal.h"

namespace edgetrust::policies {
namespace internal {
namespace {

// A scalar as YAML text, quoted only when a plain scalar would be read back differently.
std::string EmitScalar(std::string_view s) {
  YAML::Emitter out;
  out << std::string(s);
  return out.c_str();
}

std::string EmitQuoted(std::string_view s) {
  YAML::Emitter out;
  out << YAML::DoubleQuoted << std::string(s);
  return out.c_str();
}

// Index of the '}' closing the flow mapping that opens at text[open], skipping quoted scalars.
std::optional<size_t> MatchingBrace(std::string_view text, size_t open) {
  int depth = 0;
  for (size_t i = open; i < text.size(); ++i) {
    char c = text[i];
    if (c == '"' || c == '\'') {
      for (++i; i < text.size(); ++i) {
        if (c == '"' && text[i] == '\\') {
          ++i;
        } else if (text[i] == c) {
          if (c == '\'' && i + 1 < text.size() && text[i + 1] == '\'') {
            ++i;
          } else {
            break;
          }
        }
      }
    } else if (c == '#' && i > 0 && (text[i - 1] == ' ' || text[i - 1] == '\t')) {
      while (i < text.size() && text[i] != '\n') ++i;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) return c == '}' ? std::optional<size_t>(i) : std::nullopt;
    }
  }
  return std::nullopt;
}

// Byte offset where 0-based `line` starts.
std::optional<size_t> LineStart(std::string_view text, int line) {
  size_t pos = 0;
  for (int l = 0; l < line; ++l) {
    pos = text.find('\n', pos);
    if (pos == std::string_view::npos) return std::nullopt;
    ++pos;
  }
  return pos;
}

std::optional<std::string> InsertInPlace(std::string_view text, const YAML::Node& makers,
                                         const std::string& entry_key, const std::string& entry_value) {
  if (!makers.IsMap()) return std::nullopt;
  const YAML::Mark mark = makers.Mark();
  if (makers.Style() == YAML::EmitterStyle::Flow) {
    auto start = LineStart(text, mark.line);
    if (!start) return std::nullopt;
    size_t open = *start + static_cast<size_t>(mark.column);
    if (open >= text.size() || text[open] != '{') return std::nullopt;
    auto close = MatchingBrace(text, open);
    if (!close) return std::nullopt;
    std::string inner(text.substr(open + 1, *close - open - 1));
    bool empty = inner.find_first_not_of(" \t\r\n") == std::string::npos;
    std::string out(text.substr(0, open));
    std::string_view before_brace = text.substr(*start, open - *start);
    size_t indent = before_brace.find_first_not_of(' ');
    bool own_line = indent != std::string_view::npos &&
                    before_brace.substr(indent).starts_with("manufacturers:") &&
                    before_brace.substr(indent + 14).find_first_not_of(" \t") == std::string_view::npos;
    if (empty && own_line) {
      // `manufacturers: {}` on its own line becomes a block mapping, which reads better as it grows.
      while (!out.empty() && (out.back() == ' ' || out.back() == '\t')) out.pop_back();
      out += "\n" + std::string(indent + 2, ' ') + entry_key + ": " + entry_value;
    } else if (empty) {
      out += "{ " + entry_key + ": " + entry_value + " }";
    } else {
      size_t last = inner.find_last_not_of(" \t\r\n");
      bool trailing_comma = inner[last] == ',';
      out += "{" + inner.substr(0, last + 1) + (trailing_comma ? " " : ", ") + entry_key + ": " +
             entry_value + inner.substr(last + 1) + "}";
    }
    out += text.substr(*close + 1);
    return out;
  }
  if (makers.size() == 0) return std::nullopt;
  // Block mapping: add a line after the last entry, indented like the first key.
  int indent = -1;
  int last_line = -1;
  for (auto it = makers.begin(); it != makers.end(); ++it) {
    if (indent < 0) indent = it->first.Mark().column;
    last_line = std::max(last_line, it->second.Mark().line);
  }
  auto next = LineStart(text, last_line + 1);
  std::string out;
  if (next) {
    out = std::string(text.substr(0, *next));
  } else {
    out = std::string(text);
    out += "\n";
  }
  out += std::string(static_cast<size_t>(indent), ' ') + entry_key + ": " + entry_value + "\n";
  if (next) out += text.substr(*next);
  return out;
}

bool SameExceptManufacturer(const Policy& before, const Policy& after, const std::string& name,
                            const std::string& path) {
  auto expected = before.trust.manufacturers;
  expected[name] = path;
  return after.trust.manufacturers == expected && after.site == before.site &&
         after.trust.site_ca == before.trust.site_ca && after.groups.size() == before.groups.size() &&
         after.upstreams.size() == before.upstreams.size() &&
         after.principals.gateway == before.principals.gateway &&
         after.principals.admin == before.principals.admin &&
         after.topic_prefix == before.topic_prefix;
}

}  // namespace
}  // namespace internal

Result<std::string> StarterPolicyYaml(std::string_view site, std::string_view site_ca_path,
                                      std::string_view gateway_cn, std::string_view admin_cn) {
  if (!IsValidDeviceId(site)) {
    return MakeError(ErrorCode::kInvalidArgument, "site id '" + std::string(site) + "' is not valid");
  }
  if (site_ca_path.empty()) return MakeError(ErrorCode::kInvalidArgument, "site CA path is empty");
  for (std::string_view cn : {gateway_cn, admin_cn}) {
    if (!IsValidDeviceId(cn)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "principal CN '" + std::string(cn) + "' is not valid");
    }
  }
  if (gateway_cn == admin_cn) {
    return MakeError(ErrorCode::kInvalidArgument, "gateway and admin CNs must differ");
  }
  std::string y;
  y += "# edgetrust site policy. Reload with SIGHUP to the gateway; a policy that does not\n";
  y += "# validate is refused and the running one stays.\n";
  y += "site: " + internal::EmitScalar(site) + "\n";
  y += "topic_prefix: et\n";
  y += "\n";
  y += "trust:\n";
  y += "  site_ca: " + internal::EmitQuoted(site_ca_path) + "\n";
  y += "  # One entry per manufacturer CA: `edgetrust site add-manufacturer` adds them here.\n";
  y += "  manufacturers: {}\n";
  y += "\n";
  y += "principals:\n";
  y += "  gateway: [" + internal::EmitScalar(gateway_cn) + "]\n";
  y += "  admin: [" + internal::EmitScalar(admin_cn) + "]\n";
  y += "\n";
  y += "renewal: { cert_days: 90, renew_before_days: 30 }\n";
  y += "\n";
  y += "# Evaluated at enrollment, first match wins. Put specific groups before `default`.\n";
  y += "groups:\n";
  y += "  - name: default\n";
  y += "    match: { manufacturer: \"*\", model: \"*\" }\n";
  y += "    enrollment: { mode: auto, reenroll: false }   # auto | allowlist | claim\n";
  y += "    on_transfer: [revoke_operational, wipe]\n";
  y += "    on_retire: [revoke_all, wipe]\n";
  y += "\n";
  y += "# Where groups forward device data (`route: <name>` in a group). Kinds: mqtt, aws-iot,\n";
  y += "# azure-iot-hub.\n";
  y += "upstreams: {}\n";
  y += "\n";
  y += "queue: { max_bytes: 256MiB, on_full: drop_oldest }\n";
  auto check = ParsePolicy(y, "starter policy");
  if (!check.ok()) {
    return MakeError(ErrorCode::kInternal, "starter policy does not validate: " + check.error().message);
  }
  return y;
}

Result<std::string> AddManufacturerToPolicyYaml(std::string_view yaml, std::string_view name,
                                                std::string_view ca_path) {
  if (!IsValidDeviceId(name)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "manufacturer name '" + std::string(name) + "' is not valid");
  }
  if (ca_path.empty()) return MakeError(ErrorCode::kInvalidArgument, "manufacturer CA path is empty");
  ET_ASSIGN_OR_RETURN(Policy before, ParsePolicy(yaml, "policy"));
  const std::string key(name);
  const std::string path(ca_path);
  if (auto it = before.trust.manufacturers.find(key); it != before.trust.manufacturers.end()) {
    if (it->second == path) return std::string(yaml);
    return MakeError(ErrorCode::kAlreadyExists, "manufacturer '" + key + "' is already trusted with CA " +
                                                    it->second);
  }

  ET_ASSIGN_OR_RETURN(std::vector<YAML::Node> docs, internal::LoadYamlDocuments(yaml, "policy"));
  try {
    YAML::Node root = docs.at(0);
    YAML::Node trust = root["trust"];
    YAML::Node makers = trust["manufacturers"];
    auto edited = internal::InsertInPlace(yaml, makers, internal::EmitScalar(key),
                                          internal::EmitQuoted(path));
    if (edited) {
      auto after = ParsePolicy(*edited, "policy");
      if (after.ok() && internal::SameExceptManufacturer(before, *after, key, path)) return *edited;
    }
    // Fall back to re-emitting the document; comments are lost but the content is kept.
    if (!makers.IsMap()) {
      makers = YAML::Node(YAML::NodeType::Map);
      trust["manufacturers"] = makers;
    }
    makers[key] = path;
    YAML::Emitter out;
    out << root;
    if (!out.good()) {
      return MakeError(ErrorCode::kInternal, std::string("cannot emit policy: ") + out.GetLastError());
    }
    std::string text = std::string(out.c_str()) + "\n";
    auto after = ParsePolicy(text, "policy");
    if (!after.ok() || !internal::SameExceptManufacturer(before, *after, key, path)) {
      return MakeError(ErrorCode::kInternal, "re-emitted policy does not match the original");
    }
    return text;
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, std::string("cannot edit policy: ") + e.what());
  }
}

}  // namespace edgetrust::policies
