// The HTTP shim: routes of the device-registration guide plus admin and
// operations endpoints, on cpp-httplib. It translates requests into core
// requests and Fleet calls, and Results into responses; every rule it applies
// lives in the core. Errors are JSON {"error","detail"[,"field"][,"id"]}; one
// function maps error kinds to status codes.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/auth_throttle.hpp"
#include "core/config.hpp"
#include "core/requests.hpp"
#include "core/topics.hpp"
#include "service/fleet.hpp"
#include "service/metrics.hpp"

namespace httplib {
class Server;
struct Request;
}  // namespace httplib

namespace maestra::http {

struct HealthProbe {
  std::function<bool()> mqtt_connected;
};

class HttpApi {
 public:
  HttpApi(service::Fleet& fleet, service::Metrics& metrics, const core::Config& config, HealthProbe probe);
  ~HttpApi();

  // Binds (throws std::runtime_error with one clear line if it cannot) and serves
  // on a thread of its own. Returns the bound port.
  int start();
  void stop();

 private:
  void install_routes();
  std::optional<core::Error> check_device_credential(const httplib::Request& req, const core::HeartbeatRequest& h);

  service::Fleet& fleet_;
  service::Metrics& metrics_;
  const core::Config& config_;
  core::Topics topics_;
  HealthProbe probe_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::string openapi_;
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
};

// Binds the server to MAESTRA_HTTP_HOST:PORT with a deep listen backlog and
// serves it on `thread`; returns the port. Throws std::runtime_error (one line).
int bind_and_serve(httplib::Server& server, const core::Config& config, std::thread& thread);

int http_status(core::ErrorKind kind);

// api/openapi.json, compiled in (cmake/embed_openapi.cmake).
const char* openapi_document();


}  // namespace maestra::http
