// Fuzz target for presence: core::parse_presence on the payload of
// maestra/devices/{id}/presence (a device's birth, its last will, or its clean
// goodbye; plain words or JSON), then core::apply_presence.
// Input: the payload (the adapter refuses payloads over max_body_bytes first).
// Invariants: the plain words map to their signal; a JSON signal only comes from
// a JSON object with a string "state" and an integer "session" if any; a birth
// connects, a will or goodbye from an older session is ignored and changes
// nothing, any other will or goodbye disconnects.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/presence.hpp"
#include "core/validation.hpp"
#include "fuzz_support.hpp"

using namespace maestra;

namespace {

void check_rule(const core::PresenceSignal& signal, std::int64_t stored_session) {
  core::DeviceState state;
  state.connected = true;
  state.presence_session = stored_session;
  state.last_seen = core::TimePoint{std::chrono::seconds(1000)};
  const core::TimePoint now{std::chrono::seconds(1010)};
  const auto outcome = core::apply_presence(state, signal, now);
  if (signal.kind == core::PresenceKind::birth) {
    FUZZ_CHECK(outcome.next.connected, "a birth left the device disconnected");
    FUZZ_CHECK(outcome.next.last_seen == now, "a birth did not refresh last_seen");
    FUZZ_CHECK(outcome.next.presence_session >= stored_session, "a birth lowered the presence session");
    if (signal.session)
      FUZZ_CHECK(outcome.next.presence_session == std::max(stored_session, *signal.session),
                 "a birth did not record the newest session");
    return;
  }
  const bool stale = signal.session && *signal.session < stored_session;
  FUZZ_CHECK(outcome.ignored == stale, "a will/goodbye is ignored exactly when its session is older");
  if (stale) {
    FUZZ_CHECK(!outcome.changed && !outcome.transition && outcome.next.connected,
               "an ignored will/goodbye changed the device");
  } else {
    FUZZ_CHECK(!outcome.next.connected, "a will/goodbye left the device connected");
    FUZZ_CHECK(outcome.transition && outcome.transition->reason ==
                                         (signal.kind == core::PresenceKind::will ? core::Reason::will
                                                                                  : core::Reason::disconnect),
               "a will/goodbye of an online device has no transition with its reason");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return fuzz::guarded([&] {
    const std::string_view payload = fuzz::as_text(data, size);
    if (payload.size() > core::max_body_bytes) return;  // the MQTT adapter drops these first
    const auto signal = core::parse_presence(payload);

    if (payload == "online") FUZZ_CHECK(signal && signal->kind == core::PresenceKind::birth, "online is not a birth");
    if (payload == "offline") FUZZ_CHECK(signal && signal->kind == core::PresenceKind::will, "offline is not a will");
    if (payload == "disconnect")
      FUZZ_CHECK(signal && signal->kind == core::PresenceKind::disconnect, "disconnect is not a goodbye");
    if (payload.empty()) FUZZ_CHECK(!signal, "the empty payload (a cleared retained topic) is a signal");
    if (!signal) return;

    if (payload != "online" && payload != "offline" && payload != "disconnect") {
      const auto doc = nlohmann::json::parse(payload, nullptr, /*allow_exceptions=*/false);
      FUZZ_CHECK(doc.is_object(), "a presence signal came from something that is not a JSON object");
      const auto state = doc.find("state");
      FUZZ_CHECK(state != doc.end() && state->is_string(), "a JSON presence signal has no string state");
      const auto session = doc.find("session");
      if (session != doc.end())
        FUZZ_CHECK(session->is_number_integer() && signal->session == session->get<std::int64_t>(),
                   "a presence session is not the payload's integer");
      else
        FUZZ_CHECK(!signal->session, "a presence session appeared from nowhere");
    }

    for (std::int64_t stored : {std::int64_t{-1}, std::int64_t{0}, std::int64_t{7}, INT64_MAX})
      check_rule(*signal, stored);
    if (signal->session) check_rule(*signal, *signal->session);
  });
}
