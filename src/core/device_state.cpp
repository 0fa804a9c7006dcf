// Status derivation, transitions and the administrator's status rule.
#include "core/device_state.hpp"

#include <array>

namespace maestra::core {

namespace {
constexpr std::array<std::string_view, 4> status_names{"online", "offline", "error", "maintenance"};
constexpr std::array<std::string_view, 8> reason_names{"registered", "heartbeat",      "will",
                                                       "disconnect", "timeout",        "admin",
                                                       "reported_error", "restart"};
}  // namespace

std::string_view to_string(Status s) { return status_names[static_cast<std::size_t>(s)]; }
std::string_view to_string(Reason r) { return reason_names[static_cast<std::size_t>(r)]; }

std::optional<Status> parse_status(std::string_view text) {
  for (std::size_t i = 0; i < status_names.size(); ++i)
    if (status_names[i] == text) return static_cast<Status>(i);
  return std::nullopt;
}

std::optional<Reason> parse_reason(std::string_view text) {
  for (std::size_t i = 0; i < reason_names.size(); ++i)
    if (reason_names[i] == text) return static_cast<Reason>(i);
  return std::nullopt;
}

Status derive_status(bool connected, bool reported_error, bool maintenance) {
  if (maintenance) return Status::maintenance;
  if (!connected) return Status::offline;
  return reported_error ? Status::error : Status::online;
}

Status DeviceState::status() const { return derive_status(connected, reported_error, maintenance); }

Outcome decide(const DeviceState& before, const DeviceState& after, Reason reason, TimePoint now) {
  Outcome out;
  out.next = after;
  out.changed = before.connected != after.connected || before.reported_error != after.reported_error ||
                before.maintenance != after.maintenance || before.offline_after != after.offline_after;
  if (before.status() != after.status())
    out.transition = Transition{before.status(), after.status(), reason, now};
  return out;
}

Outcome register_device(TimePoint now, std::optional<Seconds> offline_after) {
  Outcome out;
  out.next.connected = true;
  out.next.last_seen = now;
  out.next.offline_after = offline_after;
  out.changed = true;
  out.transition = Transition{std::nullopt, Status::online, Reason::registered, now};
  return out;
}

Outcome apply_admin_status(const DeviceState& state, Status requested, TimePoint now) {
  DeviceState next = state;
  switch (requested) {
    case Status::maintenance:
      next.maintenance = true;
      break;
    case Status::offline:
      next.maintenance = false;
      next.connected = false;
      break;
    case Status::error:
      next.maintenance = false;
      next.reported_error = true;
      break;
    case Status::online:
      next.maintenance = false;
      next.reported_error = false;
      break;
  }
  return decide(state, next, Reason::admin, now);
}

}  // namespace maestra::core
