// Tests of core/clock: RFC 3339 UTC formatting with milliseconds (the form of every
// timestamp the service emits) and the strict parser that reads it back.
#include "unit_test.hpp"

#include "core/clock.hpp"

using namespace maestra::core;
using namespace maestra::core::unit;

TEST_SUITE("clock") {

TEST_CASE("format_rfc3339 prints UTC with exactly three millisecond digits") {
  CHECK(format_rfc3339(TimePoint{}) == "1970-01-01T00:00:00.000Z");
  CHECK(format_rfc3339(t0) == "2026-02-02T00:00:00.000Z");
  CHECK(format_rfc3339(t0 + 12h + 34min + 56s + 789ms) == "2026-02-02T12:34:56.789Z");
  CHECK(format_rfc3339(t0 + 5ms) == "2026-02-02T00:00:00.005Z");
  CHECK(format_rfc3339(t0 + 50ms) == "2026-02-02T00:00:00.050Z");
  CHECK(format_rfc3339(t0 + 23h + 59min + 59s + 999ms) == "2026-02-02T23:59:59.999Z");
}

TEST_CASE("format_rfc3339 rolls over days, months, years and leap days") {
  using namespace std::chrono;
  const TimePoint leap_day_end = TimePoint{sys_days{year{2024} / 2 / 29}} + 23h + 59min + 59s + 999ms;
  CHECK(format_rfc3339(leap_day_end) == "2024-02-29T23:59:59.999Z");
  CHECK(format_rfc3339(leap_day_end + 1ms) == "2024-03-01T00:00:00.000Z");
  const TimePoint new_year_eve = TimePoint{sys_days{year{2025} / 12 / 31}} + 23h + 59min + 59s + 999ms;
  CHECK(format_rfc3339(new_year_eve + 1ms) == "2026-01-01T00:00:00.000Z");
}

TEST_CASE("parse_rfc3339 reads what format_rfc3339 writes") {
  const TimePoint samples[] = {TimePoint{}, t0, t0 + 1ms, t0 + 12h + 34min + 56s + 789ms,
                               t0 + 24h * 365 * 10 + 999ms};
  for (const TimePoint t : samples) {
    CAPTURE(t);
    const auto parsed = parse_rfc3339(format_rfc3339(t));
    REQUIRE(parsed);
    CHECK(*parsed == t);
  }
}

TEST_CASE("parse_rfc3339 accepts the form without milliseconds") {
  const auto parsed = parse_rfc3339("2026-02-02T12:34:56Z");
  REQUIRE(parsed);
  CHECK(*parsed == t0 + 12h + 34min + 56s);
}

TEST_CASE("parse_rfc3339 rejects everything but the exact UTC form") {
  const std::string_view rejected[] = {
      "",
      "2026-02-02",
      "2026-02-02T12:34:56",           // no zone
      "2026-02-02T12:34:56.789",       // no zone
      "2026-02-02T12:34:56.789+00:00", // offsets are not accepted, 'Z' only
      "2026-02-02T12:34:56.789z",      // lower-case zone
      "2026-02-02t12:34:56.789Z",      // lower-case separator
      "2026-02-02 12:34:56.789Z",      // space separator
      "2026-02-02T12:34:56.78Z",       // two fraction digits
      "2026-02-02T12:34:56.7891Z",     // four fraction digits
      "2026-02-02T12:34:56.Z",         // empty fraction
      "2026-02-02T12:34:56.789ZZ",     // trailing garbage
      "2026-02-02T12:34:56.789Z ",     // trailing space
      " 2026-02-02T12:34:56.789Z",     // leading space
      "2026/02/02T12:34:56.789Z",      // wrong date separators
      "2026-02-02T12-34-56.789Z",      // wrong time separators
      "26-02-02T12:34:56.789Z",        // two-digit year
      "2026-2-2T12:34:56.789Z",        // unpadded month and day
      "2026-13-01T00:00:00.000Z",      // month 13
      "2026-00-01T00:00:00.000Z",      // month 0
      "2026-02-30T00:00:00.000Z",      // no 30 February
      "2025-02-29T00:00:00.000Z",      // 2025 is not a leap year
      "2026-02-00T00:00:00.000Z",      // day 0
      "2026-02-02T24:00:00.000Z",      // hour 24
      "2026-02-02T12:60:00.000Z",      // minute 60
      "2026-02-02T12:34:60.000Z",      // leap second
      "2026-02-02T1a:34:56.789Z",      // not a digit
      "2026-02-02T12:34:56.7a9Z",      // not a digit in the fraction
  };
  for (const std::string_view text : rejected) {
    CAPTURE(text);
    CHECK_FALSE(parse_rfc3339(text).has_value());
  }
}

TEST_CASE("parse_rfc3339 accepts a leap day") {
  using namespace std::chrono;
  const auto parsed = parse_rfc3339("2024-02-29T23:59:59.999Z");
  REQUIRE(parsed);
  CHECK(*parsed == TimePoint{sys_days{year{2024} / 2 / 29}} + 23h + 59min + 59s + 999ms);
}

}  // TEST_SUITE
