#include "wolf.h"

#include <mutex>

namespace edgetrust::pki::internal {

void EnsureWolfInit() {
  static std::once_flag once;
  std::call_once(once, [] { wolfCrypt_Init(); });
}

namespace {

class ThreadLocalRng {
 public:
  ThreadLocalRng() {
    EnsureWolfInit();
    ok_ = wc_InitRng(&rng_) == 0;
  }
  ~ThreadLocalRng() {
    if (ok_) wc_FreeRng(&rng_);
  }
  WC_RNG* get() { return ok_ ? &rng_ : nullptr; }

 private:
  WC_RNG rng_{};
  bool ok_ = false;
};

}  // namespace

WC_RNG* ThreadRng() {
  thread_local ThreadLocalRng rng;
  return rng.get();
}

Error WolfError(ErrorCode code, const char* what, int ret) {
  return MakeError(code, std::string(what) + ": " + wc_GetErrorString(ret) + " (" +
                             std::to_string(ret) + ")");
}

}  // namespace edgetrust::pki::internal
