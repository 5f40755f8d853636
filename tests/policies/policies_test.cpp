#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "edgetrust/policies/policy.h"

namespace edgetrust::policies {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string Example(const std::string& name) {
  return std::string(ET_SOURCE_DIR) + "/policies/examples/" + name;
}

// A valid policy; each error test swaps one line of it. Line numbers are 1-based.
const char* const kBase = R"(site: edge-01
trust:
  site_ca: /pki/site-ca.pem
  manufacturers:
    acme: /pki/acme.pem
principals:
  gateway: [gw]
  admin: [ops]
groups:
  - name: thermo
    match: { manufacturer: acme, model: "thermo-*" }
    enrollment: { mode: auto, cert_days: 90, renew_before_days: 30 }
    route: hq
upstreams:
  hq: { kind: mqtt, url: "mqtts://hq.example.com:8883" }
)";

std::string ReplaceLine(std::string text, int line, const std::string& replacement) {
  size_t start = 0;
  for (int l = 1; l < line; ++l) start = text.find('\n', start) + 1;
  size_t end = text.find('\n', start);
  return text.replace(start, end - start, replacement);
}

// Expects a kInvalidArgument whose message starts with "t.yaml:<line>:" and contains `reason`.
void ExpectErrorAt(const std::string& yaml, int line, const std::string& reason) {
  auto p = ParsePolicy(yaml, "t.yaml");
  ASSERT_FALSE(p.ok()) << "policy unexpectedly valid:\n" << yaml;
  EXPECT_EQ(p.error().code, ErrorCode::kInvalidArgument);
  const std::string& m = p.error().message;
  EXPECT_EQ(m.rfind("t.yaml:" + std::to_string(line) + ":", 0), 0u) << m;
  EXPECT_NE(m.find(reason), std::string::npos) << m;
}

TEST(PolicyExamples, SiteExampleParses) {
  auto p = LoadPolicyFile(Example("site.yaml"));
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(p->site, "edge-01");
  EXPECT_EQ(p->topic_prefix, "et");
  EXPECT_EQ(p->trust.site_ca, "/etc/edgetrust/pki/site-ca.pem");
  EXPECT_EQ(p->ManufacturerNames(), (std::vector<std::string>{"acme", "globex"}));
  ASSERT_EQ(p->groups.size(), 4u);
  const Group& t = p->groups[0];
  EXPECT_EQ(t.name, "thermostats");
  EXPECT_EQ(t.enrollment.mode, EnrollmentMode::kAuto);
  EXPECT_TRUE(t.enrollment.reenroll);
  EXPECT_EQ(t.enrollment.cert_days, 90);
  EXPECT_EQ(t.route, "aws");
  EXPECT_EQ(t.ota.channel, "stable");
  EXPECT_EQ(t.ota.rollout.waves, (std::vector<int>{5, 25, 100}));
  EXPECT_EQ(t.ota.rollout.halt_on_failure_percent, 10);
  EXPECT_EQ(t.on_transfer,
            (std::vector<LifecycleAction>{LifecycleAction::kRevokeOperational, LifecycleAction::kWipe}));
  EXPECT_EQ(t.on_retire, (std::vector<LifecycleAction>{LifecycleAction::kRevokeAll, LifecycleAction::kWipe}));
  EXPECT_EQ(p->groups[1].enrollment.mode, EnrollmentMode::kAllowlist);
  EXPECT_EQ(p->groups[1].enrollment.renew_before_days, 10);
  EXPECT_EQ(p->groups[2].enrollment.mode, EnrollmentMode::kClaim);
  EXPECT_FALSE(p->groups[2].enrollment.allow_unknown);
  EXPECT_TRUE(p->groups[3].route.empty());

  const Upstream* aws = p->FindUpstream("aws");
  ASSERT_NE(aws, nullptr);
  EXPECT_EQ(aws->kind, UpstreamKind::kAwsIot);
  EXPECT_EQ(aws->host, "xxxx-ats.iot.eu-west-1.amazonaws.com");
  EXPECT_EQ(aws->port, 8883);
  EXPECT_EQ(aws->qos, 1);
  EXPECT_EQ(aws->topic, "dt/{site}/{device}/{channel}");
  const Upstream* azure = p->FindUpstream("azure");
  ASSERT_NE(azure, nullptr);
  EXPECT_EQ(azure->kind, UpstreamKind::kAzureIotHub);
  EXPECT_EQ(azure->identity, UpstreamIdentity::kDevice);
  EXPECT_EQ(azure->host, "myhub.azure-devices.net");
  const Upstream* hq = p->FindUpstream("hq");
  ASSERT_NE(hq, nullptr);
  EXPECT_TRUE(hq->tls);
  EXPECT_EQ(hq->host, "hq.example.com");
  EXPECT_EQ(hq->protocol, 5);
  EXPECT_EQ(hq->connections, 2);
  EXPECT_EQ(p->queue.max_bytes, 256ull << 20);
  EXPECT_EQ(p->queue.on_full, QueueFullAction::kDropOldest);
}

TEST(PolicyExamples, MinimalExampleParsesWithPathsRelativeToTheFile) {
  auto p = LoadPolicyFile(Example("minimal.yaml"));
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(p->trust.site_ca, Example("site-ca.pem"));
  EXPECT_EQ(p->trust.manufacturers.at("acme"), Example("acme-ca.pem"));
  ASSERT_EQ(p->groups.size(), 1u);
  EXPECT_EQ(p->groups[0].match.model, "*");
  EXPECT_EQ(p->groups[0].enrollment.cert_days, 90);
  EXPECT_EQ(p->groups[0].enrollment.renew_before_days, 30);
  EXPECT_FALSE(p->groups[0].enrollment.reenroll);
  EXPECT_TRUE(p->groups[0].enrollment.allow_unknown);
  EXPECT_EQ(p->queue.max_bytes, 256ull << 20);
}

TEST(PolicyLoad, MissingFileIsNotFound) {
  auto p = LoadPolicyFile("/nonexistent/policy.yaml");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kNotFound);
}

TEST(PolicyValidation, BaseIsValid) {
  auto p = ParsePolicy(kBase, "t.yaml");
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(p->source, "t.yaml");
}

TEST(PolicyValidation, UnknownTopLevelKeyWithSuggestion) {
  ExpectErrorAt(std::string(kBase) + "qeueu: {}\n", 16, "unknown key 'qeueu' in the policy (did you mean 'queue'?)");
}

TEST(PolicyValidation, UnknownGroupKey) {
  ExpectErrorAt(ReplaceLine(kBase, 12, "    enrolment: { mode: auto }"), 12,
                "unknown key 'enrolment' in groups[0] (did you mean 'enrollment'?)");
}

TEST(PolicyValidation, UnknownKeysInNestedMaps) {
  ExpectErrorAt(ReplaceLine(kBase, 11, "    match: { manufacturer: acme, modle: x }"), 11, "unknown key 'modle'");
  ExpectErrorAt(ReplaceLine(kBase, 12, "    enrollment: { mode: auto, cert_day: 5 }"), 12, "unknown key 'cert_day'");
  ExpectErrorAt(ReplaceLine(kBase, 3, "  site_cert: /x"), 3, "unknown key 'site_cert' in trust");
  ExpectErrorAt(ReplaceLine(kBase, 8, "  admins: [ops]"), 8, "unknown key 'admins' in principals");
  ExpectErrorAt(ReplaceLine(kBase, 15, "  hq: { kind: mqtt, url: \"mqtt://h\", endpoint: x }"), 15,
                "unknown key 'endpoint' in upstream 'hq'");
}

TEST(PolicyValidation, DuplicateKey) {
  ExpectErrorAt(ReplaceLine(kBase, 13, "    route: hq\n    route: hq"), 14, "duplicate key 'route'");
}

TEST(PolicyValidation, MissingSite) {
  ExpectErrorAt(ReplaceLine(kBase, 1, "topic_prefix: et"), 1, "'site' is required");
}

TEST(PolicyValidation, BadSiteId) {
  ExpectErrorAt(ReplaceLine(kBase, 1, "site: \"-bad site\""), 1, "site '-bad site' is not a valid name");
}

TEST(PolicyValidation, WrongTypes) {
  ExpectErrorAt(ReplaceLine(kBase, 1, "site: [a, b]"), 1, "site must be a string, got a list");
  ExpectErrorAt(ReplaceLine(kBase, 7, "  gateway: gw"), 7, "principals.gateway must be a list");
  ExpectErrorAt("site: s\ntrust: { site_ca: /ca.pem }\ngroups: {a: b}\n", 3, "groups must be a list");
  ExpectErrorAt("site: s\ntrust: /ca.pem\n", 2, "trust must be a mapping, got a scalar");
  ExpectErrorAt(ReplaceLine(kBase, 12, "    enrollment: { cert_days: ninety }"), 12,
                "cert_days must be an integer");
  ExpectErrorAt(ReplaceLine(kBase, 12, "    enrollment: { cert_days: \"90\" }"), 12,
                "cert_days must be an integer");
  ExpectErrorAt(ReplaceLine(kBase, 12, "    enrollment: { reenroll: yes }"), 12,
                "reenroll must be true or false");
  ExpectErrorAt(ReplaceLine(kBase, 12, "    enrollment: auto"), 12, "must be a mapping");
}

TEST(PolicyValidation, RouteNamesNoUpstream) {
  ExpectErrorAt(ReplaceLine(kBase, 13, "    route: aws"), 13, "route 'aws' names no upstream");
}

TEST(PolicyValidation, DuplicateGroupNames) {
  std::string yaml = ReplaceLine(kBase, 13, "    route: hq\n  - name: thermo");
  ExpectErrorAt(yaml, 14, "duplicate group name 'thermo'");
}

TEST(PolicyValidation, GroupWithoutName) {
  ExpectErrorAt(ReplaceLine(kBase, 10, "  - ota: {}"), 10, "'name' is required");
}

TEST(PolicyValidation, BadEnrollmentMode) {
  ExpectErrorAt(ReplaceLine(kBase, 12, "    enrollment: { mode: open }"), 12,
                "mode 'open' is not one of auto, allowlist, claim");
}

TEST(PolicyValidation, CertDaysRange) {
  ExpectErrorAt(ReplaceLine(kBase, 12, "    enrollment: { cert_days: 0 }"), 12, "must be in 1..3650, got 0");
  ExpectErrorAt(ReplaceLine(kBase, 12, "    enrollment: { cert_days: 3651 }"), 12, "must be in 1..3650, got 3651");
  EXPECT_TRUE(ParsePolicy(ReplaceLine(kBase, 12, "    enrollment: { cert_days: 3650 }"), "t").ok());
}

TEST(PolicyValidation, RenewBeforeMustBeLessThanCertDays) {
  ExpectErrorAt(ReplaceLine(kBase, 12, "    enrollment: { cert_days: 30, renew_before_days: 30 }"), 12,
                "renew_before_days (30) must be less than cert_days (30)");
  // Inherited renew_before_days (30) against a short cert_days: pointed at cert_days.
  ExpectErrorAt(ReplaceLine(kBase, 12, "    enrollment:\n      cert_days: 7"), 13,
                "renew_before_days (30) must be less than cert_days (7)");
}

TEST(PolicyValidation, RenewalDefaultsAreInherited) {
  auto p = ParsePolicy(std::string(kBase) + "renewal: { cert_days: 10, renew_before_days: 3 }\n", "t");
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(p->groups[0].enrollment.cert_days, 90);  // set in the group
  EXPECT_EQ(p->groups[0].enrollment.renew_before_days, 30);
  auto q = ParsePolicy("renewal: { cert_days: 10, renew_before_days: 3 }\n" +
                           ReplaceLine(kBase, 12, "    enrollment: { mode: claim }"),
                       "t");
  ASSERT_TRUE(q.ok()) << q.error().ToString();
  EXPECT_EQ(q->groups[0].enrollment.cert_days, 10);
  EXPECT_EQ(q->groups[0].enrollment.renew_before_days, 3);
  ExpectErrorAt(std::string(kBase) + "renewal: { cert_days: 10 }\n", 16, "must be less than cert_days");
}

TEST(PolicyValidation, PrincipalCnsMustBeValidIds) {
  ExpectErrorAt(ReplaceLine(kBase, 7, "  gateway: [\"gw/1\"]"), 7, "principals.gateway[0] 'gw/1' is not a valid name");
  ExpectErrorAt(ReplaceLine(kBase, 8, "  admin: [ops, \"\"]"), 8, "principals.admin[1] '' is not a valid name");
  ExpectErrorAt(ReplaceLine(kBase, 8, "  admin: [gw]"), 8, "cannot be both gateway and admin");
}

TEST(PolicyValidation, ManufacturerChecks) {
  ExpectErrorAt(ReplaceLine(kBase, 11, "    match: { manufacturer: initech }"), 11,
                "manufacturer 'initech' is not in trust.manufacturers");
  ExpectErrorAt(ReplaceLine(kBase, 5, "    \"ac me\": /pki/acme.pem"), 5, "manufacturer 'ac me' is not a valid name");
  ExpectErrorAt(ReplaceLine(kBase, 5, "    acme: \"\""), 5, "must not be empty");
  ExpectErrorAt(ReplaceLine(kBase, 3, "  # no site_ca"), 2, "trust.site_ca is required");
}

TEST(PolicyValidation, TopicPrefix) {
  EXPECT_TRUE(ParsePolicy("topic_prefix: site/a\n" + std::string(kBase), "t").ok());
  ExpectErrorAt("topic_prefix: \"$SYS\"\n" + std::string(kBase), 1, "topic_prefix '$SYS'");
  ExpectErrorAt("topic_prefix: \"et/#\"\n" + std::string(kBase), 1, "without wildcards");
  ExpectErrorAt("topic_prefix: \"et//x\"\n" + std::string(kBase), 1, "non-empty topic levels");
  ExpectErrorAt("topic_prefix: \"et\\tx\"\n" + std::string(kBase), 1, "UTF-8 without control characters");
}

TEST(PolicyValidation, OtaAndActions) {
  ExpectErrorAt(ReplaceLine(kBase, 13, "    ota: { rollout: { waves: [50, 25, 100] } }"), 13, "strictly increasing");
  ExpectErrorAt(ReplaceLine(kBase, 13, "    ota: { rollout: { waves: [5, 50] } }"), 13, "must end at 100");
  ExpectErrorAt(ReplaceLine(kBase, 13, "    ota: { rollout: { halt_on_failure_percent: 0 } }"), 13, "must be in 1..100");
  ExpectErrorAt(ReplaceLine(kBase, 13, "    on_retire: [wipe, explode]"), 13, "unknown action 'explode'");
  ExpectErrorAt(ReplaceLine(kBase, 13, "    on_retire: [wipe]"), 13, "on_retire must include revoke_all");
  ExpectErrorAt(ReplaceLine(kBase, 13, "    on_transfer: [wipe]"), 13, "on_transfer must include revoke_operational");
  ExpectErrorAt(ReplaceLine(kBase, 13, "    on_transfer: [revoke_all, revoke_all]"), 13, "listed twice");
}

TEST(PolicyValidation, UpstreamsPerKind) {
  auto up = [](const std::string& line) { return ReplaceLine(kBase, 15, "  hq: " + line); };
  ExpectErrorAt(up("{ url: \"mqtts://h\" }"), 15, "'kind' is required");
  ExpectErrorAt(up("{ kind: kafka }"), 15, "kind 'kafka' is not one of mqtt, aws-iot, azure-iot-hub");
  ExpectErrorAt(up("{ kind: mqtt }"), 15, "'url' is required for kind mqtt");
  ExpectErrorAt(up("{ kind: mqtt, url: \"http://h\" }"), 15, "url must start with mqtt:// or mqtts://");
  ExpectErrorAt(up("{ kind: mqtt, url: \"mqtts://h:99999\" }"), 15, "is not mqtt[s]://host[:port]");
  ExpectErrorAt(up("{ kind: mqtt, url: \"mqtts://\" }"), 15, "is not mqtt[s]://host[:port]");
  ExpectErrorAt(up("{ kind: mqtt, url: \"mqtts://h\", qos: 3 }"), 15, "qos must be in 0..2");
  ExpectErrorAt(up("{ kind: mqtt, url: \"mqtts://h\", cert: /c }"), 15, "cert and key must be given together");
  ExpectErrorAt(up("{ kind: mqtt, url: \"mqtts://h\", topic: \"a/{dev}\" }"), 15, "unknown placeholder {dev}");
  ExpectErrorAt(up("{ kind: mqtt, url: \"mqtts://h\", topic: \"a/#\" }"), 15, "wildcards");
  ExpectErrorAt(up("{ kind: mqtt, url: \"mqtts://h\", topic: \"a/\\x01/{device}\" }"), 15,
                "UTF-8 without control characters");
  ExpectErrorAt(up("{ kind: mqtt, url: \"mqtts://h\", down_topic: \"\\x85/{device}\" }"), 15,
                "UTF-8 without control characters");
  ExpectErrorAt(up("{ kind: mqtt, url: \"mqtts://h\", down_topic: \"a/{channel}\" }"), 15, "must contain {device}");
  ExpectErrorAt(up("{ kind: mqtt, url: \"mqtts://h\", protocol: 3 }"), 15, "protocol must be in 4..5");
  ExpectErrorAt(up("{ kind: mqtt, url: \"mqtts://h\", connections: 0 }"), 15, "connections must be in 1..64");
  ExpectErrorAt(up("{ kind: aws-iot, endpoint: \"https://x:8883\", cert: /c, key: /k }"), 15, "is not host:port");
  ExpectErrorAt(up("{ kind: aws-iot, endpoint: \"x.amazonaws.com:8883\" }"), 15, "cert and key are required");
  ExpectErrorAt(up("{ kind: aws-iot, endpoint: \"x:8883\", cert: /c, key: /k, qos: 2 }"), 15, "qos must be in 0..1");
  ExpectErrorAt(up("{ kind: azure-iot-hub, group_key_file: /g }"), 15, "'hostname' is required");
  ExpectErrorAt(up("{ kind: azure-iot-hub, hostname: h.azure-devices.net }"), 15,
                "exactly one of group_key_file or device_key_dir");
  ExpectErrorAt(up("{ kind: azure-iot-hub, hostname: h.azure-devices.net, identity: gateway, group_key_file: /g }"),
                15, "identity must be device");
  ExpectErrorAt(up("{ kind: azure-iot-hub, hostname: h.azure-devices.net, group_key_file: /g, protocol: 5 }"), 15,
                "protocol must be 4");
  ExpectErrorAt(up("{ kind: azure-iot-hub, hostname: h.azure-devices.net, group_key_file: /g, url: x }"), 15,
                "unknown key 'url'");

  auto ok = ParsePolicy(up("{ kind: mqtt, url: \"mqtt://broker\", qos: 2 }"), "t");
  ASSERT_TRUE(ok.ok()) << ok.error().ToString();
  const Upstream* u = ok->FindUpstream("hq");
  EXPECT_FALSE(u->tls);
  EXPECT_EQ(u->port, 1883);
  EXPECT_EQ(u->topic, "{site}/{device}/{channel}");
  auto aws = ParsePolicy(up("{ kind: aws-iot, endpoint: \"x.amazonaws.com\", cert: c.pem, key: k.pem }"), "t",
                         "/etc/et");
  ASSERT_TRUE(aws.ok()) << aws.error().ToString();
  EXPECT_EQ(aws->FindUpstream("hq")->port, 8883);
  EXPECT_EQ(aws->FindUpstream("hq")->cert, "/etc/et/c.pem");
  // identity device: one connection per device with a certificate the gateway issues; no
  // site-wide cert/key needed.
  auto per_device = ParsePolicy(up("{ kind: aws-iot, endpoint: \"x.amazonaws.com\", identity: device }"), "t");
  ASSERT_TRUE(per_device.ok()) << per_device.error().ToString();
  EXPECT_EQ(per_device->FindUpstream("hq")->identity, UpstreamIdentity::kDevice);
  ExpectErrorAt(up("{ kind: mqtt, url: \"mqtts://h\", identity: device }"), 15,
                "identity must be gateway for kind mqtt");
}

TEST(PolicyValidation, QueueSizes) {
  auto queue = [](const std::string& q) { return ParsePolicy(std::string(kBase) + "queue: " + q + "\n", "t"); };
  EXPECT_EQ(queue("{ max_bytes: 1GiB }")->queue.max_bytes, 1ull << 30);
  EXPECT_EQ(queue("{ max_bytes: 64KiB }")->queue.max_bytes, 64ull << 10);
  EXPECT_EQ(queue("{ max_bytes: 1048576 }")->queue.max_bytes, 1048576u);
  EXPECT_EQ(queue("{ max_bytes: 10MB, on_full: refuse }")->queue.max_bytes, 10000000u);
  EXPECT_EQ(queue("{ on_full: refuse }")->queue.on_full, QueueFullAction::kRefuse);
  ExpectErrorAt(std::string(kBase) + "queue: { max_bytes: 12 parsecs }\n", 16, "queue.max_bytes must be a size");
  ExpectErrorAt(std::string(kBase) + "queue: { max_bytes: 100 }\n", 16, "at least 4KiB");
  ExpectErrorAt(std::string(kBase) + "queue: { max_bytes: 99999999999999999999GiB }\n", 16, "must be a size");
  ExpectErrorAt(std::string(kBase) + "queue: { on_full: block }\n", 16, "on_full 'block'");
}

TEST(PolicySizes, ParseByteSize) {
  EXPECT_EQ(ParseByteSize("256MiB"), 256ull << 20);
  EXPECT_EQ(ParseByteSize("1GiB"), 1ull << 30);
  EXPECT_EQ(ParseByteSize("64KiB"), 64ull << 10);
  EXPECT_EQ(ParseByteSize("64 KiB"), 64ull << 10);
  EXPECT_EQ(ParseByteSize("4096"), 4096u);
  EXPECT_EQ(ParseByteSize("2KB"), 2000u);
  EXPECT_EQ(ParseByteSize(""), std::nullopt);
  EXPECT_EQ(ParseByteSize("MiB"), std::nullopt);
  EXPECT_EQ(ParseByteSize("-1"), std::nullopt);
  EXPECT_EQ(ParseByteSize("1.5GiB"), std::nullopt);
  EXPECT_EQ(ParseByteSize("1 XiB"), std::nullopt);
  EXPECT_EQ(ParseByteSize("17179869184GiB"), std::nullopt);  // 2^64 overflows
  EXPECT_EQ(ParseByteSize("99999999999999999999999"), std::nullopt);
}

TEST(PolicyMatching, Glob) {
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_TRUE(GlobMatch("*", "anything"));
  EXPECT_TRUE(GlobMatch("thermo-*", "thermo-"));
  EXPECT_TRUE(GlobMatch("thermo-*", "thermo-x2"));
  EXPECT_FALSE(GlobMatch("thermo-*", "thermo"));
  EXPECT_FALSE(GlobMatch("thermo-*", "xthermo-1"));
  EXPECT_TRUE(GlobMatch("meter-??", "meter-01"));
  EXPECT_FALSE(GlobMatch("meter-??", "meter-1"));
  EXPECT_FALSE(GlobMatch("meter-??", "meter-001"));
  EXPECT_TRUE(GlobMatch("*-v?-*", "cam-v2-outdoor"));
  EXPECT_FALSE(GlobMatch("*-v?-*", "cam-v22-outdoor"));
  EXPECT_TRUE(GlobMatch("a*b*c", "aXXbYYbc"));
  EXPECT_FALSE(GlobMatch("a*b*c", "aXXbYYb"));
  EXPECT_TRUE(GlobMatch("exact", "exact"));
  EXPECT_FALSE(GlobMatch("exact", "exactly"));
  // A pathological pattern stays fast (no exponential backtracking).
  EXPECT_FALSE(GlobMatch("*a*a*a*a*a*a*a*a*b", std::string(5000, 'a')));
}

TEST(PolicyMatching, FirstMatchWins) {
  auto p = LoadPolicyFile(Example("site.yaml"));
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(p->MatchGroup("acme", "thermo-1")->name, "thermostats");
  EXPECT_EQ(p->MatchGroup("globex", "meter-12")->name, "meters");
  EXPECT_EQ(p->MatchGroup("globex", "meter-123")->name, "quarantine");
  EXPECT_EQ(p->MatchGroup("acme", "rental-7")->name, "rental");
  EXPECT_EQ(p->MatchGroup("globex", "thermo-1")->name, "quarantine");  // manufacturer is exact
  EXPECT_EQ(p->MatchGroup("ACME", "thermo-1")->name, "quarantine");    // and case-sensitive

  auto strict = ParsePolicy(kBase, "t");
  ASSERT_TRUE(strict.ok());
  EXPECT_EQ(strict->MatchGroup("acme", "lamp"), nullptr);
  EXPECT_EQ(strict->FindGroup("thermo"), &strict->groups[0]);
  EXPECT_EQ(strict->FindGroup("nope"), nullptr);
}

TEST(PolicyMatching, PrincipalRoles) {
  auto p = ParsePolicy(kBase, "t");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->PrincipalRoleOf("gw"), PrincipalRole::kGateway);
  EXPECT_EQ(p->PrincipalRoleOf("ops"), PrincipalRole::kAdmin);
  EXPECT_EQ(p->PrincipalRoleOf("thermo-1"), std::nullopt);
  EXPECT_EQ(p->PrincipalRoleOf(""), std::nullopt);
}

TEST(PolicyGarbage, ReturnsErrorsNeverThrows) {
  const std::vector<std::string> inputs = {
      "",
      "   \n# only a comment\n",
      "site: [unclosed",
      "site: edge\n  bad: indent\n",
      "{{{{",
      "- a\n- b\n",
      "just a scalar",
      "site: a\n---\nsite: b\n",
      "site: &a [*a]\n",
      "key: \"unterminated\n",
      "? [complex, key]\n: value\n",
      "site: edge-01\ntrust: !!binary aGVsbG8=\n",
      std::string("site: x\n\0\x01\x02", 11),
      "\xff\xfe\xfd garbage \x80\x81",
  };
  for (const std::string& in : inputs) {
    auto p = ParsePolicy(in, "g.yaml");
    ASSERT_FALSE(p.ok()) << "accepted: " << in;
    EXPECT_EQ(p.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(p.error().message.rfind("g.yaml", 0), 0u) << p.error().message;
  }
  auto syntax = ParsePolicy("site: edge\ntrust: [unclosed\n", "g.yaml");
  ASSERT_FALSE(syntax.ok());
  EXPECT_NE(syntax.error().message.find("invalid YAML"), std::string::npos) << syntax.error().message;
  EXPECT_EQ(syntax.error().message.rfind("g.yaml:", 0), 0u);
}

TEST(PolicyGarbage, BinaryNoise) {
  uint32_t state = 12345;
  for (int round = 0; round < 200; ++round) {
    std::string noise(1 + round * 7, '\0');
    for (char& c : noise) {
      state = state * 1103515245u + 12345u;
      c = static_cast<char>(state >> 16);
    }
    auto p = ParsePolicy(noise, "noise");
    EXPECT_FALSE(p.ok());
  }
}

TEST(PolicyGarbage, DeeplyNested) {
  std::string deep = "site: " + std::string(100000, '[') + std::string(100000, ']') + "\n";
  auto p = ParsePolicy(deep, "deep.yaml");
  ASSERT_FALSE(p.ok());
  std::string block;
  for (int i = 0; i < 5000; ++i) block += std::string(i, ' ') + "k:\n";
  EXPECT_FALSE(ParsePolicy(block, "deep2.yaml").ok());
}

TEST(PolicyGarbage, Huge) {
  std::string huge = std::string(kBase) + "# " + std::string(kMaxPolicyBytes, 'x') + "\n";
  auto p = ParsePolicy(huge, "huge.yaml");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message.find("larger than"), std::string::npos);
}

TEST(PolicyText, StarterPolicyParses) {
  auto y = StarterPolicyYaml("edge-07", "/srv/site/site-ca.pem");
  ASSERT_TRUE(y.ok()) << y.error().ToString();
  auto p = ParsePolicy(*y, "starter");
  ASSERT_TRUE(p.ok()) << p.error().ToString() << "\n" << *y;
  EXPECT_EQ(p->site, "edge-07");
  EXPECT_EQ(p->trust.site_ca, "/srv/site/site-ca.pem");
  EXPECT_TRUE(p->trust.manufacturers.empty());
  EXPECT_EQ(p->PrincipalRoleOf("edgetrust-gateway"), PrincipalRole::kGateway);
  EXPECT_EQ(p->PrincipalRoleOf("ops-admin"), PrincipalRole::kAdmin);
  ASSERT_EQ(p->groups.size(), 1u);
  EXPECT_EQ(p->groups[0].name, "default");
  EXPECT_EQ(p->groups[0].enrollment.mode, EnrollmentMode::kAuto);
  EXPECT_TRUE(p->groups[0].route.empty());
  EXPECT_EQ(p->MatchGroup("anyone", "anything"), &p->groups[0]);

  // A path that needs quoting survives.
  auto odd = StarterPolicyYaml("s1", "/a path/with: colon #and hash/ca.pem", "gw-1", "adm-1");
  ASSERT_TRUE(odd.ok());
  auto q = ParsePolicy(*odd, "odd");
  ASSERT_TRUE(q.ok()) << q.error().ToString();
  EXPECT_EQ(q->trust.site_ca, "/a path/with: colon #and hash/ca.pem");
  EXPECT_EQ(q->PrincipalRoleOf("adm-1"), PrincipalRole::kAdmin);

  EXPECT_FALSE(StarterPolicyYaml("bad site", "/ca.pem").ok());
  EXPECT_FALSE(StarterPolicyYaml("s", "").ok());
  EXPECT_FALSE(StarterPolicyYaml("s", "/ca.pem", "same", "same").ok());
}

TEST(PolicyText, AddManufacturerRoundTripKeepsComments) {
  auto y = StarterPolicyYaml("edge-07", "/srv/site/site-ca.pem");
  ASSERT_TRUE(y.ok());
  auto once = AddManufacturerToPolicyYaml(*y, "acme", "/srv/site/acme-ca.pem");
  ASSERT_TRUE(once.ok()) << once.error().ToString();
  auto twice = AddManufacturerToPolicyYaml(*once, "globex", "/srv/site/globex ca.pem");
  ASSERT_TRUE(twice.ok()) << twice.error().ToString();
  auto p = ParsePolicy(*twice, "after");
  ASSERT_TRUE(p.ok()) << p.error().ToString() << "\n" << *twice;
  EXPECT_EQ(p->trust.manufacturers.size(), 2u);
  EXPECT_EQ(p->trust.manufacturers.at("acme"), "/srv/site/acme-ca.pem");
  EXPECT_EQ(p->trust.manufacturers.at("globex"), "/srv/site/globex ca.pem");
  EXPECT_NE(twice->find("# Evaluated at enrollment, first match wins."), std::string::npos) << *twice;
  // The empty flow mapping of the starter policy became a block mapping, extended in place.
  EXPECT_NE(twice->find("  manufacturers:\n    acme: \"/srv/site/acme-ca.pem\"\n    globex: "), std::string::npos)
      << *twice;

  // Same again: unchanged. Same name, other CA: refused.
  auto again = AddManufacturerToPolicyYaml(*twice, "acme", "/srv/site/acme-ca.pem");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *twice);
  auto clash = AddManufacturerToPolicyYaml(*twice, "acme", "/other.pem");
  ASSERT_FALSE(clash.ok());
  EXPECT_EQ(clash.error().code, ErrorCode::kAlreadyExists);
  EXPECT_FALSE(AddManufacturerToPolicyYaml(*twice, "bad name", "/x.pem").ok());
  EXPECT_FALSE(AddManufacturerToPolicyYaml("site: [", "acme", "/x.pem").ok());
}

TEST(PolicyText, AddManufacturerToBlockMapAndExamples) {
  // Block-style manufacturers with a comment after the last entry.
  std::string base = ReplaceLine(kBase, 5, "    acme: /pki/acme.pem   # the first one\n    # keep me");
  auto added = AddManufacturerToPolicyYaml(base, "globex", "/pki/globex.pem");
  ASSERT_TRUE(added.ok()) << added.error().ToString();
  EXPECT_NE(added->find("# keep me"), std::string::npos);
  EXPECT_NE(added->find("    globex: \"/pki/globex.pem\"\n"), std::string::npos) << *added;
  auto p = ParsePolicy(*added, "t");
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(p->ManufacturerNames(), (std::vector<std::string>{"acme", "globex"}));

  for (const char* name : {"site.yaml", "minimal.yaml"}) {
    std::string text = ReadFile(Example(name));
    auto r = AddManufacturerToPolicyYaml(text, "initech", "initech-ca.pem");
    ASSERT_TRUE(r.ok()) << name << ": " << r.error().ToString();
    auto q = ParsePolicy(*r, name);
    ASSERT_TRUE(q.ok()) << q.error().ToString();
    EXPECT_EQ(q->trust.manufacturers.at("initech"), "initech-ca.pem");
    EXPECT_NE(r->find("#"), std::string::npos) << "comments lost in " << name;
  }
  auto flow = AddManufacturerToPolicyYaml(ReadFile(Example("minimal.yaml")), "initech", "i.pem");
  ASSERT_TRUE(flow.ok());
  EXPECT_NE(flow->find("manufacturers: { acme: acme-ca.pem, initech: \"i.pem\" }"), std::string::npos) << *flow;

  // No manufacturers key at all: falls back to re-emitting, still valid.
  std::string none = ReplaceLine(ReplaceLine(kBase, 5, ""), 4, "");
  none = ReplaceLine(none, 11, "    match: { model: \"thermo-*\" }");
  ASSERT_TRUE(ParsePolicy(none, "t").ok()) << ParsePolicy(none, "t").error().ToString();
  auto fresh = AddManufacturerToPolicyYaml(none, "acme", "/pki/acme.pem");
  ASSERT_TRUE(fresh.ok()) << fresh.error().ToString();
  auto f = ParsePolicy(*fresh, "t");
  ASSERT_TRUE(f.ok()) << f.error().ToString() << "\n" << *fresh;
  EXPECT_EQ(f->trust.manufacturers.at("acme"), "/pki/acme.pem");
  EXPECT_EQ(f->groups.size(), 1u);
}

}  // namespace
}  // namespace edgetrust::policies
