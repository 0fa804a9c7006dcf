// The flap damper's rule (see flap.hpp).
#include "core/flap.hpp"

namespace maestra::core {

bool FlapDamper::on_change(TimePoint at, Reason reason, const FlapOptions& options) {
  while (!recent_.empty() && recent_.front() <= at - options.window) recent_.pop_front();
  recent_.push_back(at);
  last_reason_ = reason;
  last_change_ = at;
  if (recent_.size() < options.changes && !holding_) return false;
  holding_ = true;
  ++flaps_;
  return true;
}

bool FlapDamper::idle(TimePoint now, const FlapOptions& options) const {
  return !holding_ && (recent_.empty() || recent_.back() <= now - options.window);
}

}  // namespace maestra::core
