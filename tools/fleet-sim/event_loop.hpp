// The single-threaded epoll loop every mode runs on: edge-triggered readiness
// for many sockets, each registered with the handler that owns it, and a cached
// monotonic "now" refreshed once per poll. It owns the epoll descriptor only;
// sockets belong to their connections, timers to the modes that check them.
#pragma once
#include <chrono>
#include <cstdint>

namespace fleet_sim {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

class EventLoop {
 public:
  class Handler {
   public:
    virtual void on_ready(std::uint32_t epoll_events) = 0;

   protected:
    ~Handler() = default;
  };

  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Watches fd for input, output and hang-up, edge-triggered: the handler must
  // read and write until EAGAIN. The handler must outlive the registration.
  void watch(int fd, Handler& handler);
  void unwatch(int fd);

  // Waits up to `timeout` (zero: just collect what is ready), dispatches every
  // event, refreshes now(). Returns the number of events dispatched.
  int poll(std::chrono::milliseconds timeout);

  TimePoint now() const { return now_; }
  void refresh_now() { now_ = Clock::now(); }

 private:
  int epoll_fd_ = -1;
  TimePoint now_ = Clock::now();
};

// Wall-clock milliseconds since the Unix epoch, for timestamps other programs compare.
std::int64_t epoch_ms();

}  // namespace fleet_sim
