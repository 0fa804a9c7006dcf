// Deadline-driven timeouts: when a silent device must be marked offline, and a
// queue that yields exactly the devices whose deadline has passed.
//
// A note on the queue: it is a min-heap keyed by deadline with lazy re-checking,
// as in Redis' expire cycle. A heartbeat does not touch the heap; when an entry
// comes due, the owner re-checks the device's current deadline and either expires
// it or pushes it back with the new deadline. So the heap holds about one entry
// per watched device and a heartbeat costs nothing here.
//
// A note on link outages: while the service is disconnected from the broker it
// cannot hear MQTT heartbeats, so no device last heard over MQTT times out then;
// afterwards its deadline is extended by the length of the outage (the part
// after its last sign of life). Devices heard over HTTP keep their deadlines.
//
// After the service restarts, `watch_started` is the start time: a device's
// deadline is counted from the later of its last sign of life and that time, so
// every device gets one full window (no false-offline storm). A device that
// expires without having been heard since the restart gets reason `restart`.
// The same holds for a device whose will was discarded because the broker was
// going away (core/will_gate): its `grace_from` is the broker's return.
#pragma once
#include <algorithm>
#include <optional>
#include <queue>
#include <vector>

#include "core/device_state.hpp"
#include "core/ids.hpp"

namespace maestra::core {

// A span during which the service could not hear MQTT devices (its link to the
// broker was down).
struct Outage {
  TimePoint from;
  TimePoint to;
};

struct DeadlinePolicy {
  Seconds default_offline_after{300};
  TimePoint watch_started{};
  // Link down now, since then: no device heard over MQTT can time out.
  std::optional<TimePoint> mqtt_link_down_since{};
  // Recent outages (oldest first, at most max_outages): a device heard over
  // MQTT gets its deadline extended by the part of each that fell after its
  // last sign of life.
  std::vector<Outage> mqtt_outages{};
  static constexpr std::size_t max_outages = 32;

  void link_down(TimePoint at) {
    if (!mqtt_link_down_since) mqtt_link_down_since = at;
  }
  void link_up(TimePoint at) {
    if (!mqtt_link_down_since) return;
    mqtt_outages.push_back(Outage{*mqtt_link_down_since, std::max(at, *mqtt_link_down_since)});
    if (mqtt_outages.size() > max_outages) mqtt_outages.erase(mqtt_outages.begin());
    mqtt_link_down_since.reset();
  }
};

Seconds effective_offline_after(const DeviceState& state, const DeadlinePolicy& policy);

// The instant the device becomes offline if nothing else is heard; for a device
// heard over MQTT, later by the outages since its last sign of life, and
// TimePoint::max() while the link is down.
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
