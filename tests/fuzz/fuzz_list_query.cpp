// Fuzz target for the device list query (GET /devices?status=&device_type=&
// hardware_id=&limit=&offset=) and the path ids of /devices/{id}: the query is
// split and percent-decoded as cpp-httplib does, then each value goes through the
// core function that judges it: core::parse_status for status, the string checks
// core::has_control_characters and core::utf8_length for the text filters,
// core::parse_device_id for path ids.
// The whole query then goes through core::parse_list_query (the rule the HTTP
// adapter applies): what it accepts must be within its documented limits.
// Input: a query string; a first line starting with '/' is a path id instead.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/device_state.hpp"
#include "core/ids.hpp"
#include "core/requests.hpp"
#include "core/validation.hpp"
#include "fuzz_support.hpp"

using namespace maestra;

namespace {

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// cpp-httplib's decode_url for query values: %XX and '+' as a space.
std::string decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && hex(text[i + 1]) >= 0 && hex(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(text[i + 1]) * 16 + hex(text[i + 2])));
      i += 2;
    } else if (text[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

void check_status(const std::string& value) {
  const auto status = core::parse_status(value);
  if (status) FUZZ_CHECK(core::to_string(*status) == value, "parse_status accepted a non-canonical name");
  const auto reason = core::parse_reason(value);
  if (reason) FUZZ_CHECK(core::to_string(*reason) == value, "parse_reason accepted a non-canonical name");
}

void check_text_filter(const std::string& value) {
  FUZZ_CHECK(core::has_control_characters(value) == fuzz::has_control(value),
             "has_control_characters misses or invents a control character");
  const auto length = core::utf8_length(value);
  FUZZ_CHECK(length <= value.size(), "utf8_length counts more characters than bytes");
  if (fuzz::is_valid_utf8(value))
    FUZZ_CHECK(length == fuzz::code_points(value), "utf8_length miscounts valid UTF-8");
}

void check_parsed_query(std::string_view query) {
  // First value of each name wins, as cpp-httplib's get_param_value does.
  std::vector<std::pair<std::string, std::string>> params;
  for (const auto pair : fuzz::split(query, '&')) {
    const auto eq = pair.find('=');
    params.emplace_back(decode(pair.substr(0, eq)), eq == std::string_view::npos ? std::string() : decode(pair.substr(eq + 1)));
  }
  const core::ParamLookup lookup = [&params](std::string_view name) -> std::optional<std::string> {
    for (const auto& [key, value] : params)
      if (key == name) return value;
    return std::nullopt;
  };
  const auto q = core::parse_list_query(lookup);
  if (!q) {
    FUZZ_CHECK(!q.error().field.empty(), "a refused list query names no parameter");
    return;
  }
  if (q->status) FUZZ_CHECK(core::parse_status(*q->status).has_value(), "an unknown status was accepted");
  for (const auto* text : {&q->device_type, &q->hardware_id})
    if (*text) fuzz::check_text(**text, 128, false, "filter");
  if (q->limit) FUZZ_CHECK(*q->limit >= 0 && *q->limit <= core::max_list_limit, "limit out of range accepted");
  FUZZ_CHECK(q->offset >= 0 && q->offset <= core::max_list_offset, "offset out of range accepted");
  const auto history = core::parse_history_limit(lookup);
  if (history) FUZZ_CHECK(history.value() >= 1 && history.value() <= core::max_history_limit, "history limit out of range accepted");
}

void check_query(std::string_view query) {
  check_parsed_query(query);
  for (const auto pair : fuzz::split(query, '&')) {
    const auto eq = pair.find('=');
    const std::string key = decode(pair.substr(0, eq));
    const std::string value = eq == std::string_view::npos ? std::string() : decode(pair.substr(eq + 1));
    if (key == "status") check_status(value);
    if (key == "device_type" || key == "hardware_id") check_text_filter(value);
    if (key == "id") fuzz::check_device_id(value);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return fuzz::guarded([&] {
    const std::string_view input = fuzz::as_text(data, size);
    const auto [first, rest] = fuzz::split_first_line(input);
    if (!first.empty() && first.front() == '/') {
      fuzz::check_device_id(decode(first.substr(1)));
      check_query(rest);
    } else {
      check_query(input);
    }
    // Every value is also judged whole, as one filter.
    check_text_filter(std::string(input));
    check_status(std::string(input));
  });
}
