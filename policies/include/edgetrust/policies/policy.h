// The site policy (DESIGN.md "Policy"): one YAML file, parsed and validated once into an immutable
// value. A reload builds a new Policy and swaps a std::shared_ptr<const Policy>; nothing here is
// ever mutated after ParsePolicy returns, so it can be shared across threads freely.
//
// Validation is strict on purpose: an unknown key is an error, because a typo such as
// `enrolment:` silently falling back to defaults could weaken a site's security.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "edgetrust/common/result.h"

namespace edgetrust::policies {

enum class EnrollmentMode {
  kAuto,       // any device with a valid birth certificate from a trusted manufacturer
  kAllowlist,  // only devices imported from a factory manifest (state `manufactured`)
  kClaim,      // the enroll request must carry a claim code registered for the device
};

enum class LifecycleAction { kRevokeOperational, kRevokeAll, kWipe };

enum class UpstreamKind { kMqtt, kAwsIot, kAzureIotHub };

// Which identity the gateway uses towards the upstream: one connection as the site, or one per device.
enum class UpstreamIdentity { kGateway, kDevice };

enum class QueueFullAction { kDropOldest, kRefuse };

enum class PrincipalRole { kGateway, kAdmin };

std::string_view EnrollmentModeName(EnrollmentMode mode);    // "auto" | "allowlist" | "claim"
std::string_view LifecycleActionName(LifecycleAction action);  // "revoke_operational" | "revoke_all" | "wipe"
std::string_view UpstreamKindName(UpstreamKind kind);        // "mqtt" | "aws-iot" | "azure-iot-hub"

struct GroupMatch {
  std::string manufacturer = "*";  // exact manufacturer name, or "*" for any
  std::string model = "*";         // glob: '*' any run of characters, '?' exactly one

  bool Matches(std::string_view manufacturer_name, std::string_view model_name) const;
};

struct EnrollmentPolicy {
  EnrollmentMode mode = EnrollmentMode::kAuto;
  int cert_days = 90;          // operational certificate validity, 1..3650
  int renew_before_days = 30;  // renew when fewer days than this remain; < cert_days
  bool reenroll = false;       // may an `active` device enroll again with its birth certificate
  // May a device the store has never heard of (no factory manifest row) enroll? Ignored for
  // kAllowlist, which by definition requires the manifest row.
  bool allow_unknown = true;
};

struct RolloutPolicy {
  std::vector<int> waves{100};  // cumulative percent of the group per wave, strictly increasing, last is 100
  std::optional<int> halt_on_failure_percent;  // 1..100; absent = never halt automatically
};

struct OtaPolicy {
  std::string channel;  // empty = this group receives no firmware offers
  RolloutPolicy rollout;
};

struct Group {
  std::string name;
  GroupMatch match;
  EnrollmentPolicy enrollment;
  std::string route;  // upstream name; empty = the group's data is not forwarded
  OtaPolicy ota;
  std::vector<LifecycleAction> on_transfer{LifecycleAction::kRevokeOperational};
  std::vector<LifecycleAction> on_retire{LifecycleAction::kRevokeAll};
};

struct Upstream {
  std::string name;
  UpstreamKind kind = UpstreamKind::kMqtt;

  // As written in the policy (only the ones that apply to `kind` are set).
  std::string endpoint;  // aws-iot: "host[:port]"
  std::string url;       // mqtt: "mqtt://host[:port]" or "mqtts://host[:port]"
  std::string hostname;  // azure-iot-hub: "<hub>.azure-devices.net"

  // Derived from the above so connectors need not parse again.
  std::string host;
  uint16_t port = 0;  // defaults: 8883 for TLS, 1883 for mqtt://
  bool tls = true;

  std::string client_id;  // empty = use the site id (gateway identity) or the device id (device identity)
  std::string ca;         // file paths; relative ones are resolved against the policy file's directory
  std::string cert;
  std::string key;
  std::string username;
  std::string password_file;
  // Templates with {site}, {device}, {channel}, {group}, {model}, {manufacturer}. `topic` maps
  // et/{id}/up/{channel} upwards; `down_topic` (empty = no downlink) is what the gateway subscribes
  // upstream, with {device} and {channel} standing for one topic level / the remaining levels.
  std::string topic;
  std::string down_topic;
  int qos = 1;          // 0..2; aws-iot supports at most 1
  int connections = 1;  // 1..64 parallel connections for throughput (gateway identity)
  UpstreamIdentity identity = UpstreamIdentity::kGateway;
  std::string group_key_file;  // azure: the DPS/hub group key to derive per-device SAS keys
  std::string device_key_dir;  // azure: one key file per device id
  int protocol = 4;            // MQTT protocol level: 4 (3.1.1) or 5
};

struct QueuePolicy {
  uint64_t max_bytes = 256ull << 20;  // per upstream outbox
  QueueFullAction on_full = QueueFullAction::kDropOldest;
};

struct TrustPolicy {
  std::string site_ca;                             // PEM path
  std::map<std::string, std::string> manufacturers;  // manufacturer name -> CA PEM path
};

struct PrincipalsPolicy {
  std::vector<std::string> gateway;  // certificate CNs with role gateway
  std::vector<std::string> admin;    // certificate CNs with role admin
};

struct Policy {
  std::string source;  // file name or label the policy came from, for log lines
  std::string site;
  std::string topic_prefix = "et";
  TrustPolicy trust;
  PrincipalsPolicy principals;
  std::vector<Group> groups;                  // in file order; first match wins
  std::map<std::string, Upstream> upstreams;  // by name
  QueuePolicy queue;
  EnrollmentPolicy renewal_defaults;  // top-level `renewal:`; groups inherit cert_days/renew_before_days

  // First group (in file order) whose match accepts this manufacturer and model; nullptr if none.
  const Group* MatchGroup(std::string_view manufacturer, std::string_view model) const;
  const Group* FindGroup(std::string_view name) const;
  const Upstream* FindUpstream(std::string_view name) const;
  std::optional<PrincipalRole> PrincipalRoleOf(std::string_view cn) const;
  std::vector<std::string> ManufacturerNames() const;  // sorted
};

// Largest policy text accepted; a policy is hand-written, anything bigger is a mistake or an attack.
inline constexpr size_t kMaxPolicyBytes = 1 << 20;

// Parses and validates. Errors are kInvalidArgument with "source:line:column: reason" (1-based).
// When base_dir is not empty, relative file paths in the policy are resolved against it.
Result<Policy> ParsePolicy(std::string_view yaml, std::string_view source_name,
                           std::string_view base_dir = {});

// Reads the file and parses it with base_dir = the file's directory. kNotFound / kIo when unreadable.
Result<Policy> LoadPolicyFile(const std::string& path);

// Glob used by GroupMatch: '*' matches any run (including empty), '?' exactly one character.
bool GlobMatch(std::string_view pattern, std::string_view text);

// "256MiB", "1GiB", "64KiB", "512KB" (= 1000-based), "1048576" -> bytes; nullopt if malformed or overflows.
std::optional<uint64_t> ParseByteSize(std::string_view text);

// The policy `edgetrust site init` writes: the site, its CA, the two principals, no manufacturers
// yet, one group `default` (any manufacturer and model, enrollment auto, no route). Errors if
// site or a CN is not a valid id.
Result<std::string> StarterPolicyYaml(std::string_view site, std::string_view site_ca_path,
                                      std::string_view gateway_cn = "edgetrust-gateway",
                                      std::string_view admin_cn = "ops-admin");

// Adds `name: ca_path` under trust.manufacturers, keeping the rest of the text (comments included)
// when it can, otherwise re-emitting the document. The result always re-parses with ParsePolicy.
// Same name and same path again: returns the text unchanged. Same name, other path: kAlreadyExists.
Result<std::string> AddManufacturerToPolicyYaml(std::string_view yaml, std::string_view name,
                                                std::string_view ca_path);

}  // namespace edgetrust::policies
