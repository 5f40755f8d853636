// Everything the plugin owns, built once by mosquitto_plugin_init and handed to every callback
// as userdata. Mosquitto 2.0 runs every callback on its one main thread: no locking here.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "edgetrust/common/result.h"
#include "edgetrust/plugin/client_registry.h"
#include "edgetrust/plugin/connect_decider.h"
#include "edgetrust/plugin/counters.h"
#include "edgetrust/plugin/trust_index.h"
#include "edgetrust/storage/store.h"

struct mosquitto_opt;
typedef struct mosquitto_plugin_id_t mosquitto_plugin_id_t;

namespace edgetrust::plugin::internal {

using Clock = std::chrono::steady_clock;

struct PluginOptions {
  std::string store_path;   // plugin_opt_store
  std::string policy_path;  // plugin_opt_policy
  std::chrono::milliseconds tick{200};             // plugin_opt_tick_ms: revocation log and expiry
  std::chrono::seconds stats_interval{10};         // plugin_opt_stats_interval; 0 = never
  // plugin_opt_offline_session_days: how long a session's receive rights outlive its
  // connection (the broker keeps sessions longer than we can see; 0 = as long as it does).
  int64_t offline_session_seconds = 7 * 86400;
};

Result<PluginOptions> ParseOptions(const mosquitto_opt* options, int option_count);

// A disconnect decided inside a callback, carried out on the next tick.
struct PendingKick {
  ClientRegistry::Key key;
  std::string client_id;
  std::string reason;
};

class PluginState {
 public:
  PluginState(mosquitto_plugin_id_t* identifier, PluginOptions options,
              std::shared_ptr<const PolicySnapshot> policy);
  PluginState(const PluginState&) = delete;
  PluginState& operator=(const PluginState&) = delete;

  mosquitto_plugin_id_t* identifier() const { return identifier_; }
  const PluginOptions& options() const { return options_; }
  const PolicySnapshot& policy() const { return *policy_; }
  const std::string& topic_prefix() const { return policy_->policy.topic_prefix; }
  void SetPolicy(std::shared_ptr<const PolicySnapshot> policy);

  // Opens the store read-only if it is not open; logs only when the state changes.
  void TryOpenStore();
  bool store_open() const { return store_.has_value(); }

  // Marks the session cut off (every ACL check fails from now on) and queues its disconnect.
  void QueueKick(ClientRegistry::Key key, std::string reason);

  ConnectDecider decider;
  ClientRegistry clients;
  Counters counters;
  std::deque<PendingKick> kicks;

  uint64_t last_revocation_seq = 0;
  bool recheck_all_sessions = false;  // after a policy reload
  bool poll_store_now = false;        // reloadStore command
  Clock::time_point next_store_poll{};
  Clock::time_point next_store_open{};
  Clock::time_point next_stats{};

 private:
  mosquitto_plugin_id_t* identifier_;
  PluginOptions options_;
  std::shared_ptr<const PolicySnapshot> policy_;
  std::optional<storage::Store> store_;
  bool store_failure_logged_ = false;
};

}  // namespace edgetrust::plugin::internal
