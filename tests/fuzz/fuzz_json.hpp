// The request body parser every body-carrying target goes through
// (core::parse_json_object), wrapped with its invariants: an accepted body is an
// object within the size and depth limits; a small, plainly valid object is never
// refused. Shared so that registration, heartbeat and patch check it the same way.
#pragma once
#include <cstddef>
#include <string_view>

#include "core/validation.hpp"
#include "fuzz_support.hpp"

namespace maestra::fuzz {

// Containers nested in `value` (a scalar is 0, `{}` is 1); stops counting past `limit`.
inline int nesting(const core::Json& value, int limit) {
  if (!value.is_structured()) return 0;
  if (limit <= 0) return 1;
  int deepest = 0;
  for (const auto& item : value) {
    const int d = nesting(item, limit - 1);
    if (d > deepest) deepest = d;
  }
  return 1 + deepest;
}

inline std::size_t node_count(const core::Json& value, std::size_t limit) {
  std::size_t count = 1;
  if (value.is_structured())
    for (const auto& item : value) {
      count += node_count(item, limit);
      if (count > limit) break;
    }
  return count;
}

inline core::Result<core::Json> checked_parse_json_object(std::string_view body) {
  auto parsed = core::parse_json_object(body);
  if (parsed) {
    FUZZ_CHECK(parsed->is_object(), "parse_json_object accepted a non-object");
    FUZZ_CHECK(body.size() <= core::max_body_bytes, "parse_json_object accepted a body over max_body_bytes");
    FUZZ_CHECK(nesting(parsed.value(), core::max_json_depth + 1) <= core::max_json_depth,
               "parse_json_object accepted nesting deeper than max_json_depth");
    FUZZ_CHECK(body.find('\0') == std::string_view::npos, "parse_json_object accepted a raw NUL byte");
  } else if (body.size() <= core::max_body_bytes && body.find('\0') == std::string_view::npos) {
    // Completeness, for small documents only (a member-count limit may come):
    // what nlohmann accepts as an object of at most 32 values within the depth
    // limit must be accepted.
    const auto reference = core::Json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (reference.is_object() && node_count(reference, 32) <= 32 &&
        nesting(reference, core::max_json_depth + 1) <= core::max_json_depth)
      FUZZ_CHECK(false, "parse_json_object refused a small valid JSON object");
  }
  return parsed;
}

}  // namespace maestra::fuzz
