// Telemetry rules of the core: the metric and event bodies that devices send
// (HTTP bodies of existing Maestra clients, MQTT payloads under
// {prefix}/devices/{id}/telemetry/), their limits and refusals, and the query
// parameters of the read routes. Pure: no I/O, no clock (`now` is passed in).
// It must not know how points are stored or answered; errors are core Errors.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "core/errors.hpp"
#include "core/ids.hpp"
#include "core/requests.hpp"
#include "core/validation.hpp"

namespace maestra::core {

// The limits of what one point, event, message and batch may hold. The
// retention days bound how far in the past a time may be (older data would be
// dropped at once); the future tolerance absorbs devices' clock drift.
struct TelemetryLimits {
  std::size_t max_name_chars = 128;        // metric_name, MQTT value keys
  std::size_t max_unit_chars = 32;
  std::size_t max_tags_bytes = 1024;       // tags, as compact JSON
  std::size_t max_event_type_chars = 64;
  std::size_t max_message_chars = 1024;
  std::size_t max_data_bytes = 8192;       // an event's data, as compact JSON
  std::size_t max_batch = 1000;            // points or events in one batch body
  std::size_t max_metrics_per_message = 100;  // values in one MQTT metrics message
  std::size_t max_batch_body_bytes = 1024 * 1024;
  Millis future_tolerance{5 * 60 * 1000};
  int metrics_retention_days = 90;
  int events_retention_days = 30;
};

enum class Severity : std::uint8_t { debug, info, warning, error, critical };
std::string_view to_string(Severity s);
std::optional<Severity> parse_severity(std::string_view text);

struct MetricPoint {
  DeviceId device;
  std::string name;
  double value = 0;
  std::optional<std::string> unit;
  std::optional<std::string> tags;  // a JSON object as compact text, or none
  TimePoint time;
};

struct EventRecord {
  DeviceId device;
  std::string event_type;
  Severity severity = Severity::info;
  std::optional<std::string> message;
  std::optional<std::string> data;  // a JSON object as compact text, or none
  TimePoint time;
};

// --- HTTP bodies -----------------------------------------------------------------
// POST /metrics: {"device_id","metric_name","metric_value":number,"unit"?,"tags"?:{},"time"?}
Result<MetricPoint> parse_metric_body(std::string_view body, TimePoint now, const TelemetryLimits& limits);
// POST /metrics/batch: an array of the above (1 to max_batch). One bad point
// refuses the batch; the error's field names its index: "[17].metric_value".
Result<std::vector<MetricPoint>> parse_metric_batch(std::string_view body, TimePoint now,
                                                   const TelemetryLimits& limits);
// POST /events: {"device_id","event_type","severity"?,"message"?,"data"?:{},"time"?}
Result<EventRecord> parse_event_body(std::string_view body, TimePoint now, const TelemetryLimits& limits);
Result<std::vector<EventRecord>> parse_event_batch(std::string_view body, TimePoint now,
                                                  const TelemetryLimits& limits);

// The same, from an already parsed JSON value; `prefix` goes before every field
// name in errors ("[3]." in a batch). A device_id may be given (MQTT: from the
// topic); then the body may leave it out but may not name another device.
Result<MetricPoint> parse_metric(const Json& body, TimePoint now, const TelemetryLimits& limits,
                                 std::string_view prefix = {}, std::optional<DeviceId> device = std::nullopt);
Result<EventRecord> parse_event(const Json& body, TimePoint now, const TelemetryLimits& limits,
                                std::string_view prefix = {}, std::optional<DeviceId> device = std::nullopt);

// --- MQTT payloads ---------------------------------------------------------------
// {prefix}/devices/{id}/telemetry/metrics: {"temperature":23.5,"humidity":40}
// (every member a metric), or {"time"?, "unit"?:{name:unit}, "tags"?:{}, "values":{name:number}}.
Result<std::vector<MetricPoint>> parse_mqtt_metrics(const DeviceId& device, std::string_view payload, TimePoint now,
                                                    const TelemetryLimits& limits);
// {prefix}/devices/{id}/telemetry/events: one event object (device_id optional).
Result<EventRecord> parse_mqtt_event(const DeviceId& device, std::string_view payload, TimePoint now,
                                     const TelemetryLimits& limits);

enum class TelemetryKind { none, metrics, events };
struct TelemetryTopic {
  TelemetryKind kind = TelemetryKind::none;
  std::string_view level;  // the device id, unvalidated
};
TelemetryTopic parse_telemetry_topic(std::string_view prefix, std::string_view topic);
std::vector<std::string> telemetry_subscriptions(std::string_view prefix);

// A time as devices send it: RFC 3339 with any fraction of a second (kept to the
// millisecond) and 'Z' or an offset, or a number of Unix seconds (a number over
// 1e11 is taken as milliseconds).
std::optional<TimePoint> parse_telemetry_time(const Json& value);
std::optional<TimePoint> parse_iso8601(std::string_view text);

// --- queries ---------------------------------------------------------------------
enum class Aggregate : std::uint8_t { avg, min, max, sum, count };
std::string_view to_string(Aggregate a);

inline constexpr std::int64_t max_query_buckets = 10000;
inline constexpr int default_metric_limit = 1000;
inline constexpr int max_metric_limit = 10000;
inline constexpr int default_event_limit = 100;
inline constexpr int max_event_limit = 1000;
inline constexpr Millis default_query_span{24LL * 3600 * 1000};

// GET /devices/{id}/metrics?name=&from=&to=&bucket=&agg=&limit=
// from/to: ISO-8601 (to defaults to now plus the future tolerance, from to 24 h
// before to); bucket "<n>s|m|h|d" (1 s to 1 d), at most max_query_buckets in
// [from, to); agg (with a bucket) avg|min|max|sum|count, default avg.
struct MetricQuery {
  std::optional<std::string> name;
  TimePoint from;
  TimePoint to;
  std::optional<Millis> bucket;
  std::string bucket_text;
  Aggregate agg = Aggregate::avg;
  int limit = default_metric_limit;
};
Result<MetricQuery> parse_metric_query(const ParamLookup& param, TimePoint now, const TelemetryLimits& limits);

// GET /devices/{id}/events?from=&to=&type=&severity=&limit=
struct EventQuery {
  TimePoint from;
  TimePoint to;
  std::optional<std::string> event_type;
  std::optional<Severity> severity;
  int limit = default_event_limit;
};
Result<EventQuery> parse_event_query(const ParamLookup& param, TimePoint now, const TelemetryLimits& limits);

// "5m" -> 300000 ms; nullopt unless "<1-n digits><s|m|h|d>" within 1 s..1 d.
std::optional<Millis> parse_bucket(std::string_view text);

// The first instant of `t`'s UTC day, and partition names of a day: "metrics_p20261129".
TimePoint day_start(TimePoint t);
std::string partition_name(std::string_view table, TimePoint day);
// The day of a partition named by partition_name for `table`; nullopt for any other name.
std::optional<TimePoint> partition_day(std::string_view table, std::string_view name);

}  // namespace maestra::core
