// Unit tests of the pure pieces around the wire: device names and ids,
// registration replies (HTTP and MQTT forms), the rate budget with stepped
// time, and the progress/summary lines a benchmark parses.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "device_ids.hpp"
#include "progress.hpp"
#include "rate_budget.hpp"
#include "registration.hpp"

using namespace fleet_sim;

TEST_CASE("device names and hardware ids count from 1") {
  CHECK(device_name(0) == "sim-1");
  CHECK(hardware_id("bench", 41) == "sim-bench-42");
}

TEST_CASE("generated ids are stable, distinct version-4 UUIDs") {
  const std::string first = generated_device_id("1", 0);
  CHECK(looks_like_uuid(first));
  CHECK(first[14] == '4');
  CHECK(first == generated_device_id("1", 0));
  CHECK(first != generated_device_id("1", 1));
  CHECK(first != generated_device_id("2", 0));
  CHECK_FALSE(looks_like_uuid("123e4567-e89b-12d3-a456-42661417400"));
  CHECK_FALSE(looks_like_uuid("123e4567xe89b-12d3-a456-426614174000"));
  CHECK(looks_like_uuid("123E4567-E89B-12D3-A456-426614174000"));
}

TEST_CASE("registration body") {
  const auto body = nlohmann::json::parse(registration_body("sim-1", "simulator", "sim-1-1"));
  CHECK(body == nlohmann::json{{"name", "sim-1"}, {"device_type", "simulator"}, {"hardware_id", "sim-1-1"}});
}

TEST_CASE("registration replies") {
  const auto created = parse_registration_reply(R"({"id":"abc","name":"sim-1"})", 201);
  CHECK(created.id == "abc");
  CHECK_FALSE(created.existing);

  const auto conflict = parse_registration_reply(R"({"error":"conflict","detail":"dup","id":"abc"})", 409);
  CHECK(conflict.id == "abc");
  CHECK(conflict.existing);

  const auto over_mqtt = parse_registration_reply(R"({"error":"conflict","id":"abc"})", 0);
  CHECK(over_mqtt.existing);

  const auto invalid = parse_registration_reply(R"({"error":"invalid_field","detail":"name is required"})", 422);
  CHECK(invalid.id.empty());
  CHECK(invalid.error == "HTTP 422: invalid_field (name is required)");

  CHECK(parse_registration_reply("not json", 201).error.find("not a JSON object") != std::string::npos);
  CHECK(parse_registration_reply(R"({"name":"x"})", 0).error.find("no \"id\"") != std::string::npos);
  CHECK(parse_registration_reply(R"({"id":"abc"})", 500).id.empty());
}

TEST_CASE("tally counts new, existing and failed") {
  RegistrationTally tally;
  tally.ids.assign(3, "");
  tally.record(0, {"a", false, ""});
  tally.record(1, {"b", true, ""});
  tally.record(2, {"", false, "boom"});
  CHECK(tally.created == 1);
  CHECK(tally.existing == 1);
  CHECK(tally.failed == 1);
  CHECK(tally.first_error == "boom");
  CHECK(tally.ids == std::vector<std::string>{"a", "b", ""});
}

TEST_CASE("rate budget: tokens accrue with time, capped at the burst") {
  const TimePoint t0{};
  RateBudget budget(1000, 50);
  budget.start(t0);
  CHECK(budget.available(t0) == 1);
  budget.spend(1);
  CHECK(budget.available(t0) == 0);
  CHECK(budget.time_to_next_token() > std::chrono::microseconds(990));
  CHECK(budget.available(t0 + std::chrono::milliseconds(10)) == 10);
  budget.spend(10);
  CHECK(budget.available(t0 + std::chrono::seconds(5)) == 50);
}

TEST_CASE("progress line and summaries") {
  FleetCounters before;
  before.sent = 1000;
  before.acked = 900;
  FleetCounters now = before;
  now.connected = 10;
  now.sent = 3000;
  now.acked = 2900;
  CHECK(progress_line(2.0, now, before, 2.0) ==
        "elapsed=2.0 connected=10 sent=3000 sent/s=1000 acked=2900 acked/s=1000 errors=0");

  FleetSummary summary;
  summary.counters = now;
  summary.counters.connected_max = 10;
  summary.duration_s = 4;
  const auto json = nlohmann::json::parse(fleet_summary_json(summary));
  CHECK(json["sent"] == 3000);
  CHECK(json["acked"] == 2900);
  CHECK(json["connected_max"] == 10);
  CHECK(json["duration_s"] == 4.0);
  CHECK(json["rate_sent"] == 750.0);
  CHECK(json["rate_acked"] == 725.0);

  const auto kill = nlohmann::json::parse(kill_event_json(1700000000123, {"a", "b"}, "", 1.5));
  CHECK(kill["kill_epoch_ms"] == 1700000000123);
  CHECK(kill["ids"] == nlohmann::json::array({"a", "b"}));
  const auto kill_to_file = nlohmann::json::parse(kill_event_json(1, {"a"}, "/tmp/k", 0));
  CHECK(kill_to_file["killed_file"] == "/tmp/k");
  CHECK_FALSE(kill_to_file.contains("ids"));

  SubscriberSummary subscriber;
  subscriber.received = 500;
  subscriber.duration_s = 5;
  subscriber.first_epoch_ms = 1000;
  subscriber.last_epoch_ms = 3000;
  const auto sub = nlohmann::json::parse(subscriber_summary_json(subscriber));
  CHECK(sub["received"] == 500);
  CHECK(sub["rate"] == 100.0);
  CHECK(sub["active_rate"] == 250.0);
}
