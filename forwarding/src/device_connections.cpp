#include "device_connections.h"

#include <algorithm>
#include <cstdio>
#include <utility>

namespace edgetrust::forwarding::internal {

DeviceConnections::DeviceConnections(uv_loop_t* loop, std::string upstream,
                                     const UpstreamEvents* events, UpstreamCounters* counters,
                                     const UpstreamTuning& tuning, std::chrono::milliseconds idle,
                                     Opener opener, MessageHandler on_message)
    : loop_(loop),
      upstream_(std::move(upstream)),
      events_(events),
      counters_(counters),
      tuning_(tuning),
      idle_(idle),
      opener_(std::move(opener)),
      on_message_(std::move(on_message)),
      housekeeping_(loop, [this] { Housekeeping(); }) {}

void DeviceConnections::Start() {
  started_ = true;
  const uint64_t period =
      std::max<uint64_t>(50, std::min<uint64_t>(1000, static_cast<uint64_t>(idle_.count()) / 4));
  housekeeping_.Start(period, period);
}

void DeviceConnections::Stop() {
  stopping_ = true;
  housekeeping_.Close();
  for (auto& [id, d] : devices_) Retire(std::move(d.client));
  devices_.clear();
  failed_.clear();
}

bool DeviceConnections::closed() const {
  if (!stopping_) return false;
  return std::all_of(closing_.begin(), closing_.end(),
                     [](const std::unique_ptr<TrackedClient>& c) { return c->closed(); });
}

Result<DeviceConnections::Device*> DeviceConnections::Acquire(const std::string& device_id) {
  if (!running()) return MakeError(ErrorCode::kUnavailable, "not started");
  auto it = devices_.find(device_id);
  if (it == devices_.end()) {
    ET_RETURN_IF_ERROR(Open(device_id));
    return MakeError(ErrorCode::kUnavailable, "connecting " + device_id);
  }
  Device& d = it->second;
  d.last_used_ms = uv_now(loop_);
  if (!d.client->connected()) return MakeError(ErrorCode::kUnavailable, "connecting " + device_id);
  return &d;
}

void DeviceConnections::Close(const std::string& device_id) {
  failed_.erase(device_id);
  auto it = devices_.find(device_id);
  if (it == devices_.end()) return;
  Retire(std::move(it->second.client));
  devices_.erase(it);
}

Status DeviceConnections::Open(const std::string& device_id) {
  const uint64_t now = uv_now(loop_);
  if (auto f = failed_.find(device_id); f != failed_.end() && now < f->second.retry_at_ms) {
    return MakeError(ErrorCode::kUnavailable, "waiting to retry " + device_id);
  }
  Result<DeviceLink> link = opener_(device_id);
  if (!link.ok()) {
    const ErrorCode code = link.error().code;
    if (code != ErrorCode::kFailedPrecondition && code != ErrorCode::kUnavailable) {
      Failed(device_id, link.error());
    }
    return link.error();
  }
  TrackedClientHooks hooks;
  hooks.on_ack = [this](uint64_t seq, bool accepted) {
    if (events_->on_ack) events_->on_ack(seq, accepted);
  };
  hooks.on_lost = [this](const std::vector<uint64_t>& seqs) {
    if (events_->on_lost) events_->on_lost(seqs);
  };
  hooks.on_connected = [this]() {
    if (events_->on_ready) events_->on_ready();
  };
  hooks.on_message = [this, device_id](const mqtt::Message& m) {
    if (on_message_) on_message_(device_id, m);
  };
  auto client = TrackedClient::Create(loop_, std::move(link->options), std::move(link->subscriptions),
                                      link->subscribe_qos, std::move(hooks), counters_);
  if (!client.ok()) {
    Failed(device_id, client.error());
    return client.error();
  }
  if (auto st = (*client)->Start(); !st.ok()) {
    Retire(std::move(client).value());
    Failed(device_id, st.error());
    return st.error();
  }
  failed_.erase(device_id);
  Device d;
  d.client = std::move(client).value();
  d.last_used_ms = now;
  d.renew_at_ms = link->renew_after_ms > 0 ? now + link->renew_after_ms : 0;
  d.bucket = PublishBucket(link->publishes_per_second, now);
  devices_[device_id] = std::move(d);
  return OkStatus();
}

void DeviceConnections::Failed(const std::string& device_id, const Error& error) {
  Backoff& b = failed_[device_id];
  const auto min_ms = static_cast<uint64_t>(tuning_.reconnect_min.count());
  const auto max_ms = static_cast<uint64_t>(tuning_.reconnect_max.count());
  b.delay_ms = b.delay_ms == 0 ? min_ms : std::min(max_ms, b.delay_ms * 2);
  b.retry_at_ms = uv_now(loop_) + b.delay_ms;
  b.announced = false;
  std::fprintf(stderr, "forwarding: upstream '%s': cannot open the connection of %s: %s (retry in %llu ms)\n",
               upstream_.c_str(), device_id.c_str(), error.ToString().c_str(),
               static_cast<unsigned long long>(b.delay_ms));
}

void DeviceConnections::Retire(std::unique_ptr<TrackedClient> client) {
  client->Stop();
  closing_.push_back(std::move(client));
}

void DeviceConnections::Housekeeping() {
  const uint64_t now = uv_now(loop_);
  std::vector<std::string> renew;
  for (auto it = devices_.begin(); it != devices_.end();) {
    Device& d = it->second;
    const bool idle = now - d.last_used_ms >= static_cast<uint64_t>(idle_.count()) &&
                      d.client->in_flight() == 0;
    if (idle) {
      Retire(std::move(d.client));
      it = devices_.erase(it);
      continue;
    }
    if (d.renew_at_ms != 0 && now >= d.renew_at_ms) renew.push_back(it->first);
    ++it;
  }
  for (const auto& id : renew) {
    auto it = devices_.find(id);
    const uint64_t last_used = it->second.last_used_ms;
    Retire(std::move(it->second.client));
    devices_.erase(it);
    if (auto st = Open(id); !st.ok()) {
      std::fprintf(stderr, "forwarding: upstream '%s': cannot renew the connection of %s: %s\n",
                   upstream_.c_str(), id.c_str(), st.error().ToString().c_str());
      continue;
    }
    devices_[id].last_used_ms = last_used;
  }
  // A device whose open failed waits for its back-off; once over, its messages may go again.
  bool wake = false;
  const uint64_t forget_after = 2 * static_cast<uint64_t>(tuning_.reconnect_max.count());
  for (auto it = failed_.begin(); it != failed_.end();) {
    Backoff& b = it->second;
    if (now >= b.retry_at_ms && !b.announced) {
      b.announced = true;
      wake = true;
    }
    if (now >= b.retry_at_ms + forget_after) {
      it = failed_.erase(it);
    } else {
      ++it;
    }
  }
  std::erase_if(closing_, [](const std::unique_ptr<TrackedClient>& c) { return c->closed(); });
  if (wake && events_->on_ready) events_->on_ready();
}

}  // namespace edgetrust::forwarding::internal
