// Device topics (DESIGN.md "Topics and payloads") and the role table that decides who may
// publish and subscribe where. The plugin calls MayPublish / MaySubscribe / MayReceive on every
// message, so they work on string_views only and never allocate.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace edgetrust::protocol {

inline constexpr std::string_view kDefaultTopicPrefix = "et";

// Mosquitto's control topic for our plugin, and the topic the broker answers on.
inline constexpr std::string_view kControlTopic = "$CONTROL/edgetrust/v1";
inline constexpr std::string_view kControlResponseTopic = "$CONTROL/edgetrust/v1/response";

// Every per-device topic: {prefix}/{id}/<suffix>.
enum class TopicKind : uint8_t {
  kEnrollReq,  // enroll/req
  kEnrollRes,  // enroll/res
  kCertReq,    // cert/req
  kCertRes,    // cert/res
  kState,      // state
  kUp,         // up[/{channel…}]
  kDown,       // down[/{channel…}]
  kOtaOffer,   // ota/offer
  kOtaGet,     // ota/get
  kOtaChunk,   // ota/chunk
  kOtaStatus,  // ota/status
  kLifecycle,  // lifecycle
};

// The suffix after {prefix}/{id}/, e.g. "enroll/req", "up".
std::string_view TopicSuffix(TopicKind kind);

// {prefix}/{device_id}/<suffix>[/{channel}] — channel only for kUp and kDown (ignored otherwise).
std::string BuildTopic(std::string_view prefix, std::string_view device_id, TopicKind kind,
                       std::string_view channel = {});

// A channel as a device topic carries it after "up/" or "down/": one or more non-empty levels of
// topic text (IsValidMqttUtf8), no '+' or '#'. For channels from outside (an upstream); the
// plugin's hot path leaves the UTF-8 to the broker, which has checked it.
bool IsValidChannel(std::string_view channel);

// {prefix}/_admin/v1/req and {prefix}/_admin/v1/res. "_admin" can never be a device id.
std::string AdminRequestTopic(std::string_view prefix);
std::string AdminResponseTopic(std::string_view prefix);

struct DeviceTopic {
  std::string_view device_id;  // views into the parsed topic
  TopicKind kind;
  std::string_view channel;  // kUp / kDown only: everything after "up/" or "down/", may be empty
};

// Parses a concrete topic name. nullopt if it is not exactly a device topic: wrong prefix, invalid
// device id, unknown suffix, empty level anywhere (also in the channel), or any '+' / '#'.
std::optional<DeviceTopic> ParseDeviceTopic(std::string_view prefix, std::string_view topic);

enum class Role : uint8_t { kEnrolling, kDevice, kGateway, kAdmin };

std::string_view RoleName(Role role);  // "enrolling" | "device" | "gateway" | "admin"

// The roles table of DESIGN.md ({id} = own_device_id, ignored for gateway and admin):
//
//   enrolling  publish   {p}/{id}/enroll/req
//              subscribe {p}/{id}/enroll/res
//   device     publish   {p}/{id}/up/#, {p}/{id}/state, {p}/{id}/cert/req, {p}/{id}/ota/get,
//                        {p}/{id}/ota/status
//              subscribe {p}/{id}/down/#, {p}/{id}/cert/res, {p}/{id}/ota/offer, {p}/{id}/ota/chunk,
//                        {p}/{id}/lifecycle
//   gateway    publish   any device topic of any device, {p}/_admin/v1/res, $CONTROL/edgetrust/v1
//              subscribe {p}/+/… (any filter under {p}/+/#), {p}/_admin/v1/req,
//                        $CONTROL/edgetrust/v1/response
//   admin      publish   {p}/_admin/v1/req, $CONTROL/edgetrust/v1
//              subscribe {p}/_admin/v1/res, $CONTROL/edgetrust/v1/response
//
// Everything else is refused, in particular every other `$` topic ($SYS/#, other $CONTROL APIs).

// `topic` is a concrete topic name; a name containing '+' or '#' is refused.
bool MayPublish(Role role, std::string_view prefix, std::string_view own_device_id,
                std::string_view topic);

// `filter` is a subscription filter. It is allowed only if every topic it can match is one the
// role may receive, so `#`, `et/#`, `et/+/down/#` or `+/x/down/#` are refused for a device while
// `et/{id}/down/#` and `et/{id}/down/+/temp` are allowed. Malformed filters are refused.
bool MaySubscribe(Role role, std::string_view prefix, std::string_view own_device_id,
                  std::string_view filter);

// For Mosquitto's per-message read check (MOSQ_ACL_READ): may this client receive `topic`?
bool MayReceive(Role role, std::string_view prefix, std::string_view own_device_id,
                std::string_view topic);

// MQTT filter validity: '#' only as the whole last level, '+' only as a whole level, not empty.
bool IsValidTopicFilter(std::string_view filter);

// MQTT topic-name validity: not empty, no '+' or '#'.
bool IsValidTopicName(std::string_view topic);

// Standard MQTT matching, including the rule that a filter starting with a wildcard does not
// match a topic starting with '$'.
bool TopicMatches(std::string_view filter, std::string_view topic);

}  // namespace edgetrust::protocol
