// Tests of core/telemetry, table-driven where the rule is a table: the upstream
// HTTP bodies (single and batch, the batch's index in the error's field), the MQTT
// payloads (flat and structured), every refusal (non-numeric, non-finite,
// oversized names, too many metrics, times in the future and past retention, bad
// severity), times as devices send them, telemetry topics, query parameters
// (from/to, bucket, agg, the bucket cap, limit) and partition names.
#include "unit_test.hpp"

#include <map>
#include <string>

#include "core/telemetry.hpp"

using namespace maestra::core;
using namespace maestra::core::unit;

namespace {
const std::string device = "6f1c2a3e-1b2c-4d5e-8f90-123456789abc";
const TimePoint now = t0 + 12h;
const TelemetryLimits limits{};

ParamLookup params(std::map<std::string, std::string> values) {
  return [values = std::move(values)](std::string_view name) -> std::optional<std::string> {
    const auto it = values.find(std::string(name));
    if (it == values.end()) return std::nullopt;
    return it->second;
  };
}

std::string metric_body(std::string_view value, std::string_view extra = "") {
  return R"({"device_id":")" + device + R"(","metric_name":"temperature","metric_value":)" + std::string(value) +
         std::string(extra) + "}";
}
}  // namespace

TEST_CASE("parse_metric_body: the body existing Maestra clients send") {
  const auto p = parse_metric_body(
      R"({"device_id":")" + device +
          R"(","metric_name":"temperature","metric_value":23.5,"unit":"celsius","tags":{"room":"lab"},"time":"2026-02-02T11:59:00.250Z"})",
      now, limits);
  REQUIRE(p);
  CHECK(p->device == id_from(device));
  CHECK(p->name == "temperature");
  CHECK(p->value == 23.5);
  CHECK(p->unit == "celsius");
  CHECK(p->tags == R"({"room":"lab"})");
  CHECK(p->time == t0 + 11h + 59min + 250ms);
}

TEST_CASE("parse_metric_body: time, unit and tags are optional; no time is now") {
  const auto p = parse_metric_body(metric_body("-4"), now, limits);
  REQUIRE(p);
  CHECK(p->value == -4.0);
  CHECK(!p->unit);
  CHECK(!p->tags);
  CHECK(p->time == now);
}

TEST_CASE("parse_metric_body: every refusal names its field") {
  struct Case {
    std::string body;
    ErrorKind kind;
    std::string field;
  };
  const std::string long_name(129, 'n');
  const Case cases[] = {
      {metric_body(R"("23.5")"), ErrorKind::invalid_field, "metric_value"},
      {metric_body("true"), ErrorKind::invalid_field, "metric_value"},
      {metric_body("null"), ErrorKind::invalid_field, "metric_value"},
      {metric_body("[1]"), ErrorKind::invalid_field, "metric_value"},
      {metric_body("1e400"), ErrorKind::malformed, ""},  // out of a double's range: not read as a number
      {metric_body("NaN"), ErrorKind::malformed, ""},                    // not JSON at all
      {metric_body("Infinity"), ErrorKind::malformed, ""},
      {R"({"metric_name":"t","metric_value":1})", ErrorKind::invalid_field, "device_id"},
      {R"({"device_id":"nope","metric_name":"t","metric_value":1})", ErrorKind::invalid_field, "device_id"},
      {R"({"device_id":")" + device + R"(","metric_value":1})", ErrorKind::invalid_field, "metric_name"},
      {R"({"device_id":")" + device + R"(","metric_name":"","metric_value":1})", ErrorKind::invalid_field, "metric_name"},
      {R"({"device_id":")" + device + R"(","metric_name":")" + long_name + R"(","metric_value":1})",
       ErrorKind::invalid_field, "metric_name"},
      {metric_body("1", R"(,"unit":")" + std::string(33, 'u') + "\""), ErrorKind::invalid_field, "unit"},
      {metric_body("1", R"(,"tags":[1])"), ErrorKind::invalid_field, "tags"},
      {metric_body("1", R"(,"tags":{"a":")" + std::string(1100, 'x') + "\"}"), ErrorKind::invalid_field, "tags"},
      {metric_body("1", R"(,"time":"yesterday")"), ErrorKind::invalid_field, "time"},
      {metric_body("1", R"(,"time":"2026-02-02T12:05:00.001Z")"), ErrorKind::invalid_field, "time"},  // > 5 min ahead
      {metric_body("1", R"(,"time":"2025-11-03T11:59:59Z")"), ErrorKind::invalid_field, "time"},      // > 90 days old
      {"[1]", ErrorKind::malformed, ""},
      {"", ErrorKind::malformed, ""},
  };
  for (const auto& c : cases) {
    CAPTURE(c.body.substr(0, 120));
    const auto p = parse_metric_body(c.body, now, limits);
    REQUIRE(!p);
    CHECK(p.error().kind == c.kind);
    CHECK(p.error().field == c.field);
  }
}

TEST_CASE("parse_metric_body: the time limits are inclusive") {
  CHECK(parse_metric_body(metric_body("1", R"(,"time":"2026-02-02T12:05:00.000Z")"), now, limits));
  CHECK(parse_metric_body(metric_body("1", R"(,"time":"2025-11-04T12:00:00.000Z")"), now, limits));
  CHECK(parse_metric_body(R"({"device_id":")" + device + R"(","metric_name":")" + std::string(128, 'n') +
                              R"(","metric_value":1})",
                          now, limits));
}

TEST_CASE("parse_metric_batch: an array of points; one bad point refuses the batch, naming its index") {
  std::string body = "[";
  for (int i = 0; i < 20; ++i) body += (i ? "," : "") + metric_body(std::to_string(i));
  const auto good = parse_metric_batch(body + "]", now, limits);
  REQUIRE(good);
  CHECK(good->size() == 20);
  CHECK(good->at(7).value == 7.0);

  std::string bad = "[";
  for (int i = 0; i < 20; ++i) bad += (i ? "," : "") + metric_body(i == 17 ? R"("x")" : std::to_string(i));
  const auto refused = parse_metric_batch(bad + "]", now, limits);
  REQUIRE(!refused);
  CHECK(refused.error().kind == ErrorKind::invalid_field);
  CHECK(refused.error().field == "[17].metric_value");

  const auto not_object = parse_metric_batch("[" + metric_body("1") + ",3]", now, limits);
  REQUIRE(!not_object);
  CHECK(not_object.error().field == "[1]");
}

TEST_CASE("parse_metric_batch: 1 to 1000 points, a body of at most 1 MiB, an array") {
  std::string body = "[";
  for (int i = 0; i < 1000; ++i) body += (i ? "," : "") + metric_body("1");
  CHECK(parse_metric_batch(body + "]", now, limits));
  const auto too_many = parse_metric_batch(body + "," + metric_body("1") + "]", now, limits);
  REQUIRE(!too_many);
  CHECK(too_many.error().kind == ErrorKind::invalid_field);
  CHECK(!parse_metric_batch("[]", now, limits));
  CHECK(parse_metric_batch("{}", now, limits).error().kind == ErrorKind::malformed);
  const std::string huge = "[" + metric_body("1", R"(,"x":")" + std::string(1024 * 1024, 'a') + "\"") + "]";
  CHECK(parse_metric_batch(huge, now, limits).error().kind == ErrorKind::too_large);
}

TEST_CASE("parse_event_body: the upstream body, severities, and refusals") {
  const auto e = parse_event_body(R"({"device_id":")" + device +
                                      R"(","event_type":"door_opened","severity":"warning","message":"front door","data":{"door":1}})",
                                  now, limits);
  REQUIRE(e);
  CHECK(e->event_type == "door_opened");
  CHECK(e->severity == Severity::warning);
  CHECK(e->message == "front door");
  CHECK(e->data == R"({"door":1})");
  CHECK(e->time == now);

  const auto plain = parse_event_body(R"({"device_id":")" + device + R"(","event_type":"boot"})", now, limits);
  REQUIRE(plain);
  CHECK(plain->severity == Severity::info);
  for (auto s : {"debug", "info", "warning", "error", "critical"}) CHECK(parse_severity(s));

  struct Case {
    std::string extra;
    std::string field;
  };
  const Case cases[] = {
      {R"(,"severity":"fatal")", "severity"},
      {R"(,"severity":3)", "severity"},
      {R"(,"message":")" + std::string(1025, 'm') + "\"", "message"},
      {R"(,"data":"text")", "data"},
      {R"(,"time":"2027-01-01T00:00:00Z")", "time"},
      {R"(,"time":"2026-01-01T00:00:00Z")", "time"},  // events are kept 30 days
  };
  for (const auto& c : cases) {
    CAPTURE(c.extra.substr(0, 80));
    const auto refused =
        parse_event_body(R"({"device_id":")" + device + R"(","event_type":"boot")" + c.extra + "}", now, limits);
    REQUIRE(!refused);
    CHECK(refused.error().field == c.field);
  }
  CHECK(parse_event_body(R"({"device_id":")" + device + R"("})", now, limits).error().field == "event_type");
}

TEST_CASE("parse_event_batch: the index of the bad event") {
  const std::string good = R"({"device_id":")" + device + R"(","event_type":"boot"})";
  const std::string bad = R"({"device_id":")" + device + R"(","event_type":"boot","severity":"loud"})";
  const auto ok = parse_event_batch("[" + good + "," + good + "]", now, limits);
  REQUIRE(ok);
  CHECK(ok->size() == 2);
  const auto refused = parse_event_batch("[" + good + "," + good + "," + bad + "]", now, limits);
  REQUIRE(!refused);
  CHECK(refused.error().field == "[2].severity");
}

TEST_CASE("parse_mqtt_metrics: the flat form, every member a metric at now") {
  const auto points = parse_mqtt_metrics(id_from(device), R"({"temperature":23.5,"humidity":40})", now, limits);
  REQUIRE(points);
  REQUIRE(points->size() == 2);
  CHECK(points->at(0).name == "temperature");
  CHECK(points->at(0).value == 23.5);
  CHECK(points->at(1).name == "humidity");
  CHECK(points->at(1).time == now);
  CHECK(points->at(1).device == id_from(device));
}

TEST_CASE("parse_mqtt_metrics: the structured form with time, units and tags") {
  const auto points = parse_mqtt_metrics(
      id_from(device),
      R"({"time":"2026-02-02T11:00:00+01:00","unit":{"temperature":"C"},"tags":{"site":"a"},"values":{"temperature":21,"rssi":-60}})",
      now, limits);
  REQUIRE(points);
  REQUIRE(points->size() == 2);
  CHECK(points->at(0).time == t0 + 10h);
  CHECK(points->at(0).unit == "C");
  CHECK(!points->at(1).unit);
  CHECK(points->at(1).tags == R"({"site":"a"})");
}

TEST_CASE("parse_mqtt_metrics: refusals") {
  std::string many = "{";
  for (int i = 0; i < 101; ++i) many += (i ? "," : "") + std::string("\"m") + std::to_string(i) + "\":1";
  many += "}";
  struct Case {
    std::string payload;
    ErrorKind kind;
    std::string field;
  };
  const Case cases[] = {
      {R"({"temperature":"warm"})", ErrorKind::invalid_field, "temperature"},
      {R"({"temperature":null})", ErrorKind::invalid_field, "temperature"},
      {R"({"a":1,"b":1e999})", ErrorKind::malformed, ""},
      {R"({")" + std::string(129, 'n') + R"(":1})", ErrorKind::invalid_field, std::string(129, 'n')},
      {many, ErrorKind::invalid_field, ""},
      {"{}", ErrorKind::invalid_field, ""},
      {R"({"values":[1]})", ErrorKind::invalid_field, "values"},
      {R"({"values":{"t":true}})", ErrorKind::invalid_field, "values.t"},
      {R"({"time":"2030-01-01T00:00:00Z","values":{"t":1}})", ErrorKind::invalid_field, "time"},
      {R"({"unit":{"t":5},"values":{"t":1}})", ErrorKind::invalid_field, "unit.t"},
      {"23.5", ErrorKind::malformed, ""},
      {"not json", ErrorKind::malformed, ""},
  };
  for (const auto& c : cases) {
    CAPTURE(c.payload.substr(0, 80));
    const auto refused = parse_mqtt_metrics(id_from(device), c.payload, now, limits);
    REQUIRE(!refused);
    CHECK(refused.error().kind == c.kind);
    CHECK(refused.error().field == c.field);
  }
  std::string hundred = "{";
  for (int i = 0; i < 100; ++i) hundred += (i ? "," : "") + std::string("\"m") + std::to_string(i) + "\":1";
  CHECK(parse_mqtt_metrics(id_from(device), hundred + "}", now, limits));
}

TEST_CASE("parse_mqtt_event: the device comes from the topic; the body may not name another") {
  const auto e = parse_mqtt_event(id_from(device), R"({"event_type":"button","severity":"debug"})", now, limits);
  REQUIRE(e);
  CHECK(e->device == id_from(device));
  const auto other = parse_mqtt_event(
      id_from(device), R"({"device_id":"00000000-0000-4000-8000-000000000000","event_type":"button"})", now, limits);
  REQUIRE(!other);
  CHECK(other.error().field == "device_id");
}

TEST_CASE("parse_telemetry_time: RFC 3339 forms and Unix seconds or milliseconds") {
  struct Case {
    Json value;
    std::optional<TimePoint> expected;
  };
  const Case cases[] = {
      {"2026-02-02T00:00:00Z", t0},
      {"2026-02-02T00:00:00.5Z", t0 + 500ms},
      {"2026-02-02T00:00:00.123456Z", t0 + 123ms},
      {"2026-02-02T02:00:00+02:00", t0},
      {"2026-02-01T23:30:00-00:30", t0},
      {"2026-02-02 00:00:00Z", t0},
      {"2026-02-02T00:00:00", std::nullopt},  // no zone
      {"2026-02-30T00:00:00Z", std::nullopt},
      {"2026-02-02T00:00:00.Z", std::nullopt},
      {1769990400, t0},
      {1769990400.25, t0 + 250ms},
      {1769990400000LL, t0},  // milliseconds
      {-1, std::nullopt},
      {true, std::nullopt},
  };
  for (const auto& c : cases) {
    CAPTURE(c.value.dump());
    CHECK(parse_telemetry_time(c.value) == c.expected);
  }
}

TEST_CASE("parse_telemetry_topic and the subscriptions") {
  const auto metrics = parse_telemetry_topic("maestra", "maestra/devices/" + device + "/telemetry/metrics");
  CHECK(metrics.kind == TelemetryKind::metrics);
  CHECK(metrics.level == device);
  CHECK(parse_telemetry_topic("maestra", "maestra/devices/x/telemetry/events").kind == TelemetryKind::events);
  CHECK(parse_telemetry_topic("site/a", "site/a/devices/x/telemetry/events").kind == TelemetryKind::events);
  for (std::string_view other : {"maestra/devices/x/heartbeat", "maestra/devices//telemetry/metrics",
                                 "maestra/devices/x/telemetry/metrics/extra", "other/devices/x/telemetry/metrics",
                                 "maestra/devices/x/telemetry"})
    CHECK(parse_telemetry_topic("maestra", other).kind == TelemetryKind::none);
  CHECK(telemetry_subscriptions("maestra") ==
        std::vector<std::string>{"maestra/devices/+/telemetry/metrics", "maestra/devices/+/telemetry/events"});
}

TEST_CASE("parse_bucket: 1 s to 1 d") {
  CHECK(parse_bucket("1s") == Millis{1000});
  CHECK(parse_bucket("5m") == Millis{300000});
  CHECK(parse_bucket("1h") == Millis{3600000});
  CHECK(parse_bucket("1d") == Millis{86400000});
  CHECK(parse_bucket("24h") == Millis{86400000});
  for (std::string_view bad : {"", "m", "0m", "-1m", "1w", "25h", "2d", "1.5m", "5 m", "1000000000s"})
    CHECK(!parse_bucket(bad));
}

TEST_CASE("parse_metric_query: defaults, bucket, agg, the cap on buckets, limit") {
  const auto plain = parse_metric_query(params({}), now, limits);
  REQUIRE(plain);
  CHECK(plain->to == now + 5min);
  CHECK(plain->from == now + 5min - 24h);
  CHECK(!plain->bucket);
  CHECK(plain->limit == default_metric_limit);

  const auto bucketed = parse_metric_query(
      params({{"name", "temperature"}, {"from", "2026-02-02T00:00:00Z"}, {"to", "2026-02-02T01:00:00Z"},
              {"bucket", "5m"}, {"agg", "max"}}),
      now, limits);
  REQUIRE(bucketed);
  CHECK(bucketed->name == "temperature");
  CHECK(bucketed->bucket == Millis{300000});
  CHECK(bucketed->agg == Aggregate::max);
  CHECK(bucketed->from == t0);
  CHECK(bucketed->to == t0 + 1h);

  // 10,000 one-second buckets are the most; one more is refused.
  CHECK(parse_metric_query(params({{"from", "2026-02-02T00:00:00Z"}, {"to", "2026-02-02T02:46:40Z"}, {"bucket", "1s"}}),
                           now, limits));
  struct Case {
    std::map<std::string, std::string> values;
    std::string field;
  };
  const Case cases[] = {
      {{{"from", "2026-02-02T00:00:00Z"}, {"to", "2026-02-02T02:46:40.001Z"}, {"bucket", "1s"}}, "bucket"},
      {{{"bucket", "1s"}}, "bucket"},  // the default 24 h span
      {{{"bucket", "7x"}}, "bucket"},
      {{{"bucket", "1h"}, {"agg", "median"}}, "agg"},
      {{{"agg", "avg"}}, "agg"},
      {{{"from", "yesterday"}}, "from"},
      {{{"to", "2026-02-02"}}, "to"},
      {{{"from", "2026-02-02T01:00:00Z"}, {"to", "2026-02-02T01:00:00Z"}}, "from"},
      {{{"limit", "0"}}, "limit"},
      {{{"limit", "10001"}}, "limit"},
      {{{"limit", "ten"}}, "limit"},
      {{{"name", ""}}, "name"},
  };
  for (const auto& c : cases) {
    const auto refused = parse_metric_query(params(c.values), now, limits);
    REQUIRE(!refused);
    CHECK(refused.error().field == c.field);
  }
}

TEST_CASE("parse_event_query: type, severity, limit") {
  const auto q = parse_event_query(params({{"type", "boot"}, {"severity", "error"}, {"limit", "5"}}), now, limits);
  REQUIRE(q);
  CHECK(q->event_type == "boot");
  CHECK(q->severity == Severity::error);
  CHECK(q->limit == 5);
  CHECK(parse_event_query(params({}), now, limits)->limit == default_event_limit);
  CHECK(parse_event_query(params({{"severity", "loud"}}), now, limits).error().field == "severity");
  CHECK(parse_event_query(params({{"limit", "1001"}}), now, limits).error().field == "limit");
}

TEST_CASE("partition names and days") {
  CHECK(partition_name("metrics", t0 + 13h) == "metrics_p20260202");
  CHECK(day_start(t0 + 13h) == t0);
  CHECK(partition_day("metrics", "metrics_p20260202") == t0);
  CHECK(!partition_day("metrics", "events_p20260202"));
  CHECK(!partition_day("metrics", "metrics_p20260230"));
  CHECK(!partition_day("metrics", "metrics_default"));
}

TEST_CASE("telemetry bodies: nesting up to 32 levels, braces inside strings do not count") {
  auto event_with_data_depth = [](int levels) {
    std::string data;
    for (int i = 0; i < levels; ++i) data += R"({"a":)";
    data += R"("{[{[")";
    data.append(static_cast<std::size_t>(levels), '}');
    return R"({"event_type":"deep","data":)" + data + "}";
  };
  // The body is one level, data's objects the others.
  CHECK(parse_mqtt_event(id_from(device), event_with_data_depth(31), now, limits));
  const auto deep = parse_mqtt_event(id_from(device), event_with_data_depth(32), now, limits);
  REQUIRE(!deep);
  CHECK(deep.error().kind == ErrorKind::malformed);
  CHECK(parse_mqtt_metrics(id_from(device), R"({"a":1,"b":)", now, limits).error().kind == ErrorKind::malformed);
  CHECK(parse_mqtt_metrics(id_from(device), "{\"a\":\"\xff\"}", now, limits).error().kind == ErrorKind::malformed);
}
