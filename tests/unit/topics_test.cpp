// Tests of core/topics: topic names built from the prefix (one or several levels),
// parsing of each device-facing kind, wrong prefixes and extra levels, and the
// topic-level and topic-prefix checks.
#include "unit_test.hpp"

#include <string>

#include "core/topics.hpp"

using namespace maestra::core;
using namespace maestra::core::unit;

namespace {
const char* const uuid_text = "123e4567-e89b-12d3-a456-426614174000";
}  // namespace

TEST_SUITE("topics") {

TEST_CASE("names under the default prefix match docs/protocol.md") {
  const Topics topics("maestra");
  const DeviceId id = id_from(uuid_text);
  CHECK(topics.prefix() == "maestra");
  CHECK(topics.heartbeat(id) == "maestra/devices/123e4567-e89b-12d3-a456-426614174000/heartbeat");
  CHECK(topics.presence(id) == "maestra/devices/123e4567-e89b-12d3-a456-426614174000/presence");
  CHECK(topics.status(id) == "maestra/devices/123e4567-e89b-12d3-a456-426614174000/status");
  CHECK(topics.register_request("AA:BB:CC:DD:EE:FF") == "maestra/hardware/AA:BB:CC:DD:EE:FF/register");
  CHECK(topics.registration_reply("AA:BB:CC:DD:EE:FF") == "maestra/hardware/AA:BB:CC:DD:EE:FF/registration");
  CHECK(topics.fleet_status() == "maestra/fleet/status");
  CHECK(topics.fleet_summary() == "maestra/fleet/summary");
  CHECK(topics.subscriptions() == std::vector<std::string>{"maestra/devices/+/heartbeat", "maestra/devices/+/presence",
                                                           "maestra/hardware/+/register"});
}

TEST_CASE("names under a multi-level prefix") {
  const Topics topics("site-a/fleet");
  const DeviceId id = id_from(uuid_text);
  CHECK(topics.heartbeat(id) == "site-a/fleet/devices/123e4567-e89b-12d3-a456-426614174000/heartbeat");
  CHECK(topics.fleet_summary() == "site-a/fleet/fleet/summary");
  CHECK(topics.subscriptions().front() == "site-a/fleet/devices/+/heartbeat");
}

TEST_CASE("the id in a topic is always printed in lower case") {
  const Topics topics("maestra");
  const DeviceId id = id_from("123E4567-E89B-12D3-A456-426614174000");
  CHECK(topics.status(id) == "maestra/devices/123e4567-e89b-12d3-a456-426614174000/status");
}

TEST_CASE("parse: each device-facing kind and its level") {
  struct Row {
    std::string_view prefix;
    std::string_view topic;
    Topics::Kind kind;
    std::string_view level;
  };
  const Row table[] = {
      {"maestra", "maestra/devices/123e4567-e89b-12d3-a456-426614174000/heartbeat", Topics::Kind::heartbeat,
       "123e4567-e89b-12d3-a456-426614174000"},
      {"maestra", "maestra/devices/123e4567-e89b-12d3-a456-426614174000/presence", Topics::Kind::presence,
       "123e4567-e89b-12d3-a456-426614174000"},
      {"maestra", "maestra/hardware/AA:BB:CC:DD:EE:FF/register", Topics::Kind::register_request,
       "AA:BB:CC:DD:EE:FF"},
      {"maestra", "maestra/devices/not-a-uuid/heartbeat", Topics::Kind::heartbeat, "not-a-uuid"},  // unvalidated
      {"site/a", "site/a/devices/x/presence", Topics::Kind::presence, "x"},
      {"site/a", "site/a/hardware/serial-42/register", Topics::Kind::register_request, "serial-42"},
  };
  for (const Row& row : table) {
    CAPTURE(row.topic);
    const Topics topics{std::string(row.prefix)};
    const Topics::Parsed parsed = topics.parse(row.topic);
    CHECK(parsed.kind == row.kind);
    CHECK(parsed.level == row.level);
  }
}

TEST_CASE("parse reads back every name the service subscribes to") {
  const Topics topics("maestra");
  const DeviceId id = id_from(uuid_text);
  CHECK(topics.parse(topics.heartbeat(id)).kind == Topics::Kind::heartbeat);
  CHECK(topics.parse(topics.heartbeat(id)).level == uuid_text);
  CHECK(topics.parse(topics.presence(id)).kind == Topics::Kind::presence);
  CHECK(topics.parse(topics.register_request("hw-1")).kind == Topics::Kind::register_request);
  CHECK(topics.parse(topics.register_request("hw-1")).level == "hw-1");
}

TEST_CASE("parse: everything else is `other`") {
  const Topics topics("maestra");
  const std::string_view others[] = {
      "",
      "maestra",
      "maestra/",
      "maestra/devices",
      "maestra/devices/x",
      "maestra/devices/x/",
      "other/devices/x/heartbeat",                  // wrong prefix
      "maestrax/devices/x/heartbeat",               // prefix must end at a level boundary
      "maestr/devices/x/heartbeat",
      "Maestra/devices/x/heartbeat",                // topics are case-sensitive
      "/maestra/devices/x/heartbeat",
      "x/maestra/devices/x/heartbeat",
      "maestra/devices/x/heartbeat/extra",          // extra level after
      "maestra/devices/x/y/heartbeat",              // extra level inside
      "maestra/devices/x/heartbeat/",
      "maestra/devices/x/status",                   // the service's own output
      "maestra/hardware/x/registration",
      "maestra/fleet/status",
      "maestra/fleet/summary",
      "maestra/devices/x/register",                 // kind under the wrong family
      "maestra/hardware/x/heartbeat",
      "maestra/hardware/x/presence",
      "maestra/device/x/heartbeat",
      "maestra/devices/x/Heartbeat",
  };
  for (const std::string_view topic : others) {
    CAPTURE(topic);
    CHECK(topics.parse(topic).kind == Topics::Kind::other);
  }
}

TEST_CASE("parse with a multi-level prefix rejects the single-level one") {
  const Topics topics("site/a");
  CHECK(topics.parse("site/devices/x/heartbeat").kind == Topics::Kind::other);
  CHECK(topics.parse("site/b/devices/x/heartbeat").kind == Topics::Kind::other);
  CHECK(topics.parse("site/a/devices/x/heartbeat").kind == Topics::Kind::heartbeat);
}

TEST_CASE("is_topic_level") {
  struct Row {
    std::string_view text;
    bool expected;
  };
  const Row table[] = {
      {"AA:BB:CC:DD:EE:FF", true},
      {"123e4567-e89b-12d3-a456-426614174000", true},
      {"serial 42", true},
      {"caf\xc3\xa9", true},
      {"$weird", true},
      {"", false},
      {"a/b", false},
      {"/", false},
      {"+", false},
      {"a+", false},
      {"#", false},
      {"a#b", false},
      {std::string_view("a\0b", 3), false},
  };
  for (const Row& row : table) {
    CAPTURE(row.text);
    CHECK(is_topic_level(row.text) == row.expected);
  }
}

TEST_CASE("is_valid_topic_prefix") {
  struct Row {
    std::string_view text;
    bool expected;
  };
  const Row table[] = {
      {"maestra", true},
      {"site-a/maestra", true},
      {"a/b/c", true},
      {"a b", true},
      {"", false},
      {"/maestra", false},
      {"maestra/", false},
      {"a//b", false},
      {"/", false},
      {"$SYS", false},
      {"$share/group", false},
      {"maestra/+", false},
      {"maestra/#", false},
      {"+", false},
      {"#", false},
      {"a+b", false},
      {std::string_view("maestra\0", 8), false},
  };
  for (const Row& row : table) {
    CAPTURE(row.text);
    CHECK(is_valid_topic_prefix(row.text) == row.expected);
  }
}

}  // TEST_SUITE
