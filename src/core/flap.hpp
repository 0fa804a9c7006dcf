// Flapping: a device that connects and drops many times a minute (a loose cable,
// a crash loop) must not flood the history and the dashboards. The damper of one
// device counts its status changes in a sliding window; from the `changes`-th
// change within `window` on, a change is held: the registry follows the device
// at once, but the change is stored and published only once the status has held
// for `settle` (one history row, with the last change's reason and time, for a
// whole burst of flaps; none when it came back to the stored status). The
// device's held changes are counted (its flaps) with the last reason.
//
// Pure: times are passed in; the owner keeps one damper per recently changed
// device and forgets it once the window is empty and nothing is held.
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>

#include "core/device_state.hpp"

namespace maestra::core {

struct FlapOptions {
  std::size_t changes = 4;  // changes within `window` from which on a change is held
  Seconds window{60};
  Seconds settle{10};       // how long a held status must hold before it is stored
};

class FlapDamper {
 public:
  // A status change at `at`: true when it must be held (the device is flapping).
  bool on_change(TimePoint at, Reason reason, const FlapOptions& options);
  // Whether a held change waits to be settled, and when it may be.
  bool holding() const { return holding_; }
  TimePoint settle_due(const FlapOptions& options) const { return last_change_ + options.settle; }
  // The held status is stored (or was the stored one again): nothing held now.
  void settled() { holding_ = false; }
  // Storing the settled status failed: it is held again.
  void hold_again() { holding_ = true; }
  // Nothing held and no change within the window: the damper can be dropped.
  bool idle(TimePoint now, const FlapOptions& options) const;
  std::uint64_t flaps() const { return flaps_; }
  Reason last_reason() const { return last_reason_; }
  TimePoint last_change() const { return last_change_; }

 private:
  std::deque<TimePoint> recent_;
  bool holding_ = false;
  std::uint64_t flaps_ = 0;  // changes held so far
  Reason last_reason_ = Reason::heartbeat;
  TimePoint last_change_{};
};

}  // namespace maestra::core
