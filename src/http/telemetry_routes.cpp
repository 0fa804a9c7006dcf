// The telemetry routes of the HTTP shim: the bodies existing Maestra clients
// send (POST /metrics, /metrics/batch, /events, /events/batch), answered once
// the batch holding them is committed, and the reads (GET
// /devices/{id}/metrics, /metrics/latest, /events). Parsing and every rule are
// in core/telemetry; storing is the telemetry writer's (service/telemetry).
#include <httplib.h>

#include "core/documents.hpp"
#include "core/telemetry.hpp"
#include "http/http_api.hpp"

namespace maestra::http {

using core::Error;
using core::ErrorKind;
using core::Json;

namespace {

Json optional_json(const std::optional<std::string>& text) {
  if (!text) return nullptr;
  return Json::parse(*text, nullptr, /*allow_exceptions=*/false);
}

Json optional_string(const std::optional<std::string>& text) { return text ? Json(*text) : Json(nullptr); }

const Error telemetry_off{ErrorKind::unavailable, "", "telemetry is not running"};

}  // namespace

// The rows of one body belong to one device in secure mode (its credentials).
template <class Rows>
static std::optional<Error> one_device(const Rows& rows) {
  for (std::size_t i = 1; i < rows.size(); ++i)
    if (rows[i].device != rows[0].device)
      return core::invalid("[" + std::to_string(i) + "].device_id",
                           "secure mode: a batch holds the rows of the device whose credentials it carries");
  return std::nullopt;
}

void HttpApi::post_metric(const httplib::Request& req, httplib::Response& res, const std::string& body) {
  if (!telemetry_) return send_error(res, telemetry_off);
  auto point = core::parse_metric_body(body, telemetry_->now(), telemetry_->limits());
  if (!point) {
    telemetry_->rejected(service::Transport::http);
    return send_error(res, point.error());
  }
  if (auto error = authenticate_as(req, point->device)) return send_error(res, *error);
  const std::string name = point->name;
  auto stored = telemetry_->store_metrics({std::move(point.value())}, /*batch=*/false);
  if (!stored) return send_error(res, stored.error());
  send_json(res, 200, {{"status", "ok"}, {"metric", name}});
}

void HttpApi::post_metric_batch(const httplib::Request& req, httplib::Response& res, const std::string& body) {
  if (!telemetry_) return send_error(res, telemetry_off);
  auto points = core::parse_metric_batch(body, telemetry_->now(), telemetry_->limits());
  if (!points) {
    telemetry_->rejected(service::Transport::http);
    return send_error(res, points.error());
  }
  if (fleet_.secure()) {
    if (auto error = one_device(points.value())) return send_error(res, *error);
    if (auto error = authenticate_as(req, points->front().device)) return send_error(res, *error);
  }
  const std::size_t count = points->size();
  auto stored = telemetry_->store_metrics(std::move(points.value()), /*batch=*/true);
  if (!stored) return send_error(res, stored.error());
  send_json(res, 200, {{"status", "ok"}, {"count", count}});
}

void HttpApi::post_event(const httplib::Request& req, httplib::Response& res, const std::string& body) {
  if (!telemetry_) return send_error(res, telemetry_off);
  auto event = core::parse_event_body(body, telemetry_->now(), telemetry_->limits());
  if (!event) {
    telemetry_->rejected(service::Transport::http);
    return send_error(res, event.error());
  }
  if (auto error = authenticate_as(req, event->device)) return send_error(res, *error);
  const std::string type = event->event_type;
  auto stored = telemetry_->store_events({std::move(event.value())}, /*batch=*/false);
  if (!stored) return send_error(res, stored.error());
  send_json(res, 200, {{"status", "ok"}, {"event_type", type}});
}

void HttpApi::post_event_batch(const httplib::Request& req, httplib::Response& res, const std::string& body) {
  if (!telemetry_) return send_error(res, telemetry_off);
  auto events = core::parse_event_batch(body, telemetry_->now(), telemetry_->limits());
  if (!events) {
    telemetry_->rejected(service::Transport::http);
    return send_error(res, events.error());
  }
  if (fleet_.secure()) {
    if (auto error = one_device(events.value())) return send_error(res, *error);
    if (auto error = authenticate_as(req, events->front().device)) return send_error(res, *error);
  }
  const std::size_t count = events->size();
  auto stored = telemetry_->store_events(std::move(events.value()), /*batch=*/true);
  if (!stored) return send_error(res, stored.error());
  send_json(res, 200, {{"status", "ok"}, {"count", count}});
}

namespace {
// The device of the path: 400 when it is not a UUID, 404 when not registered.
std::optional<core::DeviceId> registered_device(const httplib::Request& req, httplib::Response& res,
                                                service::Telemetry& telemetry) {
  auto id = path_uuid(req, 1, "id");
  if (!id) {
    send_json(res, 400, core::error_json(id.error()));
    return std::nullopt;
  }
  if (!telemetry.registered(id.value())) {
    send_json(res, 404, core::error_json(Error{ErrorKind::not_found, "", "device not found"}));
    return std::nullopt;
  }
  return id.value();
}
}  // namespace

void HttpApi::device_metrics(const httplib::Request& req, httplib::Response& res, const std::string&) {
  if (!telemetry_) return send_error(res, telemetry_off);
  const auto id = registered_device(req, res, *telemetry_);
  if (!id) return;
  auto query = core::parse_metric_query(params_of(req), telemetry_->now(), telemetry_->limits());
  if (!query) return send_error(res, query.error());
  const auto& q = query.value();
  Json body{{"device_id", id->to_string()},
            {"from", core::format_rfc3339(q.from)},
            {"to", core::format_rfc3339(q.to)}};
  if (q.bucket) {
    auto buckets = telemetry_->reader().metric_buckets(*id, q);
    if (!buckets) return send_error(res, buckets.error());
    body["bucket"] = q.bucket_text;
    body["agg"] = core::to_string(q.agg);
    Json list = Json::array();
    for (const auto& b : buckets.value()) {
      Json value;
      switch (q.agg) {
        case core::Aggregate::avg: value = b.avg; break;
        case core::Aggregate::min: value = b.min; break;
        case core::Aggregate::max: value = b.max; break;
        case core::Aggregate::sum: value = b.sum; break;
        case core::Aggregate::count: value = b.count; break;
      }
      list.push_back({{"name", b.name}, {"time", core::format_rfc3339(b.time)}, {"value", value}, {"count", b.count}});
    }
    body["buckets"] = std::move(list);
  } else {
    auto points = telemetry_->reader().metric_points(*id, q);
    if (!points) return send_error(res, points.error());
    Json list = Json::array();
    // Read newest first (the limit keeps the newest); answered oldest first.
    for (auto it = points->rbegin(); it != points->rend(); ++it)
      list.push_back({{"name", it->name},
                      {"time", core::format_rfc3339(it->time)},
                      {"value", it->value},
                      {"unit", optional_string(it->unit)},
                      {"tags", optional_json(it->tags)}});
    body["points"] = std::move(list);
  }
  send_json(res, 200, body);
}

void HttpApi::device_latest_metrics(const httplib::Request& req, httplib::Response& res, const std::string&) {
  if (!telemetry_) return send_error(res, telemetry_off);
  const auto id = registered_device(req, res, *telemetry_);
  if (!id) return;
  Json metrics = Json::object();
  for (const auto& v : telemetry_->latest(*id))
    metrics[v.name] = {{"value", v.value}, {"unit", optional_string(v.unit)}, {"time", core::format_rfc3339(v.time)}};
  send_json(res, 200, {{"device_id", id->to_string()}, {"metrics", std::move(metrics)}});
}

void HttpApi::device_events(const httplib::Request& req, httplib::Response& res, const std::string&) {
  if (!telemetry_) return send_error(res, telemetry_off);
  const auto id = registered_device(req, res, *telemetry_);
  if (!id) return;
  auto query = core::parse_event_query(params_of(req), telemetry_->now(), telemetry_->limits());
  if (!query) return send_error(res, query.error());
  auto events = telemetry_->reader().events(*id, query.value());
  if (!events) return send_error(res, events.error());
  Json list = Json::array();
  for (const auto& e : events.value())
    list.push_back({{"time", core::format_rfc3339(e.time)},
                    {"event_type", e.event_type},
                    {"severity", core::to_string(e.severity)},
                    {"message", optional_string(e.message)},
                    {"data", optional_json(e.data)}});
  send_json(res, 200, {{"device_id", id->to_string()},
                       {"from", core::format_rfc3339(query->from)},
                       {"to", core::format_rfc3339(query->to)},
                       {"events", std::move(list)}});
}

}  // namespace maestra::http
