#include "edgetrust/device/runner.h"

#include <dirent.h>
#include <sys/stat.h>
#include <uv.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "edgetrust/device/agent.h"
#include "edgetrust/mqtt/uv_mqtt_client.h"

namespace edgetrust::device {
namespace {

void PrintLine(const std::string& line) {
  std::string out = line + "\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
}

bool IsFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Device directories of a `factory provision` output: DIR/<id>/birth.pem + birth.key.
Result<std::vector<std::string>> ListFactoryDevices(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return MakeError(ErrorCode::kNotFound, "cannot open factory output " + dir);
  std::vector<std::string> ids;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (!IsValidDeviceId(name)) continue;
    if (IsFile(dir + "/" + name + "/birth.pem") && IsFile(dir + "/" + name + "/birth.key"))
      ids.push_back(name);
  }
  ::closedir(d);
  std::sort(ids.begin(), ids.end());
  return ids;
}

class Fleet {
 public:
  Fleet(uv_loop_t* loop, const Options& options) : loop_(loop), options_(options) {}

  Status Add(AgentConfig config) {
    const size_t index = agents_.size();
    AgentEvents events;
    if (!(options_.simulating() && options_.quiet)) events.log = PrintLine;
    events.on_finished = [this, index](int code) { OnFinished(index, code); };
    events.on_closed = [this] { OnAgentClosed(); };
    ET_ASSIGN_OR_RETURN(auto agent, DeviceAgent::Create(loop_, std::move(config), std::move(events)));
    agents_.push_back(std::move(agent));
    return OkStatus();
  }

  void Start() {
    start_ms_ = uv_now(loop_);
    for (int signum : {SIGINT, SIGTERM}) {
      auto& sig = signals_.emplace_back(std::make_unique<uv_signal_t>());
      uv_signal_init(loop_, sig.get());
      sig->data = this;
      uv_signal_start(
          sig.get(),
          [](uv_signal_t* s, int signum) {
            auto* self = static_cast<Fleet*>(s->data);
            PrintLine(std::string("edgetrust-device: ") + (signum == SIGINT ? "SIGINT" : "SIGTERM") +
                      ", disconnecting");
            self->StopAll(0);
          },
          signum);
    }
    if (options_.simulating()) {
      uv_timer_init(loop_, &progress_);
      progress_.data = this;
      uv_timer_start(
          &progress_, [](uv_timer_t* t) { static_cast<Fleet*>(t->data)->PrintProgress(); }, 1000,
          1000);
      timers_open_ = true;
      if (options_.duration_seconds) {
        uv_timer_init(loop_, &duration_);
        duration_.data = this;
        uv_timer_start(
            &duration_,
            [](uv_timer_t* t) {
              auto* self = static_cast<Fleet*>(t->data);
              self->OnDurationElapsed();
            },
            static_cast<uint64_t>(*options_.duration_seconds) * 1000, 0);
        duration_open_ = true;
      }
    }
    for (auto& agent : agents_) agent->Start();
  }

  int exit_code() const { return exit_code_; }

 private:
  void OnFinished(size_t, int code) {
    if (code != 0) failures_++;
    if (!options_.simulating()) {
      StopAll(code);
      return;
    }
    const bool all = std::all_of(agents_.begin(), agents_.end(),
                                 [](const auto& a) { return a->finished(); });
    if (all) {
      PrintProgress();
      StopAll(failures_ == 0 ? 0 : 1);
    }
  }

  void OnDurationElapsed() {
    PrintProgress();
    int code = 0;
    if (options_.exit_after_enroll || options_.count) {
      std::vector<std::string> missing;
      for (auto& a : agents_)
        if (!a->finished()) missing.push_back(a->device_id());
      if (!missing.empty()) {
        std::string names;
        for (size_t i = 0; i < missing.size() && i < 10; ++i) names += " " + missing[i];
        PrintLine("simulate: " + std::to_string(missing.size()) + " device(s) did not finish in " +
                  std::to_string(*options_.duration_seconds) + " s:" + names +
                  (missing.size() > 10 ? " …" : ""));
        code = 1;
      }
    }
    StopAll(code);
  }

  void PrintProgress() {
    size_t enrolled = 0, online = 0;
    uint64_t telemetry = 0, certificates = 0;
    for (auto& a : agents_) {
      enrolled += a->has_identity() ? 1 : 0;
      online += a->online() ? 1 : 0;
      telemetry += a->telemetry_acked();
      certificates += a->certificates_received();
    }
    char elapsed[32];
    std::snprintf(elapsed, sizeof elapsed, "%.1f",
                  static_cast<double>(uv_now(loop_) - start_ms_) / 1000.0);
    PrintLine("simulate: " + std::to_string(enrolled) + "/" + std::to_string(agents_.size()) +
              " enrolled, " + std::to_string(online) + " connected, " + std::to_string(telemetry) +
              " telemetry sent, " + std::to_string(certificates) + " certificates received, " +
              elapsed + " s");
  }

  void StopAll(int code) {
    if (stopping_) return;
    stopping_ = true;
    exit_code_ = code;
    if (agents_.empty()) CloseOwnHandles();
    for (auto& agent : agents_) agent->Stop();
  }

  void OnAgentClosed() {
    if (++closed_agents_ == agents_.size()) CloseOwnHandles();
  }

  void CloseOwnHandles() {
    for (auto& sig : signals_) uv_close(reinterpret_cast<uv_handle_t*>(sig.get()), nullptr);
    if (timers_open_) uv_close(reinterpret_cast<uv_handle_t*>(&progress_), nullptr);
    if (duration_open_) uv_close(reinterpret_cast<uv_handle_t*>(&duration_), nullptr);
  }

  uv_loop_t* loop_;
  const Options& options_;
  std::vector<std::unique_ptr<DeviceAgent>> agents_;
  std::vector<std::unique_ptr<uv_signal_t>> signals_;
  uv_timer_t progress_{};
  uv_timer_t duration_{};
  bool timers_open_ = false;
  bool duration_open_ = false;
  bool stopping_ = false;
  size_t closed_agents_ = 0;
  int failures_ = 0;
  int exit_code_ = 0;
  uint64_t start_ms_ = 0;
};

AgentConfig BaseConfig(const Options& options) {
  AgentConfig config;
  config.broker = options.broker;
  config.ca_file = options.ca_file;
  config.fw = options.fw;
  config.model = options.model;
  config.claim = options.claim;
  config.interval_seconds = options.interval_seconds;
  config.count = options.count;
  config.exit_after_enroll = options.exit_after_enroll;
  config.response_timeout_seconds = options.response_timeout_seconds;
  config.renew_after_seconds = options.renew_after_seconds;
  return config;
}

Status AddAgents(Fleet& fleet, const Options& options) {
  if (!options.simulating()) {
    ET_ASSIGN_OR_RETURN(BirthIdentity birth,
                        LoadBirthIdentity(options.birth_cert_file, options.birth_key_file));
    AgentConfig config = BaseConfig(options);
    config.birth = std::move(birth);
    config.state_dir = options.state_dir;
    return fleet.Add(std::move(config));
  }
  ET_ASSIGN_OR_RETURN(auto ids, ListFactoryDevices(options.factory_out));
  if (ids.size() < static_cast<size_t>(options.simulate))
    return MakeError(ErrorCode::kNotFound,
                     options.factory_out + " holds " + std::to_string(ids.size()) +
                         " provisioned device(s), --simulate asks for " +
                         std::to_string(options.simulate));
  const uint64_t needed =
      static_cast<uint64_t>(options.simulate) * kDescriptorsPerSimulatedDevice + 64;
  if (const uint64_t limit = mqtt::RaiseDescriptorLimit(needed); limit < needed) {
    return MakeError(ErrorCode::kResourceExhausted,
                     "--simulate " + std::to_string(options.simulate) + " needs about " +
                         std::to_string(needed) + " open files; the limit is " +
                         std::to_string(limit) + " (raise it: ulimit -n " +
                         std::to_string(needed) + ")");
  }
  if (!options.state_dir.empty() && ::mkdir(options.state_dir.c_str(), 0700) != 0 && errno != EEXIST)
    return MakeError(ErrorCode::kIo, "cannot create " + options.state_dir);
  for (int i = 0; i < options.simulate; ++i) {
    const std::string& id = ids[static_cast<size_t>(i)];
    const std::string dir = options.factory_out + "/" + id;
    ET_ASSIGN_OR_RETURN(BirthIdentity birth,
                        LoadBirthIdentity(dir + "/birth.pem", dir + "/birth.key"));
    AgentConfig config = BaseConfig(options);
    config.birth = std::move(birth);
    config.state_dir = options.state_dir.empty() ? dir + "/state" : options.state_dir + "/" + id;
    config.start_delay_ms = static_cast<uint64_t>(i) * static_cast<uint64_t>(options.stagger_ms);
    ET_RETURN_IF_ERROR(fleet.Add(std::move(config)));
  }
  return OkStatus();
}

}  // namespace

int Run(const Options& options) {
  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0) {
    PrintLine("edgetrust-device: cannot initialise the event loop");
    return 1;
  }
  int code = 1;
  {
    Fleet fleet(&loop, options);
    if (auto s = AddAgents(fleet, options); !s.ok()) {
      PrintLine("edgetrust-device: " + s.error().message);
    } else {
      if (options.simulating())
        PrintLine("simulate: starting " + std::to_string(options.simulate) + " devices against " +
                  options.broker.host + ":" + std::to_string(options.broker.port));
      fleet.Start();
      uv_run(&loop, UV_RUN_DEFAULT);
      code = fleet.exit_code();
    }
  }
  // Agents that never started own no handles; a run that did has closed them all.
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop) != 0) PrintLine("edgetrust-device: event loop closed with open handles");
  return code;
}

}  // namespace edgetrust::device
