// An MQTT client (libmosquitto, without its thread) driven by a libuv loop.
//
// One UvMqttClient per connection; any number share one loop. Everything — callbacks included —
// happens on the loop thread; no method may be called from another thread.
//
// Life cycle: Create → Start → (connect, messages, reconnects…) → Stop → closed. Destroying the
// object is always safe: it stops without callbacks, and the libuv handles it still holds are
// freed by their close callbacks on a later loop turn, so keep running the loop until
// uv_run returns (then uv_loop_close returns 0).
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "edgetrust/common/bytes.h"
#include "edgetrust/common/result.h"

namespace edgetrust::mqtt {

// MQTT v5 user property (name, value). Order and duplicates are preserved, as on the wire.
struct UserProperty {
  std::string name;
  std::string value;
};
using UserProperties = std::vector<UserProperty>;

// First value of `name`, or nullopt.
std::optional<std::string_view> FindUserProperty(const UserProperties& props,
                                                 std::string_view name);

struct ClientOptions {
  std::string host = "127.0.0.1";
  int port = 8883;
  std::string client_id;
  // TLS: `ca` (a CA file) turns TLS on; `cert` + `key` (PEM files) add a client certificate.
  // Empty `ca` = plain TCP.
  std::string ca;
  std::string cert;
  std::string key;
  int protocol = 5;        // 5 = MQTT v5, 4 = MQTT 3.1.1
  int keepalive = 30;      // seconds
  bool clean_start = true;
  uint32_t session_expiry = 0;  // seconds; v5 only (sent as a CONNECT property when > 0)
  std::string username;    // optional
  std::string password;    // optional
  // Automatic reconnect with exponential back-off and ±20 % jitter. Also used when the first
  // connect fails.
  bool reconnect = true;
  std::chrono::milliseconds reconnect_min{500};
  std::chrono::milliseconds reconnect_max{30000};
  // Acknowledge received QoS 1/2 messages only after on_received returned true. libmosquitto
  // queues a PUBACK/PUBREC before it hands the message over; with this on, nothing queued is
  // written until the read that delivered the messages has been answered by on_received, so a
  // consumer that makes messages durable there never has one acknowledged that a crash loses.
  // (Every packet then leaves from the loop's write step, one loop turn later at most.)
  bool hold_acks = false;
  // v5: how many QoS 1/2 messages the broker may have unacknowledged towards us (Receive
  // Maximum). 0 = libmosquitto's default of 20, which caps a busy subscriber at 20 messages per
  // round trip (with hold_acks: per commit).
  int receive_maximum = 0;
  // How many QoS 1/2 publishes may be unacknowledged at once (v5: at most the broker's Receive
  // Maximum). 0 = libmosquitto's default of 20; past it, publishes wait in libmosquitto and each
  // acknowledgement lets one more go, so a busy publisher trades a packet each way per message.
  int send_maximum = 0;
  // Connected: after a read, look at the socket again only this much later (0: at once). For a
  // connection whose incoming traffic nobody waits on (the forwarder's upstreams, where a PUBACK
  // only lets an outbox entry go), acknowledgements are then read by the dozen rather than
  // waking the loop for each one (mosquitto writes each PUBACK on its own).
  std::chrono::milliseconds read_pause{0};
};

struct Message {
  std::string topic;
  Bytes payload;
  UserProperties user_properties;  // v5 only; empty on 3.1.1
  int qos = 0;
  bool retain = false;
};

// on_received's answer.
enum class Received { kAcknowledge, kDrop, kLater };

struct ClientCallbacks {
  // CONNACK received; `reason` 0 = accepted (then the client is connected()), else the
  // v5 reason code / v3 return code of the refusal.
  std::function<void(int reason)> on_connect;
  // Connection lost or closed. `reason` 0 = we asked for it (Stop), otherwise a libmosquitto
  // error (MOSQ_ERR_*) or the broker's v5 DISCONNECT reason. A reconnect is already scheduled
  // when options.reconnect is on and Stop was not called.
  std::function<void(int reason)> on_disconnect;
  std::function<void(const Message& message)> on_message;
  // With options.hold_acks: runs after each read that delivered messages, before their
  // acknowledgements are written. kDrop when they could not be kept: the connection is then
  // dropped without acknowledging them, and the broker delivers them again (persistent session)
  // after the reconnect. kLater when keeping them takes a while (a commit on another thread):
  // the connection then reads nothing and writes nothing until UvMqttClient::Resolve(hold, …).
  // `hold` names this read's messages.
  std::function<Received(uint64_t hold)> on_received;
  // PUBACK/PUBCOMP for QoS > 0 (reason >= 0x80 = refused by the broker), or the message written
  // to the socket for QoS 0.
  std::function<void(int mid, int reason)> on_publish_ack;
  // SUBACK; `granted` per filter (QoS, or >= 0x80 when refused).
  std::function<void(int mid, const std::vector<int>& granted)> on_subscribe;
  // All handles are closed after Stop(); the object may be destroyed from here on.
  std::function<void()> on_closed;
};

// Each client holds one descriptor, its socket (libmosquitto's wake-up socket pair is not made:
// see uv_mqtt_client.cpp). Raises the soft RLIMIT_NOFILE toward `wanted` (never above the hard
// limit, never lowers it); returns the soft limit now in force.
uint64_t RaiseDescriptorLimit(uint64_t wanted);
inline constexpr uint64_t kDescriptorsPerClient = 1;
// After Stop() a client keeps a duplicate of its socket for up to a second while the connection
// closes (a lingering close, see uv_mqtt_client.cpp), beside libmosquitto's own until its
// DISCONNECT is written; code that replaces a connection with a new one (a device switching
// certificates) holds all three for that long.
inline constexpr uint64_t kDescriptorsPerReplacedClient = 3 * kDescriptorsPerClient;

class UvMqttClient {
 public:
  // Initialises libmosquitto once per process (thread-safe) and prepares the client; does not
  // touch the network. Fails on bad options (empty client id, unreadable TLS files…).
  static Result<std::unique_ptr<UvMqttClient>> Create(uv_loop_t* loop, ClientOptions options,
                                                      ClientCallbacks callbacks);
  ~UvMqttClient();
  UvMqttClient(const UvMqttClient&) = delete;
  UvMqttClient& operator=(const UvMqttClient&) = delete;

  // Starts connecting (non-blocking) and returns; failures show up as on_disconnect and are
  // retried when options.reconnect is on. Returns an error only for a failure that a retry
  // cannot fix.
  Status Start();
  // Graceful: sends DISCONNECT if connected (flushing what is queued first, within ~1 s), then
  // closes every handle and calls on_closed. No reconnect after this. Idempotent.
  void Stop();

  // Ends on_received's kLater for `hold`: writes the held acknowledgements (true), or drops the
  // connection without them (false). Takes effect when the loop next turns, never inside this
  // call. Ignored unless `hold` is what is held now (the connection was lost meanwhile: the
  // broker delivers those messages again, and a later hold is not ended by an old answer).
  void Resolve(uint64_t hold, bool acknowledge);

  // Ends a read_pause now: the socket is read as soon as the loop next looks (say, because
  // the publisher needs its acknowledgements back to go on).
  void ReadSoon();

  // Queues a message; returns its message id. Fails when not connected (libmosquitto keeps no
  // offline queue for QoS 0; for QoS > 0 it would — we refuse instead so callers decide).
  Result<int> Publish(std::string_view topic, ByteView payload, int qos = 0, bool retain = false,
                      const UserProperties& user_properties = {});
  // Subscribes; returns the message id (answered by on_subscribe). Fails when not connected.
  Result<int> Subscribe(std::string_view filter, int qos = 0);
  Result<int> Unsubscribe(std::string_view filter);

  bool connected() const;
  bool closed() const;
  const ClientOptions& options() const;

  // Opaque; public only so the implementation's C callbacks can reach it.
  struct Impl;

 private:
  explicit UvMqttClient(Impl* impl) : impl_(impl) {}
  Impl* impl_;  // owned; freed by the last close callback (see ~UvMqttClient)
};

}  // namespace edgetrust::mqtt
