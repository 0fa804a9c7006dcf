// The will gate's rule (see will_gate.hpp).
#include "core/will_gate.hpp"

#include <algorithm>

namespace maestra::core {

bool WillGate::in_replay(TimePoint at) const { return replaying_ && (link_down_ || at < replay_until_); }

std::optional<WillHold> WillGate::on_will(TimePoint at) {
  if (in_replay(at)) {
    ++replay_wills_;
    return WillHold{link_down_ ? at + options_.replay : std::max(replay_until_, at), true};
  }
  while (!recent_.empty() && recent_.front() <= at - options_.window) recent_.pop_front();
  recent_.push_back(at);
  if (recent_.size() > options_.burst) recent_.pop_front();  // only the last `burst` matter
  if (recent_.size() < options_.burst) {
    if (options_.first <= Millis{0}) return std::nullopt;
    return WillHold{at + options_.first, false};
  }
  burst_at_ = at;
  return WillHold{at + options_.window, true};
}

bool WillGate::discard_after_hold(TimePoint at) const { return in_replay(at) && replay_wills_ >= options_.burst; }

std::optional<TimePoint> WillGate::hold_again(TimePoint at, TimePoint now) const {
  if (!burst_at_ || *burst_at_ < at || *burst_at_ >= at + options_.window) return std::nullopt;
  if (now >= at + options_.window) return std::nullopt;
  return at + options_.window;
}

void WillGate::link_lost(TimePoint) {
  recent_.clear();
  burst_at_.reset();
  link_down_ = true;
  replaying_ = true;
  replay_until_ = TimePoint::max();
  replay_wills_ = 0;
}

void WillGate::link_up(TimePoint at, bool replay) {
  recent_.clear();
  link_down_ = false;
  if (replay) {
    replay_until_ = at + options_.replay;  // replays counted while the link was down still count
    return;
  }
  replaying_ = false;
  replay_wills_ = 0;
}

}  // namespace maestra::core
