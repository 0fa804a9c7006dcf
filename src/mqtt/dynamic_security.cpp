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
std::string error_of(const Json& response) {
  if (!response.contains("error")) return "";
  return response["error"].is_string() ? response["error"].get<std::string>() : std::string("error");
}
bool benign(const Json& response, std::string_view what) {
  const std::string error = error_of(response);
  return error.empty() || error.find(what) != std::string::npos;
}
}  // namespace

void DynamicSecurity::on_response(const std::string& payload) {
  const auto doc = Json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object() || !doc.contains("responses") || !doc["responses"].is_array()) return;
  {
    std::lock_guard lock(mutex_);
    for (const auto& r : doc["responses"])
      if (r.is_object() && r.contains("correlationData") && r["correlationData"].is_string())
        answers_[r["correlationData"].get<std::string>()] = r;
  }
  answered_.notify_all();
}

void DynamicSecurity::send(std::vector<Json> commands) {
  try {
    client_.publish(mqtt::make_message(request_topic, Json{{"commands", commands}}.dump(), 1, false));
  } catch (const mqtt::exception&) {
  }
}

core::Result<std::vector<Json>> DynamicSecurity::call(std::vector<Json> commands) {
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
  std::vector<Json> responses;
  for (const auto& c : correlations) {
    auto it = answers_.find(c);
    responses.push_back(it == answers_.end() ? Json{{"error", "no answer"}} : it->second);
    if (it != answers_.end()) answers_.erase(it);
  }
  if (!all) return Error{ErrorKind::unavailable, "", "the broker's dynamic-security plugin did not answer in 5 s"};
  return responses;
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
  auto answers = call(std::move(commands));
  if (!answers) return answers.error();
  if (!benign(answers.value()[0], "already exists") || !error_of(answers.value()[1]).empty())
    return Error{ErrorKind::unavailable, "",
                 "dynamic-security refused: " + error_of(answers.value()[0]) + " " + error_of(answers.value()[1])};
  return core::Done{};
}

core::Result<core::Done> DynamicSecurity::set_password(const core::DeviceId& id, const std::string& password) {
  auto answers = call({Json{{"command", "setClientPassword"}, {"username", id.to_string()}, {"password", password}}});
  if (!answers) return answers.error();
  if (const auto error = error_of(answers.value()[0]); !error.empty())
    return Error{ErrorKind::unavailable, "", "dynamic-security refused: " + error};
  return core::Done{};
}

core::Result<core::Done> DynamicSecurity::revoke(const core::DeviceId& id) {
  // deleteClient also disconnects a connected client with that username.
  auto answers = call({Json{{"command", "deleteClient"}, {"username", id.to_string()}},
                       Json{{"command", "deleteRole"}, {"rolename", device_role(id)}}});
  if (!answers) return answers.error();
  if (!benign(answers.value()[0], "not found"))
    return Error{ErrorKind::unavailable, "", "dynamic-security refused: " + error_of(answers.value()[0])};
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
      Json{{"command", "getClient"}, {"username", service_username}}};
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
  }
  auto answers = call(std::move(commands));
  if (!answers) return answers.error();
  const auto& a = answers.value();
  for (std::size_t i = 0; i < a.size(); ++i)
    if (i != 1 && !benign(a[i], "already exists"))
      return Error{ErrorKind::unavailable, "", "dynamic-security refused the service roles: " + error_of(a[i])};
  if (!dashboard_username.empty() && !error_of(a[3]).empty()) {
    // The account existed: make its password the configured one (this disconnects
    // dashboards using the old one, which is the point of changing it).
    auto changed = call({Json{{"command", "setClientPassword"}, {"username", dashboard_username},
                              {"password", dashboard_password}}});
    if (!changed) return changed.error();
  }
  bool has_role = false;
  if (a[1].contains("data") && a[1]["data"].contains("client") && a[1]["data"]["client"].contains("roles"))
    for (const auto& role : a[1]["data"]["client"]["roles"])
      has_role = has_role || (role.contains("rolename") && role["rolename"] == "maestra-service");
  if (!has_role) {
    // Changing our own roles makes the broker disconnect us so the new ACLs apply;
    // the automatic reconnect brings us back with them.
    send({Json{{"command", "addClientRole"}, {"username", service_username}, {"rolename", "maestra-service"}}});
    return Error{ErrorKind::unavailable, "", "granted the service its publishing role; reconnecting"};
  }
  return core::Done{};
}

}  // namespace maestra::mqtt_adapter
