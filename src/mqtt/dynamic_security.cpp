// Commands of Mosquitto's dynamic-security plugin and their answers.
#include "mqtt/dynamic_security.hpp"

#include <algorithm>
#include <chrono>

#include "core/clock.hpp"
#include "core/ids.hpp"
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
std::string string_field(const Json& object, const char* key) {
  return object.is_object() && object.contains(key) && object[key].is_string() ? object[key].get<std::string>() : "";
}
std::int64_t unix_seconds(core::TimePoint t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}
std::int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}
// Every setClientId makes the plugin rewrite its whole file (its thread, the
// broker's only one, serves nobody meanwhile: ~50 ms per command at 3,000
// devices), so the commands go in small batches with a pause between them, in
// which the broker serves its clients.
constexpr std::size_t bind_batch = 10;
constexpr auto bind_pause = std::chrono::milliseconds(100);
constexpr int list_page = 1000;
}  // namespace

DynamicSecurity::~DynamicSecurity() {
  {
    std::lock_guard lock(maintenance_mutex_);
    stopping_ = true;
  }
  maintenance_cv_.notify_all();
  {
    std::lock_guard lock(mutex_);  // a maintenance call waiting for answers gives up
  }
  answered_.notify_all();
  if (maintenance_.joinable()) maintenance_.join();
}

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
    client_()->publish(mqtt::make_message(request_topic, Json{{"commands", commands}}.dump(), 1, false));
  } catch (const mqtt::exception&) {
  }
}

core::Result<std::vector<Json>> DynamicSecurity::call(std::vector<Json> commands, std::chrono::milliseconds timeout) {
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
    client_()->publish(mqtt::make_message(request_topic, message.dump(), 1, false));
  } catch (const mqtt::exception& e) {
    return Error{ErrorKind::unavailable, "", std::string("broker not reachable: ") + e.what()};
  }
  std::unique_lock lock(mutex_);
  const bool all = answered_.wait_for(lock, timeout, [&] {
    if (stopping_) return true;
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
  if (!all)
    return Error{ErrorKind::unavailable, "",
                 "the broker's dynamic-security plugin did not answer in " + std::to_string(timeout.count()) + " ms"};
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
                                 acl("publishClientSend", base + "/replies/#"),  // its answers to commands
                                 acl("subscribePattern", base + "/commands/#")})}},
      Json{{"command", "createClient"},
           {"username", device},
           {"password", password},
           {"clientid", device},  // only this client id may log in with this account
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

core::Result<core::Done> DynamicSecurity::grant_dashboard(const std::string& username, const std::string& password,
                                                          core::TimePoint expires_at) {
  auto answers = call({Json{{"command", "createClient"},
                            {"username", username},
                            {"password", password},
                            {"clientid", username},
                            {"textname", "maestra dashboard session (read-only)"},
                            {"textdescription", expires_label + core::format_rfc3339(expires_at)},
                            {"roles", Json::array({Json{{"rolename", dashboard_role}}})}}});
  if (!answers) return answers.error();
  if (const auto error = error_of(answers.value()[0]); !error.empty())
    return Error{ErrorKind::unavailable, "", "dynamic-security refused: " + error};
  {
    std::lock_guard lock(maintenance_mutex_);
    dashboards_[username] = unix_seconds(expires_at);
  }
  maintenance_cv_.notify_all();
  return core::Done{};
}

void DynamicSecurity::maintain() {
  bool bound = false;
  bool roles_upgraded = false;
  auto next_sweep = std::chrono::steady_clock::now();
  std::unique_lock lock(maintenance_mutex_);
  while (!stopping_) {
    lock.unlock();
    if (client_()->is_connected()) {
      if (!bound) bound = bind_existing_accounts();
      if (bound && !roles_upgraded) roles_upgraded = grant_replies_to_existing_roles();
      if (std::chrono::steady_clock::now() >= next_sweep) {
        remove_expired_dashboards();
        next_sweep = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      }
    }
    lock.lock();
    // Woken early by a stop or a newly issued credential (which may expire first).
    maintenance_cv_.wait_for(lock, bound ? std::chrono::seconds(5) : std::chrono::seconds(2));
    if (!dashboards_.empty()) {
      std::int64_t first = dashboards_.begin()->second;
      for (const auto& [_, expiry] : dashboards_) first = std::min(first, expiry);
      if (first <= now_unix()) next_sweep = std::chrono::steady_clock::now();
    }
  }
}

bool DynamicSecurity::bind_existing_accounts() {
  // Lists every account (pages of 1000), binds each device account that has no
  // client id or another one to its own id, and picks up dashboard credentials
  // issued before a restart so they still expire. A few passes, in case accounts
  // were added while paging shifted the offsets.
  const auto started = std::chrono::steady_clock::now();
  std::size_t bound = 0, already = 0, failed = 0;
  std::vector<std::string> unbound_others;
  for (int pass = 0; pass < 3; ++pass) {
    std::vector<std::string> to_bind;
    unbound_others.clear();
    std::size_t bound_before = 0;
    for (int offset = 0;; offset += list_page) {
      auto page = call({Json{{"command", "listClients"}, {"verbose", true}, {"count", list_page}, {"offset", offset}}},
                       std::chrono::seconds(30));
      if (!page || !error_of(page.value()[0]).empty()) {
        service::log_warn("broker_accounts_not_listed",
                          {{"error", page ? error_of(page.value()[0]) : page.error().detail}});
        return false;
      }
      const Json& data = page.value()[0].contains("data") ? page.value()[0]["data"] : Json::object();
      if (!data.contains("clients") || !data["clients"].is_array()) break;
      const auto& clients = data["clients"];
      for (const auto& c : clients) {
        const std::string username = string_field(c, "username");
        const std::string clientid = string_field(c, "clientid");
        bool device_account = false;
        if (const auto id = core::parse_device_id(username); id && c.contains("roles") && c["roles"].is_array())
          for (const auto& role : c["roles"])
            device_account = device_account || string_field(role, "rolename") == device_role(*id);
        if (device_account) {
          if (clientid == username) ++bound_before;
          else to_bind.push_back(username);
          continue;
        }
        const std::string description = string_field(c, "textdescription");
        if (username.rfind("dashboard-", 0) == 0 && description.rfind(expires_label, 0) == 0) {
          if (const auto expiry = core::parse_rfc3339(std::string_view(description).substr(std::string(expires_label).size()))) {
            std::lock_guard lock(maintenance_mutex_);
            dashboards_.emplace(username, unix_seconds(*expiry));
          }
        }
        if (clientid.empty() && username != service_username_) unbound_others.push_back(username);
      }
      if (clients.size() < static_cast<std::size_t>(list_page)) break;
    }
    if (pass == 0) already = bound_before;
    if (to_bind.empty()) break;
    for (std::size_t i = 0; i < to_bind.size(); i += bind_batch) {
      std::vector<Json> commands;
      for (std::size_t j = i; j < std::min(to_bind.size(), i + bind_batch); ++j)
        commands.push_back(Json{{"command", "setClientId"}, {"username", to_bind[j]}, {"clientid", to_bind[j]}});
      auto answers = call(std::move(commands), std::chrono::seconds(60));
      if (!answers) {
        service::log_warn("broker_accounts_not_bound", {{"error", answers.error().detail}});
        return false;
      }
      for (const auto& a : answers.value()) error_of(a).empty() ? ++bound : ++failed;
      std::unique_lock lock(maintenance_mutex_);
      if (maintenance_cv_.wait_for(lock, bind_pause, [&] { return stopping_.load(); })) return true;
    }
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  service::log_info("device_accounts_bound", {{"bound_now", std::to_string(bound)},
                                              {"already_bound", std::to_string(already)},
                                              {"failed", std::to_string(failed)},
                                              {"ms", std::to_string(ms.count())}});
  if (!unbound_others.empty()) {
    std::string names;
    for (std::size_t i = 0; i < unbound_others.size() && i < 10; ++i) names += (i ? "," : "") + unbound_others[i];
    service::log_warn("broker_accounts_without_client_id",
                      {{"count", std::to_string(unbound_others.size())},
                       {"usernames", names},
                       {"note", "these accounts can connect with any client id, a device's included; bind them "
                                "(mosquitto_ctrl dynsec setClientId) or remove them"}});
  }
  return failed == 0;
}

void DynamicSecurity::remove_expired_dashboards() {
  std::vector<std::string> expired;
  {
    std::lock_guard lock(maintenance_mutex_);
    const auto now = now_unix();
    for (const auto& [username, expiry] : dashboards_)
      if (expiry <= now) expired.push_back(username);
  }
  if (expired.empty()) return;
  std::vector<Json> commands;
  for (const auto& username : expired) commands.push_back(Json{{"command", "deleteClient"}, {"username", username}});
  auto answers = call(std::move(commands), std::chrono::seconds(30));
  if (!answers) {
    service::log_warn("dashboard_credentials_not_removed", {{"error", answers.error().detail}});
    return;
  }
  std::size_t removed = 0;
  {
    std::lock_guard lock(maintenance_mutex_);
    for (std::size_t i = 0; i < expired.size(); ++i)
      if (benign(answers.value()[i], "not found")) {
        dashboards_.erase(expired[i]);
        ++removed;
      }
  }
  service::log_info("dashboard_credentials_expired", {{"removed", std::to_string(removed)}});
}

bool DynamicSecurity::grant_replies_to_existing_roles() {
  const std::string role_prefix = "maestra-device-";
  std::vector<std::pair<std::string, std::string>> missing;  // role, its replies topic
  for (int offset = 0;; offset += list_page) {
    auto page = call({Json{{"command", "listRoles"}, {"verbose", true}, {"count", list_page}, {"offset", offset}}},
                     std::chrono::seconds(30));
    if (!page || !error_of(page.value()[0]).empty()) {
      service::log_warn("broker_roles_not_listed", {{"error", page ? error_of(page.value()[0]) : page.error().detail}});
      return false;
    }
    const Json& data = page.value()[0].contains("data") ? page.value()[0]["data"] : Json::object();
    if (!data.contains("roles") || !data["roles"].is_array()) break;
    const auto& roles = data["roles"];
    for (const auto& role : roles) {
      const std::string name = string_field(role, "rolename");
      if (name.rfind(role_prefix, 0) != 0) continue;
      const auto id = core::parse_device_id(std::string_view(name).substr(role_prefix.size()));
      if (!id) continue;
      const std::string replies = topics_.prefix() + "/devices/" + id->to_string() + "/replies/#";
      bool has = false;
      if (role.contains("acls") && role["acls"].is_array())
        for (const auto& a : role["acls"])
          has = has || (string_field(a, "acltype") == "publishClientSend" && string_field(a, "topic") == replies);
      if (!has) missing.emplace_back(name, replies);
    }
    if (roles.size() < static_cast<std::size_t>(list_page)) break;
  }
  std::size_t added = 0;
  for (std::size_t i = 0; i < missing.size(); i += bind_batch) {
    std::vector<Json> commands;
    for (std::size_t j = i; j < std::min(missing.size(), i + bind_batch); ++j) {
      Json command = acl("publishClientSend", missing[j].second);
      command["command"] = "addRoleACL";
      command["rolename"] = missing[j].first;
      commands.push_back(std::move(command));
    }
    auto answers = call(std::move(commands), std::chrono::seconds(60));
    if (!answers) {
      service::log_warn("device_roles_not_upgraded", {{"error", answers.error().detail}});
      return false;
    }
    for (const auto& a : answers.value()) added += benign(a, "already exists") ? 1 : 0;
    std::unique_lock lock(maintenance_mutex_);
    if (maintenance_cv_.wait_for(lock, bind_pause, [&] { return stopping_.load(); })) return true;
  }
  if (!missing.empty())
    service::log_info("device_roles_upgraded", {{"replies_granted", std::to_string(added)},
                                                {"roles", std::to_string(missing.size())}});
  return true;
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
  // The dashboard role exists in every secure deployment: issued dashboard
  // credentials use it even without a configured dashboard account.
  commands.push_back(Json{{"command", "createRole"},
                          {"rolename", dashboard_role},
                          {"acls", Json::array({acl("subscribePattern", prefix + "/devices/+/status"),
                                                acl("subscribePattern", prefix + "/fleet/#")})}});
  if (!dashboard_username.empty()) {
    // Bound to client id = its username: one connection at a time, and never a
    // device's client id (device ids are UUIDs).
    commands.push_back(Json{{"command", "createClient"},
                            {"username", dashboard_username},
                            {"password", dashboard_password},
                            {"clientid", dashboard_username},
                            {"textname", "maestra dashboard (read-only)"},
                            {"roles", Json::array({Json{{"rolename", dashboard_role}}})}});
  }
  auto answers = call(std::move(commands));
  if (!answers) return answers.error();
  const auto& a = answers.value();
  for (std::size_t i = 0; i < a.size(); ++i)
    if (i != 1 && !benign(a[i], "already exists"))
      return Error{ErrorKind::unavailable, "", "dynamic-security refused the service roles: " + error_of(a[i])};
  if (!dashboard_username.empty() && !error_of(a[3]).empty()) {
    // The account existed: make its password the configured one and bind it to
    // its client id (an account made by an earlier version had none). This
    // disconnects dashboards using it, which is the point of changing either.
    auto changed = call({Json{{"command", "modifyClient"}, {"username", dashboard_username},
                              {"password", dashboard_password}, {"clientid", dashboard_username}}});
    if (!changed) return changed.error();
    if (const auto error = error_of(changed.value()[0]); !error.empty())
      return Error{ErrorKind::unavailable, "", "dynamic-security refused the dashboard account: " + error};
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
  if (!maintenance_.joinable()) {
    service_username_ = service_username;
    maintenance_ = std::thread([this] { maintain(); });
  }
  return core::Done{};
}

}  // namespace maestra::mqtt_adapter
