// Time values of the core: a millisecond time point in UTC and its RFC 3339 form.
// The core never reads a clock; callers pass `now` in. Formatting and parsing are
// pure so tests can pin every boundary.
#pragma once
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace maestra::core {

using Millis = std::chrono::milliseconds;
using Seconds = std::chrono::seconds;
using TimePoint = std::chrono::sys_time<Millis>;

// "2026-02-02T12:34:56.789Z"
std::string format_rfc3339(TimePoint t);

// Accepts the form above (with or without milliseconds, 'Z' only).
std::optional<TimePoint> parse_rfc3339(std::string_view text);

}  // namespace maestra::core
