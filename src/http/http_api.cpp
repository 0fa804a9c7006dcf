// Routes, request translation and response mapping of the HTTP shim.
//
// A note on cpp-httplib 0.11 (Debian): its listen backlog (5) is compiled into
// the shared library, and keep-alive connections close after 5 requests by
// default. We raise the backlog by calling listen() again on the bound socket
// (Linux updates the backlog of a listening socket), turn Nagle off, size the
// worker pool from MAESTRA_HTTP_THREADS, and end a keep-alive connection after
// 20 requests (with "Connection: close", so clients reconnect without a race).
#include "http/http_api.hpp"

#include <sys/socket.h>

#include <chrono>
#include <regex>
#include <stdexcept>

#include <httplib.h>

#include "core/documents.hpp"
#include "core/requests.hpp"
#include "service/log.hpp"

namespace maestra::http {

using core::Error;
using core::ErrorKind;
using core::Json;

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
  }
  return 500;
}

namespace {

void send_json(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
}

void send_error(httplib::Response& res, const Error& error) {
  Error shown = error;
  // Database details go to the log, not to clients.
  if (error.kind == ErrorKind::unavailable) {
    service::log_warn("request_unavailable", {{"error", error.detail}});
    shown.detail = "the database is unavailable; try again";
  }
  send_json(res, http_status(error.kind), core::error_json(shown));
}

std::optional<core::DeviceId> path_id(const httplib::Request& req, httplib::Response& res) {
  auto id = core::parse_device_id(req.matches[1].str());
  if (!id) send_error(res, Error{ErrorKind::malformed, "id", "the device id in the path is not a valid UUID"});
  return id;
}

Json heartbeat_json(const service::HeartbeatReply& r) {
  Json body{{"device_id", r.id.to_string()},
            {"status", core::to_string(r.status)},
            {"last_seen", core::format_rfc3339(r.last_seen)}};
  if (r.too_frequent) body["warning"] = core::frequency_warning_text;
  return body;
}

std::optional<std::int64_t> non_negative(const std::string& text) {
  if (text.empty() || text.size() > 12) return std::nullopt;
  std::int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  return value;
}

std::string base64_decode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  unsigned int buffer = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    const int v = value(c);
    if (v < 0) return {};
    buffer = (buffer << 6) | static_cast<unsigned int>(v);
    bits += 6;
    if (bits >= 8) {
      out.push_back(static_cast<char>((buffer >> (bits - 8)) & 0xff));
      bits -= 8;
    }
  }
  return out;
}

struct Route {
  std::string method;
  std::regex pattern;
  bool admin;  // requires the admin token when one is configured
  bool checks_secret;
  std::function<void(const httplib::Request&, httplib::Response&)> handler;
};

}  // namespace

std::optional<Error> HttpApi::check_device_credential(const httplib::Request& req, const core::HeartbeatRequest& h) {
  // Secure mode: Authorization: Basic base64(<device id>:<password>), or
  // Bearer <password> for the device named in the body.
  const std::string header = req.get_header_value("Authorization");
  std::optional<core::DeviceId> claimed = h.device_id;
  std::string password;
  if (header.rfind("Basic ", 0) == 0) {
    const std::string decoded = base64_decode(std::string_view(header).substr(6));
    const auto colon = decoded.find(':');
    if (colon == std::string::npos) return Error{ErrorKind::unauthorized, "", "malformed Basic credentials"};
    const auto user = core::parse_device_id(std::string_view(decoded).substr(0, colon));
    if (!user) return Error{ErrorKind::forbidden, "", "the username must be the device id"};
    if (claimed && *claimed != *user)
      return Error{ErrorKind::forbidden, "", "these credentials belong to another device"};
    claimed = user;
    password = decoded.substr(colon + 1);
  } else if (header.rfind("Bearer ", 0) == 0) {
    password = header.substr(7);
  } else {
    metrics_.reject(service::Rejection::unauthorized);
    return Error{ErrorKind::unauthorized, "",
                 "secure mode: a heartbeat needs the device's credentials (Authorization: Basic id:password)"};
  }
  if (!claimed) return Error{ErrorKind::invalid_field, "device_id", "secure mode: heartbeats name the device by device_id"};
  auto valid = fleet_.verify_credential(*claimed, password);
  if (!valid) return valid.error();
  if (!valid.value()) {
    metrics_.reject(service::Rejection::unauthorized);
    return Error{ErrorKind::forbidden, "", "the credentials are not valid for this device"};
  }
  return std::nullopt;
}

HttpApi::HttpApi(service::Fleet& fleet, service::Metrics& metrics, const core::Config& config, HealthProbe probe)
    : fleet_(fleet), metrics_(metrics), config_(config), topics_(config.topic_prefix), probe_(std::move(probe)),
      server_(std::make_unique<httplib::Server>()),
      throttle_(config.auth_failure_limit, std::chrono::seconds(60)) {
  openapi_ = openapi_document();
  install_routes();
}

HttpApi::~HttpApi() { stop(); }

void HttpApi::install_routes() {
  auto routes = std::make_shared<std::vector<Route>>();
  auto add = [&](std::string method, std::string pattern, bool admin, auto handler) {
    // Routes that check a secret (the admin token, a device's password, the
    // provisioning key) are throttled per address after refused credentials.
    const bool checks_secret = admin || pattern == "/devices/register" || pattern == "/devices/heartbeat";
    routes->push_back(Route{std::move(method), std::regex(pattern), admin, checks_secret, handler});
  };

  add("POST", "/devices/register", false, [this](const httplib::Request& req, httplib::Response& res) {
    auto body = core::parse_json_object(req.body);
    if (!body) return send_error(res, body.error());
    auto registration = core::parse_registration(body.value());
    if (!registration) return send_error(res, registration.error());
    if (req.has_header("X-Provisioning-Key")) registration->provisioning_key = req.get_header_value("X-Provisioning-Key");
    auto registered = fleet_.register_device(registration.value(), service::Transport::http);
    if (!registered) return send_error(res, registered.error());
    auto answer = core::device_record_json(registered->record);
    if (registered->mqtt_password)
      answer["mqtt"] = core::mqtt_credentials_json(registered->record.id, *registered->mqtt_password, topics_);
    send_json(res, 201, answer);
  });

  add("POST", "/devices/heartbeat", false, [this](const httplib::Request& req, httplib::Response& res) {
    auto body = core::parse_json_object(req.body);
    if (!body) return send_error(res, body.error());
    auto heartbeat = core::parse_heartbeat(body.value());
    if (!heartbeat) return send_error(res, heartbeat.error());
    if (fleet_.secure()) {
      if (auto refused = check_device_credential(req, heartbeat.value())) return send_error(res, *refused);
    }
    auto reply = fleet_.heartbeat(heartbeat.value(), service::Transport::http);
    if (!reply) return send_error(res, reply.error());
    send_json(res, 200, heartbeat_json(reply.value()));
  });

  add("GET", "/devices", true, [this](const httplib::Request& req, httplib::Response& res) {
    store::ListQuery q;
    if (req.has_param("status")) {
      q.status = req.get_param_value("status");
      if (!core::parse_status(*q.status))
        return send_error(res, core::invalid("status", "status must be one of online, offline, error, maintenance"));
    }
    if (req.has_param("device_type")) q.device_type = req.get_param_value("device_type");
    if (req.has_param("hardware_id")) q.hardware_id = req.get_param_value("hardware_id");
    if (req.has_param("limit")) {
      q.limit = non_negative(req.get_param_value("limit"));
      if (!q.limit || *q.limit > 100000) return send_error(res, core::invalid("limit", "limit must be an integer 0-100000"));
    }
    if (req.has_param("offset")) {
      auto offset = non_negative(req.get_param_value("offset"));
      if (!offset) return send_error(res, core::invalid("offset", "offset must be a non-negative integer"));
      q.offset = *offset;
    }
    for (const auto* text : {&q.device_type, &q.hardware_id})
      if (*text && (text->value().size() > 128 || core::has_control_characters(**text)))
        return send_error(res, core::invalid(text == &q.device_type ? "device_type" : "hardware_id",
                                             "filter is too long or has control characters"));
    std::string body = "[";
    bool first = true;
    auto listed = fleet_.list(q, [&](const std::vector<core::DeviceRecord>& page) {
      for (const auto& record : page) {
        if (!first) body += ",";
        first = false;
        body += core::device_record_json(record).dump(-1, ' ', false, Json::error_handler_t::replace);
      }
    });
    if (!listed) return send_error(res, listed.error());
    body += "]";
    res.status = 200;
    res.set_content(std::move(body), "application/json");
  });

  add("GET", "/devices/([^/]+)", true, [this](const httplib::Request& req, httplib::Response& res) {
    auto id = path_id(req, res);
    if (!id) return;
    auto record = fleet_.get(*id);
    if (!record) return send_error(res, record.error());
    send_json(res, 200, core::device_record_json(record.value()));
  });

  add("GET", "/devices/([^/]+)/history", true, [this](const httplib::Request& req, httplib::Response& res) {
    auto id = path_id(req, res);
    if (!id) return;
    std::int64_t limit = 50;
    if (req.has_param("limit")) {
      auto n = non_negative(req.get_param_value("limit"));
      if (!n || *n < 1 || *n > 1000) return send_error(res, core::invalid("limit", "limit must be an integer 1-1000"));
      limit = *n;
    }
    auto record = fleet_.get(*id);
    if (!record) return send_error(res, record.error());
    auto entries = fleet_.history(*id, static_cast<int>(limit));
    if (!entries) return send_error(res, entries.error());
    Json body = Json::array();
    for (const auto& e : entries.value())
      body.push_back({{"from", e.from ? Json(core::to_string(*e.from)) : Json(nullptr)},
                      {"to", core::to_string(e.to)},
                      {"reason", e.reason},
                      {"at", core::format_rfc3339(e.at)}});
    send_json(res, 200, body);
  });

  add("PATCH", "/devices/([^/]+)", true, [this](const httplib::Request& req, httplib::Response& res) {
    auto id = path_id(req, res);
    if (!id) return;
    auto body = core::parse_json_object(req.body);
    if (!body) return send_error(res, body.error());
    auto patch = core::parse_patch(body.value());
    if (!patch) return send_error(res, patch.error());
    auto record = fleet_.patch(*id, patch.value());
    if (!record) return send_error(res, record.error());
    send_json(res, 200, core::device_record_json(record.value()));
  });

  add("DELETE", "/devices/([^/]+)", true, [this](const httplib::Request& req, httplib::Response& res) {
    auto id = path_id(req, res);
    if (!id) return;
    auto removed = fleet_.remove(*id);
    if (!removed) return send_error(res, removed.error());
    res.status = 204;
  });

  add("POST", "/devices/([^/]+)/credentials", true, [this](const httplib::Request& req, httplib::Response& res) {
    auto id = path_id(req, res);
    if (!id) return;
    auto password = fleet_.rotate_credentials(*id);
    if (!password) return send_error(res, password.error());
    send_json(res, 200, {{"device_id", id->to_string()}, {"mqtt", core::mqtt_credentials_json(*id, password.value(), topics_)}});
  });

  // Secure mode: a short-lived read-only broker account for one dashboard (one
  // browser), bound to its own client id so it cannot take over a device's.
  add("POST", "/dashboard/credentials", true, [this](const httplib::Request& req, httplib::Response& res) {
    std::int64_t ttl = 3600;
    if (!req.body.empty()) {
      auto body = core::parse_json_object(req.body);
      if (!body) return send_error(res, body.error());
      if (body->contains("ttl_seconds")) {
        const Json& v = body.value()["ttl_seconds"];
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
  });

  add("GET", "/hardware/blocked", true, [this](const httplib::Request&, httplib::Response& res) {
    auto blocked = fleet_.blocked_hardware_ids();
    if (!blocked) return send_error(res, blocked.error());
    Json body = Json::array();
    for (const auto& b : blocked.value())
      body.push_back({{"hardware_id", b.hardware_id},
                      {"reason", b.reason ? Json(*b.reason) : Json(nullptr)},
                      {"blocked_at", core::format_rfc3339(b.blocked_at)}});
    send_json(res, 200, body);
  });

  add("PUT", "/hardware/([^/]+)/block", true, [this](const httplib::Request& req, httplib::Response& res) {
    const std::string hardware_id = req.matches[1].str();
    if (hardware_id.size() > core::max_hardware_id_chars || core::has_control_characters(hardware_id))
      return send_error(res, core::invalid("hardware_id", "hardware_id is too long or has control characters"));
    std::optional<std::string> reason;
    if (!req.body.empty()) {
      auto body = core::parse_json_object(req.body);
      if (!body) return send_error(res, body.error());
      auto text = core::optional_string(body.value(), "reason", 200);
      if (!text) return send_error(res, text.error());
      reason = text.value();
    }
    auto blocked = fleet_.block_hardware_id(hardware_id, reason);
    if (!blocked) return send_error(res, blocked.error());
    send_json(res, 200, {{"hardware_id", hardware_id}, {"blocked", true}});
  });

  add("DELETE", "/hardware/([^/]+)/block", true, [this](const httplib::Request& req, httplib::Response& res) {
    auto unblocked = fleet_.unblock_hardware_id(req.matches[1].str());
    if (!unblocked) return send_error(res, unblocked.error());
    res.status = 204;
  });

  add("GET", "/health", false, [this](const httplib::Request&, httplib::Response& res) {
    const bool database = static_cast<bool>(fleet_.database_health());
    const bool mqtt = probe_.mqtt_connected && probe_.mqtt_connected();
    Json body{{"status", database ? (mqtt ? "ok" : "degraded") : "unavailable"},
              {"database", database ? "ok" : "unavailable"},
              {"mqtt", mqtt ? "connected" : "disconnected"},
              {"devices", fleet_.size()}};
    send_json(res, database ? 200 : 503, body);
  });

  add("GET", "/metrics", false, [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.render_prometheus(), "text/plain; version=0.0.4");
  });

  add("GET", "/openapi.json", false, [this](const httplib::Request&, httplib::Response& res) {
    if (openapi_.empty()) return send_error(res, Error{ErrorKind::not_found, "", "no OpenAPI document installed"});
    res.set_content(openapi_, "application/json");
  });

  auto dispatch = [this, routes](const httplib::Request& req, httplib::Response& res) {
    std::string allowed;
    for (const auto& route : *routes) {
      std::smatch match;
      if (!std::regex_match(req.path, match, route.pattern)) continue;
      if (route.method != req.method) {
        allowed += (allowed.empty() ? "" : ", ") + route.method;
        continue;
      }
      const_cast<httplib::Request&>(req).matches = match;
      const bool throttled = route.checks_secret && config_.auth_failure_limit > 0;
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
          route.handler(req, res);
        } catch (const std::exception& e) {
          service::log_error("http_handler_failed", {{"path", req.path}, {"error", e.what()}});
          send_json(res, 500, {{"error", "internal"}, {"detail", "internal error"}});
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
      return;
    }
    if (!allowed.empty()) {
      res.set_header("Allow", allowed);
      return send_json(res, 405, {{"error", "method_not_allowed"}, {"detail", req.method + " is not allowed on " + req.path}});
    }
    send_json(res, 404, {{"error", "not_found"}, {"detail", "no route " + req.method + " " + req.path}});
  };
  server_->Get(".*", dispatch);
  server_->Post(".*", dispatch);
  server_->Patch(".*", dispatch);
  server_->Delete(".*", dispatch);
  server_->Put(".*", dispatch);
  server_->Options(".*", dispatch);

  // cpp-httplib 0.11 reads no body for GET/HEAD/OPTIONS: the unread bytes would
  // be parsed as the next request on the same keep-alive connection. Refuse such
  // a request and close the connection.
  server_->set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    const bool bodiless = req.method == "GET" || req.method == "HEAD" || req.method == "OPTIONS";
    const bool has_body = req.has_header("Transfer-Encoding") ||
                          (req.has_header("Content-Length") && req.get_header_value("Content-Length") != "0");
    if (!bodiless || !has_body) return httplib::Server::HandlerResponse::Unhandled;
    res.set_header("Connection", "close");
    send_json(res, 400, {{"error", "bad_request"}, {"detail", req.method + " requests carry no body"}});
    return httplib::Server::HandlerResponse::Handled;
  });

  server_->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413)
      send_json(res, 413, {{"error", "payload_too_large"}, {"detail", "body is larger than 65536 bytes"}});
    else if (res.status == 404)
      send_json(res, 404, {{"error", "not_found"}, {"detail", "no route " + req.method + " " + req.path}});
    else
      send_json(res, res.status, {{"error", "bad_request"}, {"detail", "the request could not be read"}});
  });
  server_->set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    send_json(res, 500, {{"error", "internal"}, {"detail", "internal error"}});
  });
  server_->set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    ++metrics_.http_requests;
    if (res.status >= 400 || req.path != "/devices/heartbeat")
      service::log_info("http", {{"method", req.method}, {"path", req.path}, {"status", std::to_string(res.status)},
                                 {"remote", req.remote_addr}});
  });
}

int HttpApi::start() {
  server_->set_payload_max_length(core::max_body_bytes);
  server_->set_tcp_nodelay(true);
  // A connection gives its worker back after this many requests, so more
  // clients than workers still take turns (cpp-httplib serves a keep-alive
  // connection on one worker until it closes). Measured with wrk at 64
  // connections (BENCHMARKS.md, HTTP): 1,000 gave p99 18-24 ms and a 65th client
  // waiting up to 2 s; 20 gives p99 7-9 ms and that client p50 7 ms, for about
  // 10 % less throughput (reconnects); 10 cost more throughput and no latency.
  server_->set_keep_alive_max_count(20);
  // An idle keep-alive connection holds a worker until this timeout, and
  // shutdown waits for the workers: keep it short.
  server_->set_keep_alive_timeout(2);
  const int threads = config_.http_threads;
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<std::size_t>(threads)); };
  if (!config_.web_root.empty()) server_->set_mount_point("/", config_.web_root);
  return bind_and_serve(*server_, config_, thread_);
}

int bind_and_serve(httplib::Server& server, const core::Config& config, std::thread& thread) {
  auto listen_fd = std::make_shared<int>(-1);
  server.set_socket_options([listen_fd](socket_t sock) {
    httplib::default_socket_options(sock);
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
                             " (in use, or not permitted)");
  if (*listen_fd >= 0) ::listen(*listen_fd, 1024);
  thread = std::thread([&server] { server.listen_after_bind(); });
  return port;
}

StandbyHttp::StandbyHttp(const core::Config& config)
    : config_(config), server_(std::make_unique<httplib::Server>()) {
  auto answer = [](const httplib::Request& req, httplib::Response& res) {
    if (req.path == "/health")
      return send_json(res, 503, {{"status", "standby"}, {"database", "ok"}, {"mqtt", "disconnected"}, {"devices", 0}});
    send_json(res, 503, {{"error", "unavailable"},
                         {"detail", "this instance is a standby: another fleet-manager is active on this database"}});
  };
  server_->Get(".*", answer);
  server_->Post(".*", answer);
  server_->Put(".*", answer);
  server_->Patch(".*", answer);
  server_->Delete(".*", answer);
  server_->set_keep_alive_timeout(2);
}

StandbyHttp::~StandbyHttp() { stop(); }

int StandbyHttp::start() { return bind_and_serve(*server_, config_, thread_); }

void StandbyHttp::stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

void HttpApi::stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace maestra::http
