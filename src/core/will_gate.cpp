// The will gate's rule (see will_gate.hpp).
#include "core/will_gate.hpp"

#include <algorithm>

namespace maestra::core {

std::optional<TimePoint> WillGate::on_will(TimePoint at) {
  if (at >= replay_from_ && at < replay_until_) {
    ++replay_wills_;
    return replay_until_;
  }
  while (!recent_.empty() && recent_.front() <= at - options_.window) recent_.pop_front();
  recent_.push_back(at);
  if (recent_.size() > options_.burst) recent_.pop_front();  // only the last `burst` matter
  if (recent_.size() < options_.burst) return std::nullopt;
  return at + options_.window;
}

bool WillGate::discard_after_hold(TimePoint at) const {
  return at >= replay_from_ && at < replay_until_ && replay_wills_ >= options_.burst;
}

void WillGate::link_lost(TimePoint) {
  recent_.clear();
  replay_from_ = replay_until_ = TimePoint{};
  replay_wills_ = 0;
}

void WillGate::link_up(TimePoint at, bool after_loss) {
  recent_.clear();
  replay_wills_ = 0;
  if (!after_loss) return;
  replay_from_ = at;
  replay_until_ = at + options_.replay;
}

}  // namespace maestra::core
