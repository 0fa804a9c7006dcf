// Tests of core/auth_throttle: refused credentials per address open a window;
// the address is refused for the rest of it once the limit is reached; other
// addresses are unaffected; memory stays bounded.
#include "unit_test.hpp"

#include "core/auth_throttle.hpp"

using namespace maestra::core;
using namespace maestra::core::unit;

TEST_SUITE("auth_throttle") {

TEST_CASE("an address may fail up to the limit, then waits for the rest of its window") {
  AuthThrottle throttle(3, 60s);
  for (int i = 0; i < 2; ++i) throttle.record_failure("10.0.0.1", t0 + std::chrono::seconds(i));
  CHECK(throttle.retry_after("10.0.0.1", t0 + 2s) == 0ms);
  throttle.record_failure("10.0.0.1", t0 + 10s);
  CHECK(throttle.retry_after("10.0.0.1", t0 + 10s) == 50s);
  CHECK(throttle.retry_after("10.0.0.1", t0 + 59999ms) == 1ms);
  CHECK(throttle.retry_after("10.0.0.1", t0 + 60s) == 0ms);
}

TEST_CASE("other addresses are not throttled by one that is") {
  AuthThrottle throttle(2, 60s);
  throttle.record_failure("10.0.0.1", t0);
  throttle.record_failure("10.0.0.1", t0);
  CHECK(throttle.retry_after("10.0.0.1", t0) > 0ms);
  CHECK(throttle.retry_after("10.0.0.2", t0) == 0ms);
  CHECK(throttle.retry_after("::1", t0) == 0ms);
}

TEST_CASE("a failure after the window starts a new window with a count of one") {
  AuthThrottle throttle(2, 60s);
  throttle.record_failure("a", t0);
  throttle.record_failure("a", t0 + 61s);
  CHECK(throttle.retry_after("a", t0 + 61s) == 0ms);
  throttle.record_failure("a", t0 + 62s);
  CHECK(throttle.retry_after("a", t0 + 62s) == 59s);
}

TEST_CASE("memory is bounded: expired windows make room, live ones are kept") {
  AuthThrottle throttle(1, 60s, 2);
  throttle.record_failure("a", t0);
  throttle.record_failure("b", t0 + 30s);
  throttle.record_failure("c", t0 + 40s);  // full of live windows: c is not tracked
  CHECK(throttle.tracked() == 2);
  CHECK(throttle.retry_after("c", t0 + 40s) == 0ms);
  CHECK(throttle.retry_after("a", t0 + 40s) == 20s);
  throttle.record_failure("c", t0 + 61s);  // a's window has ended: dropped for c
  CHECK(throttle.tracked() == 2);
  CHECK(throttle.retry_after("a", t0 + 61s) == 0ms);
  CHECK(throttle.retry_after("c", t0 + 61s) == 60s);
  CHECK(throttle.retry_after("b", t0 + 61s) == 29s);
}

}  // TEST_SUITE
