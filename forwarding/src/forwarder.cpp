#include "edgetrust/forwarding/forwarder.h"

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "uv_timer.h"

namespace edgetrust::forwarding {
namespace {

// What makes a connection different; a change means reconnecting with the new settings.
bool SameConnection(const policies::Upstream& a, const policies::Upstream& b) {
  return a.kind == b.kind && a.endpoint == b.endpoint && a.url == b.url &&
         a.hostname == b.hostname && a.host == b.host && a.port == b.port && a.tls == b.tls &&
         a.client_id == b.client_id && a.ca == b.ca && a.cert == b.cert && a.key == b.key &&
         a.username == b.username && a.password_file == b.password_file && a.topic == b.topic &&
         a.down_topic == b.down_topic && a.qos == b.qos && a.connections == b.connections &&
         a.identity == b.identity && a.group_key_file == b.group_key_file &&
         a.device_key_dir == b.device_key_dir && a.protocol == b.protocol;
}

struct PendingMessage {
  storage::OutboxMessage message;
  bool in_flight = false;
  // In the outbox, or being written to it. A message submitted while its upstream has nothing
  // unread in the outbox is taken into memory at once (not stored) and sent before its commit;
  // if the upstream acknowledges it first, it is never written (the commit still holds the
  // broker's PUBACK until then, so a crash loses nothing: the broker delivers it again).
  bool stored = true;
};

struct UpstreamState {
  std::string name;
  policies::Upstream config;
  std::unique_ptr<UpstreamConnection> connection;
  bool routed = false;
  std::map<uint64_t, PendingMessage> pending;  // to be sent or acknowledged, by seq
  uint64_t read_after = 0;                     // highest seq read into `pending`
  bool maybe_more = true;                      // the outbox may hold seqs > read_after
  size_t in_flight = 0;
  // Every pending message below it is in flight: Pump starts looking here, not at the front of
  // a window's worth of messages that wait for their acknowledgement.
  uint64_t scan_from = 0;
  // Acknowledged (or dropped) but their removal not committed yet: still in the outbox, so a
  // re-read from the start (Resync) must not send them again.
  std::set<uint64_t> removing;
};

struct Submission {
  std::string device_id;
  std::string group;
  std::string channel;
  Bytes payload;
  int qos = 1;
  SubmitDone done;
  // Decided on the loop when submitted.
  std::string route;       // empty: not routed
  uint64_t seq = 0;        // its place in the route's outbox
  int64_t ts = 0;
  bool in_memory = false;  // also pending in memory (not stored until its commit)
  bool spilled = false;    // counted in Impl::spilled
  bool elided = false;     // in memory and acknowledged before its commit: not written
  Status error = OkStatus();  // could not be queued (its seq could not be read): done(error)
};

// The outbox message a submission makes, with `payload` (a copy for memory, the submission's own
// for its commit).
storage::OutboxMessage ToOutbox(const Submission& s, Bytes payload) {
  storage::OutboxMessage m;
  m.device_id = s.device_id;
  m.channel = s.channel;
  m.payload = std::move(payload);
  m.qos = static_cast<uint8_t>(std::clamp(s.qos, 0, 2));
  m.ts = s.ts;
  return m;
}

// Whether a commit may refuse a message of this size: it checks the queue's room then.
bool MayRefuse(const policies::Policy& policy, uint64_t size) {
  return policy.queue.on_full == policies::QueueFullAction::kRefuse || size > policy.queue.max_bytes;
}

}  // namespace

struct Forwarder::Impl {
  uv_loop_t* loop;
  storage::Store* store;
  std::shared_ptr<const policies::Policy> policy;
  ForwarderOptions options;
  std::function<void(Downlink)> downlink_handler;
  std::map<std::string, UpstreamCounters> counters;
  uint64_t unrouted = 0;
  bool stopping = false;

  std::map<std::string, std::unique_ptr<UpstreamState>> upstreams;
  std::vector<std::unique_ptr<UpstreamConnection>> retired;  // stopping; freed once closed
  std::vector<Submission> batch;
  // The batch vector of the last finished commit, emptied: the next batch starts with its
  // capacity instead of growing again (a full batch of 512 submissions is 268 KiB).
  std::vector<Submission> spare_batch;
  std::vector<std::pair<std::string, uint64_t>> removals;  // acknowledged, not yet committed
  std::unordered_map<std::string, DeviceContext> devices;
  std::unordered_set<std::string> devices_looked_up;
  // Per upstream, the seq the next submission gets (the Forwarder is the outbox's only writer).
  std::unordered_map<std::string, uint64_t> next_seq;
  // Per upstream, submitted messages that go the outbox's way (not taken into memory) and whose
  // commit has not been applied yet: until they are read from the outbox, later ones must not
  // overtake them by going to memory. Kept here, not in the UpstreamState: a commit may be what
  // starts the upstream.
  std::unordered_map<std::string, size_t> spilled;

  internal::UvTimer batch_timer;
  bool batch_due = false;  // the batch timer fired while a commit ran
  internal::UvTimer retry_timer;
  internal::UvTimer housekeeping_timer;

  Impl(uv_loop_t* l, storage::Store* s, std::shared_ptr<const policies::Policy> p,
       ForwarderOptions o)
      : loop(l),
        store(s),
        policy(std::move(p)),
        options(std::move(o)),
        batch_timer(l, [this] {
          batch_due = true;
          CommitSoon();
        }),
        retry_timer(l, [this] { PumpAll(); }),
        housekeeping_timer(l, [this] { Housekeeping(); }) {}

  // ---- upstream life cycle ----

  Status StartUpstream(const policies::Upstream& config, bool routed) {
    auto state = std::make_unique<UpstreamState>();
    state->name = config.name;
    state->config = config;
    state->routed = routed;
    ET_RETURN_IF_ERROR(Connect(*state));
    upstreams[config.name] = std::move(state);
    return OkStatus();
  }

  Status Connect(UpstreamState& u) {
    const std::string name = u.name;
    UpstreamEvents events;
    events.on_ack = [this, name](uint64_t seq, bool accepted) { OnAck(name, seq, accepted); };
    events.on_lost = [this, name](const std::vector<uint64_t>& seqs) { OnLost(name, seqs); };
    events.on_ready = [this, name]() {
      if (auto it = upstreams.find(name); it != upstreams.end()) Pump(*it->second);
    };
    events.on_downlink = [this](Downlink d) {
      if (downlink_handler) downlink_handler(std::move(d));
    };
    ET_ASSIGN_OR_RETURN(u.connection, MakeUpstream(u.config, policy->site, loop, std::move(events),
                                                   &counters[name], options.tuning));
    return u.connection->Start();
  }

  void Retire(UpstreamState& u) {
    if (!u.connection) return;
    auto conn = std::move(u.connection);
    conn->Stop();  // reports its in-flight messages lost (they stay in the outbox)
    retired.push_back(std::move(conn));
  }

  Status Apply(std::shared_ptr<const policies::Policy> next) {
    std::set<std::string> routes;
    for (const auto& g : next->groups) {
      if (g.route.empty()) continue;
      if (next->FindUpstream(g.route) == nullptr) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "group '" + g.name + "' routes to unknown upstream '" + g.route + "'");
      }
      routes.insert(g.route);
    }
    const bool site_changed = policy && policy->site != next->site;
    policy = std::move(next);
    for (auto& [name, u] : upstreams) {
      u->routed = routes.count(name) > 0;
      const policies::Upstream* config = policy->FindUpstream(name);
      // Gone from the policy: keep the old settings until its queue is drained.
      if (config == nullptr) continue;
      if (!SameConnection(*config, u->config) || site_changed) {
        Retire(*u);
        u->config = *config;
        if (auto st = Connect(*u); !st.ok()) {
          std::fprintf(stderr, "forwarding: upstream '%s': %s\n", name.c_str(),
                       st.error().ToString().c_str());
        }
      }
    }
    for (const auto& name : routes) {
      if (upstreams.count(name)) continue;
      if (auto st = StartUpstream(*policy->FindUpstream(name), true); !st.ok()) {
        std::fprintf(stderr, "forwarding: upstream '%s': %s\n", name.c_str(),
                     st.error().ToString().c_str());
      }
    }
    PumpAll();
    return OkStatus();
  }

  // Upstreams that are not routed any more but still hold messages must drain first.
  Status StartQueuedUpstreams() {
    ET_ASSIGN_OR_RETURN(auto txn, store->BeginRead());
    ET_ASSIGN_OR_RETURN(auto names, storage::OutboxUpstreams(txn));
    for (const auto& name : names) {
      if (upstreams.count(name)) continue;
      ET_ASSIGN_OR_RETURN(storage::OutboxUsage usage, storage::OutboxStats(txn, name));
      if (usage.count == 0) continue;
      const policies::Upstream* config = policy->FindUpstream(name);
      if (config == nullptr) {
        std::fprintf(stderr,
                     "forwarding: %llu message(s) queued for upstream '%s', which the policy no "
                     "longer defines: kept in the store, not sent\n",
                     static_cast<unsigned long long>(usage.count), name.c_str());
        continue;
      }
      if (auto st = StartUpstream(*config, false); !st.ok()) {
        std::fprintf(stderr, "forwarding: upstream '%s': %s\n", name.c_str(),
                     st.error().ToString().c_str());
      }
    }
    return OkStatus();
  }

  // ---- submissions and the write batch ----

  void Submit(Submission s) {
    if (stopping) {
      auto done = std::move(s.done);
      if (done) done(MakeError(ErrorCode::kUnavailable, "forwarder is stopping"));
      return;
    }
    // The group, for the route and the topic templates: what Submit says, else the device record's.
    DeviceContext& ctx = Context(s.device_id);
    if (s.group.empty()) {
      s.group = ctx.group;
    } else {
      ctx.group = s.group;
    }
    const policies::Group* g = policy->FindGroup(s.group);
    s.route = g == nullptr ? std::string() : g->route;
    s.ts = UnixNow();
    if (!s.route.empty()) {
      if (auto seq = TakeSeq(s.route); seq.ok()) {
        s.seq = *seq;
        TakeIntoMemory(s);
      } else {
        s.error = seq.error();  // answered with the batch, as any other
      }
    }
    batch.push_back(std::move(s));
    ScheduleFlush();
  }

  Result<uint64_t> TakeSeq(const std::string& route) {
    auto it = next_seq.find(route);
    if (it == next_seq.end()) {
      ET_ASSIGN_OR_RETURN(auto txn, store->BeginRead());
      ET_ASSIGN_OR_RETURN(uint64_t first, storage::OutboxNextSeq(txn, route));
      it = next_seq.emplace(route, first).first;
    }
    return it->second++;
  }

  // A submission goes to memory (and is sent now) when nothing of its upstream waits in the
  // outbox unread, so that it cannot overtake an earlier message, and when its commit cannot
  // refuse it (a refused message must not be delivered); else the outbox's way.
  void TakeIntoMemory(Submission& s) {
    auto it = upstreams.find(s.route);
    size_t& outbox_way = spilled[s.route];
    if (it == upstreams.end() || it->second->maybe_more || outbox_way > 0 ||
        MayRefuse(*policy, s.payload.size()) || it->second->pending.size() >= options.read_ahead) {
      outbox_way++;
      s.spilled = true;
      return;
    }
    UpstreamState& u = *it->second;
    storage::OutboxMessage m = ToOutbox(s, s.payload);
    m.seq = s.seq;
    m.upstream = s.route;
    u.pending.emplace(s.seq, PendingMessage{std::move(m), false, false});
    u.read_after = std::max(u.read_after, s.seq);
    u.scan_from = std::min(u.scan_from, s.seq);
    s.in_memory = true;
    Pump(u);
  }

  // A pending message is done with (acknowledged, or never sendable): gone from memory, and
  // from the outbox with the next commit if it is there.
  std::map<uint64_t, PendingMessage>::iterator Finished(UpstreamState& u,
                                                        std::map<uint64_t, PendingMessage>::iterator it) {
    if (it->second.stored) {
      removals.emplace_back(u.name, it->first);
      u.removing.insert(it->first);
      ScheduleFlush();
    }
    return u.pending.erase(it);
  }

  void ScheduleFlush() {
    if (batch.size() >= options.batch_max) {
      batch_timer.Start(0);
    } else if (!batch_timer.active()) {
      batch_timer.Start(static_cast<uint64_t>(options.batch_delay.count()));
    }
  }

  // Group, model and manufacturer for topic templates: the device record, else what Submit said.
  DeviceContext& Context(const std::string& device_id) {
    DeviceContext& ctx = devices[device_id];
    if (devices_looked_up.insert(device_id).second) {
      auto txn = store->BeginRead();
      if (txn.ok()) {
        if (auto rec = storage::FindDevice(*txn, device_id); rec.ok() && rec->has_value()) {
          ctx.model = (*rec)->model;
          ctx.manufacturer = (*rec)->manufacturer;
          if (ctx.group.empty()) ctx.group = (*rec)->group;
        }
      }
    }
    return ctx;
  }

  // ---- commits ----
  //
  // A commit (append the batch, remove what upstreams acknowledged) ends in an fsync, which on
  // an edge box's flash takes milliseconds. It runs on libuv's thread pool, one at a time, while
  // the loop goes on sending and reading; what arrives meanwhile goes into the next commit.
  // LMDB allows the write transaction on any thread (the store is opened MDB_NOTLS); the job
  // touches nothing of the Impl but the store, and gets the policy and every submission's route
  // resolved on the loop beforehand.

  struct CommitJob {
    uv_work_t req;
    Impl* owner = nullptr;  // nullptr: the Impl is gone, only free the job
    storage::Store* store = nullptr;
    std::shared_ptr<const policies::Policy> policy;
    std::vector<Submission> work;
    std::vector<std::pair<std::string, uint64_t>> removing;
    std::vector<std::function<void(Status)>> waiters;  // WhenCommitted callers
    // Results, written by the worker.
    std::vector<Status> results;
    std::map<std::string, UpstreamCounters> delta;
    std::set<std::string> appended, resync;
    uint64_t unrouted_delta = 0;
    Status failure = OkStatus();
    std::mutex mutex;
    std::condition_variable cv;
    bool finished = false;
    bool applied = false;

    void Run() {
      results.assign(work.size(), OkStatus());
      failure = Commit();
      std::lock_guard lock(mutex);
      finished = true;
      cv.notify_all();
    }

    Status Commit() {
      ET_ASSIGN_OR_RETURN(storage::WriteTxn txn, store->BeginWrite());
      for (const auto& [name, seq] : removing) {
        ET_RETURN_IF_ERROR(storage::OutboxRemove(txn, name, seq));
      }
      const uint64_t max_bytes = policy->queue.max_bytes;
      for (size_t i = 0; i < work.size(); ++i) {
        Submission& s = work[i];
        const std::string& route = s.route;
        if (!s.error.ok()) {
          results[i] = s.error;
          continue;
        }
        if (route.empty()) {
          ++unrouted_delta;
          continue;
        }
        if (s.elided) {
          delta[route].queued++;
          continue;
        }
        const uint64_t size = s.payload.size();
        if (MayRefuse(*policy, size)) {
          ET_ASSIGN_OR_RETURN(storage::OutboxUsage usage, storage::OutboxStats(txn, route));
          if (usage.bytes + size > max_bytes) {
            delta[route].refused++;
            results[i] = MakeError(ErrorCode::kResourceExhausted,
                                   "queue of upstream '" + route + "' is full");
            continue;
          }
        } else {
          ET_ASSIGN_OR_RETURN(storage::OutboxUsage dropped,
                              storage::OutboxDropOldest(txn, route, max_bytes, size));
          if (dropped.count > 0) {
            delta[route].dropped += dropped.count;
            resync.insert(route);
          }
        }
        const storage::OutboxMessage m = ToOutbox(s, std::move(s.payload));
        ET_RETURN_IF_ERROR(storage::OutboxAppendAt(txn, route, s.seq, m));
        delta[route].queued++;
        delta[route].written++;
        if (!s.in_memory) appended.insert(route);
      }
      return txn.Commit();
    }

    void WaitFinished() {
      std::unique_lock lock(mutex);
      cv.wait(lock, [this] { return finished; });
    }
  };

  CommitJob* committing = nullptr;  // on the thread pool
  std::vector<std::function<void(Status)>> waiters;  // for the commit after `committing`

  bool HasWork() const { return !batch.empty() || !removals.empty() || !waiters.empty(); }

  // Takes the batch, the removals and the waiters into a job; routes resolved here, on the loop.
  std::unique_ptr<CommitJob> TakeJob() {
    batch_timer.Stop();
    batch_due = false;
    auto job = std::make_unique<CommitJob>();
    job->store = store;
    job->policy = policy;
    job->work = std::move(batch);
    batch = std::move(spare_batch);
    batch.clear();
    spare_batch = {};
    job->removing = std::move(removals);
    removals.clear();
    job->waiters = std::move(waiters);
    waiters.clear();
    for (Submission& s : job->work) {
      if (!s.in_memory) continue;
      PendingMessage* p = FindPending(s.route, s.seq);
      if (p == nullptr) {
        s.elided = true;  // acknowledged already (or dropped as never sendable)
      } else {
        p->stored = true;  // this commit writes it
      }
    }
    return job;
  }

  // Starts the next commit unless one is running (its completion starts the next).
  void CommitSoon() {
    if (committing != nullptr || !HasWork()) return;
    CommitJob* job = TakeJob().release();
    job->owner = this;
    job->req.data = job;
    committing = job;
    int rc = uv_queue_work(
        loop, &job->req, [](uv_work_t* r) { static_cast<CommitJob*>(r->data)->Run(); },
        [](uv_work_t* r, int) {
          std::unique_ptr<CommitJob> done(static_cast<CommitJob*>(r->data));
          if (done->owner != nullptr) done->owner->Committed(*done);
        });
    if (rc != 0) {  // cannot happen with a live loop; commit here rather than lose the batch
      committing = nullptr;
      std::unique_ptr<CommitJob> owned(job);
      owned->Run();
      Apply(*owned);
    }
  }

  // What arrived during the commit goes when its batch is due (batch_delay after its first
  // submission, or batch_max of them), not at once: chained back to back, commits ran as often as
  // the disk allowed (380/s at 9k msg/s on the development VM), each costing the same page writes
  // and fsync for fewer messages.
  void Committed(CommitJob& job) {
    if (committing == &job) committing = nullptr;
    if (!job.applied) Apply(job);
    if (job.work.capacity() > spare_batch.capacity() &&
        job.work.capacity() <= 2 * options.batch_max) {
      job.work.clear();
      spare_batch = std::move(job.work);
    }
    if (batch_due || batch.size() >= options.batch_max) CommitSoon();
  }

  // Commits everything batched before it returns (waiting for a running commit first). For a
  // policy swap, a stop, and callers that need the answer now.
  Status Flush() {
    Status earlier = OkStatus();  // a waited-for commit's failure: its submissions failed for good
    if (committing != nullptr) {
      CommitJob* job = committing;
      committing = nullptr;
      job->WaitFinished();
      job->owner = nullptr;  // its after-work callback only frees it
      if (!job->applied) Apply(*job);
      earlier = job->failure;  // its removals were re-queued and go with the commit below
    }
    if (!HasWork()) return earlier;
    std::unique_ptr<CommitJob> job = TakeJob();
    job->Run();
    Apply(*job);
    return earlier.ok() ? job->failure : earlier;
  }

  // `done` runs after the commit that holds everything submitted so far, when that batch is due
  // (it does not hurry it). False (and `done` is not called) when there is nothing to wait for.
  bool WhenCommitted(std::function<void(Status)> done) {
    if (!HasWork() && committing == nullptr) return false;
    if (batch.empty() && removals.empty() && committing != nullptr) {
      committing->waiters.push_back(std::move(done));  // what was submitted is in that one
      return true;
    }
    waiters.push_back(std::move(done));
    ScheduleFlush();
    return true;
  }

  PendingMessage* FindPending(const std::string& route, uint64_t seq) {
    auto u = upstreams.find(route);
    if (u == upstreams.end()) return nullptr;
    auto it = u->second->pending.find(seq);
    return it == u->second->pending.end() ? nullptr : &it->second;
  }

  // On the loop, after the job's transaction committed or failed.
  void Apply(CommitJob& job) {
    job.applied = true;
    for (const Submission& s : job.work) {
      if (s.spilled) {
        if (auto it = spilled.find(s.route); it != spilled.end() && it->second > 0) it->second--;
      } else if (s.in_memory && !s.elided && !job.failure.ok()) {
        // Not written: it stays in memory only (the broker, not acknowledged, delivers it again).
        // (A message in memory cannot be refused: MayRefuse keeps those out.)
        if (PendingMessage* p = FindPending(s.route, s.seq)) p->stored = false;
      }
    }
    if (!job.failure.ok()) {
      // Nothing of this batch happened; acknowledged removals are retried with the next one.
      for (auto& r : job.removing) removals.push_back(std::move(r));
      for (auto& s : job.work) {
        if (s.done) s.done(job.failure.error());
      }
      for (auto& w : job.waiters) w(job.failure.error());
      std::fprintf(stderr, "forwarding: outbox commit failed: %s\n",
                   job.failure.error().ToString().c_str());
      if (!removals.empty() && !stopping) batch_timer.Start(100);
      return;
    }
    for (const auto& [name, seq] : job.removing) {
      if (auto it = upstreams.find(name); it != upstreams.end()) it->second->removing.erase(seq);
    }
    unrouted += job.unrouted_delta;
    for (const auto& [name, d] : job.delta) {
      UpstreamCounters& c = counters[name];
      c.queued += d.queued;
      c.written += d.written;
      c.dropped += d.dropped;
      c.refused += d.refused;
    }
    for (const auto& name : job.resync) {
      if (auto it = upstreams.find(name); it != upstreams.end()) Resync(*it->second);
    }
    for (const auto& name : job.appended) {
      if (auto it = upstreams.find(name); it != upstreams.end()) {
        it->second->maybe_more = true;
      } else if (const auto* config = policy->FindUpstream(name)) {
        if (auto st = StartUpstream(*config, true); !st.ok()) {
          std::fprintf(stderr, "forwarding: upstream '%s': %s\n", name.c_str(),
                       st.error().ToString().c_str());
        }
      }
    }
    // A submission that could not be queued (not a refusal: the policy's answer) fails the
    // waiters of this commit, so that the caller does not acknowledge what was neither written
    // nor sent.
    Status waiters_status = OkStatus();
    for (size_t i = 0; i < job.work.size(); ++i) {
      if (job.work[i].done) job.work[i].done(job.results[i]);
      if (!job.results[i].ok() && job.results[i].error().code != ErrorCode::kResourceExhausted) {
        waiters_status = job.results[i];
      }
    }
    for (auto& w : job.waiters) w(waiters_status);
    if (!stopping) PumpAll();
  }

  ~Impl() {
    if (committing != nullptr) {
      // Its callback runs on the loop later and must only free it.
      committing->WaitFinished();
      committing->owner = nullptr;
    }
  }

  // Dropped messages are gone from the outbox: forget what was read but not sent, read again.
  // Messages only in memory and not sent yet go the outbox's way too: kept in memory, they would
  // be sent before older ones of their device that are now to be read again.
  void Resync(UpstreamState& u) {
    for (Submission& s : batch) {
      if (!s.in_memory || s.route != u.name) continue;
      auto it = u.pending.find(s.seq);
      if (it == u.pending.end() || it->second.in_flight || it->second.stored) continue;
      u.pending.erase(it);
      s.in_memory = false;
      s.spilled = true;
      spilled[u.name]++;
    }
    std::erase_if(u.pending, [](const auto& kv) {
      return !kv.second.in_flight && kv.second.stored;
    });
    u.read_after = 0;
    u.scan_from = 0;
    u.maybe_more = true;
  }

  // ---- sending ----

  // Reads on when at least a quarter of read_ahead is free: one read transaction per many
  // acknowledgements, not one per acknowledgement.
  void Refill(UpstreamState& u) {
    const size_t chunk = std::max<size_t>(1, options.read_ahead / 4);
    if (!u.maybe_more || u.pending.size() + chunk > options.read_ahead) return;
    auto txn = store->BeginRead();
    if (!txn.ok()) return;
    const size_t want = options.read_ahead - u.pending.size();
    auto msgs = storage::OutboxRead(*txn, u.name, u.read_after, want);
    if (!msgs.ok()) {
      std::fprintf(stderr, "forwarding: cannot read outbox of '%s': %s\n", u.name.c_str(),
                   msgs.error().ToString().c_str());
      return;
    }
    if (msgs->size() < want) u.maybe_more = false;
    for (auto& m : *msgs) {
      u.read_after = std::max(u.read_after, m.seq);
      if (u.pending.count(m.seq) || u.removing.count(m.seq)) continue;
      const uint64_t seq = m.seq;
      u.pending.emplace(seq, PendingMessage{std::move(m), false});
      u.scan_from = std::min(u.scan_from, seq);
    }
  }

  void Pump(UpstreamState& u) {
    if (!u.connection || stopping) return;
    Refill(u);
    std::unordered_set<std::string> blocked;  // devices with an unsent earlier message
    bool retry = false;
    std::optional<uint64_t> first_unsent;  // the first message this pass leaves unsent
    auto it = u.pending.lower_bound(u.scan_from);
    // Where the next pass starts: below it, everything is in flight.
    auto scanned = [&] {
      if (first_unsent) return *first_unsent;
      if (it != u.pending.end()) return it->first;
      return u.pending.empty() ? uint64_t{0} : std::prev(u.pending.end())->first + 1;
    };
    while (it != u.pending.end() && u.in_flight < options.window) {
      PendingMessage& p = it->second;
      if (p.in_flight) {
        ++it;
        continue;
      }
      if (blocked.count(p.message.device_id)) {
        if (!first_unsent) first_unsent = it->first;
        ++it;
        continue;
      }
      auto sent = u.connection->Send(p.message, Context(p.message.device_id));
      if (sent.ok()) {
        if (sent->awaits_ack) {
          p.in_flight = true;
          ++u.in_flight;
          ++it;
        } else {
          counters[u.name].acked++;
          it = Finished(u, it);
        }
        continue;
      }
      switch (sent.error().code) {
        case ErrorCode::kInvalidArgument:
          // Can never be sent (counted by the connection as a limit violation): drop it.
          std::fprintf(stderr, "forwarding: upstream '%s' drops message %llu of %s: %s\n",
                       u.name.c_str(), static_cast<unsigned long long>(it->first),
                       p.message.device_id.c_str(), sent.error().message.c_str());
          it = Finished(u, it);
          continue;
        case ErrorCode::kUnavailable:
          if (!u.connection->ready()) {  // whole upstream down: on_ready resumes
            u.scan_from = scanned();
            return Finish(u, retry);
          }
          break;
        default:
          retry = true;
          break;
      }
      blocked.insert(p.message.device_id);
      if (!first_unsent) first_unsent = it->first;
      ++it;
    }
    u.scan_from = scanned();
    Finish(u, retry);
  }

  void Finish(UpstreamState& u, bool retry) {
    if (retry && !retry_timer.active()) {
      retry_timer.Start(static_cast<uint64_t>(options.retry_delay.count()));
    }
    // Everything read was sent and acknowledged: read on.
    if (u.pending.empty() && u.maybe_more && u.connection && u.connection->ready() && !stopping) {
      Pump(u);
    }
  }

  void PumpAll() {
    for (auto& [name, u] : upstreams) Pump(*u);
  }

  void OnAck(const std::string& name, uint64_t seq, bool accepted) {
    auto uit = upstreams.find(name);
    if (uit == upstreams.end()) return;
    UpstreamState& u = *uit->second;
    auto it = u.pending.find(seq);
    if (it == u.pending.end() || !it->second.in_flight) return;
    --u.in_flight;
    Finished(u, it);
    UpstreamCounters& c = counters[name];
    if (accepted) {
      c.acked++;
    } else {
      c.rejected++;
    }
    Pump(u);
  }

  void OnLost(const std::string& name, const std::vector<uint64_t>& seqs) {
    auto uit = upstreams.find(name);
    if (uit == upstreams.end()) return;
    UpstreamState& u = *uit->second;
    for (uint64_t seq : seqs) {
      auto it = u.pending.find(seq);
      if (it == u.pending.end() || !it->second.in_flight) continue;
      it->second.in_flight = false;
      --u.in_flight;
      u.scan_from = std::min(u.scan_from, seq);
    }
    // Resending happens on on_ready (or now, for Azure's other devices).
    if (u.connection && u.connection->ready()) retry_timer.Start(0);
  }

  void Housekeeping() {
    std::erase_if(retired, [](const auto& c) { return c->closed(); });
    if (stopping) return;
    for (auto it = upstreams.begin(); it != upstreams.end();) {
      UpstreamState& u = *it->second;
      if (u.routed || !u.pending.empty()) {
        ++it;
        continue;
      }
      bool waiting = std::any_of(removals.begin(), removals.end(),
                                 [&](const auto& r) { return r.first == u.name; });
      auto txn = store->BeginRead();
      if (waiting || !txn.ok()) {
        ++it;
        continue;
      }
      auto usage = storage::OutboxStats(*txn, u.name);
      if (!usage.ok() || usage->count > 0) {
        ++it;
        continue;
      }
      Retire(u);
      it = upstreams.erase(it);
    }
  }
};

Forwarder::Forwarder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Forwarder::~Forwarder() = default;

Result<std::unique_ptr<Forwarder>> Forwarder::Create(uv_loop_t* loop, storage::Store* store,
                                                     std::shared_ptr<const policies::Policy> policy,
                                                     ForwarderOptions options) {
  if (loop == nullptr || store == nullptr || !policy) {
    return MakeError(ErrorCode::kInvalidArgument, "forwarder needs a loop, a store and a policy");
  }
  if (options.window == 0 || options.batch_max == 0 || options.read_ahead < options.window) {
    return MakeError(ErrorCode::kInvalidArgument, "forwarder: bad window/batch/read_ahead");
  }
  auto impl = std::make_unique<Impl>(loop, store, nullptr, std::move(options));
  ET_RETURN_IF_ERROR(impl->Apply(std::move(policy)));
  ET_RETURN_IF_ERROR(impl->StartQueuedUpstreams());
  impl->PumpAll();
  impl->housekeeping_timer.Start(200, 200);
  impl->housekeeping_timer.Unref();
  return std::unique_ptr<Forwarder>(new Forwarder(std::move(impl)));
}

void Forwarder::OnDownlink(std::function<void(Downlink)> handler) {
  impl_->downlink_handler = std::move(handler);
}

void Forwarder::Submit(std::string_view device_id, std::string_view group,
                       std::string_view channel, Bytes payload, int qos, SubmitDone done) {
  impl_->Submit(Submission{std::string(device_id), std::string(group), std::string(channel),
                           std::move(payload), qos, std::move(done)});
}

Status Forwarder::ApplyPolicy(std::shared_ptr<const policies::Policy> policy) {
  if (!policy) return MakeError(ErrorCode::kInvalidArgument, "no policy");
  // Batched submissions were made under the old policy's routes: commit them first.
  (void)impl_->Flush();
  return impl_->Apply(std::move(policy));
}

Status Forwarder::Flush() { return impl_->Flush(); }

bool Forwarder::WhenCommitted(std::function<void(Status)> done) {
  return impl_->WhenCommitted(std::move(done));
}

void Forwarder::CloseDevice(const std::string& device_id) {
  impl_->devices.erase(device_id);  // its group may change by the time it is active again
  impl_->devices_looked_up.erase(device_id);
  for (auto& [name, u] : impl_->upstreams) {
    if (u->connection) u->connection->CloseDevice(device_id);
  }
}

void Forwarder::Wake() {
  if (!impl_->stopping) impl_->retry_timer.Start(0);
}

void Forwarder::Stop() {
  if (impl_->stopping) return;
  (void)impl_->Flush();
  impl_->stopping = true;
  for (auto& [name, u] : impl_->upstreams) impl_->Retire(*u);
  impl_->upstreams.clear();
  impl_->batch_timer.Close();
  impl_->retry_timer.Close();
  impl_->housekeeping_timer.Close();
}

bool Forwarder::closed() const {
  if (!impl_->stopping) return false;
  for (const auto& c : impl_->retired) {
    if (!c->closed()) return false;
  }
  return true;
}

const std::map<std::string, UpstreamCounters>& Forwarder::counters() const {
  return impl_->counters;
}

UpstreamCounters Forwarder::Counters(const std::string& upstream) const {
  auto it = impl_->counters.find(upstream);
  return it == impl_->counters.end() ? UpstreamCounters{} : it->second;
}

uint64_t Forwarder::unrouted() const { return impl_->unrouted; }

Result<storage::OutboxUsage> Forwarder::QueueUsage(const std::string& upstream) const {
  ET_ASSIGN_OR_RETURN(auto txn, impl_->store->BeginRead());
  return storage::OutboxStats(txn, upstream);
}

std::vector<std::string> Forwarder::ActiveUpstreams() const {
  std::vector<std::string> out;
  for (const auto& [name, u] : impl_->upstreams) {
    if (u->connection) out.push_back(name);
  }
  return out;
}

}  // namespace edgetrust::forwarding
