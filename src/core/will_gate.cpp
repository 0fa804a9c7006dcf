// The will gate's rule (see will_gate.hpp).
#include "core/will_gate.hpp"

#include <algorithm>

namespace maestra::core {

bool WillGate::in_replay(TimePoint at) const { return replaying_ && (link_down_ || at < replay_until_); }

std::optional<TimePoint> WillGate::on_will(TimePoint at) {
  if (in_replay(at)) {
    ++replay_wills_;
    return link_down_ ? at + options_.replay : std::max(replay_until_, at);
  }
  while (!recent_.empty() && recent_.front() <= at - options_.window) recent_.pop_front();
  recent_.push_back(at);
  if (recent_.size() > options_.burst) recent_.pop_front();  // only the last `burst` matter
  if (recent_.size() < options_.burst) return std::nullopt;
  return at + options_.window;
}

bool WillGate::discard_after_hold(TimePoint at) const { return in_replay(at) && replay_wills_ >= options_.burst; }

void WillGate::link_lost(TimePoint) {
  recent_.clear();
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
