// Unit tests of option parsing and checking: defaults, both value spellings,
// the errors a user sees, and the --http URL split. Table-driven where it helps.
#include "options.hpp"

#include <doctest/doctest.h>

using namespace fleet_sim;

TEST_CASE("defaults") {
  const auto parsed = parse_options({});
  REQUIRE(parsed.error.empty());
  const SimOptions& options = parsed.options;
  CHECK(options.host == "127.0.0.1");
  CHECK(options.port == 1883);
  CHECK(options.prefix == "maestra");
  CHECK(options.qos == 1);
  CHECK(options.connect_rate == 2000);
  CHECK(options.register_mode == RegisterMode::http);
  CHECK_FALSE(options.rate);
  CHECK_FALSE(options.subscriber_mode());
}

TEST_CASE("values as separate arguments or after '='") {
  const auto parsed = parse_options({"--devices", "10000", "--rate=0", "--qos", "0", "--register=none", "--quiet",
                                     "--kill-fraction", "0.1", "--kill-after", "5", "--duration", "20"});
  REQUIRE(parsed.error.empty());
  CHECK(parsed.options.devices == 10000);
  CHECK(parsed.options.devices_given);
  REQUIRE(parsed.options.rate);
  CHECK(*parsed.options.rate == 0);
  CHECK(parsed.options.qos == 0);
  CHECK(parsed.options.register_mode == RegisterMode::none);
  CHECK(parsed.options.quiet);
  CHECK(parsed.options.kill_fraction == doctest::Approx(0.1));
}

TEST_CASE("subscriber mode with several filters") {
  const auto parsed =
      parse_options({"--subscribe", "maestra/devices/+/status", "--subscribe", "maestra/fleet/#", "--print-arrivals"});
  REQUIRE(parsed.error.empty());
  CHECK(parsed.options.subscriber_mode());
  CHECK(parsed.options.subscribe_filters.size() == 2);
  CHECK(parsed.options.print_arrivals);
}

TEST_CASE("errors name the option") {
  struct Case {
    std::vector<std::string> arguments;
    std::string expected_fragment;
  };
  const std::vector<Case> cases = {
      {{"--bogus"}, "unknown option --bogus"},
      {{"devices"}, "unexpected argument"},
      {{"--devices"}, "--devices needs a value"},
      {{"--devices", "0"}, "--devices must be between 1"},
      {{"--devices", "12x"}, "--devices expects a whole number"},
      {{"--qos", "2"}, "--qos must be between 0 and 1"},
      {{"--register", "carrier-pigeon"}, "--register expects http, mqtt or none"},
      {{"--quiet=yes"}, "--quiet takes no value"},
      {{"--rate", "100", "--interval-ms", "1000"}, "either --interval-ms or --rate"},
      {{"--prefix", "a/+/b"}, "--prefix"},
      {{"--prefix", "$SYS"}, "--prefix"},
      {{"--run-id", "a/b"}, "--run-id"},
      {{"--http", "https://example:8080"}, "--http must look like"},
      {{"--kill-fraction", "1.5"}, "--kill-fraction must be between 0 and 1"},
      {{"--kill-fraction", "0.5", "--kill-after", "30", "--duration", "20"}, "--kill-after must be shorter"},
      {{"--password", "secret"}, "--password needs --username"},
  };
  for (const auto& test_case : cases) {
    CAPTURE(test_case.expected_fragment);
    const auto parsed = parse_options(test_case.arguments);
    CHECK(parsed.error.find(test_case.expected_fragment) != std::string::npos);
  }
}

TEST_CASE("--help stops checking and lists every option with defaults") {
  const auto parsed = parse_options({"--rate", "1", "--interval-ms", "5", "--help"});
  CHECK(parsed.options.help);
  CHECK(parsed.error.empty());
  const std::string text = help_text();
  for (const char* name : {"--host",           "--port",       "--http",        "--prefix",
                           "--devices",        "--register",   "--qos",         "--interval-ms",
                           "--rate",           "--duration",   "--count",       "--connect-rate",
                           "--kill-fraction",  "--kill-after", "--keepalive",   "--client-id-prefix",
                           "--ids-file",       "--write-ids",  "--killed-file", "--subscribe",
                           "--print-arrivals", "--quiet",      "--help"}) {
    CAPTURE(name);
    CHECK(text.find(name) != std::string::npos);
  }
  CHECK(text.find("[default: 2000]") != std::string::npos);
  CHECK(text.find("[default: maestra]") != std::string::npos);
}

TEST_CASE("--http URLs") {
  const auto plain = parse_http_url("http://127.0.0.1:8080");
  REQUIRE(plain);
  CHECK(plain->host == "127.0.0.1");
  CHECK(plain->port == 8080);
  CHECK(plain->base_path.empty());
  const auto with_path = parse_http_url("http://fleet.local/api/");
  REQUIRE(with_path);
  CHECK(with_path->host == "fleet.local");
  CHECK(with_path->port == 80);
  CHECK(with_path->base_path == "/api");
  CHECK_FALSE(parse_http_url("127.0.0.1:8080"));
  CHECK_FALSE(parse_http_url("http://:8080"));
  CHECK_FALSE(parse_http_url("http://host:99999"));
}

TEST_CASE("user name placeholder") {
  SimOptions options;
  CHECK_FALSE(mqtt_username(options, "abc"));
  options.username = "dev-{id}-{id}";
  CHECK(mqtt_username(options, "abc") == "dev-abc-abc");
  options.username = "{id}";
  CHECK(mqtt_username(options, "{id}x") == "{id}x");
}

TEST_CASE("--telemetry-metrics: telemetry messages of N metrics instead of heartbeats") {
  const auto parsed = parse_options({"--telemetry-metrics", "3", "--rate", "1000"});
  REQUIRE(parsed.error.empty());
  CHECK(parsed.options.telemetry_metrics == 3);
  CHECK(telemetry_payload(3) == R"({"m0":0.5,"m1":1.5,"m2":2.5})");
  CHECK(telemetry_payload(1) == R"({"m0":0.5})");
  CHECK(!parse_options({"--telemetry-metrics", "101"}).error.empty());
  CHECK(!parse_options({"--telemetry-metrics", "2", "--payload", "{}"}).error.empty());
}

TEST_CASE("answering commands: off by default, a delay and a failure rate within bounds") {
  CHECK_FALSE(parse_options({}).options.answer_commands);
  const auto parsed = parse_options({"--answer-commands", "--answer-delay-ms", "250", "--answer-fail-rate=0.25"});
  REQUIRE(parsed.error.empty());
  CHECK(parsed.options.answer_commands);
  CHECK(parsed.options.answer_delay_ms == 250);
  CHECK(parsed.options.answer_fail_rate == doctest::Approx(0.25));
  CHECK_FALSE(parse_options({"--answer-fail-rate", "1.5"}).error.empty());
  CHECK_FALSE(parse_options({"--answer-delay-ms", "-1"}).error.empty());
  CHECK(help_text().find("--answer-commands") != std::string::npos);
}
