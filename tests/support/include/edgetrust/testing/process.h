// Real processes for tests: temp dirs, free loopback ports, child processes, a real mosquitto.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edgetrust::testing {

// Path of a binary built by this project (build/bin/NAME).
std::string BinPath(const std::string& name);
// Path inside the source tree.
std::string SourcePath(const std::string& relative);

// A fresh directory under $TMPDIR, removed with everything in it on destruction. It is made
// world-traversable (0755) so a broker that drops root to `mosquitto` can reach files in it.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreeLoopbackPort();

// Polls `done` every 5 ms until it returns true or `timeout` passes; returns its last answer.
bool WaitUntil(const std::function<bool()>& done,
               std::chrono::milliseconds timeout = std::chrono::seconds(10));

std::string ReadFile(const std::string& path);
// How often `needle` occurs in `text`, overlapping occurrences included.
size_t CountOf(std::string_view text, std::string_view needle);
void WriteFile(const std::string& path, const std::string& content);

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal or timed out
  std::string out;
  std::string err;
};

// Runs argv[0] (a path) to completion with stdin from /dev/null; kills it after `timeout`.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         std::chrono::milliseconds timeout = std::chrono::seconds(60));

// A child process whose stdout and stderr go to one log file. Killed (SIGKILL) on destruction
// if still running. Only ever signals the PID it started.
class Subprocess {
 public:
  static Subprocess Start(const std::vector<std::string>& argv, const std::string& log_path,
                          const std::map<std::string, std::string>& extra_env = {});
  Subprocess() = default;
  Subprocess(Subprocess&& other) noexcept;
  Subprocess& operator=(Subprocess&& other) noexcept;
  ~Subprocess();

  pid_t pid() const { return pid_; }
  bool running();
  void Signal(int sig);
  // Waits for exit; returns the exit code, 128+signal if signalled, nullopt on timeout.
  std::optional<int> Wait(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // SIGTERM, then SIGKILL after `grace`.
  void Stop(std::chrono::milliseconds grace = std::chrono::seconds(5));
  std::string Log() const;
  const std::string& log_path() const { return log_path_; }

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::string log_path_;
};

// True once something accepts TCP connections on 127.0.0.1:port.
bool PortAccepts(int port);

// A real mosquitto started with a config written for this test. `config` is the body; the
// harness adds nothing but `log_dest file`. Waits until every port in `ports` accepts.
class Broker {
 public:
  static Broker Start(const std::string& dir, const std::string& config, std::vector<int> ports);
  Broker() = default;
  Broker(Broker&&) = default;
  Broker& operator=(Broker&&) = default;
  Subprocess& process() { return process_; }
  std::string Log() const;
  const std::string& log_path() const { return log_path_; }
  // Sends SIGHUP (mosquitto reloads its config and its plugins' reload events fire).
  void Reload() { process_.Signal(1); }

 private:
  Subprocess process_;
  std::string log_path_;
};

}  // namespace edgetrust::testing
