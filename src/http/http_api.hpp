// The HTTP shim: routes of the device-registration guide plus admin and
// operations endpoints, on cpp-httplib. It translates requests into core
// requests and Fleet calls, and Results into responses; every rule it applies
// lives in the core. Errors are JSON {"error","detail"[,"field"][,"id"]}; one
// function maps error kinds to status codes. Transport limits (path, headers,
// body framing) are checked here, before a route runs; the route table is one
// list (`route_table`), printed by `fleet-manager --routes`.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/auth_throttle.hpp"
#include "core/config.hpp"
#include "core/requests.hpp"
#include "core/topics.hpp"
#include "service/commands.hpp"
#include "service/fleet.hpp"
#include "service/metrics.hpp"
#include "service/telemetry.hpp"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace maestra::http {

struct HealthProbe {
  std::function<bool()> mqtt_connected;
};

// One route: method, path template ("{id}" and "{hardware_id}" stand for one
// path segment), whether the admin token guards it, and what it does.
struct RouteSpec {
  const char* method;
  const char* path;
  bool admin;
  const char* summary;
};
const std::vector<RouteSpec>& route_table();
// "METHOD PATH [admin]  summary" per line, for --routes.
std::string route_table_text();

// Transport limits, checked before any route runs.
inline constexpr std::size_t max_path_bytes = 1024;      // decoded path; longer: 414
inline constexpr std::size_t max_header_count = 64;      // more: 431
inline constexpr std::size_t max_header_bytes = 16384;   // names and values together; more: 431

class HttpApi {
 public:
  HttpApi(service::Fleet& fleet, service::Metrics& metrics, const core::Config& config, HealthProbe probe);
  ~HttpApi();

  // Binds (throws std::runtime_error with one clear line if it cannot) and serves
  // on a thread of its own. Returns the bound port.
  int start();
  // Telemetry routes (telemetry_routes.cpp) answer 503 until this is set.
  void set_telemetry(service::Telemetry* telemetry) { telemetry_ = telemetry; }
  // Commands to devices (routes in command_routes.cpp); without it they answer 503.
  void set_commands(service::Commands* commands) { commands_ = commands; }
  // Stops accepting, ends idle keep-alive connections at once, waits for the
  // requests in progress.
  void stop();

 private:
  using Handler = void (HttpApi::*)(const httplib::Request&, httplib::Response&, const std::string& body);
  void install_routes();
  void add(const char* method, const char* path, Handler handler);
  // Wraps every route: throttle, admin token, errors that escape.
  void run(const RouteSpec& route, Handler handler, const httplib::Request& req, httplib::Response& res,
           const std::string& body);

  void register_device(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void heartbeat(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void list_devices(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void get_device(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void device_history(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void patch_device(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void delete_device(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void rotate_credentials(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void dashboard_credentials(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void list_blocked(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void block_hardware(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void unblock_hardware(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void health(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void metrics(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void openapi(const httplib::Request& req, httplib::Response& res, const std::string& body);
  // telemetry_routes.cpp
  void post_metric(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void post_metric_batch(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void post_event(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void post_event_batch(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void device_metrics(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void device_latest_metrics(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void device_events(const httplib::Request& req, httplib::Response& res, const std::string& body);
  // Secure mode: the request must carry `device`'s own credentials (the device
  // a telemetry body names, the device of a command route's path); nothing
  // to check in open mode.
  std::optional<core::Error> authenticate_as(const httplib::Request& req, const core::DeviceId& device);
  // command_routes.cpp
  void create_command(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void fan_out_commands(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void get_command(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void list_commands(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void cancel_command(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void pending_commands(const httplib::Request& req, httplib::Response& res, const std::string& body);
  void reply_command(const httplib::Request& req, httplib::Response& res, const std::string& body);

  // Secure mode: the device the heartbeat's credentials prove, which must be the
  // device the body names (by id or hardware id).
  core::Result<core::DeviceId> authenticate_device(const httplib::Request& req, const core::HeartbeatRequest& h);
  void send_error(httplib::Response& res, const core::Error& error);

  service::Fleet& fleet_;
  service::Metrics& metrics_;
  service::Commands* commands_ = nullptr;
  const core::Config& config_;
  core::Topics topics_;
  HealthProbe probe_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::string openapi_;
  service::Telemetry* telemetry_ = nullptr;
  std::mutex throttle_mutex_;
  core::AuthThrottle throttle_;
  // The latest end of any address's block (ms since the epoch): past it, no
  // address is blocked and requests skip the throttle's lock.
  std::atomic<std::int64_t> blocked_until_ms_{0};
};

// While this instance waits as a standby (store/instance_lock), its HTTP port
// still answers, so load balancers and monitors can tell a live standby from a
// dead process: GET /health is 503 {"status":"standby",...}; everything else is
// 503 with the JSON error body. Stopped before the real API binds the port.
class StandbyHttp {
 public:
  explicit StandbyHttp(const core::Config& config);
  ~StandbyHttp();
  int start();  // throws std::runtime_error like HttpApi::start
  void stop();

 private:
  const core::Config& config_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

// Binds the server to MAESTRA_HTTP_HOST:PORT, alone (no SO_REUSEPORT: a second
// process on a taken port fails instead of sharing it), with a deep listen
// backlog, and serves it on `thread`; returns the port. Throws
// std::runtime_error (one line).
int bind_and_serve(httplib::Server& server, const core::Config& config, std::thread& thread);

// Shuts the read side of every connection accepted on `port` by this process,
// so workers waiting on idle keep-alive connections return at once (a request
// being answered still gets its response). For shutdown, after the listener closed.
void end_idle_connections(int port);

int http_status(core::ErrorKind kind);

// Shared by the route files (http_api.cpp, command_routes.cpp, telemetry_routes.cpp).
void send_json(httplib::Response& res, int status, const core::Json& body);
// The request's query parameters, for the core's parsers.
core::ParamLookup params_of(const httplib::Request& req);
// A UUID from the path (regex match `index`), or a malformed-input error naming
// `field`: "the <what> in the path is not a valid UUID".
core::Result<core::DeviceId> path_uuid(const httplib::Request& req, std::size_t index, const char* field,
                                       const char* what = "device id");

// The body limit of a route: 1 MiB for the telemetry batch routes, 64 KiB otherwise.
std::size_t body_limit(std::string_view path);

// api/openapi.json, compiled in (cmake/embed_openapi.cmake).
const char* openapi_document();


}  // namespace maestra::http
