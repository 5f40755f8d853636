// MOSQ_EVT_MESSAGE: every PUBLISH a client makes (not $CONTROL, not wills) gets the
// et-cert-sha256 user property of the certificate its connection presented, and loses any
// et-cert-sha256 the client put there itself. MQTT 3.1.1 publishers are stamped too: the
// property travels with the stored message to v5 subscribers such as the gateway.
#include <cstring>
#include <memory>
#include <utility>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mqtt_protocol.h>

#include "events.h"

namespace edgetrust::plugin::internal {
namespace {

constexpr const char* kStampName = "et-cert-sha256";

// Frees a property list unless released.
struct PropertyList {
  mosquitto_property* list = nullptr;
  ~PropertyList() { mosquitto_property_free_all(&list); }
  mosquitto_property* release() { return std::exchange(list, nullptr); }
};

struct FreeString {
  void operator()(void* p) const { mosquitto_free(p); }
};

bool IsStamp(const mosquitto_property* p) {
  if (mosquitto_property_identifier(p) != MQTT_PROP_USER_PROPERTY) return false;
  char* name = nullptr;
  char* value = nullptr;
  if (!mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value, false)) {
    return true;  // unreadable: drop it rather than pass it on
  }
  std::unique_ptr<char, FreeString> n(name), v(value);
  return name != nullptr && std::strcmp(name, kStampName) == 0;
}

// Appends a copy of one property (the broker has no single-property copy).
int CopyProperty(mosquitto_property** dst, const mosquitto_property* p) {
  const int id = mosquitto_property_identifier(p);
  switch (id) {
    case MQTT_PROP_PAYLOAD_FORMAT_INDICATOR:
    case MQTT_PROP_REQUEST_PROBLEM_INFORMATION:
    case MQTT_PROP_REQUEST_RESPONSE_INFORMATION:
    case MQTT_PROP_MAXIMUM_QOS:
    case MQTT_PROP_RETAIN_AVAILABLE:
    case MQTT_PROP_WILDCARD_SUB_AVAILABLE:
    case MQTT_PROP_SUBSCRIPTION_ID_AVAILABLE:
    case MQTT_PROP_SHARED_SUB_AVAILABLE: {
      uint8_t v = 0;
      mosquitto_property_read_byte(p, id, &v, false);
      return mosquitto_property_add_byte(dst, id, v);
    }
    case MQTT_PROP_SERVER_KEEP_ALIVE:
    case MQTT_PROP_RECEIVE_MAXIMUM:
    case MQTT_PROP_TOPIC_ALIAS_MAXIMUM:
    case MQTT_PROP_TOPIC_ALIAS: {
      uint16_t v = 0;
      mosquitto_property_read_int16(p, id, &v, false);
      return mosquitto_property_add_int16(dst, id, v);
    }
    case MQTT_PROP_MESSAGE_EXPIRY_INTERVAL:
    case MQTT_PROP_SESSION_EXPIRY_INTERVAL:
    case MQTT_PROP_WILL_DELAY_INTERVAL:
    case MQTT_PROP_MAXIMUM_PACKET_SIZE: {
      uint32_t v = 0;
      mosquitto_property_read_int32(p, id, &v, false);
      return mosquitto_property_add_int32(dst, id, v);
    }
    case MQTT_PROP_SUBSCRIPTION_IDENTIFIER: {
      uint32_t v = 0;
      mosquitto_property_read_varint(p, id, &v, false);
      return mosquitto_property_add_varint(dst, id, v);
    }
    case MQTT_PROP_CORRELATION_DATA:
    case MQTT_PROP_AUTHENTICATION_DATA: {
      void* v = nullptr;
      uint16_t len = 0;
      if (!mosquitto_property_read_binary(p, id, &v, &len, false)) return MOSQ_ERR_INVAL;
      std::unique_ptr<void, FreeString> owned(v);
      return mosquitto_property_add_binary(dst, id, v, len);
    }
    case MQTT_PROP_USER_PROPERTY: {
      char* name = nullptr;
      char* value = nullptr;
      if (!mosquitto_property_read_string_pair(p, id, &name, &value, false)) return MOSQ_ERR_INVAL;
      std::unique_ptr<char, FreeString> n(name), v(value);
      return mosquitto_property_add_string_pair(dst, id, name, value);
    }
    default: {
      char* v = nullptr;
      if (!mosquitto_property_read_string(p, id, &v, false)) return MOSQ_ERR_INVAL;
      std::unique_ptr<char, FreeString> owned(v);
      return mosquitto_property_add_string(dst, id, v);
    }
  }
}

}  // namespace

int HandleMessage(PluginState& state, void* event_data) {
  auto* ev = static_cast<mosquitto_evt_message*>(event_data);
  const ClientInfo* client = state.clients.Find(ev->client);
  if (client == nullptr || client->cut_off) return MOSQ_ERR_ACL_DENIED;

  bool forged = false;
  for (const mosquitto_property* p = ev->properties; p; p = mosquitto_property_next(p)) {
    if (IsStamp(p)) {
      forged = true;
      break;
    }
  }
  if (forged) {
    PropertyList rebuilt;
    for (const mosquitto_property* p = ev->properties; p; p = mosquitto_property_next(p)) {
      if (IsStamp(p)) continue;
      if (CopyProperty(&rebuilt.list, p) != MOSQ_ERR_SUCCESS) return MOSQ_ERR_ACL_DENIED;
    }
    mosquitto_property_free_all(&ev->properties);
    ev->properties = rebuilt.release();
    ++state.counters.forged_stamps_removed;
  }
  // Adds to the broker-owned list in place: on failure the list is unchanged and the message
  // is refused, never forwarded unstamped.
  if (mosquitto_property_add_string_pair(&ev->properties, MQTT_PROP_USER_PROPERTY, kStampName,
                                         client->fingerprint_hex.c_str()) != MOSQ_ERR_SUCCESS) {
    return MOSQ_ERR_ACL_DENIED;
  }
  ++state.counters.messages_stamped;
  return MOSQ_ERR_SUCCESS;
}

}  // namespace edgetrust::plugin::internal
