#include "edgetrust/plugin/client_registry.h"

#include <utility>

namespace edgetrust::plugin {

void ClientRegistry::Add(Key key, ClientInfo info) {
  Remove(key);
  auto expiry = by_expiry_.emplace(info.cert.not_after, key);
  clients_.emplace(key, Entry{std::move(info), expiry});
}

void ClientRegistry::Remove(Key key) {
  auto it = clients_.find(key);
  if (it == clients_.end()) return;
  by_expiry_.erase(it->second.expiry);
  clients_.erase(it);
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
