// Tests of core/validation, table-driven: the bounded JSON body parser (emptiness,
// shape, depth 32, the 64 KiB limit, UTF-8), IPv4/IPv6 forms (inet_pton), control characters,
// code-point length, the string/object field validators and the error codes.
#include "unit_test.hpp"

#include <string>

#include "core/validation.hpp"

using namespace maestra::core;
using namespace maestra::core::unit;

namespace {
// `levels` nested objects {"a":{"a":...}} around `innermost`.
std::string nested_objects(int levels, std::string_view innermost) {
  std::string text;
  for (int i = 0; i < levels; ++i) text += R"({"a":)";
  text += innermost;
  text.append(static_cast<std::size_t>(levels), '}');
  return text;
}

// One object holding `arrays` nested arrays around a scalar: 1 + arrays levels.
std::string object_with_nested_arrays(int arrays) {
  std::string text = R"({"a":)";
  text.append(static_cast<std::size_t>(arrays), '[');
  text += "1";
  text.append(static_cast<std::size_t>(arrays), ']');
  return text + "}";
}

// A valid JSON object of exactly `size` bytes: {"a":"xxx..."}.
std::string object_of_size(std::size_t size) {
  const std::string head = R"({"a":")";
  const std::string tail = R"("})";
  return head + std::string(size - head.size() - tail.size(), 'x') + tail;
}

Json body(std::string_view text) { return Json::parse(text); }
}  // namespace

TEST_SUITE("validation") {

TEST_CASE("parse_json_object accepts objects") {
  const std::string_view accepted[] = {
      "{}",
      R"({"a":1})",
      " \t\r\n{\"a\":1} \t\r\n",
      R"({"name":"Arduino Sensor 1","location":{"floor":1},"tags":[1,"x",null,true]})",
      R"({"unicode":"caf\u00e9 \u20ac \ud83d\ude00"})",
      "{\"utf8\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}",
  };
  for (const std::string_view text : accepted) {
    CAPTURE(text);
    const auto parsed = parse_json_object(text);
    REQUIRE(parsed.ok());
    CHECK(parsed.value().is_object());
  }
  CHECK(parse_json_object(R"({"a":1})").value()["a"] == 1);
}

TEST_CASE("parse_json_object: empty, invalid and non-object bodies are malformed") {
  struct Row {
    std::string_view body;
    std::string_view why;
  };
  const Row table[] = {
      {"", "empty"},
      {" ", "space only"},
      {" \t\r\n ", "whitespace only"},
      {"{", "unterminated"},
      {R"({"a":1)", "unterminated"},
      {R"({"a":})", "missing value"},
      {R"({"a":1,})", "trailing comma"},
      {R"({'a':1})", "single quotes"},
      {R"({a:1})", "unquoted key"},
      {R"({"a":1} x)", "trailing garbage"},
      {R"({"a":1}{})", "two documents"},
      {R"({"a":NaN})", "NaN"},
      {"{\"a\":1} // comment", "comment"},
      {"[]", "array"},
      {R"([{"a":1}])", "array of objects"},
      {"42", "number"},
      {R"("text")", "string"},
      {"true", "boolean"},
      {"null", "null"},
      {"\v{}", "vertical tab is not JSON whitespace"},
  };
  for (const Row& row : table) {
    CAPTURE(row.why);
    const auto parsed = parse_json_object(row.body);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.error().kind == ErrorKind::malformed);
    CHECK(parsed.error().field.empty());
    CHECK_FALSE(parsed.error().detail.empty());
  }
}

TEST_CASE("parse_json_object: nesting depth 32 is accepted, 33 rejected") {
  CHECK(parse_json_object(nested_objects(1, "1")).ok());
  CHECK(parse_json_object(nested_objects(31, "1")).ok());
  CHECK(parse_json_object(nested_objects(32, "1")).ok());
  CHECK(parse_json_object(nested_objects(32, R"("deep")")).ok());

  const auto too_deep = parse_json_object(nested_objects(33, "1"));
  REQUIRE_FALSE(too_deep.ok());
  CHECK(too_deep.error().kind == ErrorKind::malformed);
  CHECK(too_deep.error().detail.find("32") != std::string::npos);

  CHECK_FALSE(parse_json_object(nested_objects(34, "{}")).ok());
  CHECK_FALSE(parse_json_object(nested_objects(1000, "1")).ok());
}

TEST_CASE("parse_json_object: arrays count as levels too") {
  CHECK(parse_json_object(object_with_nested_arrays(31)).ok());  // 32 levels
  const auto too_deep = parse_json_object(object_with_nested_arrays(32));  // 33 levels
  REQUIRE_FALSE(too_deep.ok());
  CHECK(too_deep.error().kind == ErrorKind::malformed);
  CHECK(parse_json_object(object_with_nested_arrays(20000)).error().kind == ErrorKind::malformed);  // 40 KB deep
}

TEST_CASE("parse_json_object: 64 KiB is the exact limit") {
  REQUIRE(max_body_bytes == 65536);
  const std::string at_limit = object_of_size(max_body_bytes);
  REQUIRE(at_limit.size() == 65536);
  CHECK(parse_json_object(at_limit).ok());

  const std::string over = object_of_size(max_body_bytes + 1);
  REQUIRE(over.size() == 65537);
  const auto rejected = parse_json_object(over);
  REQUIRE_FALSE(rejected.ok());
  CHECK(rejected.error().kind == ErrorKind::too_large);

  // Size is checked before anything else: oversized garbage or whitespace is too_large.
  CHECK(parse_json_object(std::string(65537, '!')).error().kind == ErrorKind::too_large);
  CHECK(parse_json_object(std::string(65537, ' ')).error().kind == ErrorKind::too_large);
  // Whitespace padding to exactly the limit is fine.
  CHECK(parse_json_object("{}" + std::string(65534, ' ')).ok());
}

TEST_CASE("parse_json_object: invalid UTF-8 is malformed") {
  const std::string_view rejected[] = {
      "{\"a\":\"\xff\"}",              // never valid in UTF-8
      "{\"a\":\"\x80\"}",              // lone continuation byte
      "{\"a\":\"\xc3\"}",              // truncated two-byte sequence
      "{\"a\":\"\xe2\x82\"}",          // truncated three-byte sequence
      "{\"a\":\"\xc0\xaf\"}",          // overlong '/'
      "{\"a\":\"\xed\xa0\x80\"}",      // UTF-16 surrogate encoded in UTF-8
      "{\"a\":\"\xf4\x90\x80\x80\"}",  // beyond U+10FFFF
      "{\"\xfe\":1}",                  // in a key
  };
  for (const std::string_view text : rejected) {
    CAPTURE(text);
    const auto parsed = parse_json_object(text);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.error().kind == ErrorKind::malformed);
  }
}

TEST_CASE("error_code names every kind") {
  CHECK(error_code(ErrorKind::malformed) == "malformed_json");
  CHECK(error_code(ErrorKind::invalid_field) == "invalid_field");
  CHECK(error_code(ErrorKind::not_found) == "not_found");
  CHECK(error_code(ErrorKind::conflict) == "conflict");
  CHECK(error_code(ErrorKind::too_large) == "payload_too_large");
  CHECK(error_code(ErrorKind::unavailable) == "unavailable");
  CHECK(error_code(ErrorKind::unauthorized) == "unauthorized");
  CHECK(error_code(ErrorKind::forbidden) == "forbidden");
  CHECK(error_code(ErrorKind::internal) == "internal_error");
}

TEST_CASE("parse_json_object: at most 1024 object members in all") {
  auto members = [](int n, bool nested) {
    std::string body = nested ? "{\"m\":{" : "{";
    for (int i = 0; i < n - (nested ? 1 : 0); ++i) body += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":1";
    return body + (nested ? "}}" : "}");
  };
  CHECK(parse_json_object(members(max_json_members, false)).ok());
  CHECK(parse_json_object(members(max_json_members, true)).ok());
  const auto over = parse_json_object(members(max_json_members + 1, false));
  REQUIRE_FALSE(over.ok());
  CHECK(over.error().kind == ErrorKind::malformed);
  CHECK_FALSE(parse_json_object(members(max_json_members + 1, true)).ok());
}

TEST_CASE("is_valid_utf8: RFC 3629 table") {
  struct Case { std::string text; bool valid; };
  const Case cases[] = {
      {"", true}, {"ascii", true}, {"caf\xc3\xa9", true}, {"\xe2\x82\xac", true}, {"\xf0\x9f\x98\x80", true},
      {"\xef\xbf\xbf", true}, {"\xf4\x8f\xbf\xbf", true},                        // U+FFFF, U+10FFFF
      {"\xff", false}, {"\xfe", false}, {"\x80", false}, {"\xc3", false},          // stray, truncated
      {"\xc0\xaf", false}, {"\xe0\x80\xaf", false}, {"\xf0\x80\x80\xaf", false},  // overlong '/'
      {"\xed\xa0\x80", false},                                                    // surrogate U+D800
      {"\xf4\x90\x80\x80", false},                                               // past U+10FFFF
      {"ab\xe2\x82", false}, {"\xe2\x28\xa1", false},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    CHECK(is_valid_utf8(c.text) == c.valid);
  }
}

TEST_CASE("is_blank: ASCII and Unicode spaces and invisible characters") {
  CHECK(is_blank(""));
  CHECK(is_blank(" \t "));
  CHECK(is_blank("\xc2\xa0"));            // U+00A0
  CHECK(is_blank("\xe2\x80\x8b"));        // U+200B zero width space
  CHECK(is_blank("\xe3\x80\x80 \xef\xbb\xbf"));  // U+3000, U+FEFF
  CHECK(is_blank("\xe2\x80\xaf\xe2\x80\xaf\xe1\xa0\x8e"));  // U+202F U+202F U+180E (found by tools/fuzz-service)
  CHECK(is_blank("\xe2\x80\x80\xe1\xa0\x8e"));  // U+2000 U+180E
  CHECK_FALSE(is_blank(" a "));
  CHECK_FALSE(is_blank("\xc3\xa9"));
}

TEST_CASE("check_text: UTF-8, control characters and length, naming the field") {
  CHECK_FALSE(check_text("device_type", "esp32", 64));
  const auto bad_utf8 = check_text("device_type", "\xff", 64);
  REQUIRE(bad_utf8);
  CHECK(bad_utf8->kind == ErrorKind::invalid_field);
  CHECK(bad_utf8->field == "device_type");
  CHECK(check_text("q", "a\nb", 64));
  CHECK(check_text("q", std::string(65, 'a'), 64));
  CHECK_FALSE(check_text("q", std::string(64, 'a'), 64));
}

TEST_CASE("IPv4 table") {
  const std::string_view valid[] = {"0.0.0.0", "255.255.255.255", "192.168.1.100", "10.0.0.1", "1.2.3.4", "127.0.0.1",
                         "100.64.0.0"};
  for (const std::string_view text : valid) {
    CAPTURE(text);
    CHECK(is_valid_ipv4(text));
    CHECK(is_valid_ip(text));
    CHECK_FALSE(is_valid_ipv6(text));
  }
  const std::string_view invalid[] = {
      "",           "1.2.3",       "1.2.3.4.5",   "256.1.1.1",   "1.2.3.256", "1.2.3.04",
      "01.2.3.4",   "00.1.1.1",    "000.0.0.0",   "1..3.4",      ".1.2.3",    "1.2.3.4.",
      "1.2.3.",     "1.2.3.a",     " 1.2.3.4",    "1.2.3.4 ",    "1.2.3.4/24", "1.2.3.4:80",
      "1234.1.1.1", "0x1.2.3.4",   "+1.2.3.4",    "1.2.3.4\n",   "...",       "localhost",
      "999.999.999.999",
  };
  for (const std::string_view text : invalid) {
    CAPTURE(text);
    CHECK_FALSE(is_valid_ipv4(text));
    CHECK_FALSE(is_valid_ip(text));
  }
}

TEST_CASE("IPv6 table") {
  const std::string_view valid[] = {
      "::",
      "::1",
      "1::",
      "fe80::1",
      "2001:db8::8a2e:370:7334",
      "2001:0db8:0000:0000:0000:ff00:0042:8329",
      "2001:DB8::8A2E:370:7334",
      "1:2:3:4:5:6:7:8",
      "1:2:3:4:5:6:7::",
      "::2:3:4:5:6:7:8",
      "1::8",
      "0000:0000::0001",
      "::ffff:192.168.1.1",          // embedded IPv4
      "::1.2.3.4",
      "64:ff9b::192.0.2.33",
      "1:2:3:4:5:6:1.2.3.4",         // six groups plus IPv4 fill all eight
      "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",  // the longest form, 45 characters
  };
  for (const std::string_view text : valid) {
    CAPTURE(text);
    CHECK(is_valid_ipv6(text));
    CHECK(is_valid_ip(text));
  }
  const std::string_view invalid[] = {
      "",
      ":",
      ":::",
      "1::2::3",                 // two '::'
      "::1::",
      "1:::2",
      "1:2:3:4:5:6:7:8:9",       // too many groups
      "1:2:3:4:5:6:7:8::",       // eight groups and '::'
      "::1:2:3:4:5:6:7:8",
      "1:2:3:4:5:6:7",           // too few groups without '::'
      "1:2:3:4:5:6:7:",          // trailing colon
      "1::2:",
      ":1:2:3:4:5:6:7",          // leading single colon
      ":1::",
      "12345::",                 // group of five digits
      "g::1",                    // not hex
      "1:2:3:4:5:6:7:1.2.3.4",   // IPv4 makes nine groups
      "::ffff:256.1.1.1",        // bad embedded IPv4
      "::ffff:01.2.3.4",         // leading zero in embedded IPv4
      "::ffff:1.2.3",
      "::1.2.3.4:5",             // IPv4 not last
      "fe80::1%eth0",            // zone ids are not addresses
      "[::1]",
      " ::1",
      "::1 ",
      "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.2550",  // 46 characters
  };
  for (const std::string_view text : invalid) {
    CAPTURE(text);
    CHECK_FALSE(is_valid_ipv6(text));
    CHECK_FALSE(is_valid_ip(text));
  }
}

TEST_CASE("IP addresses through inet_pton: what it needs from us and what it decides") {
  using namespace std::string_view_literals;
  // inet_pton reads a C string: a NUL inside the text must not cut it short.
  CHECK_FALSE(is_valid_ip("1.2.3.4\0"sv));
  CHECK_FALSE(is_valid_ip("1.2.3.4\0garbage"sv));
  CHECK_FALSE(is_valid_ip("::1\0"sv));
  CHECK_FALSE(is_valid_ip("\0"sv));
  // The text is copied, not read past its end.
  const std::string_view longer = "10.0.0.12";
  CHECK(is_valid_ipv4(longer.substr(0, 8)));   // "10.0.0.1"
  CHECK_FALSE(is_valid_ipv4(longer.substr(0, 5)));  // "10.0."
  CHECK(is_valid_ipv6(std::string_view("::1:2", 3)));  // "::1"
  // 45 characters is the longest address; longer text is refused, whatever its length.
  CHECK(is_valid_ipv6("0000:0000:0000:0000:0000:ffff:192.168.100.200"));
  CHECK_FALSE(is_valid_ipv6("0000:0000:0000:0000:0000:ffff:192.168.100.200 "));
  CHECK_FALSE(is_valid_ip(std::string(4096, '1')));
  CHECK_FALSE(is_valid_ip("::" + std::string(4096, '1')));
  // Zone ids are refused in every spelling: a device reports an address, not an interface.
  for (const std::string_view scoped : {"fe80::1%eth0", "fe80::1%1", "fe80::1%", "::1%lo", "1.2.3.4%eth0"}) {
    CAPTURE(scoped);
    CHECK_FALSE(is_valid_ip(scoped));
  }
  // Leading zeros: refused in an IPv4 octet (glibc), allowed in an IPv6 group.
  CHECK_FALSE(is_valid_ipv4("192.168.001.1"));
  CHECK(is_valid_ipv6("fe80:0000::0001"));
  // The IPv4 shorthands some parsers take (inet_aton) are not addresses here.
  for (const std::string_view shorthand : {"127.1", "1", "0x7f.0.0.1", "017.0.0.1", "4294967295"}) {
    CAPTURE(shorthand);
    CHECK_FALSE(is_valid_ipv4(shorthand));
  }
}

TEST_CASE("has_control_characters: below U+0020 and DEL") {
  struct Row {
    std::string_view text;
    bool expected;
  };
  const Row table[] = {
      {"", false},
      {"abc", false},
      {" ", false},
      {"~", false},
      {"AA:BB:CC:DD:EE:FF", false},
      {"caf\xc3\xa9", false},  // UTF-8 bytes >= 0x80 are not control characters
      {"\xf0\x9f\x98\x80", false},
      {"\t", true},
      {"a\nb", true},
      {"\r", true},
      {"a\x01", true},
      {"\x1f", true},
      {"\x7f", true},
      {std::string_view("a\0b", 3), true},
  };
  for (const Row& row : table) {
    CAPTURE(row.text);
    CHECK(has_control_characters(row.text) == row.expected);
  }
}

TEST_CASE("utf8_length counts code points") {
  CHECK(utf8_length("") == 0);
  CHECK(utf8_length("abc") == 3);
  CHECK(utf8_length("\xc3\xa9") == 1);              // é
  CHECK(utf8_length("\xe2\x82\xac") == 1);          // €
  CHECK(utf8_length("\xf0\x9f\x98\x80") == 1);      // 😀
  CHECK(utf8_length("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80") == 4);
}

TEST_CASE("required_string") {
  const Json doc = body(R"({"ok":"Sensor 1","num":5,"nul":null,"empty":"","blank":" \t ","obj":{},"arr":[],
                           "ctl":"a\nb","del":"a\u007fb","bool":true})");
  const auto ok = required_string(doc, "ok", 200);
  REQUIRE(ok.ok());
  CHECK(ok.value() == "Sensor 1");

  struct Row {
    std::string_view field;
    std::string_view detail_part;
  };
  const Row table[] = {
      {"missing", "is required"},   {"nul", "is required"},       {"num", "must be a string"},
      {"obj", "must be a string"},  {"arr", "must be a string"},  {"bool", "must be a string"},
      {"empty", "must not be empty"}, {"blank", "must not be empty"}, {"ctl", "control characters"},
      {"del", "control characters"},
  };
  for (const Row& row : table) {
    CAPTURE(row.field);
    const auto result = required_string(doc, row.field, 200);
    REQUIRE_FALSE(result.ok());
    CHECK(result.error().kind == ErrorKind::invalid_field);
    CHECK(result.error().field == row.field);
    CHECK(result.error().detail.find(row.field) != std::string::npos);
    CHECK(result.error().detail.find(row.detail_part) != std::string::npos);
  }
}

TEST_CASE("string limits count code points, not bytes") {
  std::string accents;
  for (int i = 0; i < 10; ++i) accents += "\xc3\xa9";  // 10 code points, 20 bytes
  Json doc = Json::object();
  doc["ten"] = accents;
  doc["eleven"] = accents + "x";
  CHECK(required_string(doc, "ten", 10).ok());
  const auto too_long = required_string(doc, "eleven", 10);
  REQUIRE_FALSE(too_long.ok());
  CHECK(too_long.error().field == "eleven");
  CHECK(too_long.error().detail.find("longer than 10") != std::string::npos);
  CHECK(optional_string(doc, "ten", 10).ok());
  CHECK_FALSE(optional_string(doc, "eleven", 10).ok());
}

TEST_CASE("optional_string") {
  const Json doc = body(R"({"v":"1.0.0","nul":null,"empty":"","num":1,"ctl":"a\tb"})");
  const auto present = optional_string(doc, "v", 64);
  REQUIRE(present.ok());
  REQUIRE(present.value().has_value());
  CHECK(*present.value() == "1.0.0");

  const auto absent = optional_string(doc, "missing", 64);
  REQUIRE(absent.ok());
  CHECK_FALSE(absent.value().has_value());

  const auto null_value = optional_string(doc, "nul", 64);
  REQUIRE(null_value.ok());
  CHECK_FALSE(null_value.value().has_value());

  const auto empty = optional_string(doc, "empty", 64);
  REQUIRE(empty.ok());
  CHECK(empty.value() == std::optional<std::string>{""});

  CHECK(optional_string(doc, "num", 64).error().field == "num");
  CHECK(optional_string(doc, "ctl", 64).error().field == "ctl");
}

TEST_CASE("optional_object: objects only, and no NUL anywhere inside") {
  const Json doc = body(R"({
    "obj": {"building": "Main", "floor": 1, "tags": ["a", {"b": "c"}]},
    "empty": {},
    "nul": null,
    "arr": [1],
    "str": "x",
    "num": 1,
    "nul_in_value": {"a": "x\u0000y"},
    "nul_in_key": {"a\u0000b": 1},
    "nul_in_array": {"a": ["ok", "x\u0000"]},
    "nul_deep": {"a": {"b": {"c": [{"d": "\u0000"}]}}}
  })");
  const auto obj = optional_object(doc, "obj");
  REQUIRE(obj.ok());
  CHECK(obj.value()["building"] == "Main");
  CHECK(optional_object(doc, "empty").value() == Json::object());
  CHECK(optional_object(doc, "missing").value().is_null());
  CHECK(optional_object(doc, "nul").value().is_null());

  for (const std::string_view field : {"arr", "str", "num"}) {
    CAPTURE(field);
    const auto result = optional_object(doc, field);
    REQUIRE_FALSE(result.ok());
    CHECK(result.error().kind == ErrorKind::invalid_field);
    CHECK(result.error().field == field);
    CHECK(result.error().detail.find("JSON object") != std::string::npos);
  }
  for (const std::string_view field : {"nul_in_value", "nul_in_key", "nul_in_array", "nul_deep"}) {
    CAPTURE(field);
    const auto result = optional_object(doc, field);
    REQUIRE_FALSE(result.ok());
    CHECK(result.error().field == field);
    CHECK(result.error().detail.find("NUL") != std::string::npos);
  }
}

}  // TEST_SUITE
