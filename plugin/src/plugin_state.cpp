#include "plugin_state.h"

#include <charconv>
#include <string_view>
#include <utility>

#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "broker_log.h"
#include "edgetrust/storage/tables.h"

namespace edgetrust::plugin::internal {
namespace {

Result<int64_t> ParseInt(std::string_view key, std::string_view text, int64_t min, int64_t max) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < min || v > max) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "plugin_opt_" + std::string(key) + " must be an integer in [" +
                         std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return v;
}

}  // namespace

Result<PluginOptions> ParseOptions(const mosquitto_opt* options, int option_count) {
  PluginOptions out;
  for (int i = 0; i < option_count; ++i) {
    std::string_view key = options[i].key ? options[i].key : "";
    std::string_view value = options[i].value ? options[i].value : "";
    if (key == "store") {
      out.store_path = value;
    } else if (key == "policy") {
      out.policy_path = value;
    } else if (key == "tick_ms") {
      ET_ASSIGN_OR_RETURN(int64_t ms, ParseInt(key, value, 10, 60000));
      out.tick = std::chrono::milliseconds(ms);
    } else if (key == "offline_session_days") {
      ET_ASSIGN_OR_RETURN(int64_t days, ParseInt(key, value, 0, 3650));
      out.offline_session_seconds = days * 86400;
    } else if (key == "stats_interval") {
      ET_ASSIGN_OR_RETURN(int64_t s, ParseInt(key, value, 0, 86400));
      out.stats_interval = std::chrono::seconds(s);
    } else {
      // Another plugin's options are not ours to judge, but a typo of ours should be visible.
      LogWarning("ignoring unknown option plugin_opt_" + Printable(key));
    }
  }
  if (out.store_path.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "plugin_opt_store is required");
  }
  if (out.policy_path.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "plugin_opt_policy is required");
  }
  return out;
}

PluginState::PluginState(mosquitto_plugin_id_t* identifier, PluginOptions options,
                         std::shared_ptr<const PolicySnapshot> policy)
    : identifier_(identifier), options_(std::move(options)) {
  SetPolicy(std::move(policy));
}

void PluginState::SetPolicy(std::shared_ptr<const PolicySnapshot> policy) {
  policy_ = std::move(policy);
  decider.SetPolicy(policy_);
}

void PluginState::TryOpenStore() {
  if (store_) return;
  storage::StoreOptions opts;
  opts.path = options_.store_path;
  opts.read_only = true;
  auto store = storage::Store::Open(opts);
  uint64_t latest = 0;
  if (store.ok()) {
    auto txn = store->BeginRead();
    auto seq = txn.ok() ? storage::LatestRevocationSeq(*txn)
                        : Result<uint64_t>(std::move(txn).error());
    if (seq.ok()) {
      latest = *seq;
    } else {
      store = std::move(seq).error();
    }
  }
  if (!store.ok()) {
    if (!store_failure_logged_) {
      LogError("store " + options_.store_path + " cannot be read (" + store.error().ToString() +
               "); every client is denied until it can");
      store_failure_logged_ = true;
    }
    return;
  }
  store_.emplace(std::move(store).value());
  decider.SetStore(&*store_);
  // Nobody can be connected on a revocation older than this: they were all checked against it.
  last_revocation_seq = latest;
  LogInfo("store " + options_.store_path + " open read-only, revocation log at seq " +
          std::to_string(latest));
  store_failure_logged_ = false;
}

void PluginState::QueueKick(ClientRegistry::Key key, std::string reason) {
  ClientInfo* info = clients.Find(key);
  if (info == nullptr || info->cut_off) return;
  info->cut_off = true;
  kicks.push_back(PendingKick{key, info->client_id, std::move(reason)});
}

}  // namespace edgetrust::plugin::internal
