#include "edgetrust/testing/mqtt_client.h"

#include <mosquitto.h>
#include <mqtt_protocol.h>

namespace edgetrust::testing {

namespace {
struct LibInit {
  LibInit() { mosquitto_lib_init(); }
};
LibInit lib_init;
}  // namespace

struct TestClientCallbacks {
  static void OnConnect(struct mosquitto*, void* obj, int rc, int, const mosquitto_property*) {
    auto* self = static_cast<TestClient*>(obj);
    std::lock_guard lock(self->mu_);
    self->connack_ = rc;
    self->cv_.notify_all();
  }
  static void OnDisconnect(struct mosquitto*, void* obj, int, const mosquitto_property*) {
    auto* self = static_cast<TestClient*>(obj);
    std::lock_guard lock(self->mu_);
    self->disconnected_ = true;
    self->cv_.notify_all();
  }
  static void OnSubscribe(struct mosquitto*, void* obj, int mid, int count, const int* granted,
                          const mosquitto_property*) {
    auto* self = static_cast<TestClient*>(obj);
    std::lock_guard lock(self->mu_);
    self->suback_[mid] = count > 0 ? granted[0] : -1;
    self->cv_.notify_all();
  }
  static void OnPublish(struct mosquitto*, void* obj, int mid, int reason,
                        const mosquitto_property*) {
    auto* self = static_cast<TestClient*>(obj);
    std::lock_guard lock(self->mu_);
    self->puback_[mid] = reason;
    self->cv_.notify_all();
  }
  static void OnMessage(struct mosquitto*, void* obj, const struct mosquitto_message* msg,
                        const mosquitto_property* props) {
    auto* self = static_cast<TestClient*>(obj);
    ReceivedMessage m;
    m.topic = msg->topic;
    m.payload.assign(static_cast<const char*>(msg->payload), msg->payloadlen);
    m.qos = msg->qos;
    m.retain = msg->retain;
    for (auto* p = props; p != nullptr; p = mosquitto_property_next(p)) {
      if (mosquitto_property_identifier(p) != MQTT_PROP_USER_PROPERTY) continue;
      char* name = nullptr;
      char* value = nullptr;
      if (mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value,
                                              false) != nullptr) {
        m.user_properties[name] = value;
      }
      free(name);
      free(value);
    }
    std::lock_guard lock(self->mu_);
    self->messages_.push_back(std::move(m));
    self->cv_.notify_all();
  }
};

TestClient::TestClient(std::string client_id, int protocol, bool clean_session)
    : client_id_(std::move(client_id)), protocol_(protocol) {
  mosq_ = mosquitto_new(client_id_.c_str(), clean_session, this);
  mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION,
                       protocol_ == 5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
  // Never reconnect on our own: tests decide when a client connects.
  mosquitto_reconnect_delay_set(mosq_, 3600, 3600, false);
  mosquitto_connect_v5_callback_set(mosq_, TestClientCallbacks::OnConnect);
  mosquitto_disconnect_v5_callback_set(mosq_, TestClientCallbacks::OnDisconnect);
  mosquitto_subscribe_v5_callback_set(mosq_, TestClientCallbacks::OnSubscribe);
  mosquitto_publish_v5_callback_set(mosq_, TestClientCallbacks::OnPublish);
  mosquitto_message_v5_callback_set(mosq_, TestClientCallbacks::OnMessage);
}

TestClient::~TestClient() {
  if (mosq_ == nullptr) return;
  mosquitto_disconnect(mosq_);
  if (loop_started_) mosquitto_loop_stop(mosq_, true);
  mosquitto_destroy(mosq_);
}

int TestClient::Connect(int port, const TlsFiles& tls, std::chrono::milliseconds timeout) {
  if (!tls.ca.empty()) {
    int rc = mosquitto_tls_set(mosq_, tls.ca.c_str(), nullptr,
                               tls.cert.empty() ? nullptr : tls.cert.c_str(),
                               tls.key.empty() ? nullptr : tls.key.c_str(), nullptr);
    if (rc != MOSQ_ERR_SUCCESS) return -1;
  }
  {
    std::lock_guard lock(mu_);
    connack_.reset();
    disconnected_ = false;
  }
  if (mosquitto_connect_async(mosq_, "127.0.0.1", port, 30) != MOSQ_ERR_SUCCESS) return -1;
  if (!loop_started_) {
    if (mosquitto_loop_start(mosq_) != MOSQ_ERR_SUCCESS) return -1;
    loop_started_ = true;
  }
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return connack_.has_value() || disconnected_; });
  if (!connack_) return -1;
  return *connack_;
}

void TestClient::Disconnect() {
  mosquitto_disconnect(mosq_);
  WaitDisconnected(std::chrono::seconds(2));
}

int TestClient::Subscribe(const std::string& pattern, int qos,
                          std::chrono::milliseconds timeout) {
  int mid = 0;
  if (mosquitto_subscribe(mosq_, &mid, pattern.c_str(), qos) != MOSQ_ERR_SUCCESS) return -1;
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return suback_.count(mid) > 0 || disconnected_; }))
    return -1;
  if (suback_.count(mid) == 0) return -1;
  return suback_[mid];
}

int TestClient::Publish(const std::string& topic, const std::string& payload, int qos,
                        bool retain, const std::map<std::string, std::string>& user_properties,
                        std::chrono::milliseconds timeout) {
  mosquitto_property* props = nullptr;
  if (protocol_ == 5) {
    for (const auto& [k, v] : user_properties) {
      mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, k.c_str(), v.c_str());
    }
  }
  int mid = 0;
  int rc = mosquitto_publish_v5(mosq_, &mid, topic.c_str(), static_cast<int>(payload.size()),
                                payload.data(), qos, retain, props);
  mosquitto_property_free_all(&props);
  if (rc != MOSQ_ERR_SUCCESS) return rc;
  if (qos == 0) return 0;
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return puback_.count(mid) > 0 || disconnected_; }))
    return -1;
  if (puback_.count(mid) == 0) return -1;
  return puback_[mid];
}

std::optional<ReceivedMessage> TestClient::WaitMessage(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return !messages_.empty(); })) return std::nullopt;
  ReceivedMessage m = std::move(messages_.front());
  messages_.pop_front();
  return m;
}

bool TestClient::WaitDisconnected(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return disconnected_; });
}

bool TestClient::connected() {
  std::lock_guard lock(mu_);
  return connack_ == 0 && !disconnected_;
}

std::vector<ReceivedMessage> TestClient::TakeMessages() {
  std::lock_guard lock(mu_);
  std::vector<ReceivedMessage> out(messages_.begin(), messages_.end());
  messages_.clear();
  return out;
}

}  // namespace edgetrust::testing
