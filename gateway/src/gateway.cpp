#include "edgetrust/gateway/gateway.h"

#include <malloc.h>
#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <system_error>
#include <thread>

#include "cloud_identity.h"
#include "edgetrust/pki/certificate.h"
#include "edgetrust/pki/key.h"
#include "edgetrust/protocol/messages.h"
#include "edgetrust/protocol/topics.h"

namespace edgetrust::gateway {
namespace {

using protocol::TopicKind;

constexpr size_t kBatchSize = 128;          // requests per write transaction
// Answers the broker has not acknowledged yet, beyond which requests wait in the queue (small,
// one per device and kind) instead of their answers piling up in libmosquitto (each kept until
// its PUBACK): a fleet enrolling at once would otherwise cost tens of MiB.
constexpr size_t kMaxUnacked = 256;
// Requests and state reports waiting, together. Enrollment and renewal requests are bounded
// further by --request-queue (GatewayOptions::request_queue, at most half of this), so that
// state reports, which a device does not send again, find room.
constexpr size_t kMaxQueued = 20000;
constexpr uint64_t kHousekeepingMs = 10000;
constexpr std::string_view kStampProperty = "et-cert-sha256";
constexpr uint64_t kUpstreamWatchMs = 250;
constexpr uint64_t kRefusedLogEveryMs = 1000;  // on_full: refuse logs at most one line a second
constexpr uint64_t kRetryLogEveryMs = 10000;   // a failure retried every look, logged this often
constexpr uint64_t kDrainGraceMs = 3000;       // SIGTERM: how long outboxes may drain upstream
constexpr size_t kMaxUpQueued = 100000;        // up messages awaiting lookup (one loop turn's worth)

std::string Num(uint64_t v) { return std::to_string(v); }

// One waiting request per device and kind (see Gateway::queued_).
std::string QueueKey(const DeviceRequest& r) {
  return r.device_id + '/' + std::to_string(static_cast<int>(r.kind));
}

bool IsRequest(TopicKind k) { return k == TopicKind::kEnrollReq || k == TopicKind::kCertReq; }

// Everything the gateway subscribes to, under the topic prefix, at QoS 1.
constexpr const char* kSubscriptions[] = {"/+/enroll/req", "/+/cert/req", "/+/state", "/+/up/#",
                                          "/_admin/v1/req"};

}  // namespace

Result<std::unique_ptr<Gateway>> Gateway::Create(uv_loop_t* loop, GatewayOptions options) {
  ET_ASSIGN_OR_RETURN(auto authority,
                      LoadSiteAuthority({options.policy_file, options.site_ca_file,
                                         options.site_ca_key_file}));
  storage::StoreOptions so;
  so.path = options.store_dir;
  auto store = storage::Store::Open(so);
  if (!store.ok()) {
    return MakeError(store.error().code,
                     "store " + options.store_dir + ": " + store.error().message);
  }
  return std::unique_ptr<Gateway>(
      new Gateway(loop, std::move(options), std::move(store).value(), std::move(authority)));
}

Gateway::Gateway(uv_loop_t* loop, GatewayOptions options, storage::Store store,
                 std::shared_ptr<const SiteAuthority> authority)
    : loop_(loop),
      options_(std::move(options)),
      log_(options_.log_level),
      store_(std::move(store)),
      authority_(std::move(authority)),
      limiter_(options_.rate_burst, options_.rate_window_seconds) {
  if (const char* f = std::getenv("ET_GATEWAY_FAULT")) fault_ = f;
}

Gateway::~Gateway() = default;

Status Gateway::Start() {
  auto me = pki::LoadCertificateFile(options_.cert_file);
  if (!me.ok()) return MakeError(me.error().code, options_.cert_file + ": " + me.error().message);

  uv_signal_init(loop_, &sigterm_);
  uv_signal_init(loop_, &sigint_);
  uv_signal_init(loop_, &sighup_);
  uv_timer_init(loop_, &drain_timer_);
  uv_timer_init(loop_, &housekeeping_);
  uv_timer_init(loop_, &upstream_timer_);
  handles_open_ = true;
  for (uv_signal_t* s : {&sigterm_, &sigint_, &sighup_}) s->data = this;
  drain_timer_.data = this;
  housekeeping_.data = this;
  upstream_timer_.data = this;
  uv_signal_start(&sigterm_, [](uv_signal_t* s, int) { static_cast<Gateway*>(s->data)->Shutdown(); },
                  SIGTERM);
  uv_signal_start(&sigint_, [](uv_signal_t* s, int) { static_cast<Gateway*>(s->data)->Shutdown(); },
                  SIGINT);
  uv_signal_start(
      &sighup_, [](uv_signal_t* s, int) { (void)static_cast<Gateway*>(s->data)->Reload(); },
      SIGHUP);
  uv_timer_start(&housekeeping_, [](uv_timer_t* t) {
    auto* self = static_cast<Gateway*>(t->data);
    self->limiter_.Prune(uv_now(self->loop_));
    self->LogDropped(true);
    // After a burst (a fleet enrolling) wolfCrypt keeps its ECC point cache (~12 MiB, mostly
    // for CSR keys never seen again) and glibc the freed heap; hand both back once idle.
    if (self->queue_.empty() && self->up_queue_.empty()) {
      pki::ReleaseThreadCaches();
      malloc_trim(0);
    }
  }, kHousekeepingMs, kHousekeepingMs);

  cloud_identities_ = std::make_unique<CloudIdentities>(
      loop_, &store_, [this] { return authority_; }, CloudIdentityOptions{.dir = options_.cloud_dir},
      [this] {
        if (forwarder_) forwarder_->Wake();
      },
      [this](std::string_view upstream, std::string_view device, const pki::Certificate& cert) {
        log_.Info("cloud_cert_issued", {{"upstream", std::string(upstream)},
                                        {"device", std::string(device)},
                                        {"cert", HexEncode(cert.fingerprint)},
                                        {"not_after", std::to_string(cert.not_after)}});
      });
  forwarding::ForwarderOptions forwarder_options;
  forwarder_options.tuning.cloud_identity = cloud_identities_->Provider();
  auto forwarder =
      forwarding::Forwarder::Create(loop_, &store_, PolicyOf(authority_), forwarder_options);
  if (!forwarder.ok()) {
    return MakeError(forwarder.error().code, "forwarding: " + forwarder.error().message);
  }
  forwarder_ = std::move(forwarder).value();
  forwarder_->OnDownlink([this](forwarding::Downlink d) { PublishDownlink(std::move(d)); });
  uv_timer_start(&upstream_timer_, [](uv_timer_t* t) {
    static_cast<Gateway*>(t->data)->WatchUpstreams();
  }, kUpstreamWatchMs, kUpstreamWatchMs);

  mqtt::ClientOptions o;
  o.host = options_.broker_host;
  o.port = options_.broker_port;
  o.client_id = me->subject.cn;
  o.ca = options_.ca_file;
  o.cert = options_.cert_file;
  o.key = options_.key_file;
  o.protocol = 5;
  o.keepalive = 30;
  o.clean_start = false;  // the broker keeps our subscriptions and queues requests while we are away
  o.session_expiry = options_.session_expiry_seconds;
  o.hold_acks = true;  // device data is acknowledged only once it is in the outbox
  // Many messages per read, so one commit (one fsync) covers many: 20 would cap the gateway at
  // 20 messages per fsync.
  o.receive_maximum = 1024;
  mqtt::ClientCallbacks cb;
  cb.on_connect = [this](int reason) { OnConnect(reason); };
  cb.on_publish_ack = [this](int mid, int) {
    if (unacked_.erase(mid) != 0 && unacked_.size() == kMaxUnacked / 2 && !queue_.empty()) {
      ScheduleDrain();
    }
  };
  cb.on_disconnect = [this](int reason) {
    if (!stopping_) log_.Warn("broker_disconnected", {{"reason", std::to_string(reason)}});
  };
  cb.on_message = [this](const mqtt::Message& m) { OnMessage(m); };
  cb.on_received = [this](uint64_t hold) { return OnReceived(hold); };
  cb.on_subscribe = [this](int, const std::vector<int>& granted) {
    if (granted.empty() || granted[0] >= 0x80) {
      log_.Error("subscribe_refused", {{"reason", granted.empty() ? "none" : std::to_string(granted[0])}});
      return;
    }
    if (++subacks_ == static_cast<int>(std::size(kSubscriptions))) log_.Info("gateway_ready");
  };
  cb.on_closed = [this] { FinishShutdown(); };
  auto client = mqtt::UvMqttClient::Create(loop_, o, std::move(cb));
  if (!client.ok()) return client.error();
  client_ = std::move(client).value();
  log_.Info("gateway_starting",
            {{"site", authority_->policy.site},
             {"broker", options_.broker_host + ":" + std::to_string(options_.broker_port)},
             {"client_id", o.client_id},
             {"store", options_.store_dir},
             {"policy", options_.policy_file},
             {"manufacturers", std::to_string(authority_->manufacturers.size())},
             {"groups", std::to_string(authority_->policy.groups.size())},
             {"upstreams", std::to_string(authority_->policy.upstreams.size())}});
  return client_->Start();
}

void Gateway::OnConnect(int reason) {
  if (reason != 0) {
    log_.Error("broker_refused", {{"reason", std::to_string(reason)}});
    return;
  }
  const std::string& p = authority_->policy.topic_prefix;
  subacks_ = 0;
  // libmosquitto resends what was in flight; whatever it acknowledges or not, it no longer
  // holds requests back.
  unacked_.clear();
  if (!queue_.empty()) ScheduleDrain();
  for (const char* suffix : kSubscriptions) {
    auto mid = client_->Subscribe(p + suffix, 1);
    if (!mid.ok()) log_.Error("subscribe_failed", {{"error", mid.error().ToString()}});
  }
  log_.Info("broker_connected", {{"prefix", p}});
}

void Gateway::OnMessage(const mqtt::Message& m) {
  const std::string& prefix = authority_->policy.topic_prefix;
  auto topic = protocol::ParseDeviceTopic(prefix, m.topic);
  if (topic && topic->kind == TopicKind::kUp) {
    if (!forwarder_) {
      log_.Warn("forward_dropped", {{"device", std::string(topic->device_id)},
                                    {"msg", "forwarding is not running"}});
      return;
    }
    if (draining_ || up_queue_.size() >= kMaxUpQueued) {
      // Not acknowledged: the broker keeps it in our session and delivers it again.
      keep_failed_ = true;
      return;
    }
    // Handed to the outbox by OnReceived, at the end of this read.
    up_queue_.push_back({std::string(topic->device_id), std::string(topic->channel), m.payload,
                         m.qos});
    return;
  }
  if (stopping_) return;
  // Not on the up-link's path: "_admin" is never a device id, so the admin topic is no device topic.
  if (!topic && m.topic == protocol::AdminRequestTopic(prefix)) {
    HandleAdmin(m);
    return;
  }
  if (!topic || (!IsRequest(topic->kind) && topic->kind != TopicKind::kState)) {
    log_.Debug("message_ignored", {{"topic", m.topic}});
    return;
  }
  DeviceRequest r;
  r.kind = topic->kind;
  r.prefix = prefix;
  r.device_id = std::string(topic->device_id);
  r.payload = m.payload;
  if (auto stamp = mqtt::FindUserProperty(m.user_properties, kStampProperty)) {
    r.stamp = std::string(*stamp);
  }
  if (IsRequest(r.kind)) {
    if (!limiter_.Allow(r.device_id, uv_now(loop_))) {
      std::string rid = protocol::PeekRequestId(r.payload);
      log_.Warn(r.kind == TopicKind::kEnrollReq ? "enroll_refused" : "renew_refused",
                {{"device", r.device_id}, {"rid", rid}, {"err", std::string(protocol::kErrRateLimited)}});
      Publish({protocol::BuildTopic(prefix, r.device_id,
                                    r.kind == TopicKind::kEnrollReq ? TopicKind::kEnrollRes
                                                                    : TopicKind::kCertRes),
               protocol::EncodeErrorResponse(rid, protocol::kErrRateLimited,
                                             "too many requests; retry later")});
      return;
    }
  }
  const std::string key = QueueKey(r);
  if (auto it = queued_.find(key); it != queued_.end()) {
    *it->second = std::move(r);  // the newest ask of this device stands in for the older one
    return;
  }
  const bool request = IsRequest(r.kind);
  if (queue_.size() >= kMaxQueued ||
      (request && queued_requests_ >= static_cast<size_t>(options_.request_queue))) {
    ++(request ? dropped_unlogged_ : dropped_states_unlogged_);
    LogDropped(false);
    return;
  }
  if (request) ++queued_requests_;
  queue_.push_back(std::move(r));
  queued_.emplace(key, std::prev(queue_.end()));
  ScheduleDrain();
}

void Gateway::ScheduleDrain() {
  if (drain_scheduled_ || !handles_open_ || draining_) return;
  drain_scheduled_ = true;
  // Zero timeout: runs after this loop turn has read everything that is ready, so a burst of
  // requests lands in one transaction.
  uv_timer_start(&drain_timer_, [](uv_timer_t* t) { static_cast<Gateway*>(t->data)->Drain(); }, 0,
                 0);
}

// wolfCrypt keeps a table cache per thread (pki::ReleaseThreadCaches) and cannot be told to
// leave out a key it will never see again: checked on the loop, a fleet's one-off CSR keys
// would fill the loop thread's cache (about 12 MiB) and push out the tables that pay there
// (the site CA key that signs, the manufacturers' keys). So a batch's CSRs are checked on a
// thread of their own whose cache is dropped after each. The loop waits for it, so the
// gateway takes one core at most: in an enrollment storm the broker's TLS handshakes need the
// other. Repeats answered from memory are not checked.
static void CheckCsrs(std::deque<DeviceRequest>& batch, const EnrollmentService& service) {
  std::vector<DeviceRequest*> unchecked;
  for (DeviceRequest& r : batch) {
    if (IsRequest(r.kind) && !service.Remembers(r)) unchecked.push_back(&r);
  }
  if (unchecked.empty()) return;
  try {
    std::thread([&unchecked] {
      for (DeviceRequest* r : unchecked) CheckCsr(*r);
    }).join();
  } catch (const std::system_error&) {
    // No thread: Handle checks each CSR itself, on the loop.
  }
}

// At most one line a second while dropping; `flush` (housekeeping) logs what is left.
void Gateway::LogDropped(bool flush) {
  if (dropped_unlogged_ == 0 && dropped_states_unlogged_ == 0) return;
  const uint64_t now = uv_now(loop_);
  if (!flush && dropped_logged_at_ != 0 && now - dropped_logged_at_ < kRefusedLogEveryMs) return;
  if (dropped_unlogged_ > 0) {
    log_.Warn("request_dropped",
              {{"dropped", Num(dropped_unlogged_)}, {"waiting", Num(queued_requests_)},
               {"msg", "request queue full; devices ask again after their response timeout"}});
  }
  if (dropped_states_unlogged_ > 0) {
    log_.Error("state_dropped",
               {{"dropped", Num(dropped_states_unlogged_)}, {"waiting", Num(queue_.size())},
                {"msg", "queue full; these state reports are lost"}});
  }
  dropped_unlogged_ = dropped_states_unlogged_ = 0;
  dropped_logged_at_ = now;
}

void Gateway::HandleNextBatch() {
  std::deque<DeviceRequest> batch;
  while (!queue_.empty() && batch.size() < kBatchSize) {
    DeviceRequest& r = queue_.front();
    queued_.erase(QueueKey(r));
    if (IsRequest(r.kind)) --queued_requests_;
    batch.push_back(std::move(r));
    queue_.pop_front();
  }
  if (batch.empty()) return;
  CheckCsrs(batch, service_);
  HandleBatch(batch);
}

void Gateway::Drain() {
  drain_scheduled_ = false;
  if (unacked_.size() >= kMaxUnacked) return;  // on_publish_ack drains again at half
  HandleNextBatch();
  if (!queue_.empty()) ScheduleDrain();
}

void Gateway::MaybeFault(std::string_view point, bool enroll, bool renew) {
  if (fault_.empty() || fault_.substr(0, fault_.find(':')) != point) return;
  size_t colon = fault_.find(':');
  std::string which = colon == std::string::npos ? "" : fault_.substr(colon + 1);
  bool hit = which.empty() ? (enroll || renew) : which == "enroll" ? enroll : which == "renew" && renew;
  if (!hit) return;
  log_.Warn("fault_injected", {{"point", std::string(point)}});
  raise(SIGKILL);
}

void Gateway::HandleBatch(std::deque<DeviceRequest>& batch) {
  std::shared_ptr<const SiteAuthority> authority = authority_;  // one policy for the whole batch
  const int64_t now = UnixNow();
  auto fail_all = [&](const std::string& why) {
    for (const auto& r : batch) {
      log_.Error("request_failed", {{"device", r.device_id}, {"error", why}});
      if (!IsRequest(r.kind)) continue;
      Publish({protocol::BuildTopic(r.prefix, r.device_id,
                                    r.kind == TopicKind::kEnrollReq ? TopicKind::kEnrollRes
                                                                    : TopicKind::kCertRes),
               protocol::EncodeErrorResponse(protocol::PeekRequestId(r.payload),
                                             protocol::kErrInternal, "store unavailable")});
    }
  };
  auto txn = store_.BeginWrite();
  if (!txn.ok()) {
    fail_all(txn.error().ToString());
    return;
  }
  std::vector<Outcome> outcomes;
  outcomes.reserve(batch.size());
  for (const auto& r : batch) {
    auto o = service_.Handle(*txn, *authority, r, now);
    if (!o.ok()) {
      txn->Abort();
      if (batch.size() == 1) {
        fail_all(o.error().ToString());
        return;
      }
      // One request broke the transaction; give every request its own so the others succeed.
      for (auto& single : batch) {
        std::deque<DeviceRequest> one;
        one.push_back(std::move(single));
        HandleBatch(one);
      }
      return;
    }
    outcomes.push_back(std::move(o).value());
  }
  bool wrote = std::any_of(outcomes.begin(), outcomes.end(), [](const Outcome& o) { return o.wrote; });
  bool enrolls = false, renews = false;
  for (size_t i = 0; i < outcomes.size(); i++) {
    if (!outcomes[i].issued) continue;
    (batch[i].kind == TopicKind::kEnrollReq ? enrolls : renews) = true;
  }
  if (wrote) {
    MaybeFault("before_commit", enrolls, renews);
    auto st = txn->Commit();
    if (!st.ok()) {
      fail_all("commit: " + st.error().ToString());
      return;
    }
    MaybeFault("after_commit", enrolls, renews);
  } else {
    txn->Abort();
  }
  std::vector<Bytes> revoked;
  for (size_t i = 0; i < outcomes.size(); i++) {
    Outcome& o = outcomes[i];
    if (!o.event.empty()) log_.Write(o.level, o.event, o.fields);
    if (o.reply) {
      if (o.rid) service_.Remember(batch[i], *o.rid, o.cert);
      Publish(*o.reply);
    }
    revoked.insert(revoked.end(), o.revoked.begin(), o.revoked.end());
  }
  if (!revoked.empty() && client_ && client_->connected()) {
    // The plugin would notice on its next store tick; tell it now so revoked certificates'
    // sessions end at once.
    std::string body = "{\"commands\":[";
    for (size_t i = 0; i < revoked.size(); i++) {
      if (i) body += ',';
      body += "{\"command\":\"kickFingerprint\",\"fingerprint\":\"" + HexEncode(revoked[i]) + "\"}";
    }
    body += "]}";
    auto mid = client_->Publish(protocol::kControlTopic, AsBytes(body), 1);
    if (!mid.ok()) log_.Warn("kick_failed", {{"error", mid.error().ToString()}});
    if (mid.ok()) unacked_.insert(*mid);
  }
}

void Gateway::Publish(const Reply& reply) {
  if (!client_ || !client_->connected()) {
    log_.Warn("answer_not_sent", {{"topic", reply.topic}, {"msg", "broker not connected"}});
    return;
  }
  auto mid = client_->Publish(reply.topic, reply.payload, 1);
  if (!mid.ok()) log_.Warn("answer_not_sent", {{"topic", reply.topic}, {"error", mid.error().ToString()}});
  if (mid.ok()) unacked_.insert(*mid);
}

Status Gateway::Reload() {
  auto refuse = [this](const Error& e) -> Status {
    log_.Error("policy_reload_refused", {{"error", e.ToString()}, {"msg", "keeping the running policy"}});
    return e;
  };
  auto fresh = LoadSiteAuthority({options_.policy_file, options_.site_ca_file,
                                  options_.site_ca_key_file});
  if (!fresh.ok()) return refuse(fresh.error());
  if ((*fresh)->policy.topic_prefix != authority_->policy.topic_prefix) {
    return refuse(MakeError(ErrorCode::kFailedPrecondition, "topic_prefix changes need a restart"));
  }
  if (forwarder_ && !draining_) {
    // Messages already read are in the outbox (OnReceived ends every read) under the old routes.
    if (auto st = forwarder_->ApplyPolicy(PolicyOf(*fresh)); !st.ok()) return refuse(st.error());
  }
  authority_ = std::move(fresh).value();
  std::string routes;
  for (const auto& g : authority_->policy.groups) {
    if (!routes.empty()) routes += ',';
    routes += g.name + "->" + (g.route.empty() ? "-" : g.route);
  }
  log_.Info("policy_reloaded", {{"groups", std::to_string(authority_->policy.groups.size())},
                                {"manufacturers", std::to_string(authority_->manufacturers.size())},
                                {"routes", routes}});
  return OkStatus();
}

void Gateway::Shutdown() {
  if (stopping_) return;
  log_.Info("gateway_stopping", {{"queued", std::to_string(queue_.size())}});
  // Finish what was accepted, here and now: answers go out before the DISCONNECT that Stop
  // queues (libmosquitto keeps them however many are unacknowledged).
  while (!queue_.empty()) HandleNextBatch();
  stopping_ = true;
  if (client_) {
    client_->Stop();  // on_closed → FinishShutdown
  } else {
    FinishShutdown();
  }
}

void Gateway::FinishShutdown() {
  if (draining_) return;
  draining_ = true;
  if (!handles_open_ || !forwarder_) {
    if (forwarder_) forwarder_->Stop();
    CloseHandles();
    return;
  }
  // The next tick of upstream_timer_ (the Forwarder's open batch commits before it) decides.
  drain_deadline_ = uv_now(loop_) + kDrainGraceMs;
}

void Gateway::CloseHandles() {
  if (!handles_open_) return;
  handles_open_ = false;
  for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&sigterm_),
                         reinterpret_cast<uv_handle_t*>(&sigint_),
                         reinterpret_cast<uv_handle_t*>(&sighup_),
                         reinterpret_cast<uv_handle_t*>(&drain_timer_),
                         reinterpret_cast<uv_handle_t*>(&housekeeping_),
                         reinterpret_cast<uv_handle_t*>(&upstream_timer_)}) {
    uv_close(h, nullptr);
  }
  log_.Info("gateway_stopped");
}

}  // namespace edgetrust::gateway

namespace edgetrust::gateway {

std::shared_ptr<const policies::Policy> Gateway::PolicyOf(
    const std::shared_ptr<const SiteAuthority>& authority) const {
  return std::shared_ptr<const policies::Policy>(authority, &authority->policy);
}

mqtt::Received Gateway::OnReceived(uint64_t hold) {
  bool kept = ForwardUp() && !keep_failed_;
  if (keep_failed_) {
    log_.Warn("forward_deferred", {{"msg", draining_ ? "stopping" : "queue full"}});
  }
  keep_failed_ = false;
  if (!kept) return mqtt::Received::kDrop;
  if (!forwarder_) return mqtt::Received::kAcknowledge;
  // Runs on the loop once the commit is done (never after the forwarder is gone; client_ goes
  // after it).
  const bool waiting = forwarder_->WhenCommitted([this, hold](Status st) {
    if (client_) client_->Resolve(hold, st.ok());
  });
  return waiting ? mqtt::Received::kLater : mqtt::Received::kAcknowledge;
}

// One read transaction for everything that arrived in this loop turn; each device looked up once.
bool Gateway::ForwardUp() {
  if (up_queue_.empty() || !forwarder_) return true;
  std::vector<UpMessage> work = std::move(up_queue_);
  up_queue_.clear();
  auto txn = store_.BeginRead();
  if (!txn.ok()) {
    log_.Error("forward_failed", {{"messages", Num(work.size())}, {"error", txn.error().ToString()}});
    return false;
  }
  struct Verdict {
    bool active = false;
    std::string group;
  };
  std::map<std::string, Verdict, std::less<>> verdicts;
  bool kept = true;
  for (auto& m : work) {
    auto it = verdicts.find(m.device_id);
    if (it == verdicts.end()) {
      Verdict v;
      auto rec = storage::FindDevice(*txn, m.device_id);
      if (!rec.ok()) {
        log_.Error("forward_failed", {{"device", m.device_id}, {"error", rec.error().ToString()}});
        kept = false;
      } else if (rec->has_value() && (*rec)->state == storage::DeviceState::kActive) {
        v.active = true;
        v.group = (*rec)->group;
      }
      it = verdicts.emplace(m.device_id, std::move(v)).first;
      if (!it->second.active && rec.ok()) {
        log_.Warn("forward_refused", {{"device", m.device_id}, {"msg", "device not active"}});
      }
    }
    if (!it->second.active) continue;
    std::string device = m.device_id;
    forwarder_->Submit(m.device_id, it->second.group, m.channel, std::move(m.payload), m.qos,
                       [this, device](Status st) {
                         if (st.ok()) return;
                         if (st.error().code == ErrorCode::kResourceExhausted) {
                           // on_full: refuse — counted, summarised by WatchUpstreams.
                           ++refused_unlogged_;
                           return;
                         }
                         log_.Error("forward_failed",
                                    {{"device", device}, {"error", st.error().ToString()}});
                       });
  }
  return kept;
}

void Gateway::PublishDownlink(forwarding::Downlink d) {
  const std::string& prefix = authority_->policy.topic_prefix;
  std::string topic = protocol::BuildTopic(prefix, d.device_id, TopicKind::kDown, d.channel);
  // The cloud side chooses device and channel: only a well-formed device topic goes out.
  auto parsed = protocol::ParseDeviceTopic(prefix, topic);
  if (!parsed || parsed->kind != TopicKind::kDown || parsed->device_id != d.device_id ||
      !IsValidMqttUtf8(topic)) {
    log_.Warn("downlink_refused", {{"device", d.device_id}, {"channel", d.channel},
                                   {"msg", "not a valid device topic"}});
    return;
  }
  if (!client_ || !client_->connected()) {
    log_.Warn("downlink_not_sent", {{"topic", topic}, {"msg", "broker not connected"}});
    return;
  }
  auto mid = client_->Publish(topic, d.payload, 1);
  if (!mid.ok()) {
    log_.Warn("downlink_not_sent", {{"topic", topic}, {"error", mid.error().ToString()}});
    return;
  }
  log_.Debug("downlink", {{"topic", topic}, {"bytes", Num(d.payload.size())}});
}

void Gateway::WatchRevocations() {
  // Advanced only once everything up to it is done: what fails is tried again on the next look
  // (closing and destroying are idempotent), so no key outlives its device's revocation.
  uint64_t seen = revocations_seen_;
  Status failure;
  std::vector<std::string> devices;
  auto txn = store_.BeginRead();
  auto entries = txn.ok() ? storage::ReadRevocationLog(*txn, seen, 1024)
                          : Result<std::vector<storage::RevocationLogEntry>>(txn.error());
  if (!entries.ok()) {
    failure = entries.error();
  } else {
    for (const auto& e : *entries) {
      if (!e.device_id.empty() &&
          std::find(devices.begin(), devices.end(), e.device_id) == devices.end()) {
        // A renewal or re-enrollment revokes the old operational certificate of a device that
        // stays active: nothing to do for its cloud side then.
        auto device = storage::FindDevice(*txn, e.device_id);
        auto cert = storage::FindCertificate(*txn, e.fingerprint);
        if (!device.ok() || !cert.ok()) {
          failure = device.ok() ? cert.error() : device.error();
          break;  // this entry and the ones after it: next time
        }
        const bool inactive = !*device || (*device)->state != storage::DeviceState::kActive;
        const bool cloud = *cert && (*cert)->kind == storage::CertificateKind::kCloud;
        if (inactive || cloud) devices.push_back(e.device_id);
      }
      seen = e.seq;
    }
  }
  if (txn.ok()) txn->Reset();  // no snapshot held while files are removed
  for (const std::string& id : devices) {
    if (forwarder_) forwarder_->CloseDevice(id);
    auto destroyed = cloud_identities_->Forget(id);
    if (!destroyed.ok()) {
      failure = MakeError(destroyed.error().code, id + ": " + destroyed.error().message);
      continue;
    }
    for (const auto& d : *destroyed) {
      // The cloud keeps trusting the certificate until told: the operator revokes it there too.
      log_.Warn("cloud_identity_destroyed",
                {{"device", id},
                 {"upstream", d.upstream},
                 {"cert", HexEncode(d.fingerprint)},
                 {"msg", "key destroyed; revoke the certificate in the cloud too"}});
    }
  }
  if (failure.ok()) {
    revocations_seen_ = seen;
    return;
  }
  // Retried every look; logged at most every few seconds.
  const uint64_t now = uv_now(loop_);
  if (revocation_failure_logged_at_ == 0 || now - revocation_failure_logged_at_ >= kRetryLogEveryMs) {
    log_.Error("revocation_not_applied", {{"error", failure.error().ToString()},
                                          {"msg", "cloud keys or connections not ended yet; retrying"}});
    revocation_failure_logged_at_ = now;
  }
}

void Gateway::WatchUpstreams() {
  if (!forwarder_) return;
  WatchRevocations();
  const uint64_t now = uv_now(loop_);
  for (const auto& [name, c] : forwarder_->counters()) {
    auto& seen = upstream_seen_[name];
    if (c.connects != seen.first || c.disconnects != seen.second) {
      // Between two looks the upstream may have dropped and come back: log both changes, in
      // the order they must have happened.
      const bool was_up = seen.first > seen.second;
      const bool up = c.connects > c.disconnects;
      auto down = [&] {
        log_.Warn("upstream_down", {{"upstream", name}, {"disconnects", Num(c.disconnects)}});
      };
      auto upl = [&] {
        log_.Info("upstream_up", {{"upstream", name}, {"connects", Num(c.connects)}});
      };
      if (was_up) {
        if (c.disconnects > seen.second) down();
        if (up && c.connects > seen.first) upl();
      } else {
        if (c.connects > seen.first) upl();
        if (!up && c.disconnects > seen.second) down();
      }
      seen = {c.connects, c.disconnects};
    }
    uint64_t& dropped = dropped_seen_[name];
    if (c.dropped != dropped) {
      log_.Warn("queue_full_dropped", {{"upstream", name}, {"dropped", Num(c.dropped - dropped)},
                                       {"total", Num(c.dropped)}});
      dropped = c.dropped;
    }
  }
  if (refused_unlogged_ > 0 && (refused_logged_at_ == 0 || now - refused_logged_at_ >= kRefusedLogEveryMs)) {
    log_.Warn("queue_full_refused", {{"refused", Num(refused_unlogged_)},
                                     {"msg", "on_full: refuse; messages not forwarded"}});
    refused_unlogged_ = 0;
    refused_logged_at_ = now;
  }
  if (!draining_) return;
  bool waiting = false;
  if (now < drain_deadline_) {
    for (const auto& name : forwarder_->ActiveUpstreams()) {
      const auto& c = forwarder_->Counters(name);
      if (c.connects <= c.disconnects) continue;  // down: nothing will drain now
      auto usage = forwarder_->QueueUsage(name);
      if (usage.ok() && usage->count > 0) waiting = true;
    }
  }
  if (waiting) return;
  uint64_t left = 0;
  for (const auto& name : forwarder_->ActiveUpstreams()) {
    auto usage = forwarder_->QueueUsage(name);
    if (!usage.ok() || usage->count == 0) continue;
    left += usage->count;
    log_.Info("outbox_kept", {{"upstream", name}, {"messages", Num(usage->count)},
                              {"bytes", Num(usage->bytes)}});
  }
  for (const auto& [name, c] : forwarder_->counters()) {
    log_.Info("upstream_totals", {{"upstream", name}, {"queued", Num(c.queued)},
                                  {"written", Num(c.written)}, {"acked", Num(c.acked)},
                                  {"dropped", Num(c.dropped)}, {"refused", Num(c.refused)}});
  }
  forwarder_->Stop();
  log_.Info("forwarding_stopped", {{"queued", Num(left)}});
  CloseHandles();
}

}  // namespace edgetrust::gateway
