// YAML -> Policy. yaml-cpp stays in this file (and policy_text.cpp); every exception it can throw
// is caught here and turned into an Error with the position it carries.
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <sys/stat.h>

#include "edgetrust/common/bytes.h"
#include "edgetrust/policies/policy.h"
#include "policy_internal.h"

namespace edgetrust::policies {
namespace internal {
namespace {

// Levenshtein distance, only to suggest the key the user probably meant.
size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

struct Field {
  std::string key;
  YAML::Node key_node;
  YAML::Node value;
};

// The entries of one YAML mapping after checking that every key is a known, unique scalar.
class Fields {
 public:
  const YAML::Node* Get(std::string_view key) const {
    for (const Field& f : fields_) {
      if (f.key == key) return &f.value;
    }
    return nullptr;
  }
  const YAML::Node* GetKey(std::string_view key) const {
    for (const Field& f : fields_) {
      if (f.key == key) return &f.key_node;
    }
    return nullptr;
  }
  bool Has(std::string_view key) const { return Get(key) != nullptr; }
  const std::vector<Field>& all() const { return fields_; }
  std::vector<Field>& mutable_all() { return fields_; }

 private:
  std::vector<Field> fields_;
};

class PolicyParser {
 public:
  PolicyParser(std::string_view source, std::string_view base_dir)
      : source_(source), base_dir_(base_dir) {}

  Result<Policy> Parse(const YAML::Node& root);

 private:
  Error At(const YAML::Node& node, const std::string& reason) const {
    return At(node.Mark(), reason);
  }
  Error At(const YAML::Mark& mark, const std::string& reason) const {
    return MakeError(ErrorCode::kInvalidArgument, FormatAt(source_, mark.line, mark.column, reason));
  }

  // A mapping whose keys are all in `allowed`. `where` names the mapping in messages.
  Result<Fields> ReadMap(const YAML::Node& node, const std::string& where,
                         std::initializer_list<std::string_view> allowed) const;
  // A mapping with arbitrary (but unique, scalar) keys, e.g. trust.manufacturers or upstreams.
  Result<Fields> ReadOpenMap(const YAML::Node& node, const std::string& where) const;

  Result<std::string> String(const YAML::Node& node, const std::string& what) const;
  Result<std::string> Id(const YAML::Node& node, const std::string& what) const;
  Result<std::string> Path(const YAML::Node& node, const std::string& what) const;
  Result<int64_t> Int(const YAML::Node& node, const std::string& what, int64_t min, int64_t max) const;
  Result<bool> Bool(const YAML::Node& node, const std::string& what) const;
  Result<std::vector<std::string>> IdList(const YAML::Node& node, const std::string& what) const;
  Status Template(const YAML::Node& node, const std::string& what, bool need_device) const;

  Status ParseTrust(const YAML::Node& key, const YAML::Node& node, Policy* policy) const;
  Status ParsePrincipals(const YAML::Node& node, Policy* policy) const;
  Status ParseRenewal(const YAML::Node& node, EnrollmentPolicy* defaults) const;
  Status ParseEnrollment(const YAML::Node& node, const std::string& where,
                         EnrollmentPolicy* enrollment) const;
  Status ParseGroup(const YAML::Node& node, size_t index, Policy* policy);
  Status ParseActions(const YAML::Node& node, const std::string& what,
                      std::vector<LifecycleAction>* actions) const;
  Status ParseOta(const YAML::Node& node, const std::string& where, OtaPolicy* ota) const;
  Status ParseUpstream(const std::string& name, const YAML::Node& name_node, const YAML::Node& node,
                       Upstream* upstream) const;
  Status ParseQueue(const YAML::Node& node, QueuePolicy* queue) const;

  std::string source_;
  std::string base_dir_;
  // Checked once upstreams are known, since they may come after groups in the file.
  std::vector<std::pair<std::string, YAML::Node>> routes_;
  std::vector<std::pair<std::string, YAML::Node>> matched_manufacturers_;
};

std::string Quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

std::string NodeKindName(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "nothing";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    default:
      return "an undefined value";
  }
}

Result<Fields> PolicyParser::ReadOpenMap(const YAML::Node& node, const std::string& where) const {
  if (!node.IsMap()) return At(node, where + " must be a mapping, got " + NodeKindName(node));
  Fields fields;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const YAML::Node key = it->first;
    if (!key.IsScalar()) return At(key, "keys of " + where + " must be plain names");
    std::string k = key.Scalar();
    if (fields.Has(k)) return At(key, "duplicate key " + Quoted(k) + " in " + where);
    fields.mutable_all().push_back(Field{k, key, it->second});
  }
  return fields;
}

Result<Fields> PolicyParser::ReadMap(const YAML::Node& node, const std::string& where,
                                     std::initializer_list<std::string_view> allowed) const {
  ET_ASSIGN_OR_RETURN(Fields fields, ReadOpenMap(node, where));
  for (const Field& f : fields.all()) {
    if (std::find(allowed.begin(), allowed.end(), f.key) != allowed.end()) continue;
    std::string reason = "unknown key " + Quoted(f.key) + " in " + where;
    std::string_view best;
    size_t best_distance = 3;
    for (std::string_view candidate : allowed) {
      size_t d = EditDistance(f.key, candidate);
      if (d < best_distance) {
        best_distance = d;
        best = candidate;
      }
    }
    if (!best.empty()) reason += " (did you mean " + Quoted(best) + "?)";
    return At(f.key_node, reason);
  }
  return fields;
}

Result<std::string> PolicyParser::String(const YAML::Node& node, const std::string& what) const {
  if (!node.IsScalar()) return At(node, what + " must be a string, got " + NodeKindName(node));
  return node.Scalar();
}

Result<std::string> PolicyParser::Id(const YAML::Node& node, const std::string& what) const {
  ET_ASSIGN_OR_RETURN(std::string s, String(node, what));
  if (!IsValidDeviceId(s)) {
    return At(node, what + " " + Quoted(s) +
                        " is not a valid name (letters, digits, '.', '_', '-'; starts with a letter or "
                        "digit; at most 64)");
  }
  return s;
}

Result<std::string> PolicyParser::Path(const YAML::Node& node, const std::string& what) const {
  ET_ASSIGN_OR_RETURN(std::string s, String(node, what));
  if (s.empty()) return At(node, what + " must not be empty");
  if (s.find('\0') != std::string::npos) return At(node, what + " contains a NUL byte");
  if (!base_dir_.empty() && s.front() != '/') {
    return base_dir_.back() == '/' ? base_dir_ + s : base_dir_ + "/" + s;
  }
  return s;
}

Result<int64_t> PolicyParser::Int(const YAML::Node& node, const std::string& what, int64_t min,
                                  int64_t max) const {
  int64_t v = 0;
  // A quoted scalar has tag "!": "90" is a string, not a number.
  if (!node.IsScalar() || node.Tag() == "!" || !YAML::convert<int64_t>::decode(node, v)) {
    return At(node, what + " must be an integer");
  }
  if (v < min || v > max) {
    return At(node, what + " must be in " + std::to_string(min) + ".." + std::to_string(max) +
                        ", got " + std::to_string(v));
  }
  return v;
}

Result<bool> PolicyParser::Bool(const YAML::Node& node, const std::string& what) const {
  if (node.IsScalar() && node.Tag() != "!") {
    const std::string& s = node.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
  }
  return At(node, what + " must be true or false");
}

Result<std::vector<std::string>> PolicyParser::IdList(const YAML::Node& node,
                                                      const std::string& what) const {
  if (!node.IsSequence()) return At(node, what + " must be a list, got " + NodeKindName(node));
  std::vector<std::string> out;
  for (size_t i = 0; i < node.size(); ++i) {
    ET_ASSIGN_OR_RETURN(std::string id, Id(node[i], what + "[" + std::to_string(i) + "]"));
    out.push_back(std::move(id));
  }
  return out;
}

Status PolicyParser::Template(const YAML::Node& node, const std::string& what,
                              bool need_device) const {
  ET_ASSIGN_OR_RETURN(std::string t, String(node, what));
  if (t.empty()) return At(node, what + " must not be empty");
  if (t.find_first_of("+#") != std::string::npos) {
    return At(node, what + " must not contain MQTT wildcards '+' or '#'");
  }
  if (!IsValidMqttUtf8(t)) {
    return At(node, what + " must be UTF-8 without control characters, as MQTT topics are");
  }
  static constexpr std::string_view kPlaceholders[] = {"site", "device", "channel",
                                                       "group", "model", "manufacturer"};
  bool has_device = false;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '}') return At(node, what + " has an unmatched '}'");
    if (t[i] != '{') continue;
    size_t close = t.find('}', i);
    if (close == std::string::npos) return At(node, what + " has an unmatched '{'");
    std::string_view name(t.data() + i + 1, close - i - 1);
    if (std::find(std::begin(kPlaceholders), std::end(kPlaceholders), name) ==
        std::end(kPlaceholders)) {
      return At(node, what + " has unknown placeholder {" + std::string(name) +
                          "} (known: {site} {device} {channel} {group} {model} {manufacturer})");
    }
    has_device |= name == "device";
    i = close;
  }
  if (need_device && !has_device) return At(node, what + " must contain {device}");
  return OkStatus();
}

Status PolicyParser::ParseTrust(const YAML::Node& key, const YAML::Node& node,
                                Policy* policy) const {
  ET_ASSIGN_OR_RETURN(Fields f, ReadMap(node, "trust", {"site_ca", "manufacturers"}));
  const YAML::Node* site_ca = f.Get("site_ca");
  if (site_ca == nullptr) return At(key, "trust.site_ca is required");
  ET_ASSIGN_OR_RETURN(policy->trust.site_ca, Path(*site_ca, "trust.site_ca"));
  if (const YAML::Node* m = f.Get("manufacturers"); m != nullptr && !m->IsNull()) {
    ET_ASSIGN_OR_RETURN(Fields makers, ReadOpenMap(*m, "trust.manufacturers"));
    for (const Field& maker : makers.all()) {
      ET_ASSIGN_OR_RETURN(std::string name, Id(maker.key_node, "manufacturer"));
      ET_ASSIGN_OR_RETURN(std::string path, Path(maker.value, "trust.manufacturers." + name));
      policy->trust.manufacturers.emplace(std::move(name), std::move(path));
    }
  }
  return OkStatus();
}

Status PolicyParser::ParsePrincipals(const YAML::Node& node, Policy* policy) const {
  ET_ASSIGN_OR_RETURN(Fields f, ReadMap(node, "principals", {"gateway", "admin"}));
  if (const YAML::Node* g = f.Get("gateway")) {
    ET_ASSIGN_OR_RETURN(policy->principals.gateway, IdList(*g, "principals.gateway"));
  }
  if (const YAML::Node* a = f.Get("admin")) {
    ET_ASSIGN_OR_RETURN(policy->principals.admin, IdList(*a, "principals.admin"));
    for (size_t i = 0; i < policy->principals.admin.size(); ++i) {
      const std::string& cn = policy->principals.admin[i];
      const auto& gw = policy->principals.gateway;
      if (std::find(gw.begin(), gw.end(), cn) != gw.end()) {
        return At((*a)[i], "principal " + Quoted(cn) + " cannot be both gateway and admin");
      }
    }
  }
  return OkStatus();
}

Status PolicyParser::ParseEnrollment(const YAML::Node& node, const std::string& where,
                                     EnrollmentPolicy* e) const {
  ET_ASSIGN_OR_RETURN(Fields f, ReadMap(node, where,
                                        {"mode", "cert_days", "renew_before_days", "reenroll",
                                         "allow_unknown"}));
  if (const YAML::Node* mode = f.Get("mode")) {
    ET_ASSIGN_OR_RETURN(std::string m, String(*mode, where + ".mode"));
    if (m == "auto") {
      e->mode = EnrollmentMode::kAuto;
    } else if (m == "allowlist") {
      e->mode = EnrollmentMode::kAllowlist;
    } else if (m == "claim") {
      e->mode = EnrollmentMode::kClaim;
    } else {
      return At(*mode, where + ".mode " + Quoted(m) + " is not one of auto, allowlist, claim");
    }
  }
  if (const YAML::Node* days = f.Get("cert_days")) {
    ET_ASSIGN_OR_RETURN(int64_t d, Int(*days, where + ".cert_days", 1, 3650));
    e->cert_days = static_cast<int>(d);
  }
  if (const YAML::Node* before = f.Get("renew_before_days")) {
    ET_ASSIGN_OR_RETURN(int64_t d, Int(*before, where + ".renew_before_days", 1, 3649));
    e->renew_before_days = static_cast<int>(d);
  }
  if (e->renew_before_days >= e->cert_days) {
    const YAML::Node* at = f.Get("renew_before_days");
    if (at == nullptr) at = f.Get("cert_days");
    return At(at ? *at : node, where + ".renew_before_days (" + std::to_string(e->renew_before_days) +
                                   ") must be less than cert_days (" +
                                   std::to_string(e->cert_days) + ")");
  }
  if (const YAML::Node* r = f.Get("reenroll")) {
    ET_ASSIGN_OR_RETURN(e->reenroll, Bool(*r, where + ".reenroll"));
  }
  if (const YAML::Node* u = f.Get("allow_unknown")) {
    ET_ASSIGN_OR_RETURN(e->allow_unknown, Bool(*u, where + ".allow_unknown"));
  }
  return OkStatus();
}

Status PolicyParser::ParseRenewal(const YAML::Node& node, EnrollmentPolicy* defaults) const {
  ET_ASSIGN_OR_RETURN(Fields f, ReadMap(node, "renewal", {"cert_days", "renew_before_days"}));
  if (const YAML::Node* days = f.Get("cert_days")) {
    ET_ASSIGN_OR_RETURN(int64_t d, Int(*days, "renewal.cert_days", 1, 3650));
    defaults->cert_days = static_cast<int>(d);
  }
  if (const YAML::Node* before = f.Get("renew_before_days")) {
    ET_ASSIGN_OR_RETURN(int64_t d, Int(*before, "renewal.renew_before_days", 1, 3649));
    defaults->renew_before_days = static_cast<int>(d);
  }
  if (defaults->renew_before_days >= defaults->cert_days) {
    return At(node, "renewal.renew_before_days (" + std::to_string(defaults->renew_before_days) +
                        ") must be less than cert_days (" + std::to_string(defaults->cert_days) +
                        ")");
  }
  return OkStatus();
}

Status PolicyParser::ParseActions(const YAML::Node& node, const std::string& what,
                                  std::vector<LifecycleAction>* actions) const {
  if (!node.IsSequence()) return At(node, what + " must be a list, got " + NodeKindName(node));
  actions->clear();
  for (size_t i = 0; i < node.size(); ++i) {
    ET_ASSIGN_OR_RETURN(std::string a, String(node[i], what + "[" + std::to_string(i) + "]"));
    LifecycleAction action;
    if (a == "revoke_operational") {
      action = LifecycleAction::kRevokeOperational;
    } else if (a == "revoke_all") {
      action = LifecycleAction::kRevokeAll;
    } else if (a == "wipe") {
      action = LifecycleAction::kWipe;
    } else {
      return At(node[i], what + ": unknown action " + Quoted(a) +
                             " (known: revoke_operational, revoke_all, wipe)");
    }
    if (std::find(actions->begin(), actions->end(), action) != actions->end()) {
      return At(node[i], what + ": action " + Quoted(a) + " listed twice");
    }
    actions->push_back(action);
  }
  return OkStatus();
}

Status PolicyParser::ParseOta(const YAML::Node& node, const std::string& where, OtaPolicy* ota) const {
  ET_ASSIGN_OR_RETURN(Fields f, ReadMap(node, where, {"channel", "rollout"}));
  if (const YAML::Node* c = f.Get("channel")) {
    ET_ASSIGN_OR_RETURN(ota->channel, Id(*c, where + ".channel"));
  }
  const YAML::Node* rollout = f.Get("rollout");
  if (rollout == nullptr) return OkStatus();
  ET_ASSIGN_OR_RETURN(Fields r, ReadMap(*rollout, where + ".rollout",
                                        {"waves", "halt_on_failure_percent"}));
  if (const YAML::Node* waves = r.Get("waves")) {
    std::string what = where + ".rollout.waves";
    if (!waves->IsSequence() || waves->size() == 0) {
      return At(*waves, what + " must be a non-empty list of percentages");
    }
    ota->rollout.waves.clear();
    for (size_t i = 0; i < waves->size(); ++i) {
      ET_ASSIGN_OR_RETURN(int64_t pct, Int((*waves)[i], what + "[" + std::to_string(i) + "]", 1, 100));
      if (!ota->rollout.waves.empty() && pct <= ota->rollout.waves.back()) {
        return At((*waves)[i], what + " must be strictly increasing");
      }
      ota->rollout.waves.push_back(static_cast<int>(pct));
    }
    if (ota->rollout.waves.back() != 100) {
      return At((*waves)[waves->size() - 1], what + " must end at 100");
    }
  }
  if (const YAML::Node* halt = r.Get("halt_on_failure_percent")) {
    ET_ASSIGN_OR_RETURN(int64_t pct, Int(*halt, where + ".rollout.halt_on_failure_percent", 1, 100));
    ota->rollout.halt_on_failure_percent = static_cast<int>(pct);
  }
  return OkStatus();
}

Status PolicyParser::ParseGroup(const YAML::Node& node, size_t index, Policy* policy) {
  std::string where = "groups[" + std::to_string(index) + "]";
  ET_ASSIGN_OR_RETURN(Fields f, ReadMap(node, where,
                                        {"name", "match", "enrollment", "route", "ota",
                                         "on_transfer", "on_retire"}));
  Group g;
  g.enrollment.cert_days = policy->renewal_defaults.cert_days;
  g.enrollment.renew_before_days = policy->renewal_defaults.renew_before_days;

  const YAML::Node* name = f.Get("name");
  if (name == nullptr) return At(node, where + ": 'name' is required");
  ET_ASSIGN_OR_RETURN(g.name, Id(*name, where + ".name"));
  if (policy->FindGroup(g.name) != nullptr) {
    return At(*name, "duplicate group name " + Quoted(g.name));
  }
  where = "group " + Quoted(g.name);

  if (const YAML::Node* match = f.Get("match")) {
    ET_ASSIGN_OR_RETURN(Fields m, ReadMap(*match, where + " match", {"manufacturer", "model"}));
    if (const YAML::Node* maker = m.Get("manufacturer")) {
      ET_ASSIGN_OR_RETURN(g.match.manufacturer, String(*maker, where + " match.manufacturer"));
      if (g.match.manufacturer != "*") {
        ET_ASSIGN_OR_RETURN(g.match.manufacturer, Id(*maker, where + " match.manufacturer"));
        matched_manufacturers_.emplace_back(g.match.manufacturer, *maker);
      }
    }
    if (const YAML::Node* model = m.Get("model")) {
      ET_ASSIGN_OR_RETURN(g.match.model, String(*model, where + " match.model"));
      if (g.match.model.empty()) return At(*model, where + " match.model must not be empty");
    }
  }
  if (const YAML::Node* e = f.Get("enrollment")) {
    ET_RETURN_IF_ERROR(ParseEnrollment(*e, where + " enrollment", &g.enrollment));
  }
  if (const YAML::Node* route = f.Get("route"); route != nullptr && !route->IsNull()) {
    ET_ASSIGN_OR_RETURN(g.route, String(*route, where + " route"));
    if (!g.route.empty()) routes_.emplace_back(g.route, *route);
  }
  if (const YAML::Node* ota = f.Get("ota")) {
    ET_RETURN_IF_ERROR(ParseOta(*ota, where + " ota", &g.ota));
  }
  if (const YAML::Node* t = f.Get("on_transfer")) {
    ET_RETURN_IF_ERROR(ParseActions(*t, where + " on_transfer", &g.on_transfer));
    bool revokes = std::any_of(g.on_transfer.begin(), g.on_transfer.end(), [](LifecycleAction a) {
      return a == LifecycleAction::kRevokeOperational || a == LifecycleAction::kRevokeAll;
    });
    if (!revokes) {
      return At(*t, where + " on_transfer must include revoke_operational or revoke_all: a "
                            "transferred device must not keep its operational certificate");
    }
  }
  if (const YAML::Node* r = f.Get("on_retire")) {
    ET_RETURN_IF_ERROR(ParseActions(*r, where + " on_retire", &g.on_retire));
    if (std::find(g.on_retire.begin(), g.on_retire.end(), LifecycleAction::kRevokeAll) ==
        g.on_retire.end()) {
      return At(*r, where + " on_retire must include revoke_all: a retired device keeps no valid "
                            "certificate");
    }
  }
  policy->groups.push_back(std::move(g));
  return OkStatus();
}

// "host[:port]" with an optional scheme already stripped.
bool SplitHostPort(std::string_view hp, uint16_t default_port, std::string* host, uint16_t* port) {
  if (hp.empty()) return false;
  std::string_view h = hp;
  std::string_view p;
  if (hp.front() == '[') {  // [v6]:port
    size_t close = hp.find(']');
    if (close == std::string_view::npos) return false;
    h = hp.substr(1, close - 1);
    std::string_view rest = hp.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      p = rest.substr(1);
      if (p.empty()) return false;
    }
  } else if (size_t colon = hp.rfind(':'); colon != std::string_view::npos) {
    h = hp.substr(0, colon);
    p = hp.substr(colon + 1);
    if (p.empty()) return false;
  }
  if (h.empty() || h.find_first_of("/ @?#") != std::string_view::npos) return false;
  *host = std::string(h);
  if (p.empty()) {
    *port = default_port;
    return true;
  }
  unsigned value = 0;
  for (char c : p) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
    if (value > 65535) return false;
  }
  if (value == 0) return false;
  *port = static_cast<uint16_t>(value);
  return true;
}

Status PolicyParser::ParseUpstream(const std::string& name, const YAML::Node& name_node,
                                   const YAML::Node& node, Upstream* u) const {
  const std::string where = "upstream " + Quoted(name);
  if (!node.IsMap()) return At(node, where + " must be a mapping, got " + NodeKindName(node));
  u->name = name;
  const YAML::Node kind_node = node["kind"];
  if (!kind_node.IsDefined() || kind_node.IsNull()) {
    return At(name_node, where + ": 'kind' is required (mqtt, aws-iot or azure-iot-hub)");
  }
  ET_ASSIGN_OR_RETURN(std::string kind, String(kind_node, where + " kind"));

  Fields f;
  if (kind == "mqtt") {
    u->kind = UpstreamKind::kMqtt;
    ET_ASSIGN_OR_RETURN(f, ReadMap(node, where,
                                   {"kind", "url", "client_id", "ca", "cert", "key", "username",
                                    "password_file", "topic", "down_topic", "qos", "connections",
                                    "identity", "protocol"}));
  } else if (kind == "aws-iot") {
    u->kind = UpstreamKind::kAwsIot;
    ET_ASSIGN_OR_RETURN(f, ReadMap(node, where,
                                   {"kind", "endpoint", "client_id", "ca", "cert", "key", "topic",
                                    "down_topic", "qos", "connections", "identity", "protocol"}));
  } else if (kind == "azure-iot-hub") {
    u->kind = UpstreamKind::kAzureIotHub;
    u->identity = UpstreamIdentity::kDevice;
    u->qos = 1;
    ET_ASSIGN_OR_RETURN(f, ReadMap(node, where,
                                   {"kind", "hostname", "ca", "group_key_file", "device_key_dir",
                                    "qos", "identity", "protocol"}));
  } else {
    return At(kind_node, where + " kind " + Quoted(kind) +
                             " is not one of mqtt, aws-iot, azure-iot-hub");
  }

  auto str = [&](std::string_view key, std::string* out) -> Status {
    if (const YAML::Node* n = f.Get(key)) {
      ET_ASSIGN_OR_RETURN(*out, String(*n, where + " " + std::string(key)));
    }
    return OkStatus();
  };
  auto path = [&](std::string_view key, std::string* out) -> Status {
    if (const YAML::Node* n = f.Get(key)) {
      ET_ASSIGN_OR_RETURN(*out, Path(*n, where + " " + std::string(key)));
    }
    return OkStatus();
  };
  ET_RETURN_IF_ERROR(str("client_id", &u->client_id));
  ET_RETURN_IF_ERROR(path("ca", &u->ca));
  ET_RETURN_IF_ERROR(path("cert", &u->cert));
  ET_RETURN_IF_ERROR(path("key", &u->key));
  ET_RETURN_IF_ERROR(str("username", &u->username));
  ET_RETURN_IF_ERROR(path("password_file", &u->password_file));
  ET_RETURN_IF_ERROR(path("group_key_file", &u->group_key_file));
  ET_RETURN_IF_ERROR(path("device_key_dir", &u->device_key_dir));
  if (const YAML::Node* n = f.Get("client_id"); n != nullptr && u->client_id.empty()) {
    return At(*n, where + " client_id must not be empty");
  }

  int64_t max_qos = u->kind == UpstreamKind::kMqtt ? 2 : 1;
  if (const YAML::Node* n = f.Get("qos")) {
    ET_ASSIGN_OR_RETURN(int64_t q, Int(*n, where + " qos", 0, max_qos));
    u->qos = static_cast<int>(q);
  }
  if (const YAML::Node* n = f.Get("connections")) {
    ET_ASSIGN_OR_RETURN(int64_t c, Int(*n, where + " connections", 1, 64));
    u->connections = static_cast<int>(c);
  }
  if (const YAML::Node* n = f.Get("protocol")) {
    ET_ASSIGN_OR_RETURN(int64_t p, Int(*n, where + " protocol", 4, 5));
    if (u->kind == UpstreamKind::kAzureIotHub && p != 4) {
      return At(*n, where + " protocol must be 4: Azure IoT Hub speaks MQTT 3.1.1");
    }
    u->protocol = static_cast<int>(p);
  }
  if (const YAML::Node* n = f.Get("identity")) {
    ET_ASSIGN_OR_RETURN(std::string id, String(*n, where + " identity"));
    if (id == "gateway") {
      u->identity = UpstreamIdentity::kGateway;
    } else if (id == "device") {
      u->identity = UpstreamIdentity::kDevice;
    } else {
      return At(*n, where + " identity " + Quoted(id) + " is not one of gateway, device");
    }
    if (u->kind == UpstreamKind::kAzureIotHub && u->identity != UpstreamIdentity::kDevice) {
      return At(*n, where + " identity must be device: Azure IoT Hub authenticates each device");
    }
    if (u->kind == UpstreamKind::kMqtt && u->identity != UpstreamIdentity::kGateway) {
      return At(*n, where + " identity must be gateway for kind " + kind);
    }
  }
  if (const YAML::Node* n = f.Get("topic")) {
    ET_RETURN_IF_ERROR(Template(*n, where + " topic", false));
    u->topic = n->Scalar();
  }
  if (const YAML::Node* n = f.Get("down_topic")) {
    ET_RETURN_IF_ERROR(Template(*n, where + " down_topic", true));
    u->down_topic = n->Scalar();
  }

  switch (u->kind) {
    case UpstreamKind::kMqtt: {
      const YAML::Node* url = f.Get("url");
      if (url == nullptr) return At(name_node, where + ": 'url' is required for kind mqtt");
      ET_ASSIGN_OR_RETURN(u->url, String(*url, where + " url"));
      std::string_view rest = u->url;
      if (rest.starts_with("mqtts://")) {
        u->tls = true;
        rest.remove_prefix(8);
      } else if (rest.starts_with("mqtt://")) {
        u->tls = false;
        rest.remove_prefix(7);
      } else {
        return At(*url, where + " url must start with mqtt:// or mqtts://");
      }
      if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
      if (!SplitHostPort(rest, u->tls ? 8883 : 1883, &u->host, &u->port)) {
        return At(*url, where + " url " + Quoted(u->url) + " is not mqtt[s]://host[:port]");
      }
      if (u->cert.empty() != u->key.empty()) {
        return At(name_node, where + ": cert and key must be given together");
      }
      if (!u->tls && (!u->cert.empty() || !u->ca.empty())) {
        return At(*url, where + ": ca/cert/key need an mqtts:// url");
      }
      if (!u->password_file.empty() && u->username.empty()) {
        return At(*f.Get("password_file"), where + ": password_file needs a username");
      }
      if (u->topic.empty()) u->topic = "{site}/{device}/{channel}";
      break;
    }
    case UpstreamKind::kAwsIot: {
      const YAML::Node* endpoint = f.Get("endpoint");
      if (endpoint == nullptr) {
        return At(name_node, where + ": 'endpoint' is required for kind aws-iot");
      }
      ET_ASSIGN_OR_RETURN(u->endpoint, String(*endpoint, where + " endpoint"));
      if (u->endpoint.find("://") != std::string::npos ||
          !SplitHostPort(u->endpoint, 8883, &u->host, &u->port)) {
        return At(*endpoint, where + " endpoint " + Quoted(u->endpoint) +
                                 " is not host:port (e.g. xxxx-ats.iot.eu-west-1.amazonaws.com:8883)");
      }
      u->tls = true;
      // identity device: the gateway issues each device's cloud certificate itself.
      if (u->identity == UpstreamIdentity::kGateway && (u->cert.empty() || u->key.empty())) {
        return At(name_node, where + ": cert and key are required for kind aws-iot with identity gateway");
      }
      if (u->topic.empty()) u->topic = "dt/{site}/{device}/{channel}";
      break;
    }
    case UpstreamKind::kAzureIotHub: {
      const YAML::Node* hostname = f.Get("hostname");
      if (hostname == nullptr) {
        return At(name_node, where + ": 'hostname' is required for kind azure-iot-hub");
      }
      ET_ASSIGN_OR_RETURN(u->hostname, String(*hostname, where + " hostname"));
      if (u->hostname.find('.') == std::string::npos ||
          u->hostname.find_first_of(":/ @") != std::string::npos) {
        return At(*hostname, where + " hostname " + Quoted(u->hostname) +
                                 " is not a host name (e.g. myhub.azure-devices.net)");
      }
      u->host = u->hostname;
      u->port = 8883;
      u->tls = true;
      if (u->group_key_file.empty() == u->device_key_dir.empty()) {
        return At(name_node, where + ": exactly one of group_key_file or device_key_dir is required");
      }
      break;
    }
  }
  return OkStatus();
}

Status PolicyParser::ParseQueue(const YAML::Node& node, QueuePolicy* queue) const {
  ET_ASSIGN_OR_RETURN(Fields f, ReadMap(node, "queue", {"max_bytes", "on_full"}));
  if (const YAML::Node* m = f.Get("max_bytes")) {
    std::optional<uint64_t> bytes;
    if (m->IsScalar()) bytes = ParseByteSize(m->Scalar());
    if (!bytes) {
      return At(*m, "queue.max_bytes must be a size such as 268435456, 64KiB, 256MiB or 1GiB");
    }
    if (*bytes < 4096) return At(*m, "queue.max_bytes must be at least 4KiB");
    queue->max_bytes = *bytes;
  }
  if (const YAML::Node* o = f.Get("on_full")) {
    ET_ASSIGN_OR_RETURN(std::string s, String(*o, "queue.on_full"));
    if (s == "drop_oldest") {
      queue->on_full = QueueFullAction::kDropOldest;
    } else if (s == "refuse") {
      queue->on_full = QueueFullAction::kRefuse;
    } else {
      return At(*o, "queue.on_full " + Quoted(s) + " is not one of drop_oldest, refuse");
    }
  }
  return OkStatus();
}

Result<Policy> PolicyParser::Parse(const YAML::Node& root) {
  if (!root.IsDefined() || root.IsNull()) {
    return MakeError(ErrorCode::kInvalidArgument, source_ + ": the policy is empty");
  }
  ET_ASSIGN_OR_RETURN(Fields f, ReadMap(root, "the policy",
                                        {"site", "topic_prefix", "trust", "principals", "groups",
                                         "upstreams", "queue", "renewal"}));
  Policy policy;
  policy.source = source_;

  const YAML::Node* site = f.Get("site");
  if (site == nullptr) return At(root, "'site' is required");
  ET_ASSIGN_OR_RETURN(policy.site, Id(*site, "site"));

  if (const YAML::Node* p = f.Get("topic_prefix")) {
    ET_ASSIGN_OR_RETURN(policy.topic_prefix, String(*p, "topic_prefix"));
    const std::string& t = policy.topic_prefix;
    if (t.empty() || t.size() > 64 || t.front() == '$' || t.front() == '/' || t.back() == '/' ||
        t.find("//") != std::string::npos || t.find_first_of("+#") != std::string::npos) {
      return At(*p, "topic_prefix " + Quoted(t) +
                        " must be one or more non-empty topic levels without wildcards, not "
                        "starting with '$'");
    }
    if (!IsValidMqttUtf8(t)) {
      return At(*p, "topic_prefix must be UTF-8 without control characters, as MQTT topics are");
    }
  }

  const YAML::Node* trust = f.Get("trust");
  if (trust == nullptr) return At(root, "'trust' is required (at least trust.site_ca)");
  ET_RETURN_IF_ERROR(ParseTrust(*f.GetKey("trust"), *trust, &policy));

  if (const YAML::Node* p = f.Get("principals"); p != nullptr && !p->IsNull()) {
    ET_RETURN_IF_ERROR(ParsePrincipals(*p, &policy));
  }
  if (const YAML::Node* r = f.Get("renewal"); r != nullptr && !r->IsNull()) {
    ET_RETURN_IF_ERROR(ParseRenewal(*r, &policy.renewal_defaults));
  }
  if (const YAML::Node* q = f.Get("queue"); q != nullptr && !q->IsNull()) {
    ET_RETURN_IF_ERROR(ParseQueue(*q, &policy.queue));
  }
  if (const YAML::Node* ups = f.Get("upstreams"); ups != nullptr && !ups->IsNull()) {
    ET_ASSIGN_OR_RETURN(Fields entries, ReadOpenMap(*ups, "upstreams"));
    for (const Field& e : entries.all()) {
      ET_ASSIGN_OR_RETURN(std::string name, Id(e.key_node, "upstream name"));
      Upstream u;
      ET_RETURN_IF_ERROR(ParseUpstream(name, e.key_node, e.value, &u));
      policy.upstreams.emplace(name, std::move(u));
    }
  }
  if (const YAML::Node* groups = f.Get("groups"); groups != nullptr && !groups->IsNull()) {
    if (!groups->IsSequence()) {
      return At(*groups, "groups must be a list, got " + NodeKindName(*groups));
    }
    for (size_t i = 0; i < groups->size(); ++i) {
      ET_RETURN_IF_ERROR(ParseGroup((*groups)[i], i, &policy));
    }
  }
  for (const auto& [route, node] : routes_) {
    if (policy.FindUpstream(route) == nullptr) {
      return At(node, "route " + Quoted(route) + " names no upstream (define it under upstreams)");
    }
  }
  for (const auto& [maker, node] : matched_manufacturers_) {
    if (policy.trust.manufacturers.count(maker) == 0) {
      return At(node, "manufacturer " + Quoted(maker) + " is not in trust.manufacturers");
    }
  }
  return policy;
}

// Counts nothing and keeps nothing: only used to walk documents.
class DiscardEvents : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

}  // namespace

std::string FormatAt(std::string_view source, int line, int column, std::string_view reason) {
  std::string out(source);
  if (line >= 0) {
    out += ":" + std::to_string(line + 1) + ":" + std::to_string(column + 1);
  }
  out += ": ";
  out += reason;
  return out;
}

Result<std::vector<YAML::Node>> LoadYamlDocuments(std::string_view yaml, std::string_view source) {
  auto error = [&](int line, int column, std::string_view reason) {
    return MakeError(ErrorCode::kInvalidArgument, FormatAt(source, line, column, reason));
  };
  if (yaml.size() > kMaxPolicyBytes) {
    return error(-1, -1, "the policy is larger than " + std::to_string(kMaxPolicyBytes) + " bytes");
  }
  if (yaml.find('\0') != std::string_view::npos) {
    return error(-1, -1, "the policy contains a NUL byte; it is not a text file");
  }
  try {
    std::string text(yaml);
    std::vector<YAML::Node> docs;
    docs.push_back(YAML::Load(text));
    // YAML::LoadAll loops forever on some malformed input (the parser keeps reporting another
    // document without consuming anything), so count documents ourselves and stop at two.
    std::istringstream in(text);
    YAML::Parser parser(in);
    DiscardEvents discard;
    if (parser.HandleNextDocument(discard) && parser.HandleNextDocument(discard)) {
      docs.emplace_back();
    }
    return docs;
  } catch (const YAML::Exception& e) {
    return error(e.mark.line, e.mark.column, "invalid YAML: " + e.msg);
  } catch (const std::exception& e) {
    return error(-1, -1, std::string("invalid YAML: ") + e.what());
  }
}

}  // namespace internal

Result<Policy> ParsePolicy(std::string_view yaml, std::string_view source_name,
                           std::string_view base_dir) {
  std::string source = source_name.empty() ? std::string("<policy>") : std::string(source_name);
  ET_ASSIGN_OR_RETURN(std::vector<YAML::Node> docs, internal::LoadYamlDocuments(yaml, source));
  if (docs.size() > 1) {
    return MakeError(ErrorCode::kInvalidArgument,
                     source + ": the policy must be a single YAML document");
  }
  try {
    internal::PolicyParser parser(source, base_dir);
    return parser.Parse(docs.empty() ? YAML::Node() : docs[0]);
  } catch (const YAML::Exception& e) {
    return MakeError(ErrorCode::kInvalidArgument,
                     internal::FormatAt(source, e.mark.line, e.mark.column, e.msg));
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInvalidArgument, source + ": " + e.what());
  }
}

Result<std::string> internal::ReadSmallFile(const std::string& path, size_t max_bytes) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;
    return MakeError(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                     path + ": " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) return MakeError(ErrorCode::kInvalidArgument, path + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     path + ": larger than " + std::to_string(max_bytes) + " bytes");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return MakeError(ErrorCode::kIo, path + ": cannot open: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return MakeError(ErrorCode::kIo, path + ": read failed");
  std::string s = std::move(text).str();
  if (s.size() > max_bytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     path + ": larger than " + std::to_string(max_bytes) + " bytes");
  }
  return s;
}

Result<Policy> LoadPolicyFile(const std::string& path) {
  ET_ASSIGN_OR_RETURN(std::string text, internal::ReadSmallFile(path, kMaxPolicyBytes));
  std::string base_dir;
  if (size_t slash = path.rfind('/'); slash != std::string::npos) {
    base_dir = slash == 0 ? "/" : path.substr(0, slash);
  }
  return ParsePolicy(text, path, base_dir);
}

}  // namespace edgetrust::policies
