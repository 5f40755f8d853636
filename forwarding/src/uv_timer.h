// A libuv timer owned by a C++ object: the handle lives on the heap and is freed by its close
// callback, so the owner may be destroyed at any time while the loop keeps running.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <utility>

namespace edgetrust::forwarding::internal {

class UvTimer {
 public:
  UvTimer(uv_loop_t* loop, std::function<void()> fire) : handle_(new Handle) {
    uv_timer_init(loop, &handle_->timer);
    handle_->timer.data = handle_;
    handle_->fire = std::move(fire);
  }
  ~UvTimer() { Close(); }
  UvTimer(const UvTimer&) = delete;
  UvTimer& operator=(const UvTimer&) = delete;

  void Start(uint64_t timeout_ms, uint64_t repeat_ms = 0) {
    if (handle_) uv_timer_start(&handle_->timer, &OnFire, timeout_ms, repeat_ms);
  }
  void Stop() {
    if (handle_) uv_timer_stop(&handle_->timer);
  }
  bool active() const { return handle_ && uv_is_active(reinterpret_cast<uv_handle_t*>(&handle_->timer)); }
  // Unreferenced timers do not keep uv_run alive (background housekeeping).
  void Unref() {
    if (handle_) uv_unref(reinterpret_cast<uv_handle_t*>(&handle_->timer));
  }
  void Close() {
    if (!handle_) return;
    handle_->fire = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&handle_->timer),
             [](uv_handle_t* h) { delete static_cast<Handle*>(h->data); });
    handle_ = nullptr;
  }

 private:
  struct Handle {
    uv_timer_t timer;
    std::function<void()> fire;
  };
  static void OnFire(uv_timer_t* t) {
    auto* h = static_cast<Handle*>(t->data);
    if (h->fire) {
      auto fire = h->fire;  // the callback may close this timer
      fire();
    }
  }
  Handle* handle_;
};

}  // namespace edgetrust::forwarding::internal
