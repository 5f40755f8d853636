// The Forwarder: device data in, upstreams out, a durable LMDB outbox per upstream in between.
//
//   Submit ──batch (≤ batch_delay or batch_max)──► one WriteTxn on the thread pool (one at a
//          time; what arrives meanwhile is the next): append to the route's outbox
//          ◄── done(status) after commit: only now may the gateway PUBACK the device
//   outbox ──pump (seq order, ≤ window in flight, per-device order)──► UpstreamConnection
//          ◄── ack: removed from the outbox (batched into the next WriteTxn)
//
// A message submitted while its upstream has nothing unread in the outbox is also taken into
// memory and sent at once, before its commit; if the upstream acknowledges it before the commit,
// the commit does not write it (UpstreamCounters::written counts those it does write). Its
// done(status) still comes after that commit.
//
// Delivery is at least once: a message leaves the outbox only when its upstream acknowledged it
// (QoS 0: when written), so a reconnect or a crash can resend, never lose. Runs on one libuv
// loop; every method must be called on the loop thread. The Store must outlive the Forwarder
// and this is its only writer of outbox tables.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "edgetrust/common/bytes.h"
#include "edgetrust/common/result.h"
#include "edgetrust/forwarding/upstream.h"
#include "edgetrust/policies/policy.h"
#include "edgetrust/storage/store.h"
#include "edgetrust/storage/tables.h"

namespace edgetrust::forwarding {

struct ForwarderOptions {
  // A batch commits when its first submission is this old or it holds batch_max messages. What
  // its upstream can take at once is sent before the commit, so the delay holds back only the
  // answer (the broker's PUBACK waits for it), not the delivery; fewer, larger commits cost less
  // (each is a few page writes and two fsyncs), and a message acknowledged before its commit is
  // not written at all. batch_max stays below the broker's in-flight limit toward the gateway
  // (its Receive Maximum, 1024), so that a full batch commits while the broker can still send.
  std::chrono::milliseconds batch_delay{25};
  size_t batch_max = 512;
  // Unacknowledged messages per upstream.
  size_t window = 128;
  // Outbox messages held in memory per upstream (read ahead of sending).
  size_t read_ahead = 2048;
  // Back-off before trying again after a rate limit or a transient send error.
  std::chrono::milliseconds retry_delay{20};
  UpstreamTuning tuning;
};

// OK: durable in the outbox, or acknowledged by its upstream already (or not forwarded at all:
// the group has no route).
// kResourceExhausted: the queue is full and the policy says refuse. Anything else: store error.
using SubmitDone = std::function<void(Status)>;

class Forwarder {
 public:
  // Starts the upstreams the policy routes to, and those that still hold queued messages.
  static Result<std::unique_ptr<Forwarder>> Create(uv_loop_t* loop, storage::Store* store,
                                                   std::shared_ptr<const policies::Policy> policy,
                                                   ForwarderOptions options = {});
  ~Forwarder();
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  // Down-link messages from any upstream, for the gateway to publish on et/{id}/down/{channel}.
  void OnDownlink(std::function<void(Downlink)> handler);

  // Queues one et/{device}/up/{channel} message for the route of `group` (empty group: the
  // device record's group). `done` runs on the loop after the commit, never inside Submit.
  void Submit(std::string_view device_id, std::string_view group, std::string_view channel,
              Bytes payload, int qos, SubmitDone done);

  // Commits what is batched now instead of at the batch timer, on the loop thread (waiting for a
  // commit already running on the thread pool first); the submissions' `done` callbacks have run
  // when it returns. The error is the commit's (every batched `done` got it too).
  Status Flush();
  // `done` runs on the loop once everything submitted so far is committed (or the commit failed),
  // for a caller that may acknowledge its sources only once their messages are durable. It does
  // not hurry the commit: that stays due batch_delay after the batch's first submission (or at
  // batch_max), so a busy caller shares one fsync among many reads. Returns false, not calling
  // `done`, when nothing is waiting.
  bool WhenCommitted(std::function<void(Status)> done);
  // The device was revoked: its own cloud connections (per-device kinds) close now, and its
  // queued messages are re-read with its new state (not active: dropped for those kinds).
  void CloseDevice(const std::string& device_id);
  // Tries the messages that wait for something of the owner's now (a cloud identity that was
  // being prepared: see CloudIdentityProvider).
  void Wake();

  // Swaps the policy. New messages follow the new routes at once; what is queued for an upstream
  // is still delivered there; an upstream nothing routes to any more is stopped once its outbox
  // is empty; an upstream whose settings changed reconnects with the new ones.
  Status ApplyPolicy(std::shared_ptr<const policies::Policy> policy);

  // Commits what is batched, then closes every connection gracefully; closed() turns true once
  // all handles are released (keep running the loop until then).
  void Stop();
  bool closed() const;

  // Counters of every upstream ever used, by name.
  const std::map<std::string, UpstreamCounters>& counters() const;
  UpstreamCounters Counters(const std::string& upstream) const;
  // Submissions whose group has no route (accepted, not forwarded).
  uint64_t unrouted() const;
  // Messages and bytes waiting in an upstream's outbox (committed state).
  Result<storage::OutboxUsage> QueueUsage(const std::string& upstream) const;
  // Names of the upstreams with a live connection.
  std::vector<std::string> ActiveUpstreams() const;

  struct Impl;

 private:
  explicit Forwarder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgetrust::forwarding
