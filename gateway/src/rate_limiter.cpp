#include "edgetrust/gateway/rate_limiter.h"

#include <algorithm>

namespace edgetrust::gateway {

double RateLimiter::Refilled(const Bucket& b, uint64_t now_ms) const {
  double elapsed = now_ms > b.last_ms ? static_cast<double>(now_ms - b.last_ms) : 0.0;
  return std::min<double>(burst_, b.tokens + elapsed * burst_ / window_ms_);
}

bool RateLimiter::Allow(std::string_view key, uint64_t now_ms) {
  auto it = buckets_.find(std::string(key));
  if (it == buckets_.end()) {
    it = buckets_.emplace(std::string(key), Bucket{static_cast<double>(burst_), now_ms}).first;
  }
  Bucket& b = it->second;
  b.tokens = Refilled(b, now_ms);
  b.last_ms = now_ms;
  if (b.tokens < 1.0) return false;
  b.tokens -= 1.0;
  return true;
}

void RateLimiter::Prune(uint64_t now_ms) {
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    if (Refilled(it->second, now_ms) >= burst_) {
      it = buckets_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace edgetrust::gateway
