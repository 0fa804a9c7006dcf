// Deadline computation, the timeout rule and the deadline queue.
#include "core/deadlines.hpp"

#include <algorithm>

namespace maestra::core {

Seconds effective_offline_after(const DeviceState& state, const DeadlinePolicy& policy) {
  return state.offline_after.value_or(policy.default_offline_after);
}

TimePoint deadline_of(const DeviceState& state, const DeadlinePolicy& policy) {
  TimePoint deadline = std::max(state.last_seen, policy.watch_started) + effective_offline_after(state, policy);
  if (!state.heard_over_mqtt) return deadline;
  if (policy.mqtt_link_down_since) return TimePoint::max();
  for (const auto& outage : policy.mqtt_outages)
    if (outage.to > state.last_seen) deadline += outage.to - std::max(outage.from, state.last_seen);
  return std::max(deadline, state.grace_from + effective_offline_after(state, policy));
}

Outcome mark_offline_if_expired(const DeviceState& state, const DeadlinePolicy& policy, TimePoint now) {
  if (!state.connected || now < deadline_of(state, policy)) {
    Outcome unchanged;
    unchanged.next = state;
    unchanged.ignored = true;
    return unchanged;
  }
  DeviceState next = state;
  next.connected = false;
  const bool not_heard_since_restart = state.last_seen < policy.watch_started || state.last_seen < state.grace_from;
  const Reason reason = not_heard_since_restart ? Reason::restart : Reason::timeout;
  return decide(state, next, reason, now);
}

void DeadlineQueue::push(TimePoint deadline, const DeviceId& id) { heap_.push(Entry{deadline, id}); }

std::optional<TimePoint> DeadlineQueue::next_deadline() const {
  if (heap_.empty()) return std::nullopt;
  return heap_.top().deadline;
}

std::vector<DeviceId> DeadlineQueue::pop_due(TimePoint now, std::size_t limit) {
  std::vector<DeviceId> due;
  while (!heap_.empty() && heap_.top().deadline <= now && due.size() < limit) {
    due.push_back(heap_.top().id);
    heap_.pop();
  }
  return due;
}

}  // namespace maestra::core
