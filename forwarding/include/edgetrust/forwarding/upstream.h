// One upstream (a cloud or broker the site forwards to), whatever its kind. The Forwarder owns
// the outbox and decides what to send; an UpstreamConnection only moves messages and reports
// what became of them. Everything runs on one libuv loop thread.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "edgetrust/common/bytes.h"
#include "edgetrust/common/result.h"
#include "edgetrust/policies/policy.h"
#include "edgetrust/storage/records.h"

namespace edgetrust::forwarding {

// Per upstream name; kept by the Forwarder across reconnects, policy reloads and re-creation.
struct UpstreamCounters {
  uint64_t queued = 0;            // accepted into the upstream's queue
  uint64_t written = 0;           // of those, written to the outbox (the rest were acknowledged
                                  // before their commit, so never touched the disk)
  uint64_t sent = 0;              // handed to a connection (resends after a reconnect included)
  uint64_t acked = 0;             // acknowledged (QoS 0: written to the socket) and removed
  uint64_t dropped = 0;           // removed unsent from a full queue (on_full: drop_oldest)
  uint64_t refused = 0;           // not queued: queue full (on_full: refuse)
  uint64_t rejected = 0;          // refused by the upstream broker (PUBACK reason >= 0x80)
  uint64_t limit_violations = 0;  // refused by us: breaks the upstream's limits (never sendable)
  uint64_t qos_downgraded = 0;    // messages sent with a lower QoS than asked
  uint64_t connects = 0;          // successful CONNACKs
  uint64_t disconnects = 0;       // connections lost or closed after their CONNACK
  uint64_t downlinks = 0;         // messages received for devices
  uint64_t downlinks_refused = 0; // received but placed nowhere: the topic does not fit down_topic
                                  // (or the Azure devicebound form with a valid channel), or names
                                  // another device
};

// What the device's context adds to an outbox message for topic templates.
struct DeviceContext {
  std::string group;
  std::string model;
  std::string manufacturer;
};

struct Downlink {
  std::string device_id;
  std::string channel;  // may contain '/'; empty when the down_topic has no {channel}
  Bytes payload;
};

struct UpstreamEvents {
  // A message sent with QoS >= 1 was acknowledged; `accepted` is false when the broker refused it
  // (then resending cannot help either).
  std::function<void(uint64_t seq, bool accepted)> on_ack;
  // These in-flight messages will never be acknowledged (their connection dropped): send again.
  std::function<void(const std::vector<uint64_t>& seqs)> on_lost;
  // Something that refused a Send with kUnavailable may now accept: a connection came up.
  std::function<void()> on_ready;
  std::function<void(Downlink)> on_downlink;
};

// A device's own TLS client identity towards a cloud that authenticates each device (aws-iot
// with `identity: device`): PEM files the gateway issues from the site CA and keeps.
struct CloudIdentity {
  std::string cert_file;
  std::string key_file;
  int64_t not_after = 0;  // unix seconds of the certificate; 0 = unknown
};

// Asked on the loop thread each time a device's connection opens (first message, after an idle
// close, at a recheck). kFailedPrecondition means the device may not have one (not active): its
// queued messages for that upstream are dropped. kUnavailable means it is being prepared: the
// device's messages wait, without back-off, until the provider's owner calls Forwarder::Wake().
// Any other error is retried with back-off.
using CloudIdentityProvider =
    std::function<Result<CloudIdentity>(std::string_view upstream, std::string_view device_id)>;

struct UpstreamTuning {
  std::chrono::milliseconds reconnect_min{500};
  std::chrono::milliseconds reconnect_max{30000};
  int keepalive = 30;  // seconds
  // AWS IoT Core: at most 100 publishes per second per connection.
  double aws_publishes_per_second = 100;
  // Azure IoT Hub: a device's connection closes after this long without a message.
  std::chrono::milliseconds azure_idle{std::chrono::minutes(5)};
  // Azure IoT Hub: SAS token lifetime; reconnect with a fresh token at `azure_sas_renew_at` of it.
  std::chrono::seconds azure_sas_ttl{std::chrono::hours(1)};
  double azure_sas_renew_at = 0.8;
  // AWS IoT Core, identity device: where each device's certificate comes from (required), how
  // long a device's connection stays open without a message, and how often an open one is
  // reopened to pick up a renewed certificate (at the latest when the certificate expires).
  CloudIdentityProvider cloud_identity;
  std::chrono::milliseconds aws_device_idle{std::chrono::minutes(5)};
  std::chrono::seconds cloud_identity_recheck{std::chrono::hours(24)};
  // CA file used when an upstream gives no `ca` (the cloud's public roots).
  std::string default_ca = "/etc/ssl/certs/ca-certificates.crt";
};

class UpstreamConnection {
 public:
  virtual ~UpstreamConnection() = default;

  // Begins connecting (kind-specific: Azure and AWS identity device connect per device on first
  // Send). Errors only for what retrying cannot fix (unreadable key, bad template).
  virtual Status Start() = 0;
  // Graceful close of every connection; closed() turns true once every handle is released.
  virtual void Stop() = 0;
  virtual bool closed() const = 0;

  struct Sent {
    int mid = 0;
    bool awaits_ack = true;  // false: sent with QoS 0, done now (no on_ack follows)
  };

  // Publishes one outbox message with min(message.qos, the upstream's qos, the kind's maximum).
  //   kUnavailable       not connected for this device now: retry after on_ready
  //   kResourceExhausted rate limit reached: retry a little later
  //   kInvalidArgument   breaks the upstream's limits: never sendable (counted as limit_violations)
  virtual Result<Sent> Send(const storage::OutboxMessage& message, const DeviceContext& device) = 0;

  // Closes the device's own connection, for kinds that keep one per device (Azure; AWS with
  // identity device); its in-flight messages are reported lost. Used when the device is revoked.
  virtual void CloseDevice(const std::string& device_id) { (void)device_id; }

  // At least one connection is up (per-device kinds: true while started).
  virtual bool ready() const = 0;
  virtual const std::string& name() const = 0;
};

// Builds the connection for `config` (mqtt, aws-iot or azure-iot-hub). `counters` must outlive it.
// Does not connect until Start().
Result<std::unique_ptr<UpstreamConnection>> MakeUpstream(const policies::Upstream& config,
                                                         std::string_view site, uv_loop_t* loop,
                                                         UpstreamEvents events,
                                                         UpstreamCounters* counters,
                                                         const UpstreamTuning& tuning = {});

}  // namespace edgetrust::forwarding
