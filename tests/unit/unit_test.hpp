// Shared by the core's unit tests: how core values print in doctest failure
// messages (statuses and reasons by name, instants in RFC 3339, ids as UUIDs),
// and the fixed instant `t0` that tests count from. No clock is ever read.
#pragma once
#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "core/clock.hpp"
#include "core/device_state.hpp"
#include "core/ids.hpp"

namespace maestra::core {
// Found by argument-dependent lookup from doctest's expression decomposition;
// a non-template overload wins over doctest's "print the enum as a number".
inline doctest::String toString(Status s) { return std::string(to_string(s)).c_str(); }
inline doctest::String toString(Reason r) { return std::string(to_string(r)).c_str(); }
}  // namespace maestra::core

namespace doctest {
template <>
struct StringMaker<maestra::core::TimePoint> {
  static String convert(const maestra::core::TimePoint& t) { return maestra::core::format_rfc3339(t).c_str(); }
};
template <>
struct StringMaker<maestra::core::DeviceId> {
  static String convert(const maestra::core::DeviceId& id) { return id.to_string().c_str(); }
};
}  // namespace doctest

namespace maestra::core::unit {
using namespace std::chrono_literals;

// 2026-02-02T00:00:00.000Z: every test sets `now` as t0 plus an explicit offset.
inline constexpr TimePoint t0{std::chrono::sys_days{std::chrono::year{2026} / 2 / 2}};

inline DeviceId id_from(std::string_view text) { return parse_device_id(text).value(); }
}  // namespace maestra::core::unit
