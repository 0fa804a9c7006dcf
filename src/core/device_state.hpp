// The status model of one device: the inputs that decide its status and the one
// function that derives it. Every rule that changes a device (heartbeat.hpp,
// presence.hpp, deadlines.hpp, admin) returns an Outcome built here, so the
// derivation lives in exactly one place.
//
// A note on the model: status is not stored as a free value but derived from three
// inputs: `connected` (presence: heartbeats, births, wills, the timeout),
// `reported_error` (the device's own heartbeat says "error") and `maintenance`
// (the administrator's flag). Maintenance wins while set; otherwise a device that
// is not connected is offline, a connected one is error or online.
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

#include "core/clock.hpp"

namespace maestra::core {

enum class Status : std::uint8_t { online, offline, error, maintenance };
enum class Reason : std::uint8_t {
  registered,
  heartbeat,
  will,
  disconnect,
  timeout,
  admin,
  reported_error,
  restart
};

std::string_view to_string(Status s);
std::string_view to_string(Reason r);
std::optional<Status> parse_status(std::string_view text);
std::optional<Reason> parse_reason(std::string_view text);

struct DeviceState {
  bool connected = true;
  bool reported_error = false;
  bool maintenance = false;
  TimePoint last_seen{};
  // Time of the previous heartbeat (not birth or registration), for the
  // "too frequent" warning; epoch when none yet.
  TimePoint last_heartbeat{};
  // When the too-frequent warning was last logged for this device.
  TimePoint last_frequency_log{};
  // Per-device override of the service's offline_after.
  std::optional<Seconds> offline_after;
  // When a status document with a fresh last_seen was last published.
  TimePoint status_refreshed{};
  // Highest presence `session` seen in a birth; -1 when none.
  std::int64_t presence_session = -1;
  // The last sign of life came over MQTT (heartbeat, birth, will, MQTT
  // registration): its deadline waits out outages of the service's broker link.
  bool heard_over_mqtt = false;
  // Its will was discarded as the broker went away (core/will_gate): a full
  // window from the broker's return, then offline with reason `restart`.
  TimePoint grace_from{};

  Status status() const;
};

Status derive_status(bool connected, bool reported_error, bool maintenance);

struct Transition {
  std::optional<Status> from;  // empty for a new device
  Status to;
  Reason reason;
  TimePoint at;
};

// What a rule decided. `changed` is true when any stored input moved (even if
// the derived status did not, e.g. a will during maintenance); `transition` is
// set when the derived status changed.
struct Outcome {
  DeviceState next;
  bool changed = false;
  std::optional<Transition> transition;
  bool ignored = false;  // the input was stale or irrelevant and changed nothing
};

// Builds an Outcome by comparing before and after.
Outcome decide(const DeviceState& before, const DeviceState& after, Reason reason, TimePoint now);

// A freshly registered device: connected, online, seen now.
Outcome register_device(TimePoint now, std::optional<Seconds> offline_after);

// The administrator's status request (PATCH status). `maintenance` sets the flag;
// any other value clears it and then: `offline` marks the device disconnected,
// `error` marks it reporting an error, `online` clears a reported error. The
// resulting status is derived as always, so `online` on a silent device gives
// `offline`.
Outcome apply_admin_status(const DeviceState& state, Status requested, TimePoint now);

}  // namespace maestra::core
