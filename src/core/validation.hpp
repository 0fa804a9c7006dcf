// Field validation shared by every request parser: JSON body parsing with size
// and depth limits, strings without control characters, IP addresses, JSON
// objects that Postgres JSONB can store. Table-driven tests live in
// tests/unit/validation_test.cpp.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/errors.hpp"

namespace maestra::core {

using Json = nlohmann::ordered_json;

inline constexpr std::size_t max_body_bytes = 64 * 1024;
inline constexpr int max_json_depth = 32;
// Object members in one body, all objects together: bodies have a handful of
// fields, and an insertion-ordered object costs O(n) per member.
inline constexpr int max_json_members = 1024;

// Parses a request body that must be a JSON object. Empty body, invalid JSON,
// invalid UTF-8, nesting deeper than max_json_depth or more than
// max_json_members members are `malformed`; a non-object is `malformed` too;
// over max_body_bytes is `too_large`.
Result<Json> parse_json_object(std::string_view body);

// Dotted-quad IPv4 and textual IPv6 as inet_pton reads them: no leading zeros in
// an IPv4 octet, no zone id ("%eth0"), no brackets, prefix, port or spaces.
bool is_valid_ipv4(std::string_view text);
bool is_valid_ipv6(std::string_view text);
inline bool is_valid_ip(std::string_view text) { return is_valid_ipv4(text) || is_valid_ipv6(text); }

// Compares secrets (tokens, keys) in time independent of where they differ.
bool secrets_equal(std::string_view a, std::string_view b);

// True when `text` has a character below U+0020 or U+007F (DEL).
bool has_control_characters(std::string_view text);

// Counts code points of valid UTF-8 (nlohmann has already validated it).
std::size_t utf8_length(std::string_view text);

// Well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, nothing past U+10FFFF).
bool is_valid_utf8(std::string_view text);

// True when every code point is white space or invisible (ASCII spaces and
// separators, U+0085, U+00A0, U+1680, U+180E, U+2000-U+200D, U+2028/9, U+202F,
// U+205F, U+2060, U+3000, U+FEFF).
// Expects valid UTF-8.
bool is_blank(std::string_view text);

// The rule for any text from outside (body, path, query, header): valid UTF-8,
// at most max_chars code points, no control characters; else `invalid_field`
// naming the field.
std::optional<Error> check_text(std::string_view field, std::string_view value, std::size_t max_chars);

// A required, non-blank string of at most max_chars code points without control characters.
Result<std::string> required_string(const Json& body, std::string_view field, std::size_t max_chars);

// An optional string (absent or null gives nullopt) with the same rules.
Result<std::optional<std::string>> optional_string(const Json& body, std::string_view field,
                                                   std::size_t max_chars);

// An optional JSON object (absent or null gives null) whose strings and keys hold
// no NUL (JSONB cannot store U+0000).
Result<Json> optional_object(const Json& body, std::string_view field);

}  // namespace maestra::core
