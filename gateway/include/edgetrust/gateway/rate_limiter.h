// Per-device token buckets: `burst` requests at once, refilled evenly over `window`.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

namespace edgetrust::gateway {

class RateLimiter {
 public:
  RateLimiter(int burst, int window_seconds) : burst_(burst), window_ms_(window_seconds * 1000.0) {}
  // Takes one token for `key` at `now_ms` (a monotonic clock); false when none is left.
  bool Allow(std::string_view key, uint64_t now_ms);
  // Forgets buckets that are full again (keeps the map as small as the set of busy devices).
  void Prune(uint64_t now_ms);
  size_t size() const { return buckets_.size(); }

 private:
  struct Bucket {
    double tokens;
    uint64_t last_ms;
  };
  double Refilled(const Bucket& b, uint64_t now_ms) const;
  int burst_;
  double window_ms_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace edgetrust::gateway
