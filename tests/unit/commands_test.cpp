// Tests of core/commands: the transition table (terminal never changes,
// expired only before delivery, timed_out only after it, canceled from any
// state that is not terminal), request, fan-out and reply validation
// (table-driven), reply verdicts, the decisions the command owner makes on its
// cache of open commands (batched acks and replies), the sweep's exact
// boundaries, the documents and the topics.
#include "unit_test.hpp"

#include <string>
#include <vector>

#include "core/commands.hpp"

using namespace maestra::core;
using namespace maestra::core::unit;

namespace maestra::core {
inline doctest::String toString(CommandState s) { return std::string(to_string(s)).c_str(); }
}  // namespace maestra::core

namespace {
constexpr CommandState all_states[] = {CommandState::queued,    CommandState::sent,     CommandState::delivered,
                                       CommandState::in_progress, CommandState::succeeded, CommandState::failed,
                                       CommandState::rejected,  CommandState::timed_out, CommandState::expired,
                                       CommandState::canceled};

Json body(std::string_view text) { return Json::parse(text); }

Command command_at(CommandState state) {
  Command c;
  c.id = id_from("00000000-0000-4000-8000-000000000001");
  c.device_id = id_from("00000000-0000-4000-8000-0000000000aa");
  c.name = "reboot";
  c.state = state;
  c.created_at = t0;
  c.updated_at = t0;
  c.expires_at = t0 + 60s;
  c.timeout = Seconds{30};
  return c;
}
}  // namespace

TEST_CASE("command states have names and parse back; terminal ones are the last six") {
  for (const auto s : all_states) CHECK(parse_command_state(to_string(s)) == s);
  CHECK_FALSE(parse_command_state("done"));
  CHECK_FALSE(is_terminal(CommandState::queued));
  CHECK_FALSE(is_terminal(CommandState::sent));
  CHECK_FALSE(is_terminal(CommandState::delivered));
  CHECK_FALSE(is_terminal(CommandState::in_progress));
  for (const auto s : {CommandState::succeeded, CommandState::failed, CommandState::rejected, CommandState::timed_out,
                       CommandState::expired, CommandState::canceled})
    CHECK(is_terminal(s));
}

TEST_CASE("a terminal state never changes") {
  for (const auto from : all_states)
    if (is_terminal(from))
      for (const auto to : all_states) CHECK_FALSE(can_transition(from, to));
}

TEST_CASE("the forward path queued -> sent -> delivered -> in_progress -> a result, never back") {
  CHECK(can_transition(CommandState::queued, CommandState::sent));
  CHECK(can_transition(CommandState::sent, CommandState::delivered));
  CHECK(can_transition(CommandState::delivered, CommandState::in_progress));
  CHECK(can_transition(CommandState::in_progress, CommandState::succeeded));
  CHECK(can_transition(CommandState::in_progress, CommandState::failed));
  CHECK(can_transition(CommandState::in_progress, CommandState::rejected));
  // A device's reply may skip steps forward.
  CHECK(can_transition(CommandState::queued, CommandState::delivered));
  CHECK(can_transition(CommandState::sent, CommandState::succeeded));
  // Never backwards, never to itself, never back to queued.
  CHECK_FALSE(can_transition(CommandState::sent, CommandState::queued));
  CHECK_FALSE(can_transition(CommandState::delivered, CommandState::sent));
  CHECK_FALSE(can_transition(CommandState::in_progress, CommandState::delivered));
  for (const auto s : all_states) CHECK_FALSE(can_transition(s, s));
}

TEST_CASE("expired only before delivery, timed_out only after it, canceled from any state that is not terminal") {
  CHECK(can_transition(CommandState::queued, CommandState::expired));
  CHECK(can_transition(CommandState::sent, CommandState::expired));
  CHECK_FALSE(can_transition(CommandState::delivered, CommandState::expired));
  CHECK_FALSE(can_transition(CommandState::in_progress, CommandState::expired));
  CHECK_FALSE(can_transition(CommandState::queued, CommandState::timed_out));
  CHECK_FALSE(can_transition(CommandState::sent, CommandState::timed_out));
  CHECK(can_transition(CommandState::delivered, CommandState::timed_out));
  CHECK(can_transition(CommandState::in_progress, CommandState::timed_out));
  for (const auto s : all_states) CHECK(can_transition(s, CommandState::canceled) == !is_terminal(s));
}

TEST_CASE("a command request: defaults, limits and every wrong field named") {
  auto ok = parse_command_request(body(R"({"name":"reboot"})"));
  REQUIRE(ok);
  CHECK(ok->name == "reboot");
  CHECK(ok->params == Json::object());
  CHECK(ok->expires_in == Seconds{3600});
  CHECK(ok->timeout == Seconds{30});
  auto full = parse_command_request(body(R"({"name":"show.restart:v2","params":{"scene":3},"expires_in":604800,"timeout":3600})"));
  REQUIRE(full);
  CHECK(full->params["scene"] == 3);
  CHECK(full->expires_in == Seconds{604800});
  CHECK(full->timeout == Seconds{3600});

  struct Case {
    const char* body;
    const char* field;
  };
  const std::string long_name = R"({"name":")" + std::string(65, 'a') + R"("})";
  const std::string big_params = R"({"name":"x","params":{"blob":")" + std::string(16400, 'a') + R"("}})";
  const std::vector<std::pair<std::string, const char*>> cases = {
      {R"({})", "name"},
      {R"({"name":""})", "name"},
      {R"({"name":5})", "name"},
      {R"({"name":"re boot"})", "name"},
      {R"({"name":"a/b"})", "name"},
      {R"({"name":"é"})", "name"},
      {long_name, "name"},
      {R"({"name":"x","params":[1]})", "params"},
      {R"({"name":"x","params":"a"})", "params"},
      {big_params, "params"},
      {R"({"name":"x","expires_in":0})", "expires_in"},
      {R"({"name":"x","expires_in":604801})", "expires_in"},
      {R"({"name":"x","expires_in":"60"})", "expires_in"},
      {R"({"name":"x","expires_in":1.5})", "expires_in"},
      {R"({"name":"x","timeout":0})", "timeout"},
      {R"({"name":"x","timeout":3601})", "timeout"},
  };
  for (const auto& [text, field] : cases) {
    CAPTURE(text);
    auto parsed = parse_command_request(body(text));
    REQUIRE_FALSE(parsed);
    CHECK(parsed.error().kind == ErrorKind::invalid_field);
    CHECK(parsed.error().field == field);
  }
  CHECK(parse_command_request(body(R"({"name":")" + std::string(64, 'a') + R"("})")));
}

TEST_CASE("the fingerprint of a request ignores key order and sees every field") {
  auto a = parse_command_request(body(R"({"name":"x","params":{"a":1,"b":2}})")).value();
  auto b = parse_command_request(body(R"({"params":{"b":2,"a":1},"name":"x"})")).value();
  auto c = parse_command_request(body(R"({"name":"x","params":{"a":1,"b":3}})")).value();
  auto d = parse_command_request(body(R"({"name":"x","params":{"a":1,"b":2},"timeout":31})")).value();
  CHECK(a.fingerprint() == b.fingerprint());
  CHECK(a.fingerprint() != c.fingerprint());
  CHECK(a.fingerprint() != d.fingerprint());
  CHECK(a.fingerprint().size() == 16);
}

TEST_CASE("a fan-out names its devices in exactly one way") {
  auto ids = parse_fan_out(body(R"({"name":"x","device_ids":["00000000-0000-4000-8000-000000000001"]})"));
  REQUIRE(ids);
  CHECK(ids->device_ids.size() == 1);
  auto type = parse_fan_out(body(R"({"name":"x","device_type":"touchdesigner"})"));
  REQUIRE(type);
  CHECK(type->device_type == "touchdesigner");
  auto status = parse_fan_out(body(R"({"name":"x","status":"online"})"));
  REQUIRE(status);
  CHECK(status->status == Status::online);
  for (const char* bad : {R"({"name":"x"})", R"({"name":"x","device_type":"a","status":"online"})",
                          R"({"name":"x","device_ids":[]})", R"({"name":"x","device_ids":["nope"]})",
                          R"({"name":"x","device_ids":"00000000-0000-4000-8000-000000000001"})",
                          R"({"name":"x","status":"asleep"})"}) {
    CAPTURE(bad);
    auto parsed = parse_fan_out(body(bad));
    REQUIRE_FALSE(parsed);
    CHECK(parsed.error().kind == ErrorKind::invalid_field);
  }
  CHECK_FALSE(parse_fan_out(body(R"({"device_type":"a"})")));  // the request itself is checked too
}

TEST_CASE("a reply's raw body (MQTT payload or HTTP body): one JSON object, then the reply's rules") {
  auto ok = parse_command_reply_text(R"({"state":"delivered"})");
  REQUIRE(ok);
  CHECK(ok->state == CommandState::delivered);
  for (const char* text : {"", "not json", "[]", "\"delivered\"", R"({"state":"delivered")"}) {
    auto refused = parse_command_reply_text(text);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().kind == ErrorKind::malformed);
  }
  auto wrong = parse_command_reply_text(R"({"state":"queued"})");
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().field == "state");
}

TEST_CASE("a device's reply: its states, result and error, and what is malformed") {
  auto ok = parse_command_reply(body(R"({"state":"succeeded","result":{"took_ms":12}})"));
  REQUIRE(ok);
  CHECK(ok->state == CommandState::succeeded);
  CHECK(ok->result["took_ms"] == 12);
  auto failed = parse_command_reply(body(R"({"state":"failed","error":"projector did not answer"})"));
  REQUIRE(failed);
  CHECK(failed->error == "projector did not answer");
  for (const char* s : {"delivered", "in_progress", "succeeded", "failed", "rejected"})
    CHECK(parse_command_reply(Json{{"state", s}}));
  const std::vector<std::pair<std::string, const char*>> cases = {
      {R"({})", "state"},
      {R"({"state":"queued"})", "state"},
      {R"({"state":"sent"})", "state"},
      {R"({"state":"timed_out"})", "state"},
      {R"({"state":"canceled"})", "state"},
      {R"({"state":1})", "state"},
      {R"({"state":"succeeded","result":[1]})", "result"},
      {R"({"state":"succeeded","result":"ok"})", "result"},
      {R"({"state":"failed","error":5})", "error"},
      {R"({"state":"failed","error":")" + std::string(1025, 'e') + R"("})", "error"},
  };
  for (const auto& [text, field] : cases) {
    CAPTURE(text);
    auto parsed = parse_command_reply(body(text));
    REQUIRE_FALSE(parsed);
    CHECK(parsed.error().field == field);
  }
}

TEST_CASE("reply verdicts: applied forward, duplicates and backward steps ignored, terminal commands never touched") {
  CHECK(judge_reply(CommandState::sent, CommandState::delivered) == ReplyVerdict::apply);
  CHECK(judge_reply(CommandState::queued, CommandState::succeeded) == ReplyVerdict::apply);
  CHECK(judge_reply(CommandState::delivered, CommandState::delivered) == ReplyVerdict::duplicate);
  CHECK(judge_reply(CommandState::in_progress, CommandState::delivered) == ReplyVerdict::backwards);
  for (const auto s : {CommandState::succeeded, CommandState::failed, CommandState::rejected, CommandState::timed_out,
                       CommandState::expired, CommandState::canceled})
    for (const auto r : {CommandState::delivered, CommandState::succeeded, CommandState::failed})
      CHECK(judge_reply(s, r) == ReplyVerdict::terminal);
}

TEST_CASE("not_behind: the same state or a step forward, never back, nothing after a terminal state") {
  for (const auto s : all_states) CHECK(not_behind(s, s));
  CHECK(not_behind(CommandState::queued, CommandState::sent));
  CHECK(not_behind(CommandState::sent, CommandState::succeeded));
  CHECK_FALSE(not_behind(CommandState::delivered, CommandState::sent));
  CHECK_FALSE(not_behind(CommandState::succeeded, CommandState::canceled));
  CHECK_FALSE(not_behind(CommandState::canceled, CommandState::sent));
}

TEST_CASE("a reply decided on the cache of open commands: the state to move from, or left to the store") {
  const auto device = id_from("00000000-0000-4000-8000-0000000000aa");
  const auto other = id_from("00000000-0000-4000-8000-0000000000bb");
  const auto cached = [&](CommandState s) { return std::optional<CachedCommand>(CachedCommand{device, s}); };
  // Forward steps move from the cached state (a succeeded may skip sent and delivered).
  CHECK(reply_move_from(cached(CommandState::sent), device, CommandState::delivered) == CommandState::sent);
  CHECK(reply_move_from(cached(CommandState::queued), device, CommandState::succeeded) == CommandState::queued);
  CHECK(reply_move_from(cached(CommandState::in_progress), device, CommandState::failed) == CommandState::in_progress);
  // The cache cannot decide: unknown command, another device's, a duplicate, a step back, a terminal one.
  CHECK_FALSE(reply_move_from(std::nullopt, device, CommandState::succeeded));
  CHECK_FALSE(reply_move_from(cached(CommandState::sent), other, CommandState::succeeded));
  CHECK_FALSE(reply_move_from(cached(CommandState::delivered), device, CommandState::delivered));
  CHECK_FALSE(reply_move_from(cached(CommandState::in_progress), device, CommandState::delivered));
  CHECK_FALSE(reply_move_from(cached(CommandState::canceled), device, CommandState::succeeded));
  // Every state: decided exactly when the verdict is apply for the command's own device.
  for (const auto s : all_states)
    for (const auto r : {CommandState::delivered, CommandState::in_progress, CommandState::succeeded,
                         CommandState::failed, CommandState::rejected}) {
      CHECK(reply_move_from(cached(s), device, r).has_value() == (judge_reply(s, r) == ReplyVerdict::apply));
      CHECK_FALSE(reply_move_from(cached(s), other, r));
    }
}

TEST_CASE("a broker ack may move a command the cache does not know, or knows as queued, and nothing past it") {
  const auto device = id_from("00000000-0000-4000-8000-0000000000aa");
  CHECK(ack_may_move(std::nullopt));
  CHECK(ack_may_move(CachedCommand{device, CommandState::queued}));
  for (const auto s : all_states)
    if (s != CommandState::queued) CHECK_FALSE(ack_may_move(CachedCommand{device, s}));
}

TEST_CASE("the sweep: expired at expires_at exactly, timed_out at delivered_at + timeout exactly") {
  auto queued = command_at(CommandState::queued);
  CHECK_FALSE(sweep_decision(queued, t0 + 59999ms));
  CHECK(sweep_decision(queued, t0 + 60s) == CommandState::expired);
  auto sent = command_at(CommandState::sent);
  CHECK(sweep_decision(sent, t0 + 60s) == CommandState::expired);
  CHECK(deliverable(sent, t0 + 59999ms));
  CHECK_FALSE(deliverable(sent, t0 + 60s));

  // Delivered: never expires, times out `timeout` after delivery.
  auto delivered = command_at(CommandState::delivered);
  delivered.delivered_at = t0 + 50s;
  CHECK_FALSE(sweep_decision(delivered, t0 + 79999ms));
  CHECK(sweep_decision(delivered, t0 + 80s) == CommandState::timed_out);
  CHECK_FALSE(deliverable(delivered, t0 + 1s));
  auto working = command_at(CommandState::in_progress);
  working.delivered_at = t0;
  CHECK(sweep_decision(working, t0 + 30s) == CommandState::timed_out);
  for (const auto s : {CommandState::succeeded, CommandState::expired, CommandState::canceled}) {
    auto done = command_at(s);
    done.delivered_at = t0;
    CHECK_FALSE(sweep_decision(done, t0 + 24h));
  }
}

TEST_CASE("message expiry is the whole seconds left, at least one") {
  auto c = command_at(CommandState::queued);
  CHECK(message_expiry_seconds(c, t0) == 60);
  CHECK(message_expiry_seconds(c, t0 + 500ms) == 60);
  CHECK(message_expiry_seconds(c, t0 + 59500ms) == 1);
  CHECK(message_expiry_seconds(c, t0 + 61s) == 1);
}

TEST_CASE("the device's copy and the command document") {
  auto c = command_at(CommandState::delivered);
  c.params = Json{{"scene", 3}};
  c.delivered_at = t0 + 1s;
  const auto delivery = command_delivery_json(c);
  CHECK(delivery.dump() ==
        R"({"id":"00000000-0000-4000-8000-000000000001","name":"reboot","params":{"scene":3},)"
        R"("created_at":"2026-02-02T00:00:00.000Z","expires_at":"2026-02-02T00:01:00.000Z"})");
  const auto doc = command_json(c);
  CHECK(doc["state"] == "delivered");
  CHECK(doc["device_id"] == "00000000-0000-4000-8000-0000000000aa");
  CHECK(doc["delivered_at"] == "2026-02-02T00:00:01.000Z");
  CHECK(doc["timeout"] == 30);
  CHECK(doc["result"].is_null());
  CHECK(doc["error"].is_null());
  const auto history = command_history_json({{std::nullopt, CommandState::queued, t0}, {CommandState::queued, CommandState::sent, t0 + 1ms}});
  CHECK(history.dump() == R"([{"from":null,"to":"queued","at":"2026-02-02T00:00:00.000Z"},)"
                          R"({"from":"queued","to":"sent","at":"2026-02-02T00:00:00.001Z"}])");
}

TEST_CASE("list query and wait parameters") {
  auto none = [](std::string_view) -> std::optional<std::string> { return std::nullopt; };
  auto q = parse_command_list_query(none);
  REQUIRE(q);
  CHECK(q->limit == 50);
  CHECK_FALSE(q->state);
  auto params = [](std::string_view name) -> std::optional<std::string> {
    if (name == "state") return "succeeded";
    if (name == "limit") return "1000";
    if (name == "offset") return "5";
    return std::nullopt;
  };
  auto full = parse_command_list_query(params);
  REQUIRE(full);
  CHECK(full->state == CommandState::succeeded);
  CHECK(full->limit == 1000);
  CHECK(full->offset == 5);
  auto bad_state = [](std::string_view name) -> std::optional<std::string> {
    return name == "state" ? std::optional<std::string>("done") : std::nullopt;
  };
  CHECK(parse_command_list_query(bad_state).error().field == "state");
  auto bad_limit = [](std::string_view name) -> std::optional<std::string> {
    return name == "limit" ? std::optional<std::string>("1001") : std::nullopt;
  };
  CHECK(parse_command_list_query(bad_limit).error().field == "limit");
  CHECK(parse_command_wait(none).value() == Seconds{0});
  for (const char* w : {"31", "-1", "x", ""}) {
    auto wait = [w](std::string_view name) -> std::optional<std::string> {
      return name == "wait" ? std::optional<std::string>(w) : std::nullopt;
    };
    CHECK_FALSE(parse_command_wait(wait));
  }
  auto thirty = [](std::string_view name) -> std::optional<std::string> {
    return name == "wait" ? std::optional<std::string>("30") : std::nullopt;
  };
  CHECK(parse_command_wait(thirty).value() == Seconds{30});
}

TEST_CASE("command topics and the reply topic parser") {
  const auto device = id_from("00000000-0000-4000-8000-0000000000aa");
  const auto command = id_from("00000000-0000-4000-8000-000000000001");
  CHECK(command_topic("maestra", device, command) ==
        "maestra/devices/00000000-0000-4000-8000-0000000000aa/commands/00000000-0000-4000-8000-000000000001");
  CHECK(command_state_topic("site/a", device, command) ==
        "site/a/commands/00000000-0000-4000-8000-0000000000aa/00000000-0000-4000-8000-000000000001");
  CHECK(command_reply_filter("maestra") == "maestra/devices/+/replies/+");
  const auto reply = command_reply_topic("site/a", device, command);
  auto parsed = parse_reply_topic("site/a", reply);
  REQUIRE(parsed);
  CHECK(parsed->device == "00000000-0000-4000-8000-0000000000aa");
  CHECK(parsed->command == "00000000-0000-4000-8000-000000000001");
  CHECK_FALSE(parse_reply_topic("maestra", reply));
  CHECK_FALSE(parse_reply_topic("maestra", "maestra/devices/x/heartbeat"));
  CHECK_FALSE(parse_reply_topic("maestra", "maestra/devices/x/replies/"));
  CHECK_FALSE(parse_reply_topic("maestra", "maestra/devices/x/replies/a/b"));
  CHECK_FALSE(parse_reply_topic("maestra", "maestra/devices//replies/a"));
}
