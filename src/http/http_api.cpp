// Routes, transport limits, request translation and response mapping of the
// HTTP shim. One function per route; each parses with the core and calls the
// fleet. Routes live in one table (route_table) and are registered with
// cpp-httplib's router; nothing here decides a rule of the fleet.
//
// A note on transport limits: cpp-httplib 0.11 (Debian) enforces its body limit
// only for a Content-Length, inflates gzip bodies, and reads any number of
// headers. So before a route runs (the pre-routing handler, which runs before
// any body is read) the path, the header count and size, the framing and the
// encoding are checked; bodies are read through a content reader that stops at
// max_body_bytes whatever the framing. A refused request that may still carry
// a body gets "Connection: close", so its unread bytes are never taken for the
// next request.
//
// A note on cpp-httplib's other defaults: its listen backlog (5) is compiled
// into the shared library and keep-alive connections close after 5 requests. We
// raise the backlog by calling listen() again on the bound socket, turn Nagle
// off, size the worker pool from MAESTRA_HTTP_THREADS, and end a keep-alive
// connection after 20 requests (with "Connection: close").
#include "http/http_api.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>

#include <httplib.h>
#include <openssl/evp.h>

#include "core/documents.hpp"
#include "core/requests.hpp"
#include "service/log.hpp"

namespace maestra::http {

using core::Error;
using core::ErrorKind;
using core::Json;

std::size_t body_limit(std::string_view path) {
  return path == "/metrics/batch" || path == "/events/batch" ? core::TelemetryLimits{}.max_batch_body_bytes
                                                             : core::max_body_bytes;
}

int http_status(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::malformed: return 400;
    case ErrorKind::invalid_field: return 422;
    case ErrorKind::not_found: return 404;
    case ErrorKind::conflict: return 409;
    case ErrorKind::too_large: return 413;
    case ErrorKind::unavailable: return 503;
    case ErrorKind::unauthorized: return 401;
    case ErrorKind::forbidden: return 403;
    case ErrorKind::internal: return 500;
  }
  return 500;
}

const std::vector<RouteSpec>& route_table() {
  static const std::vector<RouteSpec> table = {
      {"POST", "/devices/register", false, "register a device (201, or 409 with the existing id)"},
      {"POST", "/devices/heartbeat", false, "a device's heartbeat (secure mode: the device's credentials)"},
      {"GET", "/devices", true, "list devices (filters status, device_type, hardware_id; limit, offset)"},
      {"GET", "/devices/{id}", true, "one device"},
      {"GET", "/devices/{id}/history", true, "a device's status changes, newest first"},
      {"PATCH", "/devices/{id}", true, "change a device's attributes, maintenance or offline_after"},
      {"DELETE", "/devices/{id}", true, "delete a device (clears its retained topics)"},
      {"POST", "/devices/{id}/credentials", true, "secure mode: a new broker password for the device"},
      {"POST", "/dashboard/credentials", true, "secure mode: a short-lived read-only broker account for one dashboard"},
      {"GET", "/hardware/blocked", true, "blocked hardware ids"},
      {"PUT", "/hardware/{hardware_id}/block", true, "block a hardware id from registering"},
      {"DELETE", "/hardware/{hardware_id}/block", true, "unblock a hardware id"},
      {"POST", "/metrics", false, "a metric point of a device (answered once stored)"},
      {"POST", "/metrics/batch", false, "up to 1,000 metric points in one body of up to 1 MiB (answered once stored)"},
      {"POST", "/events", false, "an event of a device (answered once stored)"},
      {"POST", "/events/batch", false, "up to 1,000 events in one body of up to 1 MiB (answered once stored)"},
      {"GET", "/devices/{id}/metrics", true, "a device's metric points, or time buckets (bucket=, agg=)"},
      {"GET", "/devices/{id}/metrics/latest", true, "the latest value of each metric of a device"},
      {"GET", "/devices/{id}/events", true, "a device's events, newest first"},
      {"POST", "/devices/{id}/commands", true, "send a command to a device (201; Idempotency-Key; ?wait=N)"},
      {"GET", "/devices/{id}/commands", true, "a device's commands, newest first (filters state; limit, offset)"},
      {"POST", "/commands", true, "send a command to many devices (device_ids, device_type or status)"},
      {"GET", "/commands/{command_id}", true, "one command with its history"},
      {"DELETE", "/commands/{command_id}", true, "cancel a command (409 when it is terminal)"},
      {"GET", "/devices/{id}/commands/pending", false, "a device's undelivered commands, marked sent (?wait=N long poll)"},
      {"POST", "/devices/{id}/commands/{command_id}/reply", false, "a device's reply to a command"},
      {"GET", "/health", false, "liveness and dependencies (503 when the database is unreachable)"},
      {"GET", "/metrics", false, "Prometheus metrics"},
      {"GET", "/openapi.json", false, "this API as OpenAPI 3"},
  };
  return table;
}

std::string route_table_text() {
  std::string out;
  for (const auto& r : route_table()) {
    std::string line = std::string(r.method) + " " + r.path;
    line += std::string(line.size() < 40 ? 40 - line.size() : 1, ' ');
    out += line + (r.admin ? "admin  " : "open   ") + r.summary + "\n";
  }
  return out;
}

namespace {

// "/devices/{id}" -> "/devices/([^/]+)" for httplib's router.
std::string path_regex(std::string_view path) {
  std::string out;
  for (std::size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '{') {
      i = path.find('}', i);
      out += "([^/]+)";
    } else {
      out += path[i];
    }
  }
  return out;
}

bool is_literal(std::string_view path) { return path.find('{') == std::string_view::npos; }

// Segment by segment; "{x}" matches one non-empty segment.
bool path_matches(std::string_view pattern, std::string_view path) {
  while (!pattern.empty() && !path.empty()) {
    const auto p_end = pattern.find('/', 1);
    const auto s_end = path.find('/', 1);
    const auto p = pattern.substr(0, p_end);
    const auto s = path.substr(0, s_end);
    if (p.size() > 1 && p[1] == '{') {
      if (s.size() < 2) return false;
    } else if (p != s) {
      return false;
    }
    pattern = p_end == std::string_view::npos ? std::string_view{} : pattern.substr(p_end);
    path = s_end == std::string_view::npos ? std::string_view{} : path.substr(s_end);
  }
  return pattern.empty() && path.empty();
}

// The methods the path takes: a literal path ("/devices/heartbeat") is answered
// only by its own routes, never by a pattern that would also match it.
std::string allowed_methods(std::string_view path) {
  std::string literal, pattern;
  for (const auto& r : route_table()) {
    if (is_literal(r.path) ? r.path == path : path_matches(r.path, path)) {
      auto& list = is_literal(r.path) ? literal : pattern;
      if (list.find(r.method) == std::string::npos) list += (list.empty() ? "" : ", ") + std::string(r.method);
    }
  }
  return literal.empty() ? pattern : literal;
}

bool has_body(const httplib::Request& req) {
  return req.has_header("Transfer-Encoding") ||
         (req.has_header("Content-Length") && req.get_header_value("Content-Length") != "0");
}

// Calls fn(fd) for every socket of this process whose local port is `port` and
// that has a peer (an accepted connection); `peer_port` > 0 narrows it to one.
template <class Fn>
void for_each_connection(int port, int peer_port, Fn&& fn) {
  DIR* fds = ::opendir("/proc/self/fd");
  if (!fds) return;
  while (const dirent* entry = ::readdir(fds)) {
    const int fd = std::atoi(entry->d_name);
    if (fd <= 2) continue;
    sockaddr_storage local{}, peer{};
    socklen_t local_len = sizeof(local), peer_len = sizeof(peer);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0) continue;
    const auto port_of = [](const sockaddr_storage& a) {
      if (a.ss_family == AF_INET) return static_cast<int>(ntohs(reinterpret_cast<const sockaddr_in*>(&a)->sin_port));
      if (a.ss_family == AF_INET6) return static_cast<int>(ntohs(reinterpret_cast<const sockaddr_in6*>(&a)->sin6_port));
      return -1;
    };
    if (port_of(local) != port) continue;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) continue;  // the listener
    if (peer_port > 0 && port_of(peer) != peer_port) continue;
    fn(fd);
  }
  ::closedir(fds);
}

// Ends a connection whose answer has been written and whose request bytes were
// not all read (a refusal before or while reading the body): cpp-httplib 0.11
// keeps a connection open whatever the response says, and would read the
// leftover bytes as the next request. The answer is followed by FIN, what
// already arrived is drained (bounded), and the descriptor is pointed at a
// socket that reads end-of-stream, so the worker's next read ends the connection.
void end_connection(int fd) {
  ::shutdown(fd, SHUT_WR);
  char buffer[16384];
  for (int i = 0; i < 64; ++i)
    if (::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT) <= 0) break;
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    ::shutdown(fd, SHUT_RD);
    return;
  }
  ::close(pair[1]);
  ::dup2(pair[0], fd);
  ::close(pair[0]);
}

// A refusal before the body was read: answered, then the connection ends (the
// server's logger, which runs once the answer is written, calls end_connection
// for every response marked "Connection: close").
void refuse(httplib::Response& res, int status, std::string_view code, const std::string& detail,
            std::string_view field = {}) {
  Json body{{"error", code}, {"detail", detail}};
  if (!field.empty()) body["field"] = field;
  res.set_header("Connection", "close");
  send_json(res, status, body);
}

void end_connection_if_refused(int server_port, const httplib::Request& req, const httplib::Response& res) {
  // Only a refusal can leave request bytes unread: an error status for a
  // request that came with a body.
  if (server_port <= 0 || req.remote_port <= 0 || res.status < 400 || !has_body(req) ||
      res.get_header_value("Connection") != "close")
    return;
  for_each_connection(server_port, req.remote_port, [](int fd) { end_connection(fd); });
}

std::optional<core::DeviceId> path_id(const httplib::Request& req, httplib::Response& res) {
  auto id = path_uuid(req, 1, "id");
  if (!id) {
    send_json(res, 400, core::error_json(id.error()));
    return std::nullopt;
  }
  return id.value();
}

Json heartbeat_json(const service::HeartbeatReply& r) {
  Json body{{"device_id", r.id.to_string()},
            {"status", core::to_string(r.status)},
            {"last_seen", core::format_rfc3339(r.last_seen)}};
  if (r.too_frequent) body["warning"] = core::frequency_warning_text;
  return body;
}

// Standard base64 (OpenSSL); empty on bad input.
std::string base64_decode(std::string_view in) {
  if (in.empty() || in.size() % 4 != 0 || in.size() > 1024) return {};
  std::string out(in.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) return {};
  std::size_t size = static_cast<std::size_t>(n);
  for (std::size_t i = in.size(); i > 0 && in[i - 1] == '=' && size > 0; --i) --size;  // padding decodes as NULs
  out.resize(size);
  return out;
}

// Transport limits, checked before routing and before any body is read.
std::optional<std::pair<int, std::string>> transport_refusal(const httplib::Request& req, std::string& field) {
  if (req.path.size() > max_path_bytes)
    return std::pair{414, "the path is longer than " + std::to_string(max_path_bytes) + " bytes"};
  if (req.headers.size() > max_header_count)
    return std::pair{431, "more than " + std::to_string(max_header_count) + " header fields"};
  std::size_t header_bytes = 0;
  for (const auto& [name, value] : req.headers) header_bytes += name.size() + value.size();
  if (header_bytes > max_header_bytes)
    return std::pair{431, "header fields larger than " + std::to_string(max_header_bytes) + " bytes"};
  if (!core::is_valid_utf8(req.path) || core::has_control_characters(req.path)) {
    field = "path";
    return std::pair{400, "the path is not valid UTF-8 or holds control characters"};
  }
  if (req.params.size() > 32) {
    field = "query";
    return std::pair{400, "more than 32 query parameters"};
  }
  for (const auto& [name, value] : req.params)
    if (!core::is_valid_utf8(name) || !core::is_valid_utf8(value) || core::has_control_characters(name) ||
        core::has_control_characters(value)) {
      field = name.size() <= 64 && core::is_valid_utf8(name) && !core::has_control_characters(name) ? name : "query";
      return std::pair{400, "query parameter " + field + " is not valid UTF-8 or holds control characters"};
    }
  if (req.has_header("Content-Encoding")) {
    const auto encoding = req.get_header_value("Content-Encoding");
    if (encoding != "identity") return std::pair{415, "compressed request bodies are not accepted"};
  }
  if (req.has_header("Transfer-Encoding") && req.get_header_value("Transfer-Encoding") != "chunked")
    return std::pair{400, "only Transfer-Encoding: chunked is accepted"};
  if (req.get_header_value_count("Content-Length") > 1)
    return std::pair{400, "more than one Content-Length"};  // RFC 9112 section 6.3
  if (req.has_header("Transfer-Encoding") && req.has_header("Content-Length"))
    return std::pair{400, "both Transfer-Encoding and Content-Length"};
  if (req.has_header("Content-Length")) {
    const auto length = req.get_header_value("Content-Length");
    if (length.empty() || length.size() > 18 || length.find_first_not_of("0123456789") != std::string::npos)
      return std::pair{400, "Content-Length is not a number"};
    if (std::stoull(length) > body_limit(req.path))
      return std::pair{413, "body is larger than " + std::to_string(body_limit(req.path)) + " bytes"};
  }
  const bool bodiless = req.method == "GET" || req.method == "HEAD" || req.method == "OPTIONS";
  if (bodiless && has_body(req)) return std::pair{400, req.method + " requests carry no body"};
  return std::nullopt;
}

std::string_view error_code_for(int status) {
  switch (status) {
    case 413: return "payload_too_large";
    case 414: return "uri_too_long";
    case 415: return "unsupported_media_type";
    case 431: return "headers_too_large";
    default: return "bad_request";
  }
}

}  // namespace

void send_json(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
}

core::ParamLookup params_of(const httplib::Request& req) {
  return [&req](std::string_view name) -> std::optional<std::string> {
    const std::string key(name);
    if (!req.has_param(key.c_str())) return std::nullopt;
    return req.get_param_value(key.c_str());
  };
}

core::Result<core::DeviceId> path_uuid(const httplib::Request& req, std::size_t index, const char* field,
                                       const char* what) {
  auto id = core::parse_device_id(req.matches[index].str());
  if (!id) return Error{ErrorKind::malformed, field, std::string("the ") + what + " in the path is not a valid UUID"};
  return *id;
}

std::optional<Error> HttpApi::authenticate_as(const httplib::Request& req, const core::DeviceId& device) {
  if (!fleet_.secure()) return std::nullopt;
  core::HeartbeatRequest named;
  named.device_id = device;
  auto proven = authenticate_device(req, named);
  if (!proven) return proven.error();
  return std::nullopt;
}

void HttpApi::send_error(httplib::Response& res, const Error& error) {
  Error shown = error;
  // Database details go to the log, not to clients.
  if (error.kind == ErrorKind::unavailable) {
    service::log_warn("request_unavailable", {{"error", error.detail}});
    shown.detail = "the database is unavailable; try again";
  } else if (error.kind == ErrorKind::internal) {
    ++metrics_.internal_errors;
    service::log_error("request_failed", {{"error", error.detail}});
    shown.detail = "internal error";
  }
  send_json(res, http_status(error.kind), core::error_json(shown));
}

core::Result<core::DeviceId> HttpApi::authenticate_device(const httplib::Request& req, const core::HeartbeatRequest& h) {
  // Authorization: Basic base64(<device id>:<password>), or Bearer <password>
  // for the device the body names. Whatever names the device (device_id, or
  // hardware_id resolved to its device), it must be the credential's device.
  const std::string header = req.get_header_value("Authorization");
  std::optional<core::DeviceId> user;
  std::string password;
  if (header.rfind("Basic ", 0) == 0) {
    const std::string decoded = base64_decode(std::string_view(header).substr(6));
    const auto colon = decoded.find(':');
    if (colon == std::string::npos) return Error{ErrorKind::unauthorized, "", "malformed Basic credentials"};
    user = core::parse_device_id(std::string_view(decoded).substr(0, colon));
    if (!user) return Error{ErrorKind::forbidden, "", "the username must be the device id"};
    password = decoded.substr(colon + 1);
  } else if (header.rfind("Bearer ", 0) == 0) {
    password = header.substr(7);
  } else {
    metrics_.reject(service::Rejection::unauthorized);
    return Error{ErrorKind::unauthorized, "",
                 "secure mode: a heartbeat needs the device's credentials (Authorization: Basic id:password)"};
  }
  std::optional<core::DeviceId> named = h.device_id;
  if (!named && h.hardware_id) {
    auto resolved = fleet_.resolve_hardware_id(*h.hardware_id);
    if (!resolved && resolved.error().kind != ErrorKind::not_found) return resolved.error();
    // An unknown hardware id is no device these credentials belong to.
    if (!resolved) return Error{ErrorKind::forbidden, "", "the credentials are not valid for this device"};
    named = resolved.value();
  }
  if (user && named && *user != *named) {
    metrics_.reject(service::Rejection::unauthorized);
    return Error{ErrorKind::forbidden, "", "these credentials belong to another device"};
  }
  const auto device = user ? *user : named;
  if (!device) return Error{ErrorKind::invalid_field, "device_id", "secure mode: heartbeats name the device by device_id"};
  auto valid = fleet_.verify_credential(*device, password);
  if (!valid) return valid.error();
  if (!valid.value()) {
    metrics_.reject(service::Rejection::unauthorized);
    return Error{ErrorKind::forbidden, "", "the credentials are not valid for this device"};
  }
  return *device;
}

HttpApi::HttpApi(service::Fleet& fleet, service::Metrics& metrics, const core::Config& config, HealthProbe probe)
    : fleet_(fleet), metrics_(metrics), config_(config), topics_(config.topic_prefix), probe_(std::move(probe)),
      server_(std::make_unique<httplib::Server>()),
      throttle_(config.auth_failure_limit, std::chrono::seconds(60)) {
  openapi_ = openapi_document();
  install_routes();
}

HttpApi::~HttpApi() { stop(); }

// --- routes -------------------------------------------------------------------------

void HttpApi::register_device(const httplib::Request& req, httplib::Response& res, const std::string& body) {
  auto parsed = core::parse_json_object(body);
  if (!parsed) return send_error(res, parsed.error());
  auto registration = core::parse_registration(parsed.value());
  if (!registration) return send_error(res, registration.error());
  if (req.has_header("X-Provisioning-Key")) {
    const auto key = req.get_header_value("X-Provisioning-Key");
    if (auto error = core::check_text("X-Provisioning-Key", key, 256)) return send_error(res, *error);
    registration->provisioning_key = key;
  }
  auto registered = fleet_.register_device(registration.value(), service::Transport::http);
  if (!registered) return send_error(res, registered.error());
  auto answer = core::device_record_json(registered->record);
  if (registered->mqtt_password)
    answer["mqtt"] = core::mqtt_credentials_json(registered->record.id, *registered->mqtt_password, topics_);
  send_json(res, 201, answer);
}

void HttpApi::heartbeat(const httplib::Request& req, httplib::Response& res, const std::string& body) {
  auto parsed = core::parse_json_object(body);
  if (!parsed) return send_error(res, parsed.error());
  auto request = core::parse_heartbeat(parsed.value());
  if (!request) return send_error(res, request.error());
  if (fleet_.secure()) {
    auto device = authenticate_device(req, request.value());
    if (!device) return send_error(res, device.error());
    request->device_id = device.value();  // what is applied is what was authenticated
    request->hardware_id.reset();
  }
  auto reply = fleet_.heartbeat(request.value(), service::Transport::http);
  if (!reply) return send_error(res, reply.error());
  send_json(res, 200, heartbeat_json(reply.value()));
}

void HttpApi::list_devices(const httplib::Request& req, httplib::Response& res, const std::string&) {
  auto query = core::parse_list_query(params_of(req));
  if (!query) return send_error(res, query.error());
  // Streamed page by page (bounded memory for any fleet). The status line goes
  // out before the first page, so a database that is down is found first; one
  // that fails mid-list ends the connection, and the truncated array cannot be
  // mistaken for a whole one.
  if (auto down = fleet_.database_health(); !down) return send_error(res, down.error());
  res.status = 200;
  res.set_chunked_content_provider("application/json", [this, q = query.value()](std::size_t, httplib::DataSink& sink) {
    bool first = true;
    bool written = sink.write("[", 1);
    auto listed = fleet_.list(q, [&](const std::vector<core::DeviceRecord>& page) {
      std::string chunk;
      for (const auto& record : page) {
        if (!first) chunk += ",";
        first = false;
        chunk += core::device_record_json(record).dump(-1, ' ', false, Json::error_handler_t::replace);
      }
      written = written && sink.write(chunk.data(), chunk.size());
      return written;
    });
    if (!written) return false;  // the client went away
    if (!listed) {
      service::log_error("device_list_failed", {{"error", listed.error().detail}});
      return false;
    }
    sink.write("]", 1);
    sink.done();
    return true;
  });
}

void HttpApi::get_device(const httplib::Request& req, httplib::Response& res, const std::string&) {
  auto id = path_id(req, res);
  if (!id) return;
  auto record = fleet_.get(*id);
  if (!record) return send_error(res, record.error());
  send_json(res, 200, core::device_record_json(record.value()));
}

void HttpApi::device_history(const httplib::Request& req, httplib::Response& res, const std::string&) {
  auto id = path_id(req, res);
  if (!id) return;
  auto limit = core::parse_history_limit(params_of(req));
  if (!limit) return send_error(res, limit.error());
  auto record = fleet_.get(*id);
  if (!record) return send_error(res, record.error());
  auto entries = fleet_.history(*id, limit.value());
  if (!entries) return send_error(res, entries.error());
  Json body = Json::array();
  for (const auto& e : entries.value())
    body.push_back({{"from", e.from ? Json(core::to_string(*e.from)) : Json(nullptr)},
                    {"to", core::to_string(e.to)},
                    {"reason", e.reason},
                    {"at", core::format_rfc3339(e.at)}});
  send_json(res, 200, body);
}

void HttpApi::patch_device(const httplib::Request& req, httplib::Response& res, const std::string& body) {
  auto id = path_id(req, res);
  if (!id) return;
  auto parsed = core::parse_json_object(body);
  if (!parsed) return send_error(res, parsed.error());
  auto patch = core::parse_patch(parsed.value());
  if (!patch) return send_error(res, patch.error());
  auto record = fleet_.patch(*id, patch.value());
  if (!record) return send_error(res, record.error());
  send_json(res, 200, core::device_record_json(record.value()));
}

void HttpApi::delete_device(const httplib::Request& req, httplib::Response& res, const std::string&) {
  auto id = path_id(req, res);
  if (!id) return;
  auto removed = fleet_.remove(*id);
  if (!removed) return send_error(res, removed.error());
  if (commands_) commands_->device_removed(*id);  // its open commands leave the command owner's cache
  res.status = 204;
}

void HttpApi::rotate_credentials(const httplib::Request& req, httplib::Response& res, const std::string&) {
  auto id = path_id(req, res);
  if (!id) return;
  auto password = fleet_.rotate_credentials(*id);
  if (!password) return send_error(res, password.error());
  send_json(res, 200, {{"device_id", id->to_string()}, {"mqtt", core::mqtt_credentials_json(*id, password.value(), topics_)}});
}

void HttpApi::dashboard_credentials(const httplib::Request&, httplib::Response& res, const std::string& body) {
  // Secure mode: a short-lived read-only broker account for one dashboard (one
  // browser), bound to its own client id so it cannot take over a device's.
  std::int64_t ttl = 3600;
  if (!body.empty()) {
    auto parsed = core::parse_json_object(body);
    if (!parsed) return send_error(res, parsed.error());
    if (parsed->contains("ttl_seconds")) {
      const Json& v = parsed.value()["ttl_seconds"];
      if (!v.is_number_integer() || v.get<std::int64_t>() < 10 || v.get<std::int64_t>() > 86400)
        return send_error(res, Error{ErrorKind::invalid_field, "ttl_seconds", "ttl_seconds must be an integer from 10 to 86400"});
      ttl = v.get<std::int64_t>();
    }
  }
  auto issued = fleet_.issue_dashboard_credential(std::chrono::seconds(ttl));
  if (!issued) return send_error(res, issued.error());
  send_json(res, 201, {{"username", issued->username},
                       {"password", issued->password},
                       {"client_id", issued->client_id},
                       {"expires_at", core::format_rfc3339(issued->expires_at)},
                       {"topics", {{"devices", topics_.prefix() + "/devices/+/status"},
                                   {"fleet", topics_.prefix() + "/fleet/#"}}}});
}

void HttpApi::list_blocked(const httplib::Request&, httplib::Response& res, const std::string&) {
  auto blocked = fleet_.blocked_hardware_ids();
  if (!blocked) return send_error(res, blocked.error());
  Json body = Json::array();
  for (const auto& b : blocked.value())
    body.push_back({{"hardware_id", b.hardware_id},
                    {"reason", b.reason ? Json(*b.reason) : Json(nullptr)},
                    {"blocked_at", core::format_rfc3339(b.blocked_at)}});
  send_json(res, 200, body);
}

void HttpApi::block_hardware(const httplib::Request& req, httplib::Response& res, const std::string& body) {
  const std::string hardware_id = req.matches[1].str();
  if (auto error = core::check_hardware_id(hardware_id)) return send_error(res, *error);
  std::optional<std::string> reason;
  if (!body.empty()) {
    auto parsed = core::parse_json_object(body);
    if (!parsed) return send_error(res, parsed.error());
    auto text = core::optional_string(parsed.value(), "reason", 200);
    if (!text) return send_error(res, text.error());
    reason = text.value();
  }
  auto blocked = fleet_.block_hardware_id(hardware_id, reason);
  if (!blocked) return send_error(res, blocked.error());
  send_json(res, 200, {{"hardware_id", hardware_id}, {"blocked", true}});
}

void HttpApi::unblock_hardware(const httplib::Request& req, httplib::Response& res, const std::string&) {
  const std::string hardware_id = req.matches[1].str();
  if (auto error = core::check_hardware_id(hardware_id)) return send_error(res, *error);
  auto unblocked = fleet_.unblock_hardware_id(hardware_id);
  if (!unblocked) return send_error(res, unblocked.error());
  res.status = 204;
}

void HttpApi::health(const httplib::Request&, httplib::Response& res, const std::string&) {
  const bool database = static_cast<bool>(fleet_.database_health());
  const bool mqtt = probe_.mqtt_connected && probe_.mqtt_connected();
  Json body{{"status", database ? (mqtt ? "ok" : "degraded") : "unavailable"},
            {"database", database ? "ok" : "unavailable"},
            {"mqtt", mqtt ? "connected" : "disconnected"},
            {"devices", fleet_.size()}};
  send_json(res, database ? 200 : 503, body);
}

void HttpApi::metrics(const httplib::Request&, httplib::Response& res, const std::string&) {
  std::string text = metrics_.render_prometheus();
  if (commands_) text += commands_->metrics().render_prometheus();
  if (telemetry_) text += telemetry_->counters().render_prometheus();
  res.set_content(text, "text/plain; version=0.0.4");
}

void HttpApi::openapi(const httplib::Request&, httplib::Response& res, const std::string&) {
  if (openapi_.empty()) return send_error(res, Error{ErrorKind::not_found, "", "no OpenAPI document installed"});
  res.set_content(openapi_, "application/json");
}

// --- wiring -------------------------------------------------------------------------

void HttpApi::run(const RouteSpec& route, Handler handler, const httplib::Request& req, httplib::Response& res,
                  const std::string& body) {
  // A pattern route never answers a path that is a literal route of another
  // method: GET /devices/heartbeat is 405, not "heartbeat is not a UUID".
  if (!is_literal(route.path)) {
    const auto allowed = allowed_methods(req.path);
    if (allowed.find(route.method) == std::string::npos) {
      res.set_header("Allow", allowed);
      return send_json(res, 405, {{"error", "method_not_allowed"},
                                  {"detail", req.method + " is not allowed on " + req.path}});
    }
  }
  // Routes that check a secret (the admin token, a device's password, the
  // provisioning key) are throttled per address after refused credentials.
  const std::string_view path = route.path;
  const bool throttled = (route.admin || path == "/devices/register" || path == "/devices/heartbeat") &&
                         config_.auth_failure_limit > 0;
  const auto now = std::chrono::time_point_cast<core::Millis>(std::chrono::system_clock::now());
  // The common case, no address blocked right now, takes no lock: every
  // heartbeat passes here.
  if (throttled && now.time_since_epoch().count() < blocked_until_ms_.load()) {
    core::Millis wait{0};
    {
      std::lock_guard lock(throttle_mutex_);
      wait = throttle_.retry_after(req.remote_addr, now);
    }
    if (wait > core::Millis{0}) {
      const auto seconds = (wait.count() + 999) / 1000;
      res.set_header("Retry-After", std::to_string(seconds));
      metrics_.reject(service::Rejection::throttled);
      return send_json(res, 429, {{"error", "too_many_failures"},
                                  {"detail", "too many refused credentials from this address; retry in " +
                                                 std::to_string(seconds) + " s"}});
    }
  }
  [&] {
    if (route.admin && !config_.admin_token.empty()) {
      const std::string header = req.get_header_value("Authorization");
      if (header.rfind("Bearer ", 0) != 0)
        return send_error(res, Error{ErrorKind::unauthorized, "", "this endpoint requires Authorization: Bearer <token>"});
      if (!core::secrets_equal(std::string_view(header).substr(7), config_.admin_token))
        return send_error(res, Error{ErrorKind::forbidden, "", "the admin token is not valid"});
    }
    try {
      (this->*handler)(req, res, body);
    } catch (const std::exception& e) {
      ++metrics_.internal_errors;
      service::log_error("http_handler_failed", {{"path", req.path.substr(0, 200)}, {"error", e.what()}});
      send_json(res, 500, {{"error", "internal_error"}, {"detail", "internal error"}});
    }
  }();
  if (throttled && (res.status == 401 || res.status == 403)) {
    std::lock_guard lock(throttle_mutex_);
    throttle_.record_failure(req.remote_addr, now);
    const auto blocked_for = throttle_.retry_after(req.remote_addr, now);
    if (blocked_for > core::Millis{0}) {
      const auto until = (now + blocked_for).time_since_epoch().count();
      if (until > blocked_until_ms_.load(std::memory_order_relaxed)) blocked_until_ms_.store(until);
    }
  }
}

void HttpApi::add(const char* method, const char* path, Handler handler) {
  const RouteSpec* spec = nullptr;
  for (const auto& r : route_table())
    if (std::string_view(r.method) == method && std::string_view(r.path) == path) spec = &r;
  if (!spec) throw std::logic_error(std::string("route not in route_table: ") + method + " " + path);
  const std::string pattern = path_regex(path);
  const std::string_view m = method;
  if (m == "GET") {
    server_->Get(pattern, [this, spec, handler](const httplib::Request& req, httplib::Response& res) {
      run(*spec, handler, req, res, {});
    });
    return;
  }
  // Methods with a body: read through a content reader that stops at the limit,
  // whatever the framing. No Content-Length and no Transfer-Encoding is an
  // empty body (RFC 9112 section 6.3), not "read until the client closes".
  auto with_body = [this, spec, handler](const httplib::Request& req, httplib::Response& res,
                                         const httplib::ContentReader& reader) {
    std::string body;
    if (has_body(req)) {
      bool too_large = false;
      const std::size_t limit = body_limit(spec->path);
      const bool read = reader([&](const char* data, std::size_t length) {
        if (body.size() + length > limit) {
          too_large = true;
          return false;
        }
        body.append(data, length);
        return true;
      });
      if (too_large)
        return refuse(res, 413, "payload_too_large", "body is larger than " + std::to_string(limit) + " bytes");
      if (!read) return refuse(res, 400, "bad_request", "the body could not be read");
    }
    run(*spec, handler, req, res, body);
  };
  if (m == "POST") server_->Post(pattern, with_body);
  else if (m == "PUT") server_->Put(pattern, with_body);
  else if (m == "PATCH") server_->Patch(pattern, with_body);
  else if (m == "DELETE") server_->Delete(pattern, with_body);
  else throw std::logic_error(std::string("unsupported method ") + method);
}

void HttpApi::install_routes() {
  add("POST", "/devices/register", &HttpApi::register_device);
  add("POST", "/devices/heartbeat", &HttpApi::heartbeat);
  add("GET", "/devices", &HttpApi::list_devices);
  add("GET", "/devices/{id}", &HttpApi::get_device);
  add("GET", "/devices/{id}/history", &HttpApi::device_history);
  add("PATCH", "/devices/{id}", &HttpApi::patch_device);
  add("DELETE", "/devices/{id}", &HttpApi::delete_device);
  add("POST", "/devices/{id}/credentials", &HttpApi::rotate_credentials);
  add("POST", "/dashboard/credentials", &HttpApi::dashboard_credentials);
  add("GET", "/hardware/blocked", &HttpApi::list_blocked);
  add("PUT", "/hardware/{hardware_id}/block", &HttpApi::block_hardware);
  add("DELETE", "/hardware/{hardware_id}/block", &HttpApi::unblock_hardware);
  add("POST", "/metrics", &HttpApi::post_metric);
  add("POST", "/metrics/batch", &HttpApi::post_metric_batch);
  add("POST", "/events", &HttpApi::post_event);
  add("POST", "/events/batch", &HttpApi::post_event_batch);
  add("GET", "/devices/{id}/metrics", &HttpApi::device_metrics);
  add("GET", "/devices/{id}/metrics/latest", &HttpApi::device_latest_metrics);
  add("GET", "/devices/{id}/events", &HttpApi::device_events);
  add("POST", "/devices/{id}/commands", &HttpApi::create_command);
  add("GET", "/devices/{id}/commands", &HttpApi::list_commands);
  add("POST", "/commands", &HttpApi::fan_out_commands);
  add("GET", "/commands/{command_id}", &HttpApi::get_command);
  add("DELETE", "/commands/{command_id}", &HttpApi::cancel_command);
  add("GET", "/devices/{id}/commands/pending", &HttpApi::pending_commands);
  add("POST", "/devices/{id}/commands/{command_id}/reply", &HttpApi::reply_command);
  add("GET", "/health", &HttpApi::health);
  add("GET", "/metrics", &HttpApi::metrics);
  add("GET", "/openapi.json", &HttpApi::openapi);

  server_->set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    std::string field;
    const auto refusal = transport_refusal(req, field);
    if (!refusal) return httplib::Server::HandlerResponse::Unhandled;
    refuse(res, refusal->first, error_code_for(refusal->first), refusal->second, field);
    return httplib::Server::HandlerResponse::Handled;
  });

  server_->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) {
      const auto allowed = allowed_methods(req.path);
      if (!allowed.empty()) {
        res.set_header("Allow", allowed);
        return send_json(res, 405, {{"error", "method_not_allowed"},
                                    {"detail", req.method + " is not allowed on " + req.path}});
      }
      return send_json(res, 404, {{"error", "not_found"}, {"detail", "no route " + req.method + " " + req.path}});
    }
    if (res.status == 413)
      return send_json(res, 413, {{"error", "payload_too_large"},
                                  {"detail", "body is larger than " + std::to_string(core::max_body_bytes) + " bytes"}});
    if (res.status == 414)
      return send_json(res, 414, {{"error", "uri_too_long"}, {"detail", "the request line is too long"}});
    send_json(res, res.status, {{"error", "bad_request"}, {"detail", "the request could not be read"}});
  });
  server_->set_exception_handler([this](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    ++metrics_.internal_errors;
    send_json(res, 500, {{"error", "internal_error"}, {"detail", "internal error"}});
  });
  server_->set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    end_connection_if_refused(port_, req, res);
    ++metrics_.http_requests;
    // Heartbeats and telemetry are the bulk of requests: only their refusals are logged.
    const bool bulk = req.path == "/devices/heartbeat" || (req.method == "POST" && (req.path.rfind("/metrics", 0) == 0 ||
                                                                                    req.path.rfind("/events", 0) == 0));
    if (res.status >= 400 || !bulk)
      service::log_info("http", {{"method", req.method.substr(0, 16)}, {"path", req.path.substr(0, 200)},
                                 {"status", std::to_string(res.status)}, {"remote", req.remote_addr}});
  });
}

int HttpApi::start() {
  server_->set_tcp_nodelay(true);
  // A connection gives its worker back after this many requests, so more
  // clients than workers still take turns (cpp-httplib serves a keep-alive
  // connection on one worker until it closes). Measured with wrk at 64
  // connections (BENCHMARKS.md, HTTP): 1,000 gave p99 18-24 ms and a 65th client
  // waiting up to 2 s; 20 gives p99 7-9 ms and that client p50 7 ms, for about
  // 10 % less throughput (reconnects); 10 cost more throughput and no latency.
  server_->set_keep_alive_max_count(20);
  // An idle keep-alive connection holds a worker until this timeout; at
  // shutdown end_idle_connections releases them at once.
  server_->set_keep_alive_timeout(2);
  const int threads = config_.http_threads;
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<std::size_t>(threads)); };
  if (!config_.web_root.empty()) server_->set_mount_point("/", config_.web_root);
  port_ = bind_and_serve(*server_, config_, thread_);
  return port_;
}

int bind_and_serve(httplib::Server& server, const core::Config& config, std::thread& thread) {
  auto listen_fd = std::make_shared<int>(-1);
  server.set_socket_options([listen_fd](socket_t sock) {
    // cpp-httplib's defaults add SO_REUSEPORT, which lets a second process bind
    // the same port and take half the connections: only SO_REUSEADDR here.
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    *listen_fd = sock;
  });
  int port = config.http_port;
  if (port == 0) {
    port = server.bind_to_any_port(config.http_host);
  } else if (!server.bind_to_port(config.http_host, port)) {
    port = -1;
  }
  if (port < 0)
    throw std::runtime_error("cannot listen on " + config.http_host + ":" + std::to_string(config.http_port) +
                             ": the port is in use (another fleet-manager?) or not permitted; choose another with "
                             "MAESTRA_HTTP_PORT or --http-port");
  if (*listen_fd >= 0) ::listen(*listen_fd, 1024);
  thread = std::thread([&server] { server.listen_after_bind(); });
  return port;
}

void end_idle_connections(int port) {
  for_each_connection(port, 0, [](int fd) { ::shutdown(fd, SHUT_RD); });
}

StandbyHttp::StandbyHttp(const core::Config& config)
    : config_(config), server_(std::make_unique<httplib::Server>()) {
  auto answer = [](const httplib::Request& req, httplib::Response& res) {
    if (req.path == "/health")
      return send_json(res, 503, {{"status", "standby"}, {"database", "ok"}, {"mqtt", "disconnected"}, {"devices", 0}});
    send_json(res, 503, {{"error", "unavailable"},
                         {"detail", "this instance is a standby: another fleet-manager is active on this database"}});
  };
  server_->set_pre_routing_handler([answer](const httplib::Request& req, httplib::Response& res) {
    answer(req, res);
    if (has_body(req)) res.set_header("Connection", "close");  // its body is never read
    return httplib::Server::HandlerResponse::Handled;
  });
  server_->set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    end_connection_if_refused(port_, req, res);
  });
  server_->set_keep_alive_timeout(2);
}

StandbyHttp::~StandbyHttp() { stop(); }

int StandbyHttp::start() {
  port_ = bind_and_serve(*server_, config_, thread_);
  return port_;
}

void StandbyHttp::stop() {
  if (server_) server_->stop();
  if (port_ > 0) end_idle_connections(port_);
  if (thread_.joinable()) thread_.join();
}

void HttpApi::stop() {
  if (server_) server_->stop();
  if (port_ > 0) end_idle_connections(port_);
  if (thread_.joinable()) thread_.join();
}

}  // namespace maestra::http
