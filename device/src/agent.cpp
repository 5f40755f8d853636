#include "edgetrust/device/agent.h"

#include <mosquitto.h>

#include <algorithm>
#include <cstdio>
#include <utility>

#include "edgetrust/mqtt/uv_mqtt_client.h"
#include "edgetrust/pki/key.h"
#include "edgetrust/protocol/messages.h"
#include "edgetrust/protocol/topics.h"

namespace edgetrust::device {
namespace {

constexpr uint64_t kTickMs = 250;
constexpr uint64_t kMaxRequestTimeoutMs = 60000;
constexpr int64_t kLifecycleMaxAgeSeconds = 600;

const char* CredentialName(Credential c) {
  return c == Credential::kBirth ? "birth" : "operational";
}

std::string ReasonText(int reason) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%02x", reason);
  return buf;
}

}  // namespace

Result<std::unique_ptr<DeviceAgent>> DeviceAgent::Create(uv_loop_t* loop, AgentConfig config,
                                                         AgentEvents events) {
  if (config.model.empty()) config.model = config.birth.model;
  auto state = StateDir::Open(config.state_dir);
  if (!state.ok())
    return MakeError(state.error().code,
                     "device " + config.birth.device_id + ": " + state.error().message);
  return std::unique_ptr<DeviceAgent>(
      new DeviceAgent(loop, std::move(config), std::move(events), std::move(state).value()));
}

DeviceAgent::DeviceAgent(uv_loop_t* loop, AgentConfig config, AgentEvents events, StateDir state)
    : loop_(loop), config_(std::move(config)), events_(std::move(events)), state_(std::move(state)) {
  tick_.data = this;
}

DeviceAgent::~DeviceAgent() = default;

bool DeviceAgent::online() const {
  return connected_ && credential_ == Credential::kOperational;
}

void DeviceAgent::Log(const std::string& event) {
  if (events_.log) events_.log("device " + device_id() + ": " + event);
}

std::string DeviceAgent::Topic(std::string_view suffix) const {
  return config_.topic_prefix + "/" + device_id() + "/" + std::string(suffix);
}

void DeviceAgent::Start() {
  if (started_) return;
  started_ = true;
  uv_timer_init(loop_, &tick_);
  uv_timer_start(
      &tick_, [](uv_timer_t* t) { static_cast<DeviceAgent*>(t->data)->Tick(); }, kTickMs, kTickMs);

  auto stored = state_.LoadIdentity();
  if (!stored.ok()) {
    Log("state unreadable (" + stored.error().message + "); using the birth certificate");
  } else if (stored->has_value()) {
    auto identity = CheckIdentity(**stored, device_id());
    if (!identity.ok()) {
      Log("stored identity unusable (" + identity.error().message + "); using the birth certificate");
    } else {
      identity_ = std::move(identity).value();
    }
  }
  const int64_t now = UnixNow();
  if (identity_ && now <= identity_->cert.not_after) {
    credential_ = Credential::kOperational;
    Log("operational certificate on file, expires " + FormatUtc(identity_->cert.not_after));
  } else {
    if (identity_) Log("operational certificate expired " + FormatUtc(identity_->cert.not_after));
    credential_ = Credential::kBirth;
  }
  connect_at_ms_ = NowMs() + config_.start_delay_ms;
  if (config_.start_delay_ms == 0) Connect();
}

void DeviceAgent::Connect() {
  mqtt::ClientOptions options;
  options.host = config_.broker.host;
  options.port = config_.broker.port;
  options.client_id = device_id();
  options.ca = config_.ca_file;
  if (credential_ == Credential::kOperational) {
    options.cert = state_.IdentityPath();
    options.key = state_.IdentityPath();
  } else {
    options.cert = config_.birth.cert_file;
    options.key = config_.birth.key_file;
  }
  options.keepalive = 30;
  options.reconnect = true;
  options.reconnect_min = std::chrono::milliseconds(500);
  options.reconnect_max = std::chrono::milliseconds(15000);

  const uint64_t generation = ++generation_;
  mqtt::ClientCallbacks callbacks;
  callbacks.on_connect = [this, generation](int reason) { OnConnect(generation, reason); };
  callbacks.on_disconnect = [this, generation](int reason) { OnDisconnect(generation, reason); };
  callbacks.on_message = [this, generation](const mqtt::Message& m) { OnMessage(generation, m); };
  callbacks.on_subscribe = [this, generation](int mid, const std::vector<int>& granted) {
    OnSubscribe(generation, mid, granted);
  };
  callbacks.on_publish_ack = [this, generation](int mid, int reason) {
    OnPublishAck(generation, mid, reason);
  };
  callbacks.on_closed = [this] {
    if (stopping_) MaybeClosed();
  };

  connected_ = false;
  request_topic_ready_ = false;
  answer_sub_mid_ = -1;
  telemetry_mids_.clear();
  auto client = mqtt::UvMqttClient::Create(loop_, std::move(options), std::move(callbacks));
  if (!client.ok()) {
    Log("cannot create MQTT client: " + client.error().message);
    connect_at_ms_ = NowMs() + switch_backoff_.Next();
    return;
  }
  client_ = std::move(client).value();
  if (auto s = client_->Start(); !s.ok()) {
    Log("cannot start MQTT client: " + s.error().message);
    retiring_.push_back(std::move(client_));
    connect_at_ms_ = NowMs() + switch_backoff_.Next();
  }
}

void DeviceAgent::SwitchTo(Credential credential, uint64_t delay_ms, const std::string& why) {
  Log("reconnecting with the " + std::string(CredentialName(credential)) + " certificate (" + why +
      ")");
  if (client_) {
    client_->Stop();
    retiring_.push_back(std::move(client_));
  }
  ++generation_;  // callbacks from the retiring client are ignored from here on
  connected_ = false;
  request_topic_ready_ = false;
  failed_connects_ = 0;
  if (credential != credential_) {
    // The pending request belongs to the connection it was made for (`birth` names its cert).
    request_.reset();
  }
  credential_ = credential;
  connect_at_ms_ = NowMs() + delay_ms;
}

void DeviceAgent::Tick() {
  retiring_.erase(std::remove_if(retiring_.begin(), retiring_.end(),
                                 [](const auto& c) { return c->closed(); }),
                  retiring_.end());
  if (stopping_) return;
  const uint64_t now_ms = NowMs();
  if (unsaved_ && now_ms >= save_retry_at_ms_) {
    SaveIssued();
    return;
  }
  if (!client_) {
    if (now_ms >= connect_at_ms_) Connect();
    return;
  }
  const int64_t now = UnixNow();

  if (credential_ == Credential::kOperational && identity_ && now > identity_->cert.not_after) {
    Log("operational certificate expired " + FormatUtc(identity_->cert.not_after));
    request_wanted_ = false;
    SwitchTo(Credential::kBirth, 0, "operational certificate expired");
    return;
  }
  if (!connected_) return;

  if (forced_renewal_at_ms_ && now_ms >= *forced_renewal_at_ms_) {
    forced_renewal_at_ms_.reset();
    renew_requested_ = true;
  }
  if (credential_ == Credential::kOperational && identity_ && !request_wanted_ && !unsaved_ &&
      (renew_requested_ || RenewalDue(identity_->cert.not_before, identity_->cert.not_after, now))) {
    Log(renew_requested_ ? std::string("renewal requested")
                         : "renewing, certificate expires " + FormatUtc(identity_->cert.not_after));
    renew_requested_ = false;
    request_wanted_ = true;
    reject_backoff_.Reset();
    request_retry_at_ms_ = now_ms;
  }

  if (request_wanted_ && request_topic_ready_) {
    if (!request_ && now_ms >= request_retry_at_ms_) {
      StartRequest();
    } else if (request_ && now_ms >= request_resend_at_ms_) {
      Log("no answer to request " + request_->rid() + ", sending it again");
      SendRequest();
    }
  }

  if (online() && config_.interval_seconds > 0 && now_ms >= next_telemetry_ms_) {
    PublishTelemetry();
    next_telemetry_ms_ = now_ms + static_cast<uint64_t>(config_.interval_seconds) * 1000;
  }
}

void DeviceAgent::OnConnect(uint64_t generation, int reason) {
  if (generation != generation_ || stopping_) return;
  if (reason != 0) {
    Log("connection refused (" + ReasonText(reason) + ") with the " +
        CredentialName(credential_) + " certificate");
    if (credential_ == Credential::kOperational) {
      SwitchTo(Credential::kBirth, switch_backoff_.Next(), "operational certificate refused");
    } else if (identity_ && UnixNow() <= identity_->cert.not_after) {
      SwitchTo(Credential::kOperational, switch_backoff_.Next(), "birth certificate refused");
    }
    return;
  }
  connected_ = true;
  failed_connects_ = 0;
  switch_backoff_.Reset();
  if (credential_ == Credential::kBirth) {
    Log("connected with the birth certificate, enrolling");
    request_wanted_ = true;
    auto mid = client_->Subscribe(Topic("enroll/res"), 1);
    if (mid.ok()) answer_sub_mid_ = *mid;
    return;
  }

  Log("connected, certificate expires " + FormatUtc(identity_->cert.not_after));
  for (const char* suffix : {"down/#", "lifecycle"}) (void)client_->Subscribe(Topic(suffix), 1);
  auto mid = client_->Subscribe(Topic("cert/res"), 1);
  if (mid.ok()) answer_sub_mid_ = *mid;

  protocol::StateMessage state;
  state.fw = config_.fw;
  state.model = config_.model;
  Bytes payload = protocol::EncodeStateMessage(state);
  if (auto r = client_->Publish(Topic("state"), payload, 1); !r.ok())
    Log("cannot publish state: " + r.error().message);
  next_telemetry_ms_ = NowMs();
  if (config_.renew_after_seconds && !forced_renewal_armed_) {
    forced_renewal_armed_ = true;
    forced_renewal_at_ms_ = NowMs() + static_cast<uint64_t>(*config_.renew_after_seconds) * 1000;
  }
  if (config_.exit_after_enroll) Finish(0);
}

void DeviceAgent::OnDisconnect(uint64_t generation, int reason) {
  if (generation != generation_ || stopping_) return;
  if (connected_) {
    connected_ = false;
    request_topic_ready_ = false;
    telemetry_mids_.clear();
    Log("disconnected (" + std::string(mosquitto_strerror(reason)) + "), reconnecting");
    return;
  }
  ++failed_connects_;
  if (failed_connects_ == 1 || failed_connects_ % 10 == 0)
    Log("cannot connect (" + std::string(mosquitto_strerror(reason)) + "), retrying");
  // No fallback to the birth certificate here: a broker that is down looks the same as one that
  // drops the handshake, and re-enrolling after every outage would churn certificates. The
  // operational certificate is given up only when refused at CONNACK or expired by our own clock.
}

void DeviceAgent::OnSubscribe(uint64_t generation, int mid, const std::vector<int>& granted) {
  if (generation != generation_ || stopping_) return;
  if (mid != answer_sub_mid_) return;
  if (granted.empty() || granted[0] >= 0x80) {
    Log("subscription to the answer topic refused");
    SwitchTo(credential_, switch_backoff_.Next(), "answer topic refused");
    return;
  }
  request_topic_ready_ = true;
  // A request that was in flight on the previous connection goes out again at once, same rid.
  if (request_wanted_ && request_) SendRequest();
  else if (request_wanted_ && NowMs() >= request_retry_at_ms_) StartRequest();
}

void DeviceAgent::StartRequest() {
  if (unsaved_) return;  // an issued certificate waits to be written
  RequestParams params;
  params.device_id = device_id();
  params.connected_cert_der =
      credential_ == Credential::kBirth ? config_.birth.cert.der : identity_->cert.der;
  params.fw = config_.fw;
  params.model = config_.model;
  params.claim = config_.claim;
  auto request = CertificateRequest::Create(params);
  if (!request.ok()) {
    Log("cannot build a certificate request: " + request.error().message);
    request_retry_at_ms_ = NowMs() + reject_backoff_.Next();
    return;
  }
  request_ = std::move(request).value();
  request_timeout_ms_ = static_cast<uint64_t>(config_.response_timeout_seconds) * 1000;
  SendRequest();
}

void DeviceAgent::SendRequest() {
  if (!client_ || !connected_ || !request_) return;
  const bool enrolling = credential_ == Credential::kBirth;
  auto mid = client_->Publish(Topic(enrolling ? "enroll/req" : "cert/req"), request_->payload(), 1);
  if (!mid.ok()) Log("cannot send request: " + mid.error().message);
  else Log(std::string(enrolling ? "enrollment" : "renewal") + " request " + request_->rid() + " sent");
  request_resend_at_ms_ = NowMs() + request_timeout_ms_;
  request_timeout_ms_ = std::min(kMaxRequestTimeoutMs, request_timeout_ms_ * 2);
}

void DeviceAgent::OnMessage(uint64_t generation, const mqtt::Message& message) {
  if (generation != generation_ || stopping_) return;
  auto topic = protocol::ParseDeviceTopic(config_.topic_prefix, message.topic);
  if (!topic || topic->device_id != device_id()) {
    Log("message on unexpected topic " + message.topic + " ignored");
    return;
  }
  switch (topic->kind) {
    case protocol::TopicKind::kEnrollRes:
    case protocol::TopicKind::kCertRes:
      if (!request_) {
        Log("answer with no request in flight ignored");
        return;
      }
      HandleAnswer(request_->Read(message.payload, UnixNow()));
      return;
    case protocol::TopicKind::kDown:
      Log("down/" + std::string(topic->channel) + ": " + std::to_string(message.payload.size()) +
          " bytes");
      return;
    case protocol::TopicKind::kLifecycle:
      HandleLifecycle(message);
      return;
    default:
      Log("message on " + message.topic + " ignored");
      return;
  }
}

void DeviceAgent::HandleAnswer(const Answer& answer) {
  const bool enrolling = credential_ == Credential::kBirth;
  const char* what = enrolling ? "enrollment" : "renewal";
  switch (answer.kind) {
    case AnswerKind::kIgnored:
      Log("ignored an answer: " + answer.err);
      return;
    case AnswerKind::kRejected:
    case AnswerKind::kInvalid: {
      const uint64_t delay = reject_backoff_.Next();
      Log(std::string(what) + (answer.kind == AnswerKind::kRejected ? " rejected: " : " failed: ") +
          answer.err + (answer.msg.empty() ? "" : " (" + answer.msg + ")") + "; retrying in " +
          std::to_string(delay / 1000) + " s");
      request_.reset();
      request_retry_at_ms_ = NowMs() + delay;
      return;
    }
    case AnswerKind::kIssued:
      break;
  }
  ++certificates_received_;
  request_.reset();
  request_wanted_ = false;
  reject_backoff_.Reset();
  unsaved_ = answer;
  unsaved_enrolled_ = enrolling;
  SaveIssued();
}

// The site already counts the issued certificate as this device's: a new request would make it
// revoke this one, unused, and issue another. So a certificate that cannot be written
// (descriptors, disk) is kept and written again later; no request goes out meanwhile, and what
// asked for one meanwhile (a reconnect on the birth certificate, renewal coming due on the old
// certificate, a lifecycle renew) is answered by this certificate once it is written.
void DeviceAgent::SaveIssued() {
  const bool enrolling = unsaved_enrolled_;
  if (auto s = state_.SaveIdentity(unsaved_->stored); !s.ok()) {
    const uint64_t delay = save_backoff_.Next();
    Log(std::string("cannot store the new certificate: ") + s.error().message +
        "; trying again in " + std::to_string((delay + 999) / 1000) + " s");
    save_retry_at_ms_ = NowMs() + delay;
    return;
  }
  Answer answer = std::move(*unsaved_);
  unsaved_.reset();
  save_backoff_.Reset();
  request_.reset();
  request_wanted_ = false;
  renew_requested_ = false;
  identity_ = std::move(*answer.identity);
  Log(std::string(enrolling ? "enrolled" : "renewed") + ", cert expires " +
      FormatUtc(identity_->cert.not_after) +
      (identity_->site.empty() ? "" : ", site " + identity_->site));
  SwitchTo(Credential::kOperational, 0, enrolling ? "enrolled" : "renewed");
}

void DeviceAgent::HandleLifecycle(const mqtt::Message& message) {
  auto cmd = protocol::DecodeLifecycleCommand(message.payload);
  if (!cmd.ok()) {
    Log("lifecycle command ignored: " + cmd.error().message);
    return;
  }
  const std::string action(protocol::LifecycleActionKindName(cmd->action));
  if (!identity_ || !identity_->lifecycle_ca) {
    Log("lifecycle " + action + " ignored: no lifecycle CA from the site to check it");
    return;
  }
  const int64_t now = UnixNow();
  if (cmd->ts < now - kLifecycleMaxAgeSeconds || cmd->ts > now + kLifecycleMaxAgeSeconds) {
    Log("lifecycle " + action + " ignored: timestamp out of range");
    return;
  }
  const std::string nonce = HexEncode(cmd->nonce);
  if (seen_nonces_.contains(nonce)) {
    Log("lifecycle " + action + " ignored: replayed nonce");
    return;
  }
  auto verified = pki::VerifySignature(identity_->lifecycle_ca->public_key_der,
                                       protocol::LifecycleSigningBytes(device_id(), *cmd), cmd->sig);
  if (!verified.ok()) {
    Log("lifecycle " + action + " ignored: " + verified.error().message);
    return;
  }
  if (seen_nonces_.size() > 1024) seen_nonces_.clear();
  seen_nonces_.insert(nonce);
  Log("lifecycle " + action + " accepted");
  switch (cmd->action) {
    case protocol::LifecycleActionKind::kRenew:
      if (!request_wanted_) renew_requested_ = true;
      return;
    case protocol::LifecycleActionKind::kReenroll:
      request_wanted_ = false;
      unsaved_.reset();  // a renewal's certificate not yet written: the site wants a new one
      save_backoff_.Reset();
      SwitchTo(Credential::kBirth, 0, "re-enrollment requested by the site");
      return;
    case protocol::LifecycleActionKind::kWipe:
      if (auto s = state_.ClearIdentity(); !s.ok()) Log("wipe failed: " + s.error().message);
      else Log("wiped the operational identity");
      identity_.reset();
      unsaved_.reset();
      save_backoff_.Reset();
      request_wanted_ = false;
      SwitchTo(Credential::kBirth, 0, "wiped");
      return;
  }
}

void DeviceAgent::PublishTelemetry() {
  const uint64_t seq = ++telemetry_seq_;
  std::string payload = "{\"seq\":" + std::to_string(seq) + ",\"ts\":" + std::to_string(UnixNow()) +
                        ",\"fw\":\"" + config_.fw + "\"}";
  auto mid = client_->Publish(Topic("up/telemetry"), AsBytes(payload), 1);
  if (!mid.ok()) {
    Log("cannot publish telemetry: " + mid.error().message);
    return;
  }
  telemetry_mids_.insert(*mid);
}

void DeviceAgent::OnPublishAck(uint64_t generation, int mid, int reason) {
  if (generation != generation_ || stopping_) return;
  if (telemetry_mids_.erase(mid) == 0) {
    if (reason >= 0x80) Log("publish refused (" + ReasonText(reason) + ")");
    return;
  }
  if (reason >= 0x80) {
    Log("telemetry refused (" + ReasonText(reason) + ")");
    return;
  }
  ++telemetry_acked_;
  if (config_.count && static_cast<int64_t>(telemetry_acked_) >= *config_.count) {
    Log("sent " + std::to_string(telemetry_acked_) + " telemetry messages");
    Finish(0);
  }
}

void DeviceAgent::Finish(int exit_code) {
  if (finished_) return;
  finished_ = true;
  if (events_.on_finished) events_.on_finished(exit_code);
}

void DeviceAgent::Stop() {
  if (stopping_) return;
  stopping_ = true;
  if (unsaved_) {  // a last try: unwritten, the certificate is asked for again at the next start
    if (auto st = state_.SaveIdentity(unsaved_->stored); !st.ok())
      Log("stopping with the new certificate unwritten: " + st.error().message);
    else
      Log("new certificate written while stopping");
    unsaved_.reset();
  }
  if (!started_) {
    tick_closed_ = true;
    MaybeClosed();
    return;
  }
  if (client_) client_->Stop();
  for (auto& c : retiring_) c->Stop();
  MaybeClosed();
}

void DeviceAgent::MaybeClosed() {
  if (client_ && !client_->closed()) return;
  for (auto& c : retiring_)
    if (!c->closed()) return;
  if (!tick_closed_) {
    if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&tick_))) return;
    uv_close(reinterpret_cast<uv_handle_t*>(&tick_), [](uv_handle_t* h) {
      auto* self = static_cast<DeviceAgent*>(h->data);
      self->tick_closed_ = true;
      self->MaybeClosed();
    });
    return;
  }
  if (closed_notified_) return;
  closed_notified_ = true;
  if (events_.on_closed) events_.on_closed();
}

}  // namespace edgetrust::device
