#include "edgetrust/plugin/client_registry.h"

#include <utility>

namespace edgetrust::plugin {

void ClientRegistry::Add(Key key, ClientInfo info) {
  Remove(key);
  offline_.erase(info.client_id);  // connected again: decided afresh
  ++live_ids_[info.client_id];
  auto expiry = by_expiry_.emplace(info.cert.not_after, key);
  clients_.emplace(key, Entry{std::move(info), expiry});
}

void ClientRegistry::Remove(Key key) {
  auto it = clients_.find(key);
  if (it == clients_.end()) return;
  if (auto live = live_ids_.find(it->second.info.client_id);
      live != live_ids_.end() && --live->second <= 0) {
    live_ids_.erase(live);
  }
  by_expiry_.erase(it->second.expiry);
  clients_.erase(it);
}

void ClientRegistry::KeepOffline(Key key, int64_t now) {
  auto it = clients_.find(key);
  if (it == clients_.end()) return;
  const ClientInfo& info = it->second.info;
  auto live = live_ids_.find(info.client_id);
  const bool alone = live != live_ids_.end() && live->second == 1;
  if (!info.cut_off && alone) {
    offline_[info.client_id] = OfflineSession{info.role, info.cert.fingerprint, now};
  }
  Remove(key);
}

const OfflineSession* ClientRegistry::FindOffline(std::string_view client_id) const {
  auto it = offline_.find(std::string(client_id));
  return it == offline_.end() ? nullptr : &it->second;
}

void ClientRegistry::ForgetOfflineIf(
    const std::function<bool(const std::string&, const OfflineSession&)>& drop) {
  std::erase_if(offline_, [&](const auto& kv) { return drop(kv.first, kv.second); });
}

ClientInfo* ClientRegistry::Find(Key key) {
  auto it = clients_.find(key);
  return it == clients_.end() ? nullptr : &it->second.info;
}

const ClientInfo* ClientRegistry::Find(Key key) const {
  auto it = clients_.find(key);
  return it == clients_.end() ? nullptr : &it->second.info;
}

std::vector<ClientRegistry::Key> ClientRegistry::ExpiredBefore(int64_t now) const {
  std::vector<Key> expired;
  for (auto it = by_expiry_.begin(); it != by_expiry_.end() && it->first < now; ++it) {
    if (!clients_.at(it->second).info.cut_off) expired.push_back(it->second);
  }
  return expired;
}

void ClientRegistry::ForEach(const std::function<void(Key, ClientInfo&)>& fn) {
  for (auto& [key, entry] : clients_) fn(key, entry.info);
}

}  // namespace edgetrust::plugin
