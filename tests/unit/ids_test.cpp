// Tests of core/ids: device ids parsed from the canonical 8-4-4-4-12 UUID form (any
// case), printed in lower case, compared and hashed.
#include "unit_test.hpp"

#include <unordered_set>

#include "core/ids.hpp"

using namespace maestra::core;
using namespace maestra::core::unit;

TEST_SUITE("ids") {

TEST_CASE("parse_device_id reads the bytes in order") {
  const auto id = parse_device_id("00112233-4455-6677-8899-aabbccddeeff");
  REQUIRE(id);
  for (std::size_t i = 0; i < 16; ++i) {
    CAPTURE(i);
    CHECK(id->bytes[i] == static_cast<std::uint8_t>(i * 0x11));
  }
}

TEST_CASE("to_string prints lower case 8-4-4-4-12 and round-trips") {
  const std::string_view samples[] = {"123e4567-e89b-12d3-a456-426614174000", "00000000-0000-0000-0000-000000000000",
                           "ffffffff-ffff-ffff-ffff-ffffffffffff", "00112233-4455-6677-8899-aabbccddeeff"};
  for (const std::string_view text : samples) {
    CAPTURE(text);
    const auto id = parse_device_id(text);
    REQUIRE(id);
    CHECK(id->to_string() == text);
  }
}

TEST_CASE("upper and mixed case parse to the same id, printed in lower case") {
  const auto lower = parse_device_id("123e4567-e89b-12d3-a456-426614174000");
  const auto upper = parse_device_id("123E4567-E89B-12D3-A456-426614174000");
  const auto mixed = parse_device_id("123e4567-E89b-12D3-a456-426614174000");
  REQUIRE(lower);
  REQUIRE(upper);
  REQUIRE(mixed);
  CHECK(*lower == *upper);
  CHECK(*lower == *mixed);
  CHECK(upper->to_string() == "123e4567-e89b-12d3-a456-426614174000");
}

TEST_CASE("parse_device_id rejects anything but the canonical form") {
  const std::string_view rejected[] = {
      "",
      "123e4567-e89b-12d3-a456-42661417400",     // 35 characters
      "123e4567-e89b-12d3-a456-4266141740000",   // 37 characters
      "123e4567e89b12d3a456426614174000",        // no hyphens
      "123e4567-e89b-12d3-a4564-26614174000",    // hyphen moved
      "123e4567-e89b-12d3-a456_426614174000",    // underscore for hyphen
      "123e4567-e89b-12d3-a456-42661417400g",    // not hex
      "{23e4567-e89b-12d3-a456-42661417400}",    // braces
      " 23e4567-e89b-12d3-a456-426614174000",    // leading space
      "123e4567-e89b-12d3-a456-42661417400 ",    // trailing space
      "urn:uuid:123e4567-e89b-12d3-a456-426614174000",
      "+23e4567-e89b-12d3-a456-426614174000",
      "123e4567-e89b-12d3-a456--26614174000",
      "------------------------------------",
  };
  for (const std::string_view text : rejected) {
    CAPTURE(text);
    CHECK_FALSE(parse_device_id(text).has_value());
  }
}

TEST_CASE("ids compare by value and hash consistently") {
  const DeviceId a = id_from("123e4567-e89b-12d3-a456-426614174000");
  const DeviceId a_again = id_from("123E4567-E89B-12D3-A456-426614174000");
  const DeviceId b = id_from("123e4567-e89b-12d3-a456-426614174001");
  CHECK(a == a_again);
  CHECK(a != b);
  CHECK(a < b);
  CHECK(DeviceIdHash{}(a) == DeviceIdHash{}(a_again));

  std::unordered_set<DeviceId, DeviceIdHash> set{a, a_again, b};
  CHECK(set.size() == 2);
  CHECK(set.count(b) == 1);
}

TEST_CASE("a default DeviceId is the nil UUID") {
  CHECK(DeviceId{}.to_string() == "00000000-0000-0000-0000-000000000000");
}

}  // TEST_SUITE
