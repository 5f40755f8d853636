// MOSQ_EVT_TICK: Mosquitto 2.0.11 calls it once per main-loop iteration, i.e. after every
// batch of network events and at least every ~100 ms when idle (epoll timeout), and carries no
// time, so the clock is read here. Per tick: carry out queued kicks; every tick_ms: read the
// store's revocation log past the last seq seen, end sessions whose certificate expired,
// re-decide sessions after a policy reload; every stats_interval: publish the counters.
// Only with per_listener_settings false: 2.0.11 does not deliver ticks otherwise.
#include <string>
#include <unordered_set>
#include <vector>

#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "broker_log.h"
#include "edgetrust/plugin/access_rules.h"
#include "edgetrust/plugin/connect_decider.h"
#include "edgetrust/storage/tables.h"
#include "events.h"

namespace edgetrust::plugin::internal {
namespace {

constexpr size_t kLogBatch = 512;
constexpr auto kStoreRetry = std::chrono::seconds(2);

bool SameBytes(ByteView a, ByteView b) { return std::equal(a.begin(), a.end(), b.begin(), b.end()); }

// Re-runs the CONNECT decision for sessions whose standing may have changed; ends the ones
// that would now be refused.
void Recheck(PluginState& state, const std::vector<ClientRegistry::Key>& keys) {
  const int64_t now = UnixNow();
  for (ClientRegistry::Key key : keys) {
    ClientInfo* info = state.clients.Find(key);
    if (info == nullptr || info->cut_off) continue;
    Decision d = state.decider.Decide(info->client_id, &info->cert, now);
    if (!d.allowed()) {
      state.QueueKick(key, std::string(DenyReasonName(d.reason)));
    } else if (d.role != info->role) {
      state.QueueKick(key, "role changed to " + std::string(protocol::RoleName(d.role)));
    }
  }
}

void ApplyRevocationLog(PluginState& state) {
  auto txn = state.decider.Acquire();
  if (!txn.ok()) return;  // every CONNECT logs this; the next poll retries
  auto entries = storage::ReadRevocationLog(**txn, state.last_revocation_seq, kLogBatch);
  state.decider.Release();
  if (!entries.ok()) {
    LogError("cannot read the revocation log: " + entries.error().ToString());
    return;
  }
  if (entries->empty()) return;
  if (entries->size() == kLogBatch) state.poll_store_now = true;  // more to read next tick

  std::vector<ClientRegistry::Key> revoked;
  std::vector<ClientRegistry::Key> recheck;
  std::unordered_set<std::string> devices;
  for (const auto& e : *entries) {
    if (!e.device_id.empty()) devices.insert(e.device_id);
  }
  state.clients.ForEach([&](ClientRegistry::Key key, ClientInfo& info) {
    if (info.cut_off) return;
    for (const auto& e : *entries) {
      if ((!e.fingerprint.empty() && SameBytes(e.fingerprint, info.cert.fingerprint)) ||
          (!e.issuer_id.empty() && !e.serial.empty() && SameBytes(e.issuer_id, info.cert.issuer_id) &&
           SameBytes(e.serial, info.cert.serial))) {
        revoked.push_back(key);
        return;
      }
    }
    // The device's state may have moved (retired, transfer, …) with a revocation of one of
    // its other certificates: decide again rather than kick a still-valid session.
    if (devices.contains(info.client_id)) recheck.push_back(key);
  });
  // Sessions of clients that are away: no more queueing for a revoked certificate or a device
  // whose standing changed (it is decided afresh when it connects).
  state.clients.ForgetOfflineIf([&](const std::string& id, const OfflineSession& away) {
    if (devices.contains(id)) return true;
    for (const auto& e : *entries) {
      if (!e.fingerprint.empty() && SameBytes(e.fingerprint, away.fingerprint)) return true;
    }
    return false;
  });
  state.last_revocation_seq = entries->back().seq;
  state.counters.revocations_applied += entries->size();
  for (ClientRegistry::Key key : revoked) {
    state.QueueKick(key, "revoked (log seq " + std::to_string(state.last_revocation_seq) + ")");
  }
  Recheck(state, recheck);
}

void ExpireSessions(PluginState& state) {
  for (ClientRegistry::Key key : state.clients.ExpiredBefore(UnixNow())) {
    ++state.counters.expired_sessions;
    state.QueueKick(key, "certificate expired");
  }
}

void RecheckAll(PluginState& state) {
  // A principal the new policy no longer names gets nothing queued any more.
  state.clients.ForgetOfflineIf([&](const std::string& id, const OfflineSession& away) {
    if (away.role != protocol::Role::kGateway && away.role != protocol::Role::kAdmin) return false;
    auto principal = state.policy().policy.PrincipalRoleOf(id);
    return !principal || RoleOf(*principal) != away.role;
  });
  std::vector<ClientRegistry::Key> keys;
  state.clients.ForEach([&](ClientRegistry::Key key, ClientInfo&) { keys.push_back(key); });
  Recheck(state, keys);
}

void ForgetOldOfflineSessions(PluginState& state) {
  const int64_t limit = state.options().offline_session_seconds;
  if (limit <= 0) return;
  const int64_t now = UnixNow();
  state.clients.ForgetOfflineIf(
      [&](const std::string&, const OfflineSession& away) { return now - away.since > limit; });
}

void PublishStats(PluginState& state) {
  const auto topics = state.counters.Topics(state.clients.size(), state.clients.offline_size());
  for (const auto& [name, value] : topics) {
    const std::string topic = std::string(kStatsTopicPrefix) + name;
    mosquitto_broker_publish_copy(nullptr, topic.c_str(), static_cast<int>(value.size()),
                                  value.data(), 0, true, nullptr);
  }
}

}  // namespace

void DrainKicks(PluginState& state) {
  while (!state.kicks.empty()) {
    PendingKick kick = std::move(state.kicks.front());
    state.kicks.pop_front();
    const ClientInfo* info = state.clients.Find(kick.key);
    // Gone already, or the handle now belongs to a newer session: nothing to do.
    if (info == nullptr || !info->cut_off || info->client_id != kick.client_id) continue;
    const std::string line = "disconnecting client '" + kick.client_id + "' (cert " +
                             info->fingerprint_hex.substr(0, 16) + "): " + kick.reason;
    // Fires MOSQ_EVT_DISCONNECT, which removes the entry: `info` is dead after this.
    int rc = mosquitto_kick_client_by_clientid(kick.client_id.c_str(), false);
    if (rc == MOSQ_ERR_SUCCESS) {
      ++state.counters.kicked;
      LogNotice(line);
    } else {
      LogWarning(line + " failed: " + mosquitto_strerror(rc) + "; its access stays cut off");
    }
  }
}

int HandleTick(PluginState& state, void* /*event_data*/) {
  const auto now = Clock::now();
  ++state.counters.ticks;
  DrainKicks(state);
  if (state.poll_store_now || now >= state.next_store_poll) {
    const bool forced = state.poll_store_now;
    state.poll_store_now = false;
    state.next_store_poll = now + state.options().tick;
    if (!state.store_open() && (forced || now >= state.next_store_open)) {
      state.next_store_open = now + kStoreRetry;
      state.TryOpenStore();
    }
    if (state.store_open()) ApplyRevocationLog(state);
    ExpireSessions(state);
    if (state.recheck_all_sessions) {
      state.recheck_all_sessions = false;
      RecheckAll(state);
    }
    DrainKicks(state);
  }
  if (state.options().stats_interval.count() > 0 && now >= state.next_stats) {
    state.next_stats = now + state.options().stats_interval;
    ForgetOldOfflineSessions(state);
    PublishStats(state);
  }
  return MOSQ_ERR_SUCCESS;
}

}  // namespace edgetrust::plugin::internal
