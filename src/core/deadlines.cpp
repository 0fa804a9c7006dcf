// Deadline computation, the timeout rule and the deadline queue.
#include "core/deadlines.hpp"

#include <algorithm>

namespace maestra::core {

Seconds effective_offline_after(const DeviceState& state, const DeadlinePolicy& policy) {
  return state.offline_after.value_or(policy.default_offline_after);
}

TimePoint deadline_of(const DeviceState& state, const DeadlinePolicy& policy) {
  return std::max(state.last_seen, policy.watch_started) + effective_offline_after(state, policy);
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
  const Reason reason = state.last_seen < policy.watch_started ? Reason::restart : Reason::timeout;
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
