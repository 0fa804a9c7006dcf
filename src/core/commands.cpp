// The rules of commands to devices (see commands.hpp): states, transitions,
// request and reply validation, sweep decisions, documents and topics.
#include "core/commands.hpp"

#include <array>
#include <cstdio>

#include <nlohmann/json.hpp>

namespace maestra::core {

namespace {

constexpr std::array<std::string_view, command_state_count> state_names{
    "queued", "sent", "delivered", "in_progress", "succeeded", "failed", "rejected", "timed_out", "expired", "canceled"};

// The order of progress: a transition never goes to a lower rank.
int rank(CommandState s) {
  switch (s) {
    case CommandState::queued: return 0;
    case CommandState::sent: return 1;
    case CommandState::delivered: return 2;
    case CommandState::in_progress: return 3;
    default: return 4;  // terminal
  }
}

bool is_safe_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
         c == '.' || c == ':';
}

std::optional<std::int64_t> whole_number(std::string_view text, std::int64_t min, std::int64_t max) {
  if (text.empty() || text.size() > 12) return std::nullopt;
  std::int64_t n = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  if (n < min || n > max) return std::nullopt;
  return n;
}

// An optional integer field in [min, max], absent or null giving `fallback`.
Result<Seconds> seconds_field(const Json& body, const char* field, Seconds fallback, Seconds max) {
  if (!body.contains(field) || body[field].is_null()) return fallback;
  const Json& v = body[field];
  if (!v.is_number_integer() || v.get<std::int64_t>() < 1 || v.get<std::int64_t>() > max.count())
    return invalid(field, std::string(field) + " must be an integer from 1 to " + std::to_string(max.count()));
  return Seconds{v.get<std::int64_t>()};
}

Json time_or_null(const std::optional<TimePoint>& t) { return t ? Json(format_rfc3339(*t)) : Json(nullptr); }

std::string devices_prefix(std::string_view prefix, const DeviceId& device) {
  return std::string(prefix) + "/devices/" + device.to_string();
}

}  // namespace

std::string_view to_string(CommandState s) { return state_names[static_cast<std::size_t>(s)]; }

std::optional<CommandState> parse_command_state(std::string_view text) {
  for (std::size_t i = 0; i < state_names.size(); ++i)
    if (state_names[i] == text) return static_cast<CommandState>(i);
  return std::nullopt;
}

bool is_terminal(CommandState s) { return rank(s) == 4; }

bool is_delivered(CommandState s) {
  return s == CommandState::delivered || s == CommandState::in_progress || s == CommandState::succeeded ||
         s == CommandState::failed || s == CommandState::rejected || s == CommandState::timed_out;
}

bool can_transition(CommandState from, CommandState to) {
  if (is_terminal(from) || from == to) return false;
  switch (to) {
    case CommandState::queued: return false;
    case CommandState::expired: return !is_delivered(from);
    case CommandState::timed_out: return is_delivered(from);
    case CommandState::canceled: return true;
    default: return rank(to) > rank(from);
  }
}

std::string CommandRequest::fingerprint() const {
  // nlohmann::json (not ordered_json) sorts object keys: the same params in
  // another key order give the same text.
  const nlohmann::json canonical{{"name", name},
                                 {"params", nlohmann::json::parse(params.dump())},
                                 {"expires_in", expires_in.count()},
                                 {"timeout", timeout.count()}};
  const std::string text = canonical.dump();
  std::uint64_t hash = 14695981039346656037ULL;  // FNV-1a, 64 bits
  for (const unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  char out[17];
  std::snprintf(out, sizeof(out), "%016llx", static_cast<unsigned long long>(hash));
  return out;
}

Result<CommandRequest> parse_command_request(const Json& body) {
  CommandRequest r;
  if (!body.contains("name") || !body["name"].is_string())
    return invalid("name", "name is required: a string of 1 to 64 characters A-Z a-z 0-9 _ - . :");
  r.name = body["name"].get<std::string>();
  if (r.name.empty() || r.name.size() > max_command_name_chars)
    return invalid("name", "name must be 1 to 64 characters long");
  for (const char c : r.name)
    if (!is_safe_name_char(c)) return invalid("name", "name may hold only A-Z a-z 0-9 _ - . :");
  auto params = optional_object(body, "params");
  if (!params) return params.error();
  if (body.contains("params") && !body["params"].is_null() && !body["params"].is_object())
    return invalid("params", "params must be a JSON object");
  r.params = params->is_null() ? Json::object() : std::move(params.value());
  if (r.params.dump().size() > max_command_params_bytes)
    return invalid("params", "params must be at most 16384 bytes of JSON");
  auto expires_in = seconds_field(body, "expires_in", default_command_expires_in, max_command_expires_in);
  if (!expires_in) return expires_in.error();
  r.expires_in = expires_in.value();
  auto timeout = seconds_field(body, "timeout", default_command_timeout, max_command_timeout);
  if (!timeout) return timeout.error();
  r.timeout = timeout.value();
  return r;
}

Result<FanOut> parse_fan_out(const Json& body) {
  auto request = parse_command_request(body);
  if (!request) return request.error();
  FanOut f{std::move(request.value()), {}, std::nullopt, std::nullopt};
  int ways = 0;
  if (body.contains("device_ids") && !body["device_ids"].is_null()) {
    ++ways;
    const Json& ids = body["device_ids"];
    if (!ids.is_array() || ids.empty() || ids.size() > max_fan_out_devices)
      return invalid("device_ids", "device_ids must be an array of 1 to 10000 device ids");
    for (const auto& v : ids) {
      auto id = v.is_string() ? parse_device_id(v.get<std::string>()) : std::nullopt;
      if (!id) return invalid("device_ids", "device_ids must hold device ids (UUIDs)");
      f.device_ids.push_back(*id);
    }
  }
  if (body.contains("device_type") && !body["device_type"].is_null()) {
    ++ways;
    auto type = required_string(body, "device_type", max_device_type_chars);
    if (!type) return type.error();
    f.device_type = type.value();
  }
  if (body.contains("status") && !body["status"].is_null()) {
    ++ways;
    const auto status = body["status"].is_string() ? parse_status(body["status"].get<std::string>()) : std::nullopt;
    if (!status) return invalid("status", "status must be one of online, offline, error, maintenance");
    f.status = *status;
  }
  if (ways != 1)
    return invalid("device_ids", "name the devices in exactly one way: device_ids, device_type or status");
  return f;
}

Result<CommandReply> parse_command_reply_text(std::string_view body) {
  auto parsed = parse_json_object(body);
  if (!parsed) return parsed.error();
  return parse_command_reply(parsed.value());
}

Result<CommandReply> parse_command_reply(const Json& body) {
  CommandReply r;
  if (!body.contains("state") || !body["state"].is_string())
    return invalid("state", "state is required: delivered, in_progress, succeeded, failed or rejected");
  const auto state = parse_command_state(body["state"].get<std::string>());
  if (!state || !(*state == CommandState::delivered || *state == CommandState::in_progress ||
                  *state == CommandState::succeeded || *state == CommandState::failed ||
                  *state == CommandState::rejected))
    return invalid("state", "state must be delivered, in_progress, succeeded, failed or rejected");
  r.state = *state;
  if (body.contains("result") && !body["result"].is_null() && !body["result"].is_object())
    return invalid("result", "result must be a JSON object");
  auto result = optional_object(body, "result");
  if (!result) return result.error();
  r.result = std::move(result.value());
  if (!r.result.is_null() && r.result.dump().size() > max_command_result_bytes)
    return invalid("result", "result must be at most 16384 bytes of JSON");
  auto error = optional_string(body, "error", max_command_error_chars);
  if (!error) return error.error();
  r.error = error.value();
  return r;
}

ReplyVerdict judge_reply(CommandState current, CommandState reported) {
  if (is_terminal(current)) return ReplyVerdict::terminal;
  if (current == reported) return ReplyVerdict::duplicate;
  return can_transition(current, reported) ? ReplyVerdict::apply : ReplyVerdict::backwards;
}

bool not_behind(CommandState seen, CommandState next) { return seen == next || can_transition(seen, next); }

std::optional<CommandState> reply_move_from(const std::optional<CachedCommand>& cached, const DeviceId& device,
                                            CommandState reported) {
  if (!cached || cached->device != device) return std::nullopt;
  if (judge_reply(cached->state, reported) != ReplyVerdict::apply) return std::nullopt;
  return cached->state;
}

bool ack_may_move(const std::optional<CachedCommand>& cached) { return !cached || cached->state == CommandState::queued; }

std::string_view to_string(ReplyVerdict v) {
  switch (v) {
    case ReplyVerdict::apply: return "applied";
    case ReplyVerdict::duplicate: return "duplicate";
    case ReplyVerdict::terminal: return "terminal";
    case ReplyVerdict::backwards: return "backwards";
  }
  return "unknown";
}

std::optional<CommandState> sweep_decision(const Command& c, TimePoint now) {
  if (is_terminal(c.state)) return std::nullopt;
  if (!is_delivered(c.state)) {
    if (now >= c.expires_at) return CommandState::expired;
    return std::nullopt;
  }
  if (c.delivered_at && now >= *c.delivered_at + c.timeout) return CommandState::timed_out;
  return std::nullopt;
}

bool deliverable(const Command& c, TimePoint now) { return !is_delivered(c.state) && !is_terminal(c.state) && now < c.expires_at; }

std::uint32_t message_expiry_seconds(const Command& c, TimePoint now) {
  const auto left = std::chrono::duration_cast<Millis>(c.expires_at - now).count();
  if (left <= 1000) return 1;
  return static_cast<std::uint32_t>((left + 999) / 1000);
}

Json command_delivery_json(const Command& c) {
  return Json{{"id", c.id.to_string()},
              {"name", c.name},
              {"params", c.params},
              {"created_at", format_rfc3339(c.created_at)},
              {"expires_at", format_rfc3339(c.expires_at)}};
}

Json command_json(const Command& c) {
  return Json{{"id", c.id.to_string()},
              {"device_id", c.device_id.to_string()},
              {"name", c.name},
              {"params", c.params},
              {"state", to_string(c.state)},
              {"created_at", format_rfc3339(c.created_at)},
              {"expires_at", format_rfc3339(c.expires_at)},
              {"timeout", c.timeout.count()},
              {"delivered_at", time_or_null(c.delivered_at)},
              {"updated_at", format_rfc3339(c.updated_at)},
              {"result", c.result},
              {"error", c.error ? Json(*c.error) : Json(nullptr)}};
}

Json command_history_json(const std::vector<CommandHistoryEntry>& history) {
  Json out = Json::array();
  for (const auto& h : history)
    out.push_back({{"from", h.from ? Json(to_string(*h.from)) : Json(nullptr)},
                   {"to", to_string(h.to)},
                   {"at", format_rfc3339(h.at)}});
  return out;
}

Result<CommandListQuery> parse_command_list_query(const ParamLookup& param) {
  CommandListQuery q;
  if (auto state = param("state")) {
    q.state = parse_command_state(*state);
    if (!q.state) return invalid("state", "state must be one of queued, sent, delivered, in_progress, succeeded, "
                                          "failed, rejected, timed_out, expired, canceled");
  }
  if (auto limit = param("limit")) {
    auto n = whole_number(*limit, 1, 1000);
    if (!n) return invalid("limit", "limit must be an integer 1-1000");
    q.limit = static_cast<int>(*n);
  }
  if (auto offset = param("offset")) {
    auto n = whole_number(*offset, 0, max_list_offset);
    if (!n) return invalid("offset", "offset must be an integer 0-" + std::to_string(max_list_offset));
    q.offset = *n;
  }
  return q;
}

Result<Seconds> parse_command_wait(const ParamLookup& param) {
  auto wait = param("wait");
  if (!wait) return Seconds{0};
  auto n = whole_number(*wait, 0, max_command_wait.count());
  if (!n) return invalid("wait", "wait must be an integer 0-30 (seconds)");
  return Seconds{*n};
}

std::string command_topic(std::string_view prefix, const DeviceId& device, const CommandId& command) {
  return devices_prefix(prefix, device) + "/commands/" + command.to_string();
}

std::string command_reply_topic(std::string_view prefix, const DeviceId& device, const CommandId& command) {
  return devices_prefix(prefix, device) + "/replies/" + command.to_string();
}

std::string command_state_topic(std::string_view prefix, const DeviceId& device, const CommandId& command) {
  return std::string(prefix) + "/commands/" + device.to_string() + "/" + command.to_string();
}

std::string command_reply_filter(std::string_view prefix) { return std::string(prefix) + "/devices/+/replies/+"; }

std::optional<ReplyTopic> parse_reply_topic(std::string_view prefix, std::string_view topic) {
  const std::string head = std::string(prefix) + "/devices/";
  if (topic.substr(0, head.size()) != head) return std::nullopt;
  topic.remove_prefix(head.size());
  const auto slash = topic.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const auto device = topic.substr(0, slash);
  topic.remove_prefix(slash + 1);
  constexpr std::string_view replies = "replies/";
  if (topic.substr(0, replies.size()) != replies) return std::nullopt;
  topic.remove_prefix(replies.size());
  if (device.empty() || topic.empty() || topic.find('/') != std::string_view::npos) return std::nullopt;
  return ReplyTopic{device, topic};
}

}  // namespace maestra::core
