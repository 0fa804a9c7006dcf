// The will gate: tells a device's death from a broker going away.
//
// A broker that shuts down sends the wills of all its clients at once (Mosquitto
// 2.0 queues them in one loop after its main loop ends), around the moment the
// service's own connection drops: some reach the service just before, the rest
// wait in its persistent session and are replayed right after it reconnects.
// Those wills are not device deaths. The gate decides, for each will:
//   - apply now: a single will, or a slow trickle (the common case: no delay);
//   - hold: it arrived in a burst (`burst` wills within `window`), or in the
//     replay window: from a lost connection (or the start) to `replay` after
//     the connection that restored a session (session replays can reach the
//     owner before the news of the connection). A broker back from a crash
//     restores an older save, with the shutdown wills it had queued.
// A will held when the service's link drops is discarded (the broker is going
// away). A will held in a replay window is discarded when that window saw a
// burst (the shutdown's wills, replayed), else applied when the window ends.
// A held burst that outlives its hold with the link up is applied (a real mass
// death, say a power cut): late by at most `window`.
// Devices whose wills were discarded keep their status; the broker's return
// starts a full offline_after window for every device heard over MQTT
// (DeadlinePolicy::mqtt_watch_started), so one that does not come back goes
// offline with reason `restart`.
//
// Pure: times are passed in; the caller keeps the held wills in order.
#pragma once
#include <cstddef>
#include <deque>

#include "core/clock.hpp"

namespace maestra::core {

struct WillGateOptions {
  std::size_t burst = 2;     // wills within `window` that make a burst
  // Also how long a will of a burst is held: long enough for a broker to save
  // and close after queuing its shutdown wills (a few ms for small fleets),
  // short enough that a real mass death reaches dashboards within 250 ms.
  Millis window{100};
  Millis replay{1000};       // after a reconnect that followed a lost connection
  Millis first{10};          // every will: time for the next will of a burst to arrive
};

// How long a will is held, and why.
struct WillHold {
  TimePoint until;
  bool suspect = false;  // in a burst or a replay window (not only `first`)
};

class WillGate {
 public:
  explicit WillGate(WillGateOptions options = {}) : options_(options) {}

  // A will arrived at `at`: how long to hold it, or nullopt to apply it now
  // (only with `first` 0 and no burst or replay).
  std::optional<WillHold> on_will(TimePoint at);
  // A held will (arrived at `at`) whose hold has ended at `now`: true to discard it.
  bool discard_after_hold(TimePoint at) const;
  // ... else, when a burst began within `window` of its arrival (it was the
  // first will of the burst), the instant until which to hold it again.
  std::optional<TimePoint> hold_again(TimePoint at, TimePoint now) const;
  // The link to the broker dropped: the caller discards every held will.
  void link_lost(TimePoint at);
  // The link is up. `replay`: messages queued in a session may follow (a
  // reconnect after a loss, or a first connect that found its session).
  void link_up(TimePoint at, bool replay);
  const WillGateOptions& options() const { return options_; }

 private:
  WillGateOptions options_;
  bool in_replay(TimePoint at) const;

  std::deque<TimePoint> recent_;  // arrivals within the last window
  std::optional<TimePoint> burst_at_;  // the latest will that made a burst
  bool link_down_ = true;                   // until the first connection
  bool replaying_ = true;                   // from a loss (or the start) ...
  TimePoint replay_until_ = TimePoint::max();  // ... to `replay` after the connection
  std::size_t replay_wills_ = 0;
};

}  // namespace maestra::core
