// When to renew and how long to wait before trying again: pure functions of time, so a firmware
// port can reuse them on any clock.
#pragma once

#include <cstdint>
#include <random>

namespace edgetrust::device {

// A certificate is renewed once less than a third of its validity remains. Returns the unix second
// at which renewal becomes due (never before not_before).
int64_t RenewalDueAt(int64_t not_before, int64_t not_after);
bool RenewalDue(int64_t not_before, int64_t not_after, int64_t now);
// Seconds from `now` until renewal is due (0 when already due).
int64_t SecondsUntilRenewal(int64_t not_before, int64_t not_after, int64_t now);

// Exponential back-off with full jitter in [delay/2, delay], doubling from `initial_ms` to `max_ms`.
// Reset() after a success. Jitter keeps a thousand simulated devices from reconnecting in lockstep
// after a broker restart.
class Backoff {
 public:
  Backoff(uint64_t initial_ms, uint64_t max_ms, uint64_t seed = std::random_device{}())
      : initial_ms_(initial_ms), max_ms_(max_ms), current_ms_(initial_ms), rng_(seed) {}

  // The delay to wait now; the next one doubles (up to max_ms).
  uint64_t Next();
  void Reset() { current_ms_ = initial_ms_; attempts_ = 0; }
  int attempts() const { return attempts_; }

 private:
  uint64_t initial_ms_;
  uint64_t max_ms_;
  uint64_t current_ms_;
  int attempts_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace edgetrust::device
