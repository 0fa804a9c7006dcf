// The heartbeat rule, shared by MQTT and HTTP: a heartbeat is a sign of life that
// refreshes last_seen, connects the device, and sets or clears its reported error.
// It also decides the "too frequent" warning (heartbeats closer than 10 s) and
// whether that warning should be logged now (at most once a minute per device).
#pragma once
#include "core/device_state.hpp"

namespace maestra::core {

inline constexpr Seconds min_heartbeat_interval{10};
inline constexpr Seconds frequency_log_interval{60};

struct HeartbeatOutcome {
  Outcome outcome;
  bool too_frequent = false;    // the response carries a warning
  bool log_frequency = false;   // and a log line is due
};

HeartbeatOutcome apply_heartbeat(const DeviceState& state, bool reports_error, TimePoint now);

// Retained status documents carry last_seen. A device whose status does not
// change still gets its document refreshed, at most once per interval, so that a
// dashboard built from retained messages shows a true "last seen".
inline constexpr Seconds status_refresh_interval{30};
inline bool status_refresh_due(TimePoint last_refresh, TimePoint now) {
  return now - last_refresh >= status_refresh_interval;
}

inline constexpr std::string_view frequency_warning_text =
    "heartbeats are more frequent than every 10 seconds; send them every 30-60 seconds";

}  // namespace maestra::core
