// Parsing and validation of metric and event bodies, MQTT telemetry payloads and
// topics, and the telemetry query parameters. Pure: `now` is passed in.
//
// A note on refusals: a body is refused whole. A batch with one bad point stores
// nothing, and the error's field names the point by index ("[17].metric_value"),
// so a client can fix and resend the batch as it is.
#include "core/telemetry.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace maestra::core {

namespace {

constexpr int max_depth = 32;
// Object members in one batch body: a point has six fields and a few tags.
constexpr int max_batch_members = 64 * 1000;

std::string named(std::string_view prefix, std::string_view field) {
  return std::string(prefix) + std::string(field);
}

// A JSON document of at most `max_bytes`, nested at most max_depth, with at most
// `max_members` object members; anything else is `malformed` or `too_large`.
// A note on speed: nesting and members are counted by one pass over the bytes
// (outside strings) before nlohmann parses without a callback, which per token
// costs more than the parse itself at MQTT telemetry rates.
Result<Json> parse_bounded(std::string_view body, std::size_t max_bytes, int max_members) {
  if (body.size() > max_bytes)
    return Error{ErrorKind::too_large, "", "body is larger than " + std::to_string(max_bytes) + " bytes"};
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos)
    return Error{ErrorKind::malformed, "", "body is empty; expected JSON"};
  if (body.find('\0') != std::string_view::npos)
    return Error{ErrorKind::malformed, "", "body is not valid JSON (raw NUL byte)"};
  int depth = 0, deepest = 0, members = 0;
  bool in_string = false, escaped = false;
  for (const char ch : body) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (ch == '\\') escaped = true;
      else if (ch == '"') in_string = false;
      continue;
    }
    switch (ch) {
      case '"': in_string = true; break;
      case '{': case '[': deepest = std::max(deepest, ++depth); break;
      case '}': case ']': --depth; break;
      case ':': ++members; break;
      default: break;
    }
  }
  if (deepest > max_depth) return Error{ErrorKind::malformed, "", "JSON nesting is deeper than 32 levels"};
  if (members > max_members)
    return Error{ErrorKind::malformed, "", "JSON has more than " + std::to_string(max_members) + " object members"};
  Json doc = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Error{ErrorKind::malformed, "", "body is not valid JSON"};
  return doc;
}

// An MQTT payload or single HTTP body: one JSON object within the limits of
// parse_json_object (validation.hpp), parsed by parse_bounded.
Result<Json> parse_object(std::string_view body) {
  auto doc = parse_bounded(body, max_body_bytes, max_json_members);
  if (!doc) return doc;
  if (!doc->is_object()) return Error{ErrorKind::malformed, "", "body must be a JSON object"};
  return doc;
}

bool has_nul(const Json& value) {
  if (value.is_string()) return value.get_ref<const std::string&>().find('\0') != std::string::npos;
  if (value.is_object())
    for (const auto& [key, member] : value.items())
      if (key.find('\0') != std::string::npos || has_nul(member)) return true;
  if (value.is_array())
    for (const auto& member : value)
      if (has_nul(member)) return true;
  return false;
}

std::optional<Error> check_name(std::string_view field, std::string_view value, std::size_t max_chars) {
  if (value.empty() || is_blank(value)) return invalid(std::string(field), std::string(field) + " must not be empty");
  return check_text(field, value, max_chars);
}

Result<std::string> required_text(const Json& body, std::string_view key, std::string_view prefix,
                                  std::size_t max_chars) {
  const std::string field = named(prefix, key);
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return invalid(field, field + " is required");
  if (!it->is_string()) return invalid(field, field + " must be a string");
  const auto& value = it->get_ref<const std::string&>();
  if (auto error = check_name(field, value, max_chars)) return *error;
  return value;
}

Result<std::optional<std::string>> optional_text(const Json& body, std::string_view key, std::string_view prefix,
                                                 std::size_t max_chars) {
  const std::string field = named(prefix, key);
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::optional<std::string>{};
  if (!it->is_string()) return invalid(field, field + " must be a string");
  const auto& value = it->get_ref<const std::string&>();
  if (auto error = check_text(field, value, max_chars)) return *error;
  return std::optional<std::string>{value};
}

// An optional JSON object kept as compact text of at most max_bytes.
Result<std::optional<std::string>> optional_object_text(const Json& body, std::string_view key,
                                                        std::string_view prefix, std::size_t max_bytes) {
  const std::string field = named(prefix, key);
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::optional<std::string>{};
  if (!it->is_object()) return invalid(field, field + " must be a JSON object");
  if (has_nul(*it)) return invalid(field, field + " contains a NUL character");
  std::string text = it->dump();
  if (text.size() > max_bytes)
    return invalid(field, field + " is larger than " + std::to_string(max_bytes) + " bytes");
  return std::optional<std::string>{std::move(text)};
}

// A finite number; booleans, strings and null are not numbers.
Result<double> number_value(const Json& value, const std::string& field) {
  if (!value.is_number()) return invalid(field, field + " must be a number");
  const double number = value.get<double>();
  if (!std::isfinite(number)) return invalid(field, field + " must be a finite number");
  return number;
}

// The point's time: absent is `now`; else within retention and the future tolerance.
Result<TimePoint> point_time(const Json& body, std::string_view prefix, TimePoint now, int retention_days,
                             Millis future_tolerance) {
  const std::string field = named(prefix, "time");
  const auto it = body.find("time");
  if (it == body.end() || it->is_null()) return now;
  const auto time = parse_telemetry_time(*it);
  if (!time) return invalid(field, field + " must be an RFC 3339 time or a number of Unix seconds");
  if (*time > now + future_tolerance)
    return invalid(field, field + " is more than " + std::to_string(future_tolerance.count() / 1000) +
                              " s in the future");
  if (*time < now - std::chrono::days{retention_days})
    return invalid(field, field + " is older than the retention (" + std::to_string(retention_days) + " days)");
  return *time;
}

Result<DeviceId> body_device(const Json& body, std::string_view prefix, std::optional<DeviceId> given) {
  const std::string field = named(prefix, "device_id");
  const auto it = body.find("device_id");
  if (it == body.end() || it->is_null()) {
    if (given) return *given;
    return invalid(field, field + " is required");
  }
  if (!it->is_string()) return invalid(field, field + " must be a string");
  const auto id = parse_device_id(it->get_ref<const std::string&>());
  if (!id) return invalid(field, field + " is not a valid UUID");
  if (given && *id != *given) return invalid(field, field + " names another device than the topic");
  return *id;
}

template <class T, class Parse>
Result<std::vector<T>> parse_batch(std::string_view body, const TelemetryLimits& limits, Parse parse) {
  auto doc = parse_bounded(body, limits.max_batch_body_bytes, max_batch_members);
  if (!doc) return doc.error();
  if (!doc->is_array()) return Error{ErrorKind::malformed, "", "body must be a JSON array"};
  if (doc->empty()) return invalid("", "the batch is empty");
  if (doc->size() > limits.max_batch)
    return invalid("", "the batch has " + std::to_string(doc->size()) + " entries; at most " +
                           std::to_string(limits.max_batch) + " are accepted");
  std::vector<T> out;
  out.reserve(doc->size());
  for (std::size_t i = 0; i < doc->size(); ++i) {
    const std::string prefix = "[" + std::to_string(i) + "].";
    const auto& entry = doc.value()[i];
    if (!entry.is_object()) return invalid("[" + std::to_string(i) + "]", "entry " + std::to_string(i) + " must be a JSON object");
    auto parsed = parse(entry, prefix);
    if (!parsed) return parsed.error();
    out.push_back(std::move(parsed.value()));
  }
  return out;
}

bool read_digits(std::string_view text, std::size_t pos, std::size_t len, int& out) {
  if (pos + len > text.size()) return false;
  for (std::size_t i = pos; i < pos + len; ++i)
    if (text[i] < '0' || text[i] > '9') return false;
  auto [ptr, ec] = std::from_chars(text.data() + pos, text.data() + pos + len, out);
  return ec == std::errc{} && ptr == text.data() + pos + len;
}

}  // namespace

std::string_view to_string(Severity s) {
  switch (s) {
    case Severity::debug: return "debug";
    case Severity::info: return "info";
    case Severity::warning: return "warning";
    case Severity::error: return "error";
    case Severity::critical: return "critical";
  }
  return "info";
}

std::optional<Severity> parse_severity(std::string_view text) {
  for (auto s : {Severity::debug, Severity::info, Severity::warning, Severity::error, Severity::critical})
    if (to_string(s) == text) return s;
  return std::nullopt;
}

std::string_view to_string(Aggregate a) {
  switch (a) {
    case Aggregate::avg: return "avg";
    case Aggregate::min: return "min";
    case Aggregate::max: return "max";
    case Aggregate::sum: return "sum";
    case Aggregate::count: return "count";
  }
  return "avg";
}

std::optional<TimePoint> parse_iso8601(std::string_view text) {
  using namespace std::chrono;
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  if (text.size() < 20 || text.size() > 40 || text[4] != '-' || text[7] != '-' ||
      (text[10] != 'T' && text[10] != 't' && text[10] != ' ') || text[13] != ':' || text[16] != ':')
    return std::nullopt;
  if (!read_digits(text, 0, 4, y) || !read_digits(text, 5, 2, mo) || !read_digits(text, 8, 2, d) ||
      !read_digits(text, 11, 2, h) || !read_digits(text, 14, 2, mi) || !read_digits(text, 17, 2, s))
    return std::nullopt;
  std::size_t pos = 19;
  int millis = 0;
  if (pos < text.size() && (text[pos] == '.' || text[pos] == ',')) {
    std::size_t digits = 0;
    ++pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (digits < 3) millis = millis * 10 + (text[pos] - '0');
      ++digits;
      ++pos;
    }
    if (digits == 0 || digits > 9) return std::nullopt;
    for (std::size_t i = digits; i < 3; ++i) millis *= 10;
  }
  if (pos >= text.size()) return std::nullopt;
  int offset_minutes = 0;
  if (text[pos] == 'Z' || text[pos] == 'z') {
    ++pos;
  } else if (text[pos] == '+' || text[pos] == '-') {
    int oh = 0, om = 0;
    if (pos + 6 != text.size() || text[pos + 3] != ':' || !read_digits(text, pos + 1, 2, oh) ||
        !read_digits(text, pos + 4, 2, om) || oh > 23 || om > 59)
      return std::nullopt;
    offset_minutes = (oh * 60 + om) * (text[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != text.size()) return std::nullopt;
  const year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
  if (!ymd.ok() || h > 23 || mi > 59 || s > 60) return std::nullopt;
  return TimePoint{sys_days{ymd}} + hours{h} + minutes{mi} + seconds{s} + milliseconds{millis} -
         minutes{offset_minutes};
}

std::optional<TimePoint> parse_telemetry_time(const Json& value) {
  if (value.is_string()) return parse_iso8601(value.get_ref<const std::string&>());
  if (!value.is_number() || value.is_boolean()) return std::nullopt;
  const double number = value.get<double>();
  if (!std::isfinite(number) || number < 0 || number > 1e14) return std::nullopt;
  const double ms = number > 1e11 ? number : number * 1000.0;
  return TimePoint{Millis{static_cast<std::int64_t>(std::llround(ms))}};
}

Result<MetricPoint> parse_metric(const Json& body, TimePoint now, const TelemetryLimits& limits,
                                 std::string_view prefix, std::optional<DeviceId> device) {
  MetricPoint p;
  auto id = body_device(body, prefix, device);
  if (!id) return id.error();
  p.device = id.value();
  auto name = required_text(body, "metric_name", prefix, limits.max_name_chars);
  if (!name) return name.error();
  p.name = std::move(name.value());
  const std::string value_field = named(prefix, "metric_value");
  const auto it = body.find("metric_value");
  if (it == body.end() || it->is_null()) return invalid(value_field, value_field + " is required");
  auto value = number_value(*it, value_field);
  if (!value) return value.error();
  p.value = value.value();
  auto unit = optional_text(body, "unit", prefix, limits.max_unit_chars);
  if (!unit) return unit.error();
  p.unit = std::move(unit.value());
  auto tags = optional_object_text(body, "tags", prefix, limits.max_tags_bytes);
  if (!tags) return tags.error();
  p.tags = std::move(tags.value());
  auto time = point_time(body, prefix, now, limits.metrics_retention_days, limits.future_tolerance);
  if (!time) return time.error();
  p.time = time.value();
  return p;
}

Result<EventRecord> parse_event(const Json& body, TimePoint now, const TelemetryLimits& limits,
                                std::string_view prefix, std::optional<DeviceId> device) {
  EventRecord e;
  auto id = body_device(body, prefix, device);
  if (!id) return id.error();
  e.device = id.value();
  auto type = required_text(body, "event_type", prefix, limits.max_event_type_chars);
  if (!type) return type.error();
  e.event_type = std::move(type.value());
  const std::string severity_field = named(prefix, "severity");
  if (const auto it = body.find("severity"); it != body.end() && !it->is_null()) {
    const auto severity = it->is_string() ? parse_severity(it->get_ref<const std::string&>()) : std::nullopt;
    if (!severity)
      return invalid(severity_field, severity_field + " must be one of debug, info, warning, error, critical");
    e.severity = *severity;
  }
  auto message = optional_text(body, "message", prefix, limits.max_message_chars);
  if (!message) return message.error();
  e.message = std::move(message.value());
  auto data = optional_object_text(body, "data", prefix, limits.max_data_bytes);
  if (!data) return data.error();
  e.data = std::move(data.value());
  auto time = point_time(body, prefix, now, limits.events_retention_days, limits.future_tolerance);
  if (!time) return time.error();
  e.time = time.value();
  return e;
}

Result<MetricPoint> parse_metric_body(std::string_view body, TimePoint now, const TelemetryLimits& limits) {
  auto doc = parse_object(body);
  if (!doc) return doc.error();
  return parse_metric(doc.value(), now, limits);
}

Result<std::vector<MetricPoint>> parse_metric_batch(std::string_view body, TimePoint now,
                                                   const TelemetryLimits& limits) {
  return parse_batch<MetricPoint>(body, limits, [&](const Json& entry, const std::string& prefix) {
    return parse_metric(entry, now, limits, prefix);
  });
}

Result<EventRecord> parse_event_body(std::string_view body, TimePoint now, const TelemetryLimits& limits) {
  auto doc = parse_object(body);
  if (!doc) return doc.error();
  return parse_event(doc.value(), now, limits);
}

Result<std::vector<EventRecord>> parse_event_batch(std::string_view body, TimePoint now,
                                                  const TelemetryLimits& limits) {
  return parse_batch<EventRecord>(body, limits, [&](const Json& entry, const std::string& prefix) {
    return parse_event(entry, now, limits, prefix);
  });
}

Result<std::vector<MetricPoint>> parse_mqtt_metrics(const DeviceId& device, std::string_view payload, TimePoint now,
                                                    const TelemetryLimits& limits) {
  auto doc = parse_object(payload);
  if (!doc) return doc.error();
  const Json& body = doc.value();
  const bool structured = body.contains("values");
  const Json* values = &body;
  TimePoint time = now;
  std::optional<std::string> tags;
  const Json* units = nullptr;
  if (structured) {
    values = &body["values"];
    if (!values->is_object()) return invalid("values", "values must be a JSON object of metric names and numbers");
    auto t = point_time(body, "", now, limits.metrics_retention_days, limits.future_tolerance);
    if (!t) return t.error();
    time = t.value();
    if (const auto it = body.find("unit"); it != body.end() && !it->is_null()) {
      if (!it->is_object()) return invalid("unit", "unit must be a JSON object of metric names and units");
      units = &*it;
    }
    auto tag_text = optional_object_text(body, "tags", "", limits.max_tags_bytes);
    if (!tag_text) return tag_text.error();
    tags = std::move(tag_text.value());
  }
  if (values->empty()) return invalid(structured ? "values" : "", "the message holds no metric");
  if (values->size() > limits.max_metrics_per_message)
    return invalid(structured ? "values" : "", "the message holds " + std::to_string(values->size()) +
                                                   " metrics; at most " +
                                                   std::to_string(limits.max_metrics_per_message) + " are accepted");
  std::vector<MetricPoint> out;
  out.reserve(values->size());
  const std::string prefix = structured ? "values." : "";
  for (const auto& [name, value] : values->items()) {
    const std::string field = prefix + name.substr(0, 200);
    if (auto error = check_name(field, name, limits.max_name_chars)) return *error;
    auto number = number_value(value, field);
    if (!number) return number.error();
    MetricPoint p{device, name, number.value(), std::nullopt, tags, time};
    if (units) {
      if (const auto u = units->find(name); u != units->end() && !u->is_null()) {
        const std::string unit_field = "unit." + name.substr(0, 200);
        if (!u->is_string()) return invalid(unit_field, unit_field + " must be a string");
        if (auto error = check_text(unit_field, u->get_ref<const std::string&>(), limits.max_unit_chars))
          return *error;
        p.unit = u->get<std::string>();
      }
    }
    out.push_back(std::move(p));
  }
  return out;
}

Result<EventRecord> parse_mqtt_event(const DeviceId& device, std::string_view payload, TimePoint now,
                                     const TelemetryLimits& limits) {
  auto doc = parse_object(payload);
  if (!doc) return doc.error();
  return parse_event(doc.value(), now, limits, "", device);
}

TelemetryTopic parse_telemetry_topic(std::string_view prefix, std::string_view topic) {
  if (topic.size() <= prefix.size() || topic.substr(0, prefix.size()) != prefix) return {};
  std::string_view rest = topic.substr(prefix.size());
  constexpr std::string_view devices = "/devices/";
  if (rest.substr(0, devices.size()) != devices) return {};
  rest.remove_prefix(devices.size());
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos || slash == 0) return {};
  const std::string_view level = rest.substr(0, slash);
  const std::string_view tail = rest.substr(slash);
  if (tail == "/telemetry/metrics") return {TelemetryKind::metrics, level};
  if (tail == "/telemetry/events") return {TelemetryKind::events, level};
  return {};
}

std::vector<std::string> telemetry_subscriptions(std::string_view prefix) {
  const std::string p(prefix);
  return {p + "/devices/+/telemetry/metrics", p + "/devices/+/telemetry/events"};
}

std::optional<Millis> parse_bucket(std::string_view text) {
  if (text.size() < 2 || text.size() > 8) return std::nullopt;
  const char unit = text.back();
  long long n = 0;
  const std::string_view digits = text.substr(0, text.size() - 1);
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec != std::errc{} || ptr != digits.data() + digits.size() || n <= 0) return std::nullopt;
  long long unit_ms = 0;
  switch (unit) {
    case 's': unit_ms = 1000; break;
    case 'm': unit_ms = 60 * 1000; break;
    case 'h': unit_ms = 3600 * 1000; break;
    case 'd': unit_ms = 24LL * 3600 * 1000; break;
    default: return std::nullopt;
  }
  if (n > 86400) return std::nullopt;
  const long long ms = n * unit_ms;
  if (ms > 24LL * 3600 * 1000) return std::nullopt;
  return Millis{ms};
}

namespace {

Result<std::optional<TimePoint>> time_param(const ParamLookup& param, std::string_view name) {
  const auto text = param(name);
  if (!text) return std::optional<TimePoint>{};
  const auto t = parse_iso8601(*text);
  if (!t) return invalid(std::string(name), std::string(name) + " must be an ISO-8601 time such as 2026-11-29T12:00:00Z");
  return std::optional<TimePoint>{*t};
}

Result<int> limit_param(const ParamLookup& param, int fallback, int most) {
  const auto text = param("limit");
  if (!text) return fallback;
  int n = 0;
  auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), n);
  if (ec != std::errc{} || ptr != text->data() + text->size() || n < 1 || n > most)
    return invalid("limit", "limit must be a whole number from 1 to " + std::to_string(most));
  return n;
}

// from and to, with their defaults; from must be before to.
Result<std::pair<TimePoint, TimePoint>> span_params(const ParamLookup& param, TimePoint now,
                                                    const TelemetryLimits& limits) {
  auto from = time_param(param, "from");
  if (!from) return from.error();
  auto to = time_param(param, "to");
  if (!to) return to.error();
  const TimePoint end = to->value_or(now + limits.future_tolerance);
  const TimePoint begin = from->value_or(end - default_query_span);
  if (begin >= end) return invalid("from", "from must be before to");
  return std::pair{begin, end};
}

}  // namespace

Result<MetricQuery> parse_metric_query(const ParamLookup& param, TimePoint now, const TelemetryLimits& limits) {
  MetricQuery q;
  if (const auto name = param("name")) {
    if (auto error = check_name("name", *name, limits.max_name_chars)) return *error;
    q.name = *name;
  }
  auto span = span_params(param, now, limits);
  if (!span) return span.error();
  q.from = span->first;
  q.to = span->second;
  if (const auto bucket = param("bucket")) {
    q.bucket = parse_bucket(*bucket);
    if (!q.bucket) return invalid("bucket", "bucket must be a duration such as 30s, 1m, 5m, 1h or 1d (1 s to 1 d)");
    q.bucket_text = *bucket;
    // Buckets are aligned to the Unix epoch: count those [from, to) touches.
    const auto first = q.from.time_since_epoch().count() / q.bucket->count();
    const auto last = (q.to.time_since_epoch().count() - 1) / q.bucket->count();
    if (last - first + 1 > max_query_buckets)
      return invalid("bucket", "from..to holds more than " + std::to_string(max_query_buckets) +
                                   " buckets of " + *bucket + "; choose a larger bucket or a shorter span");
  }
  if (const auto agg = param("agg")) {
    bool known = false;
    for (auto a : {Aggregate::avg, Aggregate::min, Aggregate::max, Aggregate::sum, Aggregate::count})
      if (to_string(a) == *agg) {
        q.agg = a;
        known = true;
      }
    if (!known) return invalid("agg", "agg must be one of avg, min, max, sum, count");
    if (!q.bucket) return invalid("agg", "agg needs a bucket");
  }
  auto limit = limit_param(param, q.bucket ? max_metric_limit : default_metric_limit, max_metric_limit);
  if (!limit) return limit.error();
  q.limit = limit.value();
  return q;
}

Result<EventQuery> parse_event_query(const ParamLookup& param, TimePoint now, const TelemetryLimits& limits) {
  EventQuery q;
  auto span = span_params(param, now, limits);
  if (!span) return span.error();
  q.from = span->first;
  q.to = span->second;
  if (const auto type = param("type")) {
    if (auto error = check_name("type", *type, limits.max_event_type_chars)) return *error;
    q.event_type = *type;
  }
  if (const auto severity = param("severity")) {
    q.severity = parse_severity(*severity);
    if (!q.severity) return invalid("severity", "severity must be one of debug, info, warning, error, critical");
  }
  auto limit = limit_param(param, default_event_limit, max_event_limit);
  if (!limit) return limit.error();
  q.limit = limit.value();
  return q;
}

TimePoint day_start(TimePoint t) { return TimePoint{std::chrono::floor<std::chrono::days>(t)}; }

std::string partition_name(std::string_view table, TimePoint day) {
  const std::chrono::year_month_day ymd{std::chrono::floor<std::chrono::days>(day)};
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d%02u%02u", static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                static_cast<unsigned>(ymd.day()));
  return std::string(table) + "_p" + buf;
}

std::optional<TimePoint> partition_day(std::string_view table, std::string_view name) {
  const std::string head = std::string(table) + "_p";
  if (name.size() != head.size() + 8 || name.substr(0, head.size()) != head) return std::nullopt;
  int y = 0, m = 0, d = 0;
  if (!read_digits(name, head.size(), 4, y) || !read_digits(name, head.size() + 4, 2, m) ||
      !read_digits(name, head.size() + 6, 2, d))
    return std::nullopt;
  const std::chrono::year_month_day ymd{std::chrono::year{y}, std::chrono::month{static_cast<unsigned>(m)},
                                        std::chrono::day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) return std::nullopt;
  return TimePoint{std::chrono::sys_days{ymd}};
}

}  // namespace maestra::core
