// A blocking MQTT client for tests, on libmosquitto's own thread (mosquitto_loop_start).
// Tests speak real MQTT over real TLS with it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

struct mosquitto;

namespace edgetrust::testing {

struct TlsFiles {
  std::string ca;    // CA file to verify the broker
  std::string cert;  // client certificate (PEM); empty for none
  std::string key;   // client key (PEM)
};

struct ReceivedMessage {
  std::string topic;
  std::string payload;
  int qos = 0;
  bool retain = false;
  std::map<std::string, std::string> user_properties;  // MQTT v5 only
};

class TestClient {
 public:
  // protocol: 4 = MQTT 3.1.1, 5 = MQTT 5. clean_session false keeps the session across
  // connections with 3.1.1 (with 5 it would need a session expiry, which this client never sends).
  TestClient(std::string client_id, int protocol = 5, bool clean_session = true);
  ~TestClient();
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  // Connects and waits for CONNACK. Returns the CONNACK reason (0 = accepted), or -1 when the
  // connection failed or closed before a CONNACK (e.g. TLS handshake refused).
  int Connect(int port, const TlsFiles& tls,
              std::chrono::milliseconds timeout = std::chrono::seconds(5));
  void Disconnect();

  // Subscribes and waits for SUBACK; returns the granted QoS per the broker (0..2) or >= 0x80
  // when refused; -1 on timeout or error.
  int Subscribe(const std::string& pattern, int qos = 0,
                std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Publishes; for qos > 0 waits for the broker's acknowledgement. Returns the libmosquitto
  // result (0 = sent/acknowledged) or the v5 reason code when the broker refused (>= 0x80).
  int Publish(const std::string& topic, const std::string& payload, int qos = 0,
              bool retain = false,
              const std::map<std::string, std::string>& user_properties = {},
              std::chrono::milliseconds timeout = std::chrono::seconds(5));

  std::optional<ReceivedMessage> WaitMessage(
      std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // True once the broker closed the connection (or it failed) after a successful connect.
  bool WaitDisconnected(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  bool connected();
  std::vector<ReceivedMessage> TakeMessages();

 private:
  friend struct TestClientCallbacks;

  std::string client_id_;
  int protocol_;
  struct mosquitto* mosq_ = nullptr;
  bool loop_started_ = false;

  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<int> connack_;
  bool disconnected_ = false;
  std::map<int, int> suback_;   // mid -> first granted qos
  std::map<int, int> puback_;   // mid -> reason code
  std::deque<ReceivedMessage> messages_;
};

}  // namespace edgetrust::testing
