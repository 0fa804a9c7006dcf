// Pacing for connects and for fleet-wide heartbeat rates: a token bucket that
// accrues `per_second` tokens continuously, holding at most `burst` of them.
// Time is passed in, so tests can step it; nothing here reads the clock.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>

#include "event_loop.hpp"

namespace fleet_sim {

class RateBudget {
 public:
  // burst: the most tokens that can pile up while nobody spends them (at least 1).
  RateBudget(double per_second, double burst) : per_second_(per_second), capacity_(std::max(1.0, burst)) {}

  void start(TimePoint now) {
    last_ = now;
    tokens_ = 1;
  }

  // Whole tokens available at `now` (refilling first).
  std::uint64_t available(TimePoint now) {
    if (now > last_) {
      tokens_ = std::min(capacity_, tokens_ + std::chrono::duration<double>(now - last_).count() * per_second_);
      last_ = now;
    }
    return static_cast<std::uint64_t>(tokens_);
  }

  void spend(std::uint64_t tokens) { tokens_ = std::max(0.0, tokens_ - static_cast<double>(tokens)); }

  // How long until one more whole token exists (zero if one is there).
  std::chrono::microseconds time_to_next_token() const {
    if (tokens_ >= 1) return std::chrono::microseconds(0);
    return std::chrono::microseconds(static_cast<std::int64_t>((1 - tokens_) / per_second_ * 1e6) + 1);
  }

  double per_second() const { return per_second_; }

 private:
  double per_second_;
  double capacity_;
  double tokens_ = 1;
  TimePoint last_{};
};

}  // namespace fleet_sim
