// How many lines a noisy log event may write: at most `per_window` lines in each
// window of `window`; the rest are counted, and the first call of a later window
// reports how many were held back, so a storm of 10,000 status changes gives a
// few lines and a summary instead of 10,000 lines. Pure: time is passed in.
#pragma once
#include <cstdint>

#include "core/clock.hpp"

namespace maestra::core {

class LogBudget {
 public:
  LogBudget(int per_window, Millis window) : per_window_(per_window), window_(window) {}

  struct Decision {
    bool write = false;               // write this line
    std::uint64_t held_back = 0;      // lines not written in the window that ended (report them first)
  };

  Decision take(TimePoint now) {
    Decision d;
    if (now - window_start_ >= window_) {
      d.held_back = held_back_;
      held_back_ = 0;
      used_ = 0;
      window_start_ = now;
    }
    if (used_ < per_window_) {
      ++used_;
      d.write = true;
    } else {
      ++held_back_;
    }
    return d;
  }

  // Lines held back in the current window.
  std::uint64_t held_back() const { return held_back_; }

  // On a timer: once the window has ended, how many lines it held back (0 if
  // none, or if the window is still open); they are reported only once.
  std::uint64_t close_window(TimePoint now) {
    if (held_back_ == 0 || now - window_start_ < window_) return 0;
    const auto n = held_back_;
    held_back_ = 0;
    used_ = 0;
    window_start_ = now;
    return n;
  }

 private:
  int per_window_;
  Millis window_;
  TimePoint window_start_{};
  int used_ = 0;
  std::uint64_t held_back_ = 0;
};

}  // namespace maestra::core
