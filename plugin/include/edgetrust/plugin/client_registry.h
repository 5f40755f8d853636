// What the plugin remembers about each connected client between CONNECT and DISCONNECT.
// Keyed by the broker's client handle (`struct mosquitto*`), never by client id: a session
// takeover briefly has two handles with one id, and only the handle says which one spoke.
//
// A client whose session outlives its connection (clean session off) leaves an offline entry,
// by client id: the broker asks whether it may receive each message it queues for the session,
// and without an answer of yes nothing is queued — the gateway would lose every device message
// sent while it restarts. An offline entry only ever grants receiving; it goes when the id
// connects again, when the log revokes its certificate or device, or after a time limit.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "edgetrust/pki/certificate.h"
#include "edgetrust/protocol/topics.h"

namespace edgetrust::plugin {

struct ClientInfo {
  std::string client_id;        // == the certificate CN
  protocol::Role role = protocol::Role::kEnrolling;
  std::string fingerprint_hex;  // stamped on every message as et-cert-sha256
  pki::Certificate cert;        // kept to re-decide the session when the store changes
  bool cut_off = false;         // a kick is queued: refuse everything until it lands
};

struct OfflineSession {
  protocol::Role role = protocol::Role::kEnrolling;
  Sha256Digest fingerprint{};  // of the certificate it last connected with
  int64_t since = 0;  // unix seconds of the disconnect
};

class ClientRegistry {
 public:
  using Key = const void*;

  // Replaces any entry under the same key (the broker reuses freed handles).
  void Add(Key key, ClientInfo info);
  void Remove(Key key);
  ClientInfo* Find(Key key);
  const ClientInfo* Find(Key key) const;
  size_t size() const { return clients_.size(); }

  // The connection `key` ended but its session stays: remember what it may receive, unless
  // it was cut off or another connection of the same id is live (a takeover).
  void KeepOffline(Key key, int64_t now);
  const OfflineSession* FindOffline(std::string_view client_id) const;
  // Drops the offline entries `drop` says so of.
  void ForgetOfflineIf(const std::function<bool(const std::string&, const OfflineSession&)>& drop);
  size_t offline_size() const { return offline_.size(); }

  // Sessions whose certificate expired before `now` (unix seconds) and are not cut off yet.
  std::vector<Key> ExpiredBefore(int64_t now) const;
  // Visits every client; `fn` must not add or remove entries.
  void ForEach(const std::function<void(Key, ClientInfo&)>& fn);

 private:
  struct Entry {
    ClientInfo info;
    std::multimap<int64_t, Key>::iterator expiry;
  };
  std::unordered_map<Key, Entry> clients_;
  std::unordered_map<std::string, int> live_ids_;  // client id -> live handles with it
  std::unordered_map<std::string, OfflineSession> offline_;
  std::multimap<int64_t, Key> by_expiry_;  // not_after -> key: expiry scans stop at the first live one
};

}  // namespace edgetrust::plugin
