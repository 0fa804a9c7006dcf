// Tests of core/presence: the presence payload table (plain and JSON forms), births
// recording the highest session, late wills from replaced connections ignored,
// wills and clean disconnects marking the device offline, and maintenance holding.
#include "unit_test.hpp"

#include "core/presence.hpp"

using namespace maestra::core;
using namespace maestra::core::unit;

namespace {
DeviceState online_with_session(std::int64_t session) {
  DeviceState s = register_device(t0, std::nullopt).next;
  s.presence_session = session;
  return s;
}
const PresenceSignal birth{PresenceKind::birth, std::nullopt};
const PresenceSignal will{PresenceKind::will, std::nullopt};
PresenceSignal birth_s(std::int64_t n) { return {PresenceKind::birth, n}; }
PresenceSignal will_s(std::int64_t n) { return {PresenceKind::will, n}; }
}  // namespace

TEST_SUITE("presence") {

TEST_CASE("parse_presence accepts the plain and JSON forms") {
  struct Row {
    std::string_view payload;
    PresenceKind kind;
    std::optional<std::int64_t> session;
  };
  const Row table[] = {
      {"online", PresenceKind::birth, std::nullopt},
      {"offline", PresenceKind::will, std::nullopt},
      {"disconnect", PresenceKind::disconnect, std::nullopt},
      {R"({"state":"online"})", PresenceKind::birth, std::nullopt},
      {R"({"state":"offline"})", PresenceKind::will, std::nullopt},
      {R"({"state":"online","session":3})", PresenceKind::birth, 3},
      {R"({"state":"offline","session":2})", PresenceKind::will, 2},
      {R"({"session":0,"state":"online"})", PresenceKind::birth, 0},
      {R"({"state":"offline","reason":"disconnect"})", PresenceKind::disconnect, std::nullopt},
      {R"({"state":"offline","reason":"disconnect","session":9})", PresenceKind::disconnect, 9},
      {R"({"state":"offline","reason":"network"})", PresenceKind::will, std::nullopt},
      {R"({"state":"offline","reason":7})", PresenceKind::will, std::nullopt},
      {R"({"state":"online","reason":"disconnect"})", PresenceKind::birth, std::nullopt},
      {R"({ "state" : "online" , "session" : 1700000000123 })", PresenceKind::birth, 1700000000123},
      {R"({"state":"online","extra":{"a":[1,2]}})", PresenceKind::birth, std::nullopt},
  };
  for (const Row& row : table) {
    CAPTURE(row.payload);
    const auto signal = parse_presence(row.payload);
    REQUIRE(signal.has_value());
    CHECK(signal->kind == row.kind);
    CHECK(signal->session == row.session);
  }
}

TEST_CASE("parse_presence rejects everything else") {
  const std::string_view rejected[] = {
      "",                                     // the empty payload that clears a retained topic
      "ONLINE",                               // case matters
      "Offline",
      "online\n",
      " online",
      "on",
      "true",
      "1",
      R"("online")",                          // a JSON string, not the plain payload
      "{",                                    // bad JSON
      R"({"state":"online")",                 // unterminated
      R"({"state":"online",})",               // trailing comma
      "{}",                                   // no state
      R"({"session":1})",
      R"({"state":null})",                    // wrong types
      R"({"state":1})",
      R"({"state":true})",
      R"({"state":["online"]})",
      R"({"state":"maybe"})",                 // unknown state
      R"({"state":"Online"})",
      R"({"state":"disconnect"})",
      R"({"state":"online","session":"3"})",  // session must be an integer
      R"({"state":"online","session":1.5})",
      R"({"state":"online","session":null})",
      R"({"state":"offline","session":[1]})",
      R"(["online"])",                        // not an object
      "null",
      std::string_view("online\0", 7),        // embedded NUL
  };
  for (const std::string_view payload : rejected) {
    CAPTURE(payload);
    CHECK_FALSE(parse_presence(payload).has_value());
  }
}

TEST_CASE("a birth connects the device with reason heartbeat and refreshes last_seen") {
  DeviceState offline = online_with_session(-1);
  offline.connected = false;
  const Outcome out = apply_presence(offline, birth, t0 + 50s);
  CHECK(out.changed);
  CHECK_FALSE(out.ignored);
  CHECK(out.next.connected);
  CHECK(out.next.last_seen == t0 + 50s);
  CHECK(out.next.presence_session == -1);
  REQUIRE(out.transition);
  CHECK(*out.transition->from == Status::offline);
  CHECK(out.transition->to == Status::online);
  CHECK(out.transition->reason == Reason::heartbeat);
  CHECK(out.transition->at == t0 + 50s);
}

TEST_CASE("a birth does not count as a heartbeat for the frequency warning") {
  const Outcome out = apply_presence(online_with_session(-1), birth, t0 + 5s);
  CHECK(out.next.last_heartbeat == TimePoint{});
}

TEST_CASE("a birth on an online device changes nothing but last_seen") {
  const Outcome out = apply_presence(online_with_session(-1), birth, t0 + 5s);
  CHECK_FALSE(out.changed);
  CHECK_FALSE(out.transition.has_value());
  CHECK(out.next.last_seen == t0 + 5s);
}

TEST_CASE("births record the highest session seen") {
  DeviceState s = online_with_session(-1);
  s = apply_presence(s, birth_s(4), t0 + 1s).next;
  CHECK(s.presence_session == 4);
  s = apply_presence(s, birth_s(2), t0 + 2s).next;  // an older birth never lowers it
  CHECK(s.presence_session == 4);
  s = apply_presence(s, birth, t0 + 3s).next;  // a birth without a session leaves it
  CHECK(s.presence_session == 4);
  s = apply_presence(s, birth_s(5), t0 + 4s).next;
  CHECK(s.presence_session == 5);
}

TEST_CASE("a will with an older session than the latest birth is ignored") {
  const DeviceState s = online_with_session(5);
  const Outcome out = apply_presence(s, will_s(4), t0 + 10s);
  CHECK(out.ignored);
  CHECK_FALSE(out.changed);
  CHECK_FALSE(out.transition.has_value());
  CHECK(out.next.connected);
  CHECK(out.next.status() == Status::online);
  CHECK(out.next.presence_session == 5);

  const Outcome stale_disconnect = apply_presence(s, PresenceSignal{PresenceKind::disconnect, 0}, t0 + 10s);
  CHECK(stale_disconnect.ignored);
  CHECK(stale_disconnect.next.connected);
}

TEST_CASE("a will with an equal, newer or no session applies with reason will") {
  struct Row {
    std::string_view name;
    PresenceSignal signal;
  };
  const Row table[] = {
      {"equal session", will_s(5)},
      {"newer session", will_s(6)},
      {"no session", will},
  };
  for (const Row& row : table) {
    CAPTURE(row.name);
    const Outcome out = apply_presence(online_with_session(5), row.signal, t0 + 10s);
    CHECK_FALSE(out.ignored);
    CHECK(out.changed);
    CHECK_FALSE(out.next.connected);
    CHECK(out.next.status() == Status::offline);
    CHECK(out.next.last_seen == t0);  // a will is not a sign of life
    REQUIRE(out.transition);
    CHECK(*out.transition->from == Status::online);
    CHECK(out.transition->to == Status::offline);
    CHECK(out.transition->reason == Reason::will);
    CHECK(out.transition->at == t0 + 10s);
  }
}

TEST_CASE("a will applies when no birth carried a session") {
  const Outcome out = apply_presence(online_with_session(-1), will_s(0), t0 + 1s);
  CHECK_FALSE(out.ignored);
  CHECK(out.next.status() == Status::offline);
}

TEST_CASE("a clean disconnect gives reason disconnect") {
  const Outcome out =
      apply_presence(online_with_session(3), PresenceSignal{PresenceKind::disconnect, std::nullopt}, t0 + 1s);
  CHECK_FALSE(out.next.connected);
  REQUIRE(out.transition);
  CHECK(out.transition->to == Status::offline);
  CHECK(out.transition->reason == Reason::disconnect);

  const auto parsed = parse_presence(R"({"state":"offline","reason":"disconnect","session":3})");
  REQUIRE(parsed);
  const Outcome via_json = apply_presence(online_with_session(3), *parsed, t0 + 1s);
  REQUIRE(via_json.transition);
  CHECK(via_json.transition->reason == Reason::disconnect);
}

TEST_CASE("a will takes an erroring device offline") {
  DeviceState s = online_with_session(-1);
  s.reported_error = true;
  const Outcome out = apply_presence(s, will, t0 + 1s);
  REQUIRE(out.transition);
  CHECK(*out.transition->from == Status::error);
  CHECK(out.transition->to == Status::offline);
}

TEST_CASE("a will on an already offline device changes nothing and is not a transition") {
  DeviceState s = online_with_session(-1);
  s.connected = false;
  const Outcome out = apply_presence(s, will, t0 + 1s);
  CHECK_FALSE(out.changed);
  CHECK_FALSE(out.transition.has_value());
  CHECK_FALSE(out.ignored);
}

TEST_CASE("presence during maintenance moves `connected` but never the status") {
  DeviceState s = online_with_session(1);
  s.maintenance = true;

  const Outcome gone = apply_presence(s, will_s(1), t0 + 1s);
  CHECK(gone.changed);
  CHECK_FALSE(gone.next.connected);
  CHECK(gone.next.status() == Status::maintenance);
  CHECK_FALSE(gone.transition.has_value());

  const Outcome back = apply_presence(gone.next, birth_s(2), t0 + 2s);
  CHECK(back.changed);
  CHECK(back.next.connected);
  CHECK(back.next.status() == Status::maintenance);
  CHECK_FALSE(back.transition.has_value());
  CHECK(back.next.presence_session == 2);
}

TEST_CASE("reconnect race: the late will of the replaced connection is dropped") {
  DeviceState s = online_with_session(-1);
  s = apply_presence(s, birth_s(1), t0 + 1s).next;  // first connection
  s = apply_presence(s, birth_s(2), t0 + 2s).next;  // reconnect before the broker sent the old will
  const Outcome late_will = apply_presence(s, will_s(1), t0 + 3s);
  CHECK(late_will.ignored);
  CHECK(late_will.next.status() == Status::online);
  s = late_will.next;
  const Outcome real_will = apply_presence(s, will_s(2), t0 + 4s);
  CHECK_FALSE(real_will.ignored);
  CHECK(real_will.next.status() == Status::offline);
  REQUIRE(real_will.transition);
  CHECK(real_will.transition->reason == Reason::will);
}

}  // TEST_SUITE
