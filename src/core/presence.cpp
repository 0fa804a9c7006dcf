// Presence payload parsing and the birth/will/disconnect rule.
#include "core/presence.hpp"

#include <nlohmann/json.hpp>

namespace maestra::core {

std::optional<PresenceSignal> parse_presence(std::string_view payload) {
  if (payload == "online") return PresenceSignal{PresenceKind::birth, std::nullopt};
  if (payload == "offline") return PresenceSignal{PresenceKind::will, std::nullopt};
  if (payload == "disconnect") return PresenceSignal{PresenceKind::disconnect, std::nullopt};
  if (payload.empty() || payload.front() != '{') return std::nullopt;
  const auto doc = nlohmann::json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return std::nullopt;
  const auto state = doc.find("state");
  if (state == doc.end() || !state->is_string()) return std::nullopt;
  PresenceSignal signal{};
  if (*state == "online") {
    signal.kind = PresenceKind::birth;
  } else if (*state == "offline") {
    const auto reason = doc.find("reason");
    signal.kind = (reason != doc.end() && *reason == "disconnect") ? PresenceKind::disconnect : PresenceKind::will;
  } else {
    return std::nullopt;
  }
  if (const auto session = doc.find("session"); session != doc.end()) {
    if (!session->is_number_integer()) return std::nullopt;
    signal.session = session->get<std::int64_t>();
  }
  return signal;
}

Outcome apply_presence(const DeviceState& state, const PresenceSignal& signal, TimePoint now) {
  DeviceState next = state;
  if (signal.kind == PresenceKind::birth) {
    next.connected = true;
    if (now > next.last_seen) next.last_seen = now;
    if (signal.session && *signal.session > next.presence_session) next.presence_session = *signal.session;
    return decide(state, next, Reason::heartbeat, now);
  }
  if (signal.session && *signal.session < state.presence_session) {
    Outcome stale;
    stale.next = state;
    stale.ignored = true;
    return stale;
  }
  next.connected = false;
  return decide(state, next, signal.kind == PresenceKind::will ? Reason::will : Reason::disconnect, now);
}

}  // namespace maestra::core
