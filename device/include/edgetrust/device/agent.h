// The device agent: one device's whole life over MQTT on a libuv loop. Birth certificate →
// enrollment → operational certificate → state, telemetry, renewal; falls back to the birth
// certificate when the operational one is refused. Any number of agents may share one loop (the
// simulator); everything happens on the loop thread.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "edgetrust/common/result.h"
#include "edgetrust/device/enrollment.h"
#include "edgetrust/device/identity.h"
#include "edgetrust/device/options.h"
#include "edgetrust/device/state_dir.h"
#include "edgetrust/device/timing.h"

namespace edgetrust::mqtt {
class UvMqttClient;
struct Message;
}  // namespace edgetrust::mqtt

namespace edgetrust::device {

struct AgentConfig {
  BirthIdentity birth;
  std::string state_dir;
  BrokerAddress broker;
  std::string ca_file;
  std::string fw = "1.0.0";
  std::string model;  // empty: birth.model
  std::string claim;
  int interval_seconds = 10;       // 0: no telemetry
  std::optional<int64_t> count;    // finish after this many acknowledged telemetry messages
  bool exit_after_enroll = false;  // finish at the first accepted connect with an operational cert
  int response_timeout_seconds = 5;
  uint64_t start_delay_ms = 0;
  std::optional<int> renew_after_seconds;  // see Options::renew_after_seconds
  std::string topic_prefix = "et";
};

struct AgentEvents {
  std::function<void(const std::string& line)> log;  // one line per event, without newline
  std::function<void(int exit_code)> on_finished;    // the agent reached its goal or gave up
  std::function<void()> on_closed;  // every handle closed: the agent may be destroyed
};

enum class Credential { kBirth, kOperational };

class DeviceAgent {
 public:
  // Opens (and locks) the state directory; does not touch the network.
  static Result<std::unique_ptr<DeviceAgent>> Create(uv_loop_t* loop, AgentConfig config,
                                                     AgentEvents events);
  ~DeviceAgent();
  DeviceAgent(const DeviceAgent&) = delete;
  DeviceAgent& operator=(const DeviceAgent&) = delete;

  void Start();
  // Graceful: DISCONNECT, close every handle, then on_closed. Idempotent.
  void Stop();

  const std::string& device_id() const { return config_.birth.device_id; }
  bool has_identity() const { return identity_.has_value(); }
  bool online() const;  // connected with the operational certificate
  bool finished() const { return finished_; }
  uint64_t telemetry_acked() const { return telemetry_acked_; }
  // Certificates issued to this agent (enrollments and renewals), written or not.
  uint64_t certificates_received() const { return certificates_received_; }

 private:
  DeviceAgent(uv_loop_t* loop, AgentConfig config, AgentEvents events, StateDir state);

  void Log(const std::string& event);
  void Tick();
  void Connect();
  void SwitchTo(Credential credential, uint64_t delay_ms, const std::string& why);
  void OnConnect(uint64_t generation, int reason);
  void OnDisconnect(uint64_t generation, int reason);
  void OnMessage(uint64_t generation, const mqtt::Message& message);
  void OnSubscribe(uint64_t generation, int mid, const std::vector<int>& granted);
  void OnPublishAck(uint64_t generation, int mid, int reason);
  void StartRequest();
  void SendRequest();
  void HandleAnswer(const Answer& answer);
  void SaveIssued();
  void HandleLifecycle(const mqtt::Message& message);
  void PublishTelemetry();
  void Finish(int exit_code);
  void MaybeClosed();
  std::string Topic(std::string_view suffix) const;
  uint64_t NowMs() const { return uv_now(loop_); }

  uv_loop_t* loop_;
  AgentConfig config_;
  AgentEvents events_;
  StateDir state_;
  uv_timer_t tick_{};
  bool tick_closed_ = false;

  std::optional<OperationalIdentity> identity_;
  Credential credential_ = Credential::kBirth;
  std::unique_ptr<mqtt::UvMqttClient> client_;
  std::vector<std::unique_ptr<mqtt::UvMqttClient>> retiring_;
  uint64_t generation_ = 0;
  bool connected_ = false;
  uint64_t connect_at_ms_ = 0;
  int failed_connects_ = 0;  // consecutive, without a CONNACK, on the current credential
  Backoff switch_backoff_{1000, 60000};

  // The certificate request in flight (enrollment when on the birth cert, renewal otherwise).
  std::optional<CertificateRequest> request_;
  bool request_wanted_ = false;     // a request should be in flight (renewal due or enrolling)
  bool request_topic_ready_ = false;  // answer topic subscribed on this connection
  uint64_t request_resend_at_ms_ = 0;
  uint64_t request_timeout_ms_ = 0;
  uint64_t request_retry_at_ms_ = 0;  // after a rejection
  Backoff reject_backoff_{5000, 300000};
  int answer_sub_mid_ = -1;
  bool renew_requested_ = false;  // by a lifecycle command or --renew-after
  std::optional<uint64_t> forced_renewal_at_ms_;
  bool forced_renewal_armed_ = false;
  std::set<std::string> seen_nonces_;
  // Issued but not yet in the state directory: written again at save_retry_at_ms_.
  std::optional<Answer> unsaved_;
  bool unsaved_enrolled_ = false;  // issued by enrollment (else renewal)
  uint64_t save_retry_at_ms_ = 0;
  Backoff save_backoff_{1000, 30000};

  uint64_t next_telemetry_ms_ = 0;
  uint64_t telemetry_seq_ = 0;
  uint64_t telemetry_acked_ = 0;
  std::set<int> telemetry_mids_;
  uint64_t certificates_received_ = 0;

  bool started_ = false;
  bool stopping_ = false;
  bool finished_ = false;
  bool closed_notified_ = false;
};

}  // namespace edgetrust::device
