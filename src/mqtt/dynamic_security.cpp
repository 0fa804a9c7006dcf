// Commands of Mosquitto's dynamic-security plugin and their answers.
#include "mqtt/dynamic_security.hpp"

#include <chrono>

#include "service/log.hpp"

namespace maestra::mqtt_adapter {

using core::Error;
using core::ErrorKind;
using core::Json;

namespace {
Json acl(const char* type, const std::string& topic) {
  return Json{{"acltype", type}, {"topic", topic}, {"allow", true}, {"priority", 0}};
}
bool benign(const std::string& error, std::string_view what) { return error.empty() || error.find(what) != std::string::npos; }
}  // namespace

void DynamicSecurity::on_response(const std::string& payload) {
  const auto doc = Json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object() || !doc.contains("responses") || !doc["responses"].is_array()) return;
  {
    std::lock_guard lock(mutex_);
    for (const auto& r : doc["responses"]) {
      if (!r.is_object() || !r.contains("correlationData") || !r["correlationData"].is_string()) continue;
      std::string error;
      if (r.contains("error") && r["error"].is_string()) error = r["error"].get<std::string>();
      if (error.empty() && r.contains("error")) error = "error";
      answers_[r["correlationData"].get<std::string>()] = error;
    }
  }
  answered_.notify_all();
}

core::Result<std::vector<std::string>> DynamicSecurity::call(std::vector<Json> commands) {
  std::vector<std::string> correlations;
  {
    std::lock_guard lock(mutex_);
    for (auto& command : commands) {
      correlations.push_back("maestra-" + std::to_string(++next_correlation_));
      command["correlationData"] = correlations.back();
    }
  }
  try {
    Json message{{"commands", commands}};
    client_.publish(mqtt::make_message(request_topic, message.dump(), 1, false));
  } catch (const mqtt::exception& e) {
    return Error{ErrorKind::unavailable, "", std::string("broker not reachable: ") + e.what()};
  }
  std::unique_lock lock(mutex_);
  const bool all = answered_.wait_for(lock, std::chrono::seconds(5), [&] {
    for (const auto& c : correlations)
      if (!answers_.count(c)) return false;
    return true;
  });
  std::vector<std::string> errors;
  for (const auto& c : correlations) {
    auto it = answers_.find(c);
    errors.push_back(it == answers_.end() ? "no answer" : it->second);
    if (it != answers_.end()) answers_.erase(it);
  }
  if (!all) return Error{ErrorKind::unavailable, "", "the broker's dynamic-security plugin did not answer in 5 s"};
  return errors;
}

core::Result<core::Done> DynamicSecurity::grant(const core::DeviceId& id, const std::string& password) {
  const std::string device = id.to_string();
  const std::string base = topics_.prefix() + "/devices/" + device;
  std::vector<Json> commands{
      Json{{"command", "createRole"},
           {"rolename", device_role(id)},
           {"acls", Json::array({acl("publishClientSend", base + "/heartbeat"), acl("publishClientSend", base + "/presence"),
                                 acl("publishClientSend", base + "/telemetry/#"),
                                 acl("subscribePattern", base + "/commands/#")})}},
      Json{{"command", "createClient"},
           {"username", device},
           {"password", password},
           {"textname", "maestra device"},
           {"roles", Json::array({Json{{"rolename", device_role(id)}}})}}};
  auto errors = call(std::move(commands));
  if (!errors) return errors.error();
  if (!benign(errors.value()[0], "already exists") || !errors.value()[1].empty())
    return Error{ErrorKind::unavailable, "", "dynamic-security refused: " + errors.value()[0] + " " + errors.value()[1]};
  return core::Done{};
}

core::Result<core::Done> DynamicSecurity::set_password(const core::DeviceId& id, const std::string& password) {
  auto errors = call({Json{{"command", "setClientPassword"}, {"username", id.to_string()}, {"password", password}}});
  if (!errors) return errors.error();
  if (!errors.value()[0].empty()) return Error{ErrorKind::unavailable, "", "dynamic-security refused: " + errors.value()[0]};
  return core::Done{};
}

core::Result<core::Done> DynamicSecurity::revoke(const core::DeviceId& id) {
  // deleteClient also disconnects a connected client with that username.
  auto errors = call({Json{{"command", "deleteClient"}, {"username", id.to_string()}},
                      Json{{"command", "deleteRole"}, {"rolename", device_role(id)}}});
  if (!errors) return errors.error();
  if (!benign(errors.value()[0], "not found"))
    return Error{ErrorKind::unavailable, "", "dynamic-security refused: " + errors.value()[0]};
  return core::Done{};
}

core::Result<core::Done> DynamicSecurity::ensure_service_roles(const std::string& service_username,
                                                               const std::string& dashboard_username,
                                                               const std::string& dashboard_password) {
  const std::string prefix = topics_.prefix();
  std::vector<Json> commands{
      Json{{"command", "createRole"},
           {"rolename", "maestra-service"},
           {"acls", Json::array({acl("publishClientSend", prefix + "/#"), acl("publishClientReceive", prefix + "/#"),
                                 acl("subscribePattern", prefix + "/#")})}},
      Json{{"command", "addClientRole"}, {"username", service_username}, {"rolename", "maestra-service"}}};
  if (!dashboard_username.empty()) {
    commands.push_back(Json{{"command", "createRole"},
                            {"rolename", "maestra-dashboard"},
                            {"acls", Json::array({acl("subscribePattern", prefix + "/devices/+/status"),
                                                  acl("subscribePattern", prefix + "/fleet/#")})}});
    commands.push_back(Json{{"command", "createClient"},
                            {"username", dashboard_username},
                            {"password", dashboard_password},
                            {"textname", "maestra dashboard (read-only)"},
                            {"roles", Json::array({Json{{"rolename", "maestra-dashboard"}}})}});
    commands.push_back(
        Json{{"command", "setClientPassword"}, {"username", dashboard_username}, {"password", dashboard_password}});
  }
  auto errors = call(std::move(commands));
  if (!errors) return errors.error();
  for (const auto& e : errors.value())
    if (!benign(e, "already"))
      return Error{ErrorKind::unavailable, "", "dynamic-security refused the service roles: " + e};
  return core::Done{};
}

}  // namespace maestra::mqtt_adapter
