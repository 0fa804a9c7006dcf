// Tests of core/flap: the first changes of a window pass, from the 4th within a
// minute on they are held until the status settles; a quiet window forgets.
#include "unit_test.hpp"

#include "core/flap.hpp"

using namespace maestra::core;
using namespace maestra::core::unit;

TEST_SUITE("flap damper") {

TEST_CASE("three changes a minute pass; the fourth within the minute is held, and every one after it") {
  const FlapOptions options;
  FlapDamper damper;
  CHECK_FALSE(damper.on_change(t0, Reason::will, options));
  CHECK_FALSE(damper.on_change(t0 + 5s, Reason::heartbeat, options));
  CHECK_FALSE(damper.on_change(t0 + 10s, Reason::will, options));
  CHECK(damper.on_change(t0 + 15s, Reason::heartbeat, options));
  CHECK(damper.holding());
  CHECK(damper.settle_due(options) == t0 + 25s);
  CHECK(damper.on_change(t0 + 20s, Reason::will, options));
  CHECK(damper.settle_due(options) == t0 + 30s);  // it changed again: the settle time starts over
  CHECK(damper.flaps() == 2);
  CHECK(damper.last_reason() == Reason::will);
}

TEST_CASE("changes spread wider than the window never hold") {
  const FlapOptions options;
  FlapDamper damper;
  for (int i = 0; i < 10; ++i) CHECK_FALSE(damper.on_change(t0 + std::chrono::seconds{21 * i}, Reason::will, options));
}

TEST_CASE("after it settled, the damper holds again while the window is still busy, and is idle once quiet") {
  const FlapOptions options;
  FlapDamper damper;
  for (int i = 0; i < 4; ++i) damper.on_change(t0 + std::chrono::seconds{i}, Reason::will, options);
  damper.settled();
  CHECK_FALSE(damper.holding());
  CHECK_FALSE(damper.idle(t0 + 30s, options));
  CHECK(damper.on_change(t0 + 30s, Reason::heartbeat, options));
  damper.settled();
  CHECK(damper.idle(t0 + 91s, options));
}

}  // TEST_SUITE
