// Tests of core/will_gate: a single will and a slow trickle are held only
// `first` (with `first` 0 they pass at once); the first will of a burst is
// held with the burst; a burst is held for the window; wills right after a reconnect that followed a
// lost connection are held to the end of the replay window and discarded when
// they were a burst.
#include "unit_test.hpp"

#include "core/will_gate.hpp"

using namespace maestra::core;
using namespace maestra::core::unit;

namespace {
// A gate whose link came up, without a session to replay, an hour before t0.
// The cases are written for a 250 ms window and a 1 s replay window, and
// (but for the `first` cases) no first hold.
WillGate connected(WillGateOptions options = {2, 250ms, 1000ms, 0ms}) {
  WillGate gate(options);
  gate.link_up(t0 - std::chrono::hours{1}, false);
  return gate;
}
}  // namespace

TEST_SUITE("will gate") {

TEST_CASE("a single will, and wills further apart than the window, are applied at once") {
  auto gate = connected();
  CHECK_FALSE(gate.on_will(t0));
  CHECK_FALSE(gate.on_will(t0 + 250ms));
  CHECK_FALSE(gate.on_will(t0 + 600ms));
  CHECK_FALSE(gate.on_will(t0 + 10s));
}

TEST_CASE("the second will within the window, and every one after it, is held for the window") {
  auto gate = connected();
  CHECK_FALSE(gate.on_will(t0));
  CHECK(gate.on_will(t0 + 10ms)->until == t0 + 260ms);
  CHECK(gate.on_will(t0 + 11ms)->until == t0 + 261ms);
  CHECK(gate.on_will(t0 + 200ms)->until == t0 + 450ms);
  CHECK_FALSE(gate.discard_after_hold(t0 + 10ms));  // the link stayed up: applied when the hold ends
}

TEST_CASE("a larger burst size lets more wills through before holding") {
  auto gate = connected({3, 250ms, 2000ms, 0ms});
  CHECK_FALSE(gate.on_will(t0));
  CHECK_FALSE(gate.on_will(t0 + 1ms));
  CHECK(gate.on_will(t0 + 2ms));
}

TEST_CASE("after a reconnect that followed a lost connection, wills are held to the end of the replay window") {
  auto gate = connected();
  gate.link_lost(t0);
  gate.link_up(t0 + 3s, true);
  CHECK(gate.on_will(t0 + 3s + 5ms)->until == t0 + 4s);
  CHECK(gate.on_will(t0 + 3s + 6ms)->until == t0 + 4s);
  CHECK(gate.discard_after_hold(t0 + 3s + 5ms));  // a burst replayed from the session
  CHECK_FALSE(gate.on_will(t0 + 6s));  // after the window: as usual
}

TEST_CASE("a single will replayed after a reconnect is applied when the window ends") {
  auto gate = connected();
  gate.link_lost(t0);
  gate.link_up(t0 + 3s, true);
  CHECK(gate.on_will(t0 + 3100ms)->until == t0 + 4s);
  CHECK_FALSE(gate.discard_after_hold(t0 + 3100ms));
}

TEST_CASE("the first connect has no replay window") {
  WillGate gate({2, 250ms, 1000ms, 0ms});
  gate.link_up(t0, false);
  CHECK_FALSE(gate.on_will(t0 + 1ms));
}

TEST_CASE("a lost link forgets the wills seen before it") {
  auto gate = connected();
  CHECK_FALSE(gate.on_will(t0));
  gate.link_lost(t0 + 1ms);
  gate.link_up(t0 + 2ms, false);
  CHECK_FALSE(gate.on_will(t0 + 3ms));
}

TEST_CASE("a first connection that found its session replays what was queued: a burst of it is discarded") {
  WillGate gate({2, 250ms, 1000ms, 0ms});
  CHECK(gate.on_will(t0));  // before the news of the connection: held
  gate.link_up(t0 + 10ms, true);
  CHECK(gate.on_will(t0 + 20ms)->until == t0 + 1010ms);
  CHECK(gate.discard_after_hold(t0));
  CHECK_FALSE(gate.on_will(t0 + 2s));
}

TEST_CASE("with `first`, a single will is held only that long, and is not suspect") {
  auto gate = connected({2, 250ms, 1000ms, 10ms});
  const auto hold = gate.on_will(t0);
  REQUIRE(hold);
  CHECK(hold->until == t0 + 10ms);
  CHECK_FALSE(hold->suspect);
  CHECK_FALSE(gate.discard_after_hold(t0));
  CHECK_FALSE(gate.hold_again(t0, t0 + 10ms));  // no burst came: applied
  const auto later = gate.on_will(t0 + 5s);
  REQUIRE(later);
  CHECK(later->until == t0 + 5s + 10ms);
}

TEST_CASE("with `first`, the first will of a burst is held again with the burst, to its own arrival + window") {
  auto gate = connected({2, 250ms, 1000ms, 10ms});
  CHECK(gate.on_will(t0)->until == t0 + 10ms);
  const auto second = gate.on_will(t0 + 1ms);  // a shutdown's next will, microseconds later
  REQUIRE(second);
  CHECK(second->suspect);
  CHECK(second->until == t0 + 251ms);
  CHECK(gate.hold_again(t0, t0 + 10ms) == t0 + 250ms);
  CHECK_FALSE(gate.hold_again(t0, t0 + 250ms));      // its window is over: applied (the link stayed up)
  CHECK_FALSE(gate.hold_again(t0 + 1ms, t0 + 251ms));  // the burst will itself is not held twice
}

TEST_CASE("with `first`, a burst long after a will does not hold it again; a lost link forgets the burst") {
  auto gate = connected({2, 250ms, 1000ms, 10ms});
  gate.on_will(t0);
  gate.on_will(t0 + 1s);
  gate.on_will(t0 + 1s + 1ms);  // a burst, but not within the window of the first will
  CHECK_FALSE(gate.hold_again(t0, t0 + 10ms));
  CHECK(gate.hold_again(t0 + 1s, t0 + 1s + 10ms) == t0 + 1250ms);
  gate.link_lost(t0 + 1s + 5ms);
  gate.link_up(t0 + 2s, false);
  CHECK_FALSE(gate.hold_again(t0 + 1s, t0 + 2s));
}

}  // TEST_SUITE
