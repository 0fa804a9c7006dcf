// What every fuzz target shares: the invariant check that stops the run with a
// readable line, the guard that turns an escaping exception into a finding, a
// strict UTF-8 validator to check accepted strings against, and the splitting of
// one fuzz input into the pieces a transport hands the core, and the check of
// a device id (path or topic level) that several targets share. No parsing logic of
// the service lives here: the targets call the core's public functions.
#pragma once
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/ids.hpp"

namespace maestra::fuzz {

[[noreturn]] inline void fail(const char* file, int line, const char* what) {
  std::fprintf(stderr, "\n*** invariant broken at %s:%d: %s\n", file, line, what);
  std::abort();
}

#define FUZZ_CHECK(cond, what) \
  do {                         \
    if (!(cond)) ::maestra::fuzz::fail(__FILE__, __LINE__, what); \
  } while (0)

// Runs one input; an exception escaping the core is a finding, not a pass.
template <class F>
int guarded(F&& run) {
  try {
    run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\n*** exception escaped the core: %s\n", e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "\n*** non-standard exception escaped the core\n");
    std::abort();
  }
  return 0;
}

// Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing past U+10FFFF.
inline bool is_valid_utf8(std::string_view text) {
  std::size_t i = 0;
  const std::size_t n = text.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1fu; }
    else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0fu; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07u; }
    else return false;
    if (i + len > n) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

// Code points of valid UTF-8.
inline std::size_t code_points(std::string_view text) {
  std::size_t count = 0;
  for (unsigned char c : text)
    if ((c & 0xc0) != 0x80) ++count;
  return count;
}

inline bool has_control(std::string_view text) {
  for (unsigned char c : text)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

// Blank in the core's sense today (spaces and tabs only).
inline bool is_blank(std::string_view text) { return text.find_first_not_of(" \t") == std::string_view::npos; }

// The rule of every accepted text field: valid UTF-8, at most `max_chars` code
// points, no control character, and (when required) not blank.
inline void check_text(std::string_view value, std::size_t max_chars, bool required, std::string_view field) {
  const std::string name(field);
  FUZZ_CHECK(is_valid_utf8(value), (name + " accepted: not valid UTF-8").c_str());
  FUZZ_CHECK(code_points(value) <= max_chars,
             (name + " accepted: longer than " + std::to_string(max_chars) + " characters").c_str());
  FUZZ_CHECK(!has_control(value), (name + " accepted: has a control character").c_str());
  if (required) FUZZ_CHECK(!is_blank(value), (name + " accepted: blank").c_str());
}

// "first line\nrest": the topic level (or other side channel) and the payload.
inline std::pair<std::string_view, std::string_view> split_first_line(std::string_view input) {
  const auto newline = input.find('\n');
  if (newline == std::string_view::npos) return {input, {}};
  return {input.substr(0, newline), input.substr(newline + 1)};
}

inline std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  while (true) {
    const auto at = text.find(separator);
    parts.push_back(text.substr(0, at));
    if (at == std::string_view::npos) break;
    text.remove_prefix(at + 1);
  }
  return parts;
}

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// A device id the core accepts is a canonical UUID in any case, survives
// to_string/parse, and hashes the same whatever its case.
inline void check_device_id(std::string_view text) {
  const auto id = core::parse_device_id(text);
  if (!id) return;
  std::string lower(text);
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  FUZZ_CHECK(id->to_string() == lower, "parse_device_id accepted something other than a canonical UUID");
  FUZZ_CHECK(core::parse_device_id(id->to_string()) == id, "a device id does not survive to_string/parse");
  FUZZ_CHECK(core::DeviceIdHash{}(*id) == core::DeviceIdHash{}(*core::parse_device_id(lower)), "hash is unstable");
}

}  // namespace maestra::fuzz
