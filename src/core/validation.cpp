// Field validators and the bounded JSON body parser.
#include "core/validation.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>

namespace maestra::core {

std::string_view error_code(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::malformed: return "malformed_json";
    case ErrorKind::invalid_field: return "invalid_field";
    case ErrorKind::not_found: return "not_found";
    case ErrorKind::conflict: return "conflict";
    case ErrorKind::too_large: return "payload_too_large";
    case ErrorKind::unavailable: return "unavailable";
    case ErrorKind::unauthorized: return "unauthorized";
    case ErrorKind::forbidden: return "forbidden";
    case ErrorKind::internal: return "internal_error";
  }
  return "error";
}

Result<Json> parse_json_object(std::string_view body) {
  if (body.size() > max_body_bytes)
    return Error{ErrorKind::too_large, "", "body is larger than 65536 bytes"};
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos)
    return Error{ErrorKind::malformed, "", "body is empty; expected a JSON object"};
  // nlohmann stops at a raw NUL as if the input ended there; it is never JSON.
  if (body.find('\0') != std::string_view::npos)
    return Error{ErrorKind::malformed, "", "body is not valid JSON (raw NUL byte)"};
  bool too_deep = false;
  int members = 0;
  // The callback sees a container's start at its parent's depth: count it too.
  Json::parser_callback_t limit = [&too_deep, &members](int depth, Json::parse_event_t event, Json&) {
    const bool opens = event == Json::parse_event_t::object_start || event == Json::parse_event_t::array_start;
    if (depth + (opens ? 1 : 0) > max_json_depth) too_deep = true;
    if (event == Json::parse_event_t::key) ++members;
    return !too_deep && members <= max_json_members;
  };
  Json doc = Json::parse(body, limit, /*allow_exceptions=*/false);
  if (too_deep) return Error{ErrorKind::malformed, "", "JSON nesting is deeper than 32 levels"};
  if (members > max_json_members)
    return Error{ErrorKind::malformed, "", "JSON has more than " + std::to_string(max_json_members) + " object members"};
  if (doc.is_discarded()) return Error{ErrorKind::malformed, "", "body is not valid JSON"};
  if (!doc.is_object()) return Error{ErrorKind::malformed, "", "body must be a JSON object"};
  return doc;
}

namespace {
// A note on addresses: inet_pton (libc, pure computation) decides. It needs a
// NUL-terminated copy, so text with a NUL or longer than any address (45
// characters: INET6_ADDRSTRLEN - 1) is refused before it is asked. glibc refuses
// leading zeros in IPv4 octets ("01.2.3.4"), and neither family takes a zone id
// ("fe80::1%eth0"): a device reports an address, not a route out of itself.
bool parses_as(int family, std::string_view text) {
  char copy[INET6_ADDRSTRLEN];
  if (text.empty() || text.size() >= sizeof copy || text.find('\0') != std::string_view::npos) return false;
  text.copy(copy, text.size());
  copy[text.size()] = '\0';
  unsigned char address[sizeof(in6_addr)];
  return inet_pton(family, copy, address) == 1;
}
}  // namespace

bool is_valid_ipv4(std::string_view text) { return parses_as(AF_INET, text); }

bool is_valid_ipv6(std::string_view text) { return parses_as(AF_INET6, text); }

bool secrets_equal(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::size_t n = std::max(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff = static_cast<unsigned char>(diff | (x ^ y));
  }
  return diff == 0;
}

bool has_control_characters(std::string_view text) {
  for (unsigned char c : text)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

std::size_t utf8_length(std::string_view text) {
  std::size_t n = 0;
  for (unsigned char c : text)
    if ((c & 0xc0) != 0x80) ++n;
  return n;
}

namespace {
// Decodes one code point at text[i] (valid UTF-8 assumed) and advances i.
char32_t next_code_point(std::string_view text, std::size_t& i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return text[i++];
  const int extra = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1;
  char32_t cp = c & (0x3f >> extra);
  for (int k = 1; k <= extra && i + static_cast<std::size_t>(k) < text.size(); ++k) cp = (cp << 6) | (byte(i + static_cast<std::size_t>(k)) & 0x3f);
  i += static_cast<std::size_t>(extra) + 1;
  return cp;
}
}  // namespace

bool is_valid_utf8(std::string_view text) {
  std::size_t i = 0;
  const std::size_t n = text.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) { ++i; continue; }
    int extra = 0;
    char32_t cp = 0, min = 0;
    if ((c & 0xe0) == 0xc0) { extra = 1; cp = c & 0x1f; min = 0x80; }
    else if ((c & 0xf0) == 0xe0) { extra = 2; cp = c & 0x0f; min = 0x800; }
    else if ((c & 0xf8) == 0xf0) { extra = 3; cp = c & 0x07; min = 0x10000; }
    else return false;
    if (i + static_cast<std::size_t>(extra) >= n) return false;  // truncated sequence
    for (int k = 1; k <= extra; ++k) {
      const auto cc = static_cast<unsigned char>(text[i + static_cast<std::size_t>(k)]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += static_cast<std::size_t>(extra) + 1;
  }
  return true;
}

bool is_blank(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const char32_t cp = next_code_point(text, i);
    const bool blank = cp == U' ' || cp == U'\t' || cp == U'\n' || cp == U'\r' || cp == 0x0b || cp == 0x0c ||
                       (cp >= 0x1c && cp <= 0x1f) || cp == 0x85 || cp == 0xa0 || cp == 0x1680 || cp == 0x180e ||
                       (cp >= 0x2000 && cp <= 0x200d) ||
                       cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x2060 ||
                       cp == 0x3000 || cp == 0xfeff;
    if (!blank) return false;
  }
  return true;
}

std::optional<Error> check_text(std::string_view field, std::string_view value, std::size_t max_chars) {
  const std::string name(field);
  if (!is_valid_utf8(value)) return invalid(name, name + " is not valid UTF-8");
  if (utf8_length(value) > max_chars)
    return invalid(name, name + " is longer than " + std::to_string(max_chars) + " characters");
  if (has_control_characters(value)) return invalid(name, name + " contains control characters");
  return std::nullopt;
}

namespace {

bool has_nul(const Json& value) {
  if (value.is_string()) return value.get_ref<const std::string&>().find('\0') != std::string::npos;
  if (value.is_object()) {
    for (const auto& [key, item] : value.items())
      if (key.find('\0') != std::string::npos || has_nul(item)) return true;
  } else if (value.is_array()) {
    for (const auto& item : value)
      if (has_nul(item)) return true;
  }
  return false;
}
}  // namespace

Result<std::string> required_string(const Json& body, std::string_view field, std::size_t max_chars) {
  const auto it = body.find(field);
  if (it == body.end() || it->is_null()) return invalid(std::string(field), std::string(field) + " is required");
  if (!it->is_string()) return invalid(std::string(field), std::string(field) + " must be a string");
  const auto& value = it->get_ref<const std::string&>();
  if (is_blank(value)) return invalid(std::string(field), std::string(field) + " must not be empty or blank");
  if (auto error = check_text(field, value, max_chars)) return *error;
  return value;
}

Result<std::optional<std::string>> optional_string(const Json& body, std::string_view field,
                                                   std::size_t max_chars) {
  const auto it = body.find(field);
  if (it == body.end() || it->is_null()) return std::optional<std::string>{};
  if (!it->is_string()) return invalid(std::string(field), std::string(field) + " must be a string");
  const auto& value = it->get_ref<const std::string&>();
  if (auto error = check_text(field, value, max_chars)) return *error;
  return std::optional<std::string>{value};
}

Result<Json> optional_object(const Json& body, std::string_view field) {
  const auto it = body.find(field);
  if (it == body.end() || it->is_null()) return Json(nullptr);
  if (!it->is_object()) return invalid(std::string(field), std::string(field) + " must be a JSON object");
  if (has_nul(*it)) return invalid(std::string(field), std::string(field) + " contains a NUL character");
  return *it;
}

}  // namespace maestra::core
