// The gateway daemon: one libuv loop owns everything (the broker connection, the store writer,
// the policy, the request queue). Requests that arrive together are handled in one write
// transaction — one fsync for a burst of enrollments — and answered only after it commits,
// so an answer never names a certificate the store does not hold.
//
// Connection state machine (UvMqttClient does the reconnecting): connecting → connected
// (subscribe et/+/enroll/req, et/+/cert/req, et/+/state at QoS 1, persistent session so
// requests queued while we were away are delivered) → disconnected → back-off → connecting …;
// SIGTERM: stop taking requests, finish the queue, disconnect, close every handle, exit 0.
//
// Admin API: {prefix}/_admin/v1/req (QoS 1, JSON commands in the framing of
// edgetrust/protocol/json_commands.h), answered on {prefix}/_admin/v1/res: reloadPolicy (as
// SIGHUP) and getStatus (broker link, policy, waiting requests, each upstream's counters and
// outbox).
//
// Forwarding: et/+/up/# (QoS 1, same persistent session) goes to the Forwarder for devices
// whose stored state is `active`, routed by the group in their device record; the Forwarder's
// down-links are published on et/{id}/down/{channel}. SIGHUP hands the new policy to the
// Forwarder too (a route switch moves devices without reconnecting them). On SIGTERM the broker
// session closes first (the broker keeps queueing for us), then the outboxes get a short grace
// to drain upstream, then the Forwarder stops; what is left stays in the durable outbox.
//
// Fault injection for tests (environment, never set in production):
//   ET_GATEWAY_FAULT=before_commit[:enroll|:renew]  SIGKILL itself after issuing a certificate,
//                                                   before the transaction commits
//   ET_GATEWAY_FAULT=after_commit[:enroll|:renew]   … after the commit, before the answer
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "edgetrust/common/result.h"
#include "edgetrust/forwarding/forwarder.h"
#include "edgetrust/gateway/enrollment_service.h"
#include "edgetrust/gateway/event_log.h"
#include "edgetrust/gateway/options.h"
#include "edgetrust/gateway/rate_limiter.h"
#include "edgetrust/gateway/site_authority.h"
#include "edgetrust/mqtt/uv_mqtt_client.h"
#include "edgetrust/storage/store.h"

namespace edgetrust::gateway {

class CloudIdentities;

class Gateway {
 public:
  // Loads the policy and the site CA, opens the store. Does not touch the network.
  static Result<std::unique_ptr<Gateway>> Create(uv_loop_t* loop, GatewayOptions options);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Installs the signal handlers and connects to the broker.
  Status Start();
  // SIGTERM does this: finish queued work, disconnect, close every handle; uv_run returns.
  void Shutdown();
  // SIGHUP and the admin API's reloadPolicy do this: a policy that does not load is refused
  // (the error says why) and the running one kept.
  Status Reload();

 private:
  Gateway(uv_loop_t* loop, GatewayOptions options, storage::Store store,
          std::shared_ptr<const SiteAuthority> authority);
  void OnConnect(int reason);
  void OnMessage(const mqtt::Message& message);
  void ScheduleDrain();
  void Drain();
  // Takes up to one batch off the queue and answers it (one write transaction).
  void HandleNextBatch();
  void LogDropped(bool flush);
  void HandleBatch(std::deque<DeviceRequest>& batch);
  void Publish(const Reply& reply);
  void MaybeFault(std::string_view point, bool enroll, bool renew);
  void CloseHandles();
  // Hands what this read delivered to the outbox; false when it could not be kept (store error).
  bool ForwardUp();
  // The broker client's on_received: this read's device data is acknowledged only once it is
  // durable. The commit runs off the loop (kLater, then Resolve); a store error drops the
  // connection unacknowledged (the broker delivers it again).
  mqtt::Received OnReceived(uint64_t hold);
  void PublishDownlink(forwarding::Downlink d);
  // The admin API (admin.cpp): a request on {prefix}/_admin/v1/req, which the plugin lets only
  // the policy's admin principals publish, answered on {prefix}/_admin/v1/res.
  void HandleAdmin(const mqtt::Message& message);
  std::string AnswerAdmin(std::string_view payload);
  void WatchUpstreams();
  // Acts on revocations written since the last look (by the CLI or by us): a device that is no
  // longer active loses its cloud connections and the cloud keys kept for it.
  void WatchRevocations();
  void FinishShutdown();
  std::shared_ptr<const policies::Policy> PolicyOf(
      const std::shared_ptr<const SiteAuthority>& authority) const;

  // An et/{id}/up/{channel} message waiting for its device lookup.
  struct UpMessage {
    std::string device_id;
    std::string channel;
    Bytes payload;
    int qos = 1;
  };

  uv_loop_t* loop_;
  GatewayOptions options_;
  EventLog log_;
  storage::Store store_;
  std::shared_ptr<const SiteAuthority> authority_;
  EnrollmentService service_;
  RateLimiter limiter_;
  std::unique_ptr<mqtt::UvMqttClient> client_;
  std::list<DeviceRequest> queue_;
  // The waiting request of each (device, kind): a device that asks again before its turn (its
  // answer timed out) replaces it instead of queueing a duplicate.
  std::unordered_map<std::string, std::list<DeviceRequest>::iterator> queued_;
  size_t queued_requests_ = 0;    // enroll/cert requests in queue_ (the rest: state reports)
  uint64_t dropped_unlogged_ = 0;  // requests dropped from a full queue, not yet logged
  uint64_t dropped_states_unlogged_ = 0;  // state reports dropped, not yet logged
  uint64_t dropped_logged_at_ = 0;  // loop ms
  // Before forwarder_: its aws-iot `identity: device` upstreams call into it.
  std::unique_ptr<CloudIdentities> cloud_identities_;
  std::unique_ptr<forwarding::Forwarder> forwarder_;
  std::vector<UpMessage> up_queue_;
  // Last connects/disconnects seen per upstream, to log each state change once.
  std::map<std::string, std::pair<uint64_t, uint64_t>> upstream_seen_;
  std::map<std::string, uint64_t> dropped_seen_;
  std::unordered_set<int> unacked_;  // our publishes the broker has not acknowledged (mids)
  uint64_t revocations_seen_ = 0;  // revocation log seq acted upon
  uint64_t revocation_failure_logged_at_ = 0;  // loop ms
  bool keep_failed_ = false;  // this read held device data that could not be kept
  uint64_t refused_unlogged_ = 0;  // on_full: refuse, not yet summarised in the log
  uint64_t refused_logged_at_ = 0;
  uint64_t drain_deadline_ = 0;    // loop ms; SIGTERM's grace for the outboxes
  std::string fault_;

  uv_signal_t sigterm_{};
  uv_signal_t sigint_{};
  uv_signal_t sighup_{};
  uv_timer_t drain_timer_{};
  uv_timer_t housekeeping_{};
  uv_timer_t upstream_timer_{};
  int subacks_ = 0;  // "gateway_ready" once every subscription is granted
  bool drain_scheduled_ = false;
  bool stopping_ = false;
  bool draining_ = false;  // broker session closed, outboxes draining
  bool handles_open_ = false;
  int open_handles_ = 0;
};

}  // namespace edgetrust::gateway
