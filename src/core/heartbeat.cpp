// Heartbeat rule: presence refresh, reported error, frequency warning.
#include "core/heartbeat.hpp"

namespace maestra::core {

HeartbeatOutcome apply_heartbeat(const DeviceState& state, bool reports_error, TimePoint now) {
  DeviceState next = state;
  next.connected = true;
  next.reported_error = reports_error;
  if (now > next.last_seen) next.last_seen = now;

  HeartbeatOutcome result;
  const bool had_heartbeat = state.last_heartbeat != TimePoint{};
  if (had_heartbeat && now - state.last_heartbeat < min_heartbeat_interval) {
    result.too_frequent = true;
    if (state.last_frequency_log == TimePoint{} || now - state.last_frequency_log >= frequency_log_interval) {
      result.log_frequency = true;
      next.last_frequency_log = now;
    }
  }
  next.last_heartbeat = now;
  const Reason reason = reports_error ? Reason::reported_error : Reason::heartbeat;
  result.outcome = decide(state, next, reason, now);
  return result;
}

}  // namespace maestra::core
