#include "edgetrust/device/timing.h"

#include <algorithm>

namespace edgetrust::device {

int64_t RenewalDueAt(int64_t not_before, int64_t not_after) {
  if (not_after <= not_before) return not_before;
  const int64_t validity = not_after - not_before;
  // "Less than a third remains": due at not_after - validity/3, rounded so the remaining share is
  // never more than a third.
  return not_after - validity / 3;
}

bool RenewalDue(int64_t not_before, int64_t not_after, int64_t now) {
  return now >= RenewalDueAt(not_before, not_after);
}

int64_t SecondsUntilRenewal(int64_t not_before, int64_t not_after, int64_t now) {
  return std::max<int64_t>(0, RenewalDueAt(not_before, not_after) - now);
}

uint64_t Backoff::Next() {
  const uint64_t delay = current_ms_;
  current_ms_ = std::min(max_ms_, current_ms_ * 2);
  ++attempts_;
  if (delay < 2) return delay;
  std::uniform_int_distribution<uint64_t> jitter(delay / 2, delay);
  return jitter(rng_);
}

}  // namespace edgetrust::device
