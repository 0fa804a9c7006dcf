// The HTTP routes of commands to devices (docs/http.md "Commands"):
// the administrator's (create, fan out, read, list, cancel) and the devices'
// (long poll for pending commands, reply). Each parses with core/commands and
// calls the command owner (service/commands); nothing here decides a rule.
#include <httplib.h>

#include "core/commands.hpp"
#include "core/documents.hpp"
#include "http/http_api.hpp"

namespace maestra::http {

using core::Error;
using core::ErrorKind;
using core::Json;

namespace {

// Idempotency-Key: absent, or text of at most 200 characters.
core::Result<std::optional<std::string>> idempotency_key(const httplib::Request& req) {
  if (!req.has_header("Idempotency-Key")) return std::optional<std::string>{};
  auto key = req.get_header_value("Idempotency-Key");
  if (auto error = core::check_text("Idempotency-Key", key, 200)) return *error;
  if (key.empty()) return Error{ErrorKind::invalid_field, "Idempotency-Key", "Idempotency-Key must not be empty"};
  return std::optional<std::string>{std::move(key)};
}

Error no_commands() { return Error{ErrorKind::unavailable, "", "commands are not enabled"}; }

}  // namespace

void HttpApi::create_command(const httplib::Request& req, httplib::Response& res, const std::string& body) {
  if (!commands_) return send_error(res, no_commands());
  auto device = path_uuid(req, 1, "id");
  if (!device) return send_error(res, device.error());
  auto wait = core::parse_command_wait(params_of(req));
  if (!wait) return send_error(res, wait.error());
  auto key = idempotency_key(req);
  if (!key) return send_error(res, key.error());
  auto parsed = core::parse_json_object(body);
  if (!parsed) return send_error(res, parsed.error());
  auto request = core::parse_command_request(parsed.value());
  if (!request) return send_error(res, request.error());
  auto created = commands_->create(device.value(), request.value(), key.value());
  if (!created) return send_error(res, created.error());
  auto command = commands_->wait_for_end(created->command, wait.value());
  if (!command) return send_error(res, command.error());
  send_json(res, created->existing ? 200 : 201, core::command_json(command.value()));
}

void HttpApi::fan_out_commands(const httplib::Request& req, httplib::Response& res, const std::string& body) {
  if (!commands_) return send_error(res, no_commands());
  auto key = idempotency_key(req);
  if (!key) return send_error(res, key.error());
  auto parsed = core::parse_json_object(body);
  if (!parsed) return send_error(res, parsed.error());
  auto fan_out = core::parse_fan_out(parsed.value());
  if (!fan_out) return send_error(res, fan_out.error());
  auto created = commands_->fan_out(fan_out.value(), key.value());
  if (!created) return send_error(res, created.error());
  Json answer = Json::array();
  for (const auto& c : created.value()) answer.push_back(core::command_json(c.command));
  send_json(res, 201, answer);
}

void HttpApi::get_command(const httplib::Request& req, httplib::Response& res, const std::string&) {
  if (!commands_) return send_error(res, no_commands());
  auto id = path_uuid(req, 1, "command_id", "command id");
  if (!id) return send_error(res, id.error());
  auto found = commands_->get(id.value());
  if (!found) return send_error(res, found.error());
  auto answer = core::command_json(found->command);
  answer["history"] = core::command_history_json(found->history);
  send_json(res, 200, answer);
}

void HttpApi::list_commands(const httplib::Request& req, httplib::Response& res, const std::string&) {
  if (!commands_) return send_error(res, no_commands());
  auto device = path_uuid(req, 1, "id");
  if (!device) return send_error(res, device.error());
  auto query = core::parse_command_list_query(params_of(req));
  if (!query) return send_error(res, query.error());
  auto listed = commands_->list(device.value(), query.value());
  if (!listed) return send_error(res, listed.error());
  Json answer = Json::array();
  for (const auto& c : listed.value()) answer.push_back(core::command_json(c));
  send_json(res, 200, answer);
}

void HttpApi::cancel_command(const httplib::Request& req, httplib::Response& res, const std::string&) {
  if (!commands_) return send_error(res, no_commands());
  auto id = path_uuid(req, 1, "command_id", "command id");
  if (!id) return send_error(res, id.error());
  auto canceled = commands_->cancel(id.value());
  if (!canceled) return send_error(res, canceled.error());
  send_json(res, 200, core::command_json(canceled.value()));
}

void HttpApi::pending_commands(const httplib::Request& req, httplib::Response& res, const std::string&) {
  if (!commands_) return send_error(res, no_commands());
  auto device = path_uuid(req, 1, "id");
  if (!device) return send_error(res, device.error());
  auto wait = core::parse_command_wait(params_of(req));
  if (!wait) return send_error(res, wait.error());
  if (auto error = authenticate_as(req, device.value())) return send_error(res, *error);
  auto pending = commands_->pending(device.value(), wait.value());
  if (!pending) return send_error(res, pending.error());
  Json answer = Json::array();
  for (const auto& c : pending.value()) answer.push_back(core::command_delivery_json(c));
  send_json(res, 200, answer);
}

void HttpApi::reply_command(const httplib::Request& req, httplib::Response& res, const std::string& body) {
  if (!commands_) return send_error(res, no_commands());
  auto device = path_uuid(req, 1, "id");
  if (!device) return send_error(res, device.error());
  auto id = path_uuid(req, 2, "command_id", "command id");
  if (!id) return send_error(res, id.error());
  if (auto error = authenticate_as(req, device.value())) return send_error(res, *error);
  auto reply = core::parse_command_reply_text(body);
  if (!reply) {
    commands_->reply_malformed();
    return send_error(res, reply.error());
  }
  auto outcome = commands_->reply(device.value(), id.value(), reply.value());
  if (!outcome) return send_error(res, outcome.error());
  using service::IgnoredReply;
  if (outcome->ignored == IgnoredReply::unknown_command || outcome->ignored == IgnoredReply::other_device)
    return send_error(res, Error{ErrorKind::not_found, "command_id",
                                 "no command " + id->to_string() + " for device " + device->to_string()});
  if (outcome->ignored == IgnoredReply::terminal || outcome->ignored == IgnoredReply::backwards)
    return send_error(res, Error{ErrorKind::conflict, "state",
                                 "the command is " + std::string(core::to_string(outcome->command.state)) +
                                     "; a reply cannot move it to " + std::string(core::to_string(reply->state))});
  send_json(res, 200, core::command_json(outcome->command));
}

}  // namespace maestra::http
