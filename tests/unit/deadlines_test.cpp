// Tests of core/deadlines: the exact expiry boundary, per-device offline_after over
// the default, the restart grace window (watch_started) with reason `restart` vs
// `timeout`, and the DeadlineQueue's ordering, limit, duplicates and lazy re-check.
#include "unit_test.hpp"

#include <algorithm>

#include "core/deadlines.hpp"
#include "core/heartbeat.hpp"

using namespace maestra::core;
using namespace maestra::core::unit;

namespace {
DeviceState seen_at(TimePoint last_seen, std::optional<Seconds> offline_after = std::nullopt) {
  return register_device(last_seen, offline_after).next;
}
const DeviceId a = id_from("00000000-0000-0000-0000-00000000000a");
const DeviceId b = id_from("00000000-0000-0000-0000-00000000000b");
const DeviceId c = id_from("00000000-0000-0000-0000-00000000000c");
const DeviceId d = id_from("00000000-0000-0000-0000-00000000000d");
const DeviceId e = id_from("00000000-0000-0000-0000-00000000000e");
}  // namespace

TEST_SUITE("deadlines") {

TEST_CASE("effective_offline_after: per-device override, else the default") {
  const DeadlinePolicy policy{Seconds{300}, TimePoint{}};
  CHECK(effective_offline_after(seen_at(t0), policy) == Seconds{300});
  CHECK(effective_offline_after(seen_at(t0, Seconds{60}), policy) == Seconds{60});
  CHECK(effective_offline_after(seen_at(t0, Seconds{900}), DeadlinePolicy{Seconds{30}, TimePoint{}}) == Seconds{900});
  CHECK(DeadlinePolicy{}.default_offline_after == Seconds{300});
}

TEST_CASE("deadline_of is last sign of life plus offline_after") {
  const DeadlinePolicy policy{Seconds{300}, TimePoint{}};
  CHECK(deadline_of(seen_at(t0 + 1000s), policy) == t0 + 1300s);
  CHECK(deadline_of(seen_at(t0 + 1000s, Seconds{90}), policy) == t0 + 1090s);
  CHECK(deadline_of(seen_at(t0 + 1000s + 250ms, Seconds{1}), policy) == t0 + 1001s + 250ms);
}

TEST_CASE("exact boundary: deadline - 1 ms is not expired, the deadline is") {
  // As in Mosquitto's keepalive test: seen at 1000, allowed 90, so 1089.999 then 1090.
  const DeadlinePolicy policy{Seconds{300}, TimePoint{}};
  const DeviceState s = seen_at(t0 + 1000s, Seconds{90});

  const Outcome before = mark_offline_if_expired(s, policy, t0 + 1090s - 1ms);
  CHECK(before.ignored);
  CHECK_FALSE(before.changed);
  CHECK_FALSE(before.transition.has_value());
  CHECK(before.next.connected);

  const Outcome at = mark_offline_if_expired(s, policy, t0 + 1090s);
  CHECK_FALSE(at.ignored);
  CHECK(at.changed);
  CHECK_FALSE(at.next.connected);
  CHECK(at.next.status() == Status::offline);
  CHECK(at.next.last_seen == t0 + 1000s);
  REQUIRE(at.transition);
  CHECK(*at.transition->from == Status::online);
  CHECK(at.transition->to == Status::offline);
  CHECK(at.transition->reason == Reason::timeout);
  CHECK(at.transition->at == t0 + 1090s);

  const Outcome long_after = mark_offline_if_expired(s, policy, t0 + 5000s);
  REQUIRE(long_after.transition);
  CHECK(long_after.transition->reason == Reason::timeout);
}

TEST_CASE("the default 300 s window, boundary included") {
  const DeadlinePolicy policy{Seconds{300}, TimePoint{}};
  const DeviceState s = seen_at(t0);
  CHECK(mark_offline_if_expired(s, policy, t0 + 299s + 999ms).ignored);
  CHECK(mark_offline_if_expired(s, policy, t0 + 300s).next.status() == Status::offline);
}

TEST_CASE("the per-device override wins over the default in both directions") {
  const DeadlinePolicy policy{Seconds{300}, TimePoint{}};
  const DeviceState quick = seen_at(t0, Seconds{30});
  CHECK(mark_offline_if_expired(quick, policy, t0 + 30s).next.status() == Status::offline);
  const DeviceState patient = seen_at(t0, Seconds{600});
  CHECK(mark_offline_if_expired(patient, policy, t0 + 300s).ignored);
  CHECK(mark_offline_if_expired(patient, policy, t0 + 600s - 1ms).ignored);
  CHECK(mark_offline_if_expired(patient, policy, t0 + 600s).next.status() == Status::offline);
}

TEST_CASE("a heartbeat moves the deadline") {
  const DeadlinePolicy policy{Seconds{300}, TimePoint{}};
  DeviceState s = seen_at(t0);
  s = apply_heartbeat(s, false, t0 + 200s).outcome.next;
  CHECK(deadline_of(s, policy) == t0 + 500s);
  CHECK(mark_offline_if_expired(s, policy, t0 + 300s).ignored);
  CHECK(mark_offline_if_expired(s, policy, t0 + 500s).next.status() == Status::offline);
}

TEST_CASE("devices already disconnected are left alone") {
  const DeadlinePolicy policy{Seconds{300}, TimePoint{}};
  DeviceState s = seen_at(t0);
  s.connected = false;
  const Outcome out = mark_offline_if_expired(s, policy, t0 + 10000s);
  CHECK(out.ignored);
  CHECK_FALSE(out.changed);
  CHECK_FALSE(out.transition.has_value());
}

TEST_CASE("an erroring device times out from error to offline") {
  const DeadlinePolicy policy{Seconds{300}, TimePoint{}};
  DeviceState s = seen_at(t0);
  s.reported_error = true;
  const Outcome out = mark_offline_if_expired(s, policy, t0 + 300s);
  REQUIRE(out.transition);
  CHECK(*out.transition->from == Status::error);
  CHECK(out.transition->to == Status::offline);
}

TEST_CASE("a device in maintenance times out silently: connected moves, status holds") {
  const DeadlinePolicy policy{Seconds{300}, TimePoint{}};
  DeviceState s = seen_at(t0);
  s.maintenance = true;
  const Outcome out = mark_offline_if_expired(s, policy, t0 + 300s);
  CHECK(out.changed);
  CHECK_FALSE(out.next.connected);
  CHECK(out.next.status() == Status::maintenance);
  CHECK_FALSE(out.transition.has_value());
}

TEST_CASE("restart grace: every device gets one full window from watch_started") {
  const TimePoint restart = t0 + 10000s;
  const DeadlinePolicy policy{Seconds{300}, restart};
  // Seen 299 s before the restart: without the grace it would expire 1 s after it.
  const DeviceState s = seen_at(restart - 299s);

  CHECK(deadline_of(s, policy) == restart + 300s);
  CHECK(mark_offline_if_expired(s, policy, restart + 1s).ignored);
  CHECK(mark_offline_if_expired(s, policy, restart + 300s - 1ms).ignored);

  const Outcome out = mark_offline_if_expired(s, policy, restart + 300s);
  REQUIRE(out.transition);
  CHECK(out.transition->to == Status::offline);
  CHECK(out.transition->reason == Reason::restart);
}

TEST_CASE("restart grace uses the per-device window too") {
  const TimePoint restart = t0 + 10000s;
  const DeadlinePolicy policy{Seconds{300}, restart};
  const DeviceState s = seen_at(t0, Seconds{60});
  CHECK(deadline_of(s, policy) == restart + 60s);
  CHECK(mark_offline_if_expired(s, policy, restart + 60s - 1ms).ignored);
  const Outcome out = mark_offline_if_expired(s, policy, restart + 60s);
  REQUIRE(out.transition);
  CHECK(out.transition->reason == Reason::restart);
}

TEST_CASE("a device heard since the restart times out with reason timeout") {
  const TimePoint restart = t0 + 10000s;
  const DeadlinePolicy policy{Seconds{300}, restart};

  SUBCASE("heard after the restart") {
    const DeviceState s = seen_at(restart + 5s);
    CHECK(deadline_of(s, policy) == restart + 305s);
    const Outcome out = mark_offline_if_expired(s, policy, restart + 305s);
    REQUIRE(out.transition);
    CHECK(out.transition->reason == Reason::timeout);
  }
  SUBCASE("heard exactly at the restart instant") {
    const DeviceState s = seen_at(restart);
    const Outcome out = mark_offline_if_expired(s, policy, restart + 300s);
    REQUIRE(out.transition);
    CHECK(out.transition->reason == Reason::timeout);
  }
  SUBCASE("heard 1 ms before the restart") {
    const DeviceState s = seen_at(restart - 1ms);
    const Outcome out = mark_offline_if_expired(s, policy, restart + 300s);
    REQUIRE(out.transition);
    CHECK(out.transition->reason == Reason::restart);
  }
}

TEST_CASE("DeadlineQueue: empty") {
  DeadlineQueue q;
  CHECK(q.size() == 0);
  CHECK_FALSE(q.next_deadline().has_value());
  CHECK(q.pop_due(t0 + 1000000s, 100).empty());
}

TEST_CASE("DeadlineQueue yields due entries in deadline order, boundary included") {
  DeadlineQueue q;
  q.push(t0 + 30s, c);
  q.push(t0 + 10s, a);
  q.push(t0 + 50s, e);
  q.push(t0 + 20s, b);
  q.push(t0 + 40s, d);
  CHECK(q.size() == 5);
  REQUIRE(q.next_deadline());
  CHECK(*q.next_deadline() == t0 + 10s);

  CHECK(q.pop_due(t0 + 10s - 1ms, 100).empty());
  CHECK(q.size() == 5);

  const auto due = q.pop_due(t0 + 30s, 100);
  CHECK(due == std::vector<DeviceId>{a, b, c});
  CHECK(q.size() == 2);
  REQUIRE(q.next_deadline());
  CHECK(*q.next_deadline() == t0 + 40s);

  CHECK(q.pop_due(t0 + 1000s, 100) == std::vector<DeviceId>{d, e});
  CHECK(q.size() == 0);
  CHECK_FALSE(q.next_deadline().has_value());
}

TEST_CASE("DeadlineQueue::pop_due respects the limit and leaves the rest, earliest first") {
  DeadlineQueue q;
  q.push(t0 + 5s, e);
  q.push(t0 + 1s, a);
  q.push(t0 + 4s, d);
  q.push(t0 + 2s, b);
  q.push(t0 + 3s, c);

  CHECK(q.pop_due(t0 + 100s, 0).empty());
  CHECK(q.size() == 5);
  CHECK(q.pop_due(t0 + 100s, 2) == std::vector<DeviceId>{a, b});
  CHECK(q.size() == 3);
  CHECK(q.pop_due(t0 + 100s, 2) == std::vector<DeviceId>{c, d});
  CHECK(q.pop_due(t0 + 100s, 2) == std::vector<DeviceId>{e});
  CHECK(q.size() == 0);
}

TEST_CASE("DeadlineQueue keeps duplicates: one id pushed twice comes out twice") {
  DeadlineQueue q;
  q.push(t0 + 10s, a);
  q.push(t0 + 20s, a);
  q.push(t0 + 10s, b);  // same deadline, another id
  CHECK(q.size() == 3);

  auto first = q.pop_due(t0 + 10s, 100);
  std::sort(first.begin(), first.end());
  CHECK(first == std::vector<DeviceId>{a, b});
  CHECK(q.pop_due(t0 + 20s, 100) == std::vector<DeviceId>{a});
}

TEST_CASE("many entries come out sorted") {
  DeadlineQueue q;
  for (int i = 0; i < 200; ++i) {
    const int offset = (i * 7919) % 1000;  // a fixed permutation-like spread
    DeviceId id;
    id.bytes[15] = static_cast<std::uint8_t>(i);
    id.bytes[14] = static_cast<std::uint8_t>(i >> 8);
    q.push(t0 + Millis{offset}, id);
  }
  TimePoint previous{};
  std::size_t popped = 0;
  while (auto next = q.next_deadline()) {
    CHECK(*next >= previous);
    previous = *next;
    popped += q.pop_due(*next, 1).size();
  }
  CHECK(popped == 200);
}

TEST_CASE("lazy re-check: a due entry whose device was heard since is pushed back") {
  const DeadlinePolicy policy{Seconds{300}, TimePoint{}};
  DeviceState s = seen_at(t0);
  DeadlineQueue q;
  q.push(deadline_of(s, policy), a);

  s = apply_heartbeat(s, false, t0 + 120s).outcome.next;  // the heap is not touched

  auto due = q.pop_due(t0 + 300s, 10);
  REQUIRE(due == std::vector<DeviceId>{a});
  const Outcome recheck = mark_offline_if_expired(s, policy, t0 + 300s);
  CHECK(recheck.ignored);
  q.push(deadline_of(recheck.next, policy), a);
  REQUIRE(q.next_deadline());
  CHECK(*q.next_deadline() == t0 + 420s);

  CHECK(q.pop_due(t0 + 420s - 1ms, 10).empty());
  due = q.pop_due(t0 + 420s, 10);
  REQUIRE(due == std::vector<DeviceId>{a});
  const Outcome expired = mark_offline_if_expired(s, policy, t0 + 420s);
  REQUIRE(expired.transition);
  CHECK(expired.transition->reason == Reason::timeout);
  CHECK(expired.transition->at == t0 + 420s);
}

// --- outages of the service's broker link ------------------------------------

namespace {
DeviceState mqtt_device(TimePoint last_seen) {
  DeviceState s = seen_at(last_seen);
  s.heard_over_mqtt = true;
  return s;
}
}  // namespace

TEST_CASE("link down: a device heard over MQTT never times out, one heard over HTTP does") {
  DeadlinePolicy policy{Seconds{5}, TimePoint{}};
  policy.link_down(t0 + 1s);
  const auto mqtt = mark_offline_if_expired(mqtt_device(t0), policy, t0 + 60s);
  CHECK(mqtt.ignored);
  CHECK(deadline_of(mqtt_device(t0), policy) == TimePoint::max());
  const auto http = mark_offline_if_expired(seen_at(t0), policy, t0 + 5s);
  REQUIRE(http.transition);
  CHECK(http.transition->reason == Reason::timeout);
}

TEST_CASE("link back: MQTT deadlines are extended by the outage after their last sign of life, to the millisecond") {
  DeadlinePolicy policy{Seconds{5}, TimePoint{}};
  policy.link_down(t0 + 2s);
  policy.link_up(t0 + 12s);  // a 10 s outage
  const auto silent = mqtt_device(t0);  // heard 2 s before the outage: 3 s of its window were left
  CHECK(deadline_of(silent, policy) == t0 + 15s);
  CHECK(mark_offline_if_expired(silent, policy, t0 + 15s - 1ms).ignored);
  CHECK(mark_offline_if_expired(silent, policy, t0 + 15s).transition);
  // heard during the outage (a message the broker held): only the rest of it counts
  CHECK(deadline_of(mqtt_device(t0 + 7s), policy) == t0 + 7s + 5s + 5s);
  // heard after the outage: no extension
  CHECK(deadline_of(mqtt_device(t0 + 13s), policy) == t0 + 18s);
  // HTTP devices keep their deadlines
  CHECK(deadline_of(seen_at(t0), policy) == t0 + 5s);
}

TEST_CASE("several outages add up; the list is bounded") {
  DeadlinePolicy policy{Seconds{5}, TimePoint{}};
  policy.link_down(t0 + 1s);
  policy.link_down(t0 + 2s);  // still the same outage
  policy.link_up(t0 + 3s);
  policy.link_up(t0 + 4s);    // no outage open: nothing
  policy.link_down(t0 + 10s);
  policy.link_up(t0 + 13s);
  CHECK(policy.mqtt_outages.size() == 2);
  CHECK(deadline_of(mqtt_device(t0), policy) == t0 + 5s + 2s + 3s);
  for (int i = 0; i < 100; ++i) {
    policy.link_down(t0 + Seconds{100 + 2 * i});
    policy.link_up(t0 + Seconds{101 + 2 * i});
  }
  CHECK(policy.mqtt_outages.size() == DeadlinePolicy::max_outages);
}

TEST_CASE("a device whose will was discarded (the broker went away) gets a full window from the broker's return") {
  const DeadlinePolicy policy{Seconds{60}, TimePoint{}};
  DeviceState state = seen_at(t0);
  state.heard_over_mqtt = true;
  state.grace_from = t0 + 100s;  // the broker's return
  CHECK(deadline_of(state, policy) == t0 + 160s);
  CHECK(mark_offline_if_expired(state, policy, t0 + 159s).ignored);
  const auto expired = mark_offline_if_expired(state, policy, t0 + 160s);
  REQUIRE(expired.transition);
  CHECK(expired.transition->reason == Reason::restart);
  state.last_seen = t0 + 120s;  // heard since the return: an ordinary timeout
  CHECK(mark_offline_if_expired(state, policy, t0 + 180s).transition->reason == Reason::timeout);
}

}  // TEST_SUITE
