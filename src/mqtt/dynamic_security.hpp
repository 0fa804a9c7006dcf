// Secure mode's broker side: per-device accounts and roles in Mosquitto's
// dynamic-security plugin, administered over `$CONTROL/dynamic-security/v1` with
// the service's own (admin) connection, so it works with a broker on another host.
// Each device gets a role that may publish only its own heartbeat, presence and
// telemetry topics and subscribe only to its own commands.
//
// Client ids: every account this adapter makes is bound to one client id, its
// username (a device's id; the dashboard account's name; `dashboard-<random>`
// for an issued dashboard credential), so no account can connect with another's
// client id and kick it off or take its session. Accounts made before this
// binding existed are bound by the maintenance thread after start. The service's
// own account stays unbound: it is the plugin's admin and could rebind anything
// anyway, and standby instances use it with their own client ids.
#pragma once
#include <functional>
#include <memory>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <mqtt/async_client.h>

#include "core/topics.hpp"
#include "service/fleet.hpp"

namespace maestra::mqtt_adapter {

class DynamicSecurity : public service::DeviceAccess {
 public:
  static constexpr const char* request_topic = "$CONTROL/dynamic-security/v1";
  static constexpr const char* response_topic = "$CONTROL/dynamic-security/v1/response";

  // `client` gives the MQTT adapter's current client (it makes a new one after
  // every lost connection).
  DynamicSecurity(std::function<std::shared_ptr<mqtt::async_client>()> client, const core::Topics& topics)
      : client_(std::move(client)), topics_(topics) {}
  ~DynamicSecurity() override;
  DynamicSecurity(const DynamicSecurity&) = delete;
  DynamicSecurity& operator=(const DynamicSecurity&) = delete;

  // Paho's thread: hands each command's answer to its waiting caller.
  void on_response(const std::string& payload);

  core::Result<core::Done> grant(const core::DeviceId& id, const std::string& password) override;
  core::Result<core::Done> set_password(const core::DeviceId& id, const std::string& password) override;
  core::Result<core::Done> revoke(const core::DeviceId& id) override;
  core::Result<core::Done> grant_dashboard(const std::string& username, const std::string& password,
                                           core::TimePoint expires_at) override;

  // At start: the role that lets the service publish under the prefix, and the
  // read-only dashboard account when one is configured (bound to client id = its
  // username). Idempotent. The first success starts the maintenance thread.
  core::Result<core::Done> ensure_service_roles(const std::string& service_username,
                                                const std::string& dashboard_username,
                                                const std::string& dashboard_password);

  static std::string device_role(const core::DeviceId& id) { return "maestra-device-" + id.to_string(); }
  static constexpr const char* dashboard_role = "maestra-dashboard";
  static constexpr const char* expires_label = "expires ";  // textdescription of an issued dashboard account

 private:
  // Sends the commands in one message and waits (`timeout` at most) for every
  // answer; returns each command's response object ({"command",...,"error"?,"data"?}).
  core::Result<std::vector<core::Json>> call(std::vector<core::Json> commands,
                                             std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Maintenance thread: binds accounts made before client-id binding (once per
  // process, in batches), then removes expired dashboard credentials (every 30 s).
  void maintain();
  bool bind_existing_accounts();
  // Device roles made before commands existed may not publish replies/#: the
  // ACL is added to each (once per process, in batches).
  bool grant_replies_to_existing_roles();
  void remove_expired_dashboards();
  // Sends without waiting (for a command that disconnects us, like changing our own roles).
  void send(std::vector<core::Json> commands);

  std::function<std::shared_ptr<mqtt::async_client>()> client_;
  const core::Topics& topics_;
  std::mutex mutex_;
  std::condition_variable answered_;
  std::map<std::string, core::Json> answers_;  // correlation -> response
  std::uint64_t next_correlation_ = 0;

  std::string service_username_;
  std::mutex maintenance_mutex_;
  std::condition_variable maintenance_cv_;
  std::atomic<bool> stopping_{false};
  std::map<std::string, std::int64_t> dashboards_;  // issued dashboard account -> expiry (Unix seconds)
  std::thread maintenance_;
};

}  // namespace maestra::mqtt_adapter
