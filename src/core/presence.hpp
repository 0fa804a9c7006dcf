// The presence rule: births and last-will messages on `.../presence`.
// A birth connects the device and records its session; a will (or an explicit
// clean-disconnect message) disconnects it. A will carrying an older session than
// the latest birth is ignored: it is the late will of a connection that has
// already been replaced (reconnect race). Presence never overrides maintenance,
// which falls out of derive_status.
#pragma once
#include <optional>
#include <string_view>

#include "core/device_state.hpp"

namespace maestra::core {

enum class PresenceKind { birth, will, disconnect };

struct PresenceSignal {
  PresenceKind kind;
  std::optional<std::int64_t> session;
};

// Parses a presence payload: `online`, `offline`, or JSON
// {"state":"online"|"offline","session":N,"reason":"disconnect"}. A plain
// `offline` (what devices set as their will) is a will; an offline with
// "reason":"disconnect" (or the plain payload `disconnect`) is a clean disconnect.
// Returns nullopt for anything else (including the empty payload that clears a
// retained topic).
std::optional<PresenceSignal> parse_presence(std::string_view payload);

Outcome apply_presence(const DeviceState& state, const PresenceSignal& signal, TimePoint now);

}  // namespace maestra::core
