// Tests of core/heartbeat: a heartbeat connects the device and sets or clears its
// reported error, maintenance sticks, and the "too frequent" warning and its log
// line are decided at their exact 10 s and 60 s boundaries.
#include "unit_test.hpp"

#include "core/device_state.hpp"
#include "core/heartbeat.hpp"

using namespace maestra::core;
using namespace maestra::core::unit;

namespace {
// A device registered at t0 and seen then; no heartbeat yet.
DeviceState registered_at_t0() { return register_device(t0, std::nullopt).next; }

DeviceState with(DeviceState s, bool connected, bool reported_error, bool maintenance) {
  s.connected = connected;
  s.reported_error = reported_error;
  s.maintenance = maintenance;
  return s;
}
}  // namespace

TEST_SUITE("heartbeat") {

TEST_CASE("a heartbeat brings an offline device online with reason heartbeat") {
  const DeviceState offline = with(registered_at_t0(), false, false, false);
  const HeartbeatOutcome hb = apply_heartbeat(offline, false, t0 + 400s);
  CHECK(hb.outcome.changed);
  CHECK_FALSE(hb.outcome.ignored);
  CHECK(hb.outcome.next.connected);
  CHECK(hb.outcome.next.status() == Status::online);
  CHECK(hb.outcome.next.last_seen == t0 + 400s);
  CHECK(hb.outcome.next.last_heartbeat == t0 + 400s);
  REQUIRE(hb.outcome.transition);
  CHECK(*hb.outcome.transition->from == Status::offline);
  CHECK(hb.outcome.transition->to == Status::online);
  CHECK(hb.outcome.transition->reason == Reason::heartbeat);
  CHECK(hb.outcome.transition->at == t0 + 400s);
}

TEST_CASE("a heartbeat on an online device refreshes last_seen without a transition") {
  const HeartbeatOutcome hb = apply_heartbeat(registered_at_t0(), false, t0 + 30s);
  CHECK_FALSE(hb.outcome.changed);
  CHECK_FALSE(hb.outcome.transition.has_value());
  CHECK(hb.outcome.next.last_seen == t0 + 30s);
  CHECK(hb.outcome.next.last_heartbeat == t0 + 30s);
}

TEST_CASE("status error sets error with reason reported_error; a plain heartbeat clears it") {
  DeviceState s = registered_at_t0();

  const HeartbeatOutcome failing = apply_heartbeat(s, true, t0 + 30s);
  CHECK(failing.outcome.changed);
  CHECK(failing.outcome.next.reported_error);
  CHECK(failing.outcome.next.status() == Status::error);
  REQUIRE(failing.outcome.transition);
  CHECK(*failing.outcome.transition->from == Status::online);
  CHECK(failing.outcome.transition->to == Status::error);
  CHECK(failing.outcome.transition->reason == Reason::reported_error);
  s = failing.outcome.next;

  const HeartbeatOutcome still_failing = apply_heartbeat(s, true, t0 + 60s);
  CHECK_FALSE(still_failing.outcome.changed);
  CHECK_FALSE(still_failing.outcome.transition.has_value());
  CHECK(still_failing.outcome.next.status() == Status::error);
  s = still_failing.outcome.next;

  const HeartbeatOutcome recovered = apply_heartbeat(s, false, t0 + 90s);
  CHECK(recovered.outcome.changed);
  CHECK_FALSE(recovered.outcome.next.reported_error);
  REQUIRE(recovered.outcome.transition);
  CHECK(*recovered.outcome.transition->from == Status::error);
  CHECK(recovered.outcome.transition->to == Status::online);
  CHECK(recovered.outcome.transition->reason == Reason::heartbeat);
}

TEST_CASE("an error heartbeat from an offline device goes straight to error") {
  const DeviceState offline = with(registered_at_t0(), false, false, false);
  const HeartbeatOutcome hb = apply_heartbeat(offline, true, t0 + 400s);
  CHECK(hb.outcome.next.connected);
  REQUIRE(hb.outcome.transition);
  CHECK(*hb.outcome.transition->from == Status::offline);
  CHECK(hb.outcome.transition->to == Status::error);
  CHECK(hb.outcome.transition->reason == Reason::reported_error);
}

TEST_CASE("maintenance sticks while heartbeats refresh last_seen") {
  DeviceState s = with(registered_at_t0(), true, false, true);
  REQUIRE(s.status() == Status::maintenance);

  SUBCASE("plain heartbeats") {
    for (int i = 1; i <= 5; ++i) {
      const TimePoint now = t0 + Seconds{30 * i};
      const HeartbeatOutcome hb = apply_heartbeat(s, false, now);
      CHECK(hb.outcome.next.status() == Status::maintenance);
      CHECK_FALSE(hb.outcome.transition.has_value());
      CHECK(hb.outcome.next.last_seen == now);
      s = hb.outcome.next;
    }
  }
  SUBCASE("an error heartbeat records the error but does not flip the status") {
    const HeartbeatOutcome hb = apply_heartbeat(s, true, t0 + 30s);
    CHECK(hb.outcome.changed);
    CHECK(hb.outcome.next.reported_error);
    CHECK(hb.outcome.next.status() == Status::maintenance);
    CHECK_FALSE(hb.outcome.transition.has_value());
    CHECK(hb.outcome.next.last_seen == t0 + 30s);
  }
  SUBCASE("a heartbeat reconnects a device that went silent during maintenance, still no transition") {
    s.connected = false;
    const HeartbeatOutcome hb = apply_heartbeat(s, false, t0 + 500s);
    CHECK(hb.outcome.changed);
    CHECK(hb.outcome.next.connected);
    CHECK(hb.outcome.next.status() == Status::maintenance);
    CHECK_FALSE(hb.outcome.transition.has_value());
  }
}

TEST_CASE("last_seen never moves backwards on an out-of-order heartbeat") {
  DeviceState s = registered_at_t0();
  s.last_seen = t0 + 100s;
  const HeartbeatOutcome hb = apply_heartbeat(s, false, t0 + 50s);
  CHECK(hb.outcome.next.last_seen == t0 + 100s);
}

TEST_CASE("the first heartbeat is never too frequent, even right after registration") {
  const HeartbeatOutcome hb = apply_heartbeat(registered_at_t0(), false, t0 + 1ms);
  CHECK_FALSE(hb.too_frequent);
  CHECK_FALSE(hb.log_frequency);
  CHECK(hb.outcome.next.last_frequency_log == TimePoint{});
}

TEST_CASE("too frequent: 9.999 s after the previous heartbeat warns, 10.000 s does not") {
  const DeviceState after_first = apply_heartbeat(registered_at_t0(), false, t0 + 1000s).outcome.next;
  REQUIRE(after_first.last_heartbeat == t0 + 1000s);

  const HeartbeatOutcome early = apply_heartbeat(after_first, false, t0 + 1000s + 9999ms);
  CHECK(early.too_frequent);
  CHECK(early.outcome.next.last_heartbeat == t0 + 1000s + 9999ms);

  const HeartbeatOutcome on_time = apply_heartbeat(after_first, false, t0 + 1000s + 10000ms);
  CHECK_FALSE(on_time.too_frequent);
  CHECK_FALSE(on_time.log_frequency);
  CHECK(on_time.outcome.next.last_frequency_log == TimePoint{});

  const HeartbeatOutcome same_instant = apply_heartbeat(after_first, false, t0 + 1000s);
  CHECK(same_instant.too_frequent);
}

TEST_CASE("a too-frequent heartbeat is still a heartbeat") {
  const DeviceState after_first = apply_heartbeat(registered_at_t0(), false, t0 + 100s).outcome.next;
  const HeartbeatOutcome early = apply_heartbeat(after_first, true, t0 + 101s);
  CHECK(early.too_frequent);
  CHECK(early.outcome.next.last_seen == t0 + 101s);
  CHECK(early.outcome.next.status() == Status::error);
  REQUIRE(early.outcome.transition);
  CHECK(early.outcome.transition->reason == Reason::reported_error);
}

TEST_CASE("the frequency log flag is raised at most once per 60 s per device") {
  DeviceState s = apply_heartbeat(registered_at_t0(), false, t0 + 1000s).outcome.next;

  const HeartbeatOutcome first_warning = apply_heartbeat(s, false, t0 + 1001s);
  CHECK(first_warning.too_frequent);
  CHECK(first_warning.log_frequency);
  CHECK(first_warning.outcome.next.last_frequency_log == t0 + 1001s);
  s = first_warning.outcome.next;

  const HeartbeatOutcome second = apply_heartbeat(s, false, t0 + 1002s);
  CHECK(second.too_frequent);
  CHECK_FALSE(second.log_frequency);
  CHECK(second.outcome.next.last_frequency_log == t0 + 1001s);

  // Pin the 60 s boundary from the logged instant (t0 + 1001 s).
  DeviceState before_boundary = s;
  before_boundary.last_heartbeat = t0 + 1001s + 59s;
  const HeartbeatOutcome at_59_999 = apply_heartbeat(before_boundary, false, t0 + 1001s + 59999ms);
  CHECK(at_59_999.too_frequent);
  CHECK_FALSE(at_59_999.log_frequency);

  const HeartbeatOutcome at_60_000 = apply_heartbeat(before_boundary, false, t0 + 1001s + 60000ms);
  CHECK(at_60_000.too_frequent);
  CHECK(at_60_000.log_frequency);
  CHECK(at_60_000.outcome.next.last_frequency_log == t0 + 1061s);
}

TEST_CASE("a flood of one heartbeat a second logs once a minute") {
  DeviceState s = registered_at_t0();
  int warnings = 0;
  int logs = 0;
  for (int second = 1; second <= 180; ++second) {
    const HeartbeatOutcome hb = apply_heartbeat(s, false, t0 + Seconds{second});
    warnings += hb.too_frequent ? 1 : 0;
    logs += hb.log_frequency ? 1 : 0;
    s = hb.outcome.next;
  }
  CHECK(warnings == 179);  // every heartbeat but the first
  CHECK(logs == 3);        // at 2 s, 62 s and 122 s
  CHECK(s.last_frequency_log == t0 + 122s);
}

TEST_CASE("the log rate limit is per device") {
  const DeviceState a = apply_heartbeat(registered_at_t0(), false, t0 + 100s).outcome.next;
  const DeviceState b = apply_heartbeat(registered_at_t0(), false, t0 + 100s).outcome.next;
  const HeartbeatOutcome a_warned = apply_heartbeat(a, false, t0 + 101s);
  REQUIRE(a_warned.log_frequency);
  // Device a just logged; device b, with its own state, still logs.
  CHECK(apply_heartbeat(b, false, t0 + 101s).log_frequency);
  CHECK_FALSE(apply_heartbeat(a_warned.outcome.next, false, t0 + 102s).log_frequency);
}

TEST_CASE("well-spaced heartbeats never warn") {
  DeviceState s = registered_at_t0();
  for (int i = 1; i <= 20; ++i) {
    const HeartbeatOutcome hb = apply_heartbeat(s, false, t0 + Seconds{30 * i});
    CHECK_FALSE(hb.too_frequent);
    CHECK_FALSE(hb.log_frequency);
    s = hb.outcome.next;
  }
}

TEST_CASE("the warning constants and text") {
  CHECK(min_heartbeat_interval == Seconds{10});
  CHECK(frequency_log_interval == Seconds{60});
  CHECK(frequency_warning_text.find("10 seconds") != std::string_view::npos);
}

}  // TEST_SUITE
