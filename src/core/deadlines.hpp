// Deadline-driven timeouts: when a silent device must be marked offline, and a
// queue that yields exactly the devices whose deadline has passed.
//
// A note on the queue: it is a min-heap keyed by deadline with lazy re-checking,
// as in Redis' expire cycle. A heartbeat does not touch the heap; when an entry
// comes due, the owner re-checks the device's current deadline and either expires
// it or pushes it back with the new deadline. So the heap holds about one entry
// per watched device and a heartbeat costs nothing here.
//
// After the service restarts, `watch_started` is the start time: a device's
// deadline is counted from the later of its last sign of life and that time, so
// every device gets one full window (no false-offline storm). A device that
// expires without having been heard since the restart gets reason `restart`.
#pragma once
#include <queue>
#include <vector>

#include "core/device_state.hpp"
#include "core/ids.hpp"

namespace maestra::core {

struct DeadlinePolicy {
  Seconds default_offline_after{300};
  TimePoint watch_started{};
};

Seconds effective_offline_after(const DeviceState& state, const DeadlinePolicy& policy);

// The instant the device becomes offline if nothing else is heard.
TimePoint deadline_of(const DeviceState& state, const DeadlinePolicy& policy);

// Marks the device offline if its deadline has passed; otherwise an unchanged,
// ignored outcome. Devices already disconnected are left alone.
Outcome mark_offline_if_expired(const DeviceState& state, const DeadlinePolicy& policy, TimePoint now);

class DeadlineQueue {
 public:
  void push(TimePoint deadline, const DeviceId& id);
  std::optional<TimePoint> next_deadline() const;
  // Removes and returns every entry due at or before `now`, at most `limit`.
  std::vector<DeviceId> pop_due(TimePoint now, std::size_t limit);
  std::size_t size() const { return heap_.size(); }

 private:
  struct Entry {
    TimePoint deadline;
    DeviceId id;
    bool operator>(const Entry& other) const { return deadline > other.deadline; }
  };
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> heap_;
};

}  // namespace maestra::core
