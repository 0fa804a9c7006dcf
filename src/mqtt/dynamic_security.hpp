// Secure mode's broker side: per-device accounts and roles in Mosquitto's
// dynamic-security plugin, administered over `$CONTROL/dynamic-security/v1` with
// the service's own (admin) connection, so it works with a broker on another host.
// Each device gets a role that may publish only its own heartbeat, presence and
// telemetry topics and subscribe only to its own commands.
#pragma once
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <mqtt/async_client.h>

#include "core/topics.hpp"
#include "service/fleet.hpp"

namespace maestra::mqtt_adapter {

class DynamicSecurity : public service::DeviceAccess {
 public:
  static constexpr const char* request_topic = "$CONTROL/dynamic-security/v1";
  static constexpr const char* response_topic = "$CONTROL/dynamic-security/v1/response";

  DynamicSecurity(mqtt::async_client& client, const core::Topics& topics) : client_(client), topics_(topics) {}

  // Paho's thread: hands each command's answer to its waiting caller.
  void on_response(const std::string& payload);

  core::Result<core::Done> grant(const core::DeviceId& id, const std::string& password) override;
  core::Result<core::Done> set_password(const core::DeviceId& id, const std::string& password) override;
  core::Result<core::Done> revoke(const core::DeviceId& id) override;

  // At start: the role that lets the service publish under the prefix, and the
  // read-only dashboard account when one is configured. Idempotent.
  core::Result<core::Done> ensure_service_roles(const std::string& service_username,
                                                const std::string& dashboard_username,
                                                const std::string& dashboard_password);

  static std::string device_role(const core::DeviceId& id) { return "maestra-device-" + id.to_string(); }

 private:
  // Sends the commands in one message and waits (5 s at most) for every answer;
  // returns each command's response object ({"command",...,"error"?,"data"?}).
  core::Result<std::vector<core::Json>> call(std::vector<core::Json> commands);
  // Sends without waiting (for a command that disconnects us, like changing our own roles).
  void send(std::vector<core::Json> commands);

  mqtt::async_client& client_;
  const core::Topics& topics_;
  std::mutex mutex_;
  std::condition_variable answered_;
  std::map<std::string, core::Json> answers_;  // correlation -> response
  std::uint64_t next_correlation_ = 0;
};

}  // namespace maestra::mqtt_adapter
