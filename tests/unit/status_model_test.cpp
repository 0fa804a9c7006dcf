// Tests of core/device_state: the status derivation table, status and reason names,
// how an Outcome reports changes and transitions, registration, and the
// administrator's status rule (apply_admin_status) from every starting state.
#include "unit_test.hpp"

#include "core/device_state.hpp"

using namespace maestra::core;
using namespace maestra::core::unit;

namespace {
DeviceState state_of(bool connected, bool reported_error, bool maintenance) {
  DeviceState s;
  s.connected = connected;
  s.reported_error = reported_error;
  s.maintenance = maintenance;
  s.last_seen = t0;
  return s;
}
}  // namespace

TEST_SUITE("status model") {

TEST_CASE("derive_status: maintenance wins, then offline, then error, then online") {
  struct Row {
    bool connected, reported_error, maintenance;
    Status expected;
  };
  const Row table[] = {
      {true, false, false, Status::online},       {true, true, false, Status::error},
      {false, false, false, Status::offline},     {false, true, false, Status::offline},
      {true, false, true, Status::maintenance},   {true, true, true, Status::maintenance},
      {false, false, true, Status::maintenance},  {false, true, true, Status::maintenance},
  };
  for (const Row& row : table) {
    CAPTURE(row.connected);
    CAPTURE(row.reported_error);
    CAPTURE(row.maintenance);
    CHECK(derive_status(row.connected, row.reported_error, row.maintenance) == row.expected);
    CHECK(state_of(row.connected, row.reported_error, row.maintenance).status() == row.expected);
  }
}

TEST_CASE("a default DeviceState is connected and online with no session") {
  const DeviceState s;
  CHECK(s.status() == Status::online);
  CHECK(s.presence_session == -1);
  CHECK_FALSE(s.offline_after.has_value());
}

TEST_CASE("Status names are the guide's values and round-trip") {
  CHECK(to_string(Status::online) == "online");
  CHECK(to_string(Status::offline) == "offline");
  CHECK(to_string(Status::error) == "error");
  CHECK(to_string(Status::maintenance) == "maintenance");
  for (const Status s : {Status::online, Status::offline, Status::error, Status::maintenance}) {
    CAPTURE(s);
    const auto parsed = parse_status(to_string(s));
    REQUIRE(parsed);
    CHECK(*parsed == s);
  }
}

TEST_CASE("Reason names are docs/protocol.md's values and round-trip") {
  const std::pair<Reason, std::string_view> table[] = {
      {Reason::registered, "registered"}, {Reason::heartbeat, "heartbeat"},
      {Reason::will, "will"},             {Reason::disconnect, "disconnect"},
      {Reason::timeout, "timeout"},       {Reason::admin, "admin"},
      {Reason::reported_error, "reported_error"}, {Reason::restart, "restart"},
  };
  for (const auto& [reason, name] : table) {
    CAPTURE(name);
    CHECK(to_string(reason) == name);
    const auto parsed = parse_reason(name);
    REQUIRE(parsed);
    CHECK(*parsed == reason);
  }
}

TEST_CASE("parse_status and parse_reason are exact and case-sensitive") {
  for (const std::string_view text : {"", "Online", "ONLINE", " online", "online ", "unknown", "on line", "maint"}) {
    CAPTURE(text);
    CHECK_FALSE(parse_status(text).has_value());
  }
  for (const std::string_view text : {"", "Heartbeat", "birth", "reported-error", "timeout ", "online"}) {
    CAPTURE(text);
    CHECK_FALSE(parse_reason(text).has_value());
  }
}

TEST_CASE("decide reports a transition only when the derived status moves") {
  const DeviceState online = state_of(true, false, false);

  SUBCASE("nothing moved") {
    const Outcome out = decide(online, online, Reason::heartbeat, t0 + 1s);
    CHECK_FALSE(out.changed);
    CHECK_FALSE(out.transition.has_value());
    CHECK_FALSE(out.ignored);
  }
  SUBCASE("only last_seen moved: not a stored-input change") {
    DeviceState after = online;
    after.last_seen = t0 + 5s;
    const Outcome out = decide(online, after, Reason::heartbeat, t0 + 5s);
    CHECK_FALSE(out.changed);
    CHECK_FALSE(out.transition.has_value());
    CHECK(out.next.last_seen == t0 + 5s);
  }
  SUBCASE("connected moved: change and transition with from, to, reason, at") {
    DeviceState after = online;
    after.connected = false;
    const Outcome out = decide(online, after, Reason::will, t0 + 7s);
    CHECK(out.changed);
    REQUIRE(out.transition.has_value());
    REQUIRE(out.transition->from.has_value());
    CHECK(*out.transition->from == Status::online);
    CHECK(out.transition->to == Status::offline);
    CHECK(out.transition->reason == Reason::will);
    CHECK(out.transition->at == t0 + 7s);
  }
  SUBCASE("an input moved under maintenance: change without transition") {
    const DeviceState maintained = state_of(true, false, true);
    DeviceState after = maintained;
    after.connected = false;
    const Outcome out = decide(maintained, after, Reason::will, t0 + 1s);
    CHECK(out.changed);
    CHECK_FALSE(out.transition.has_value());
  }
  SUBCASE("offline_after moved: change without transition") {
    DeviceState after = online;
    after.offline_after = Seconds{60};
    const Outcome out = decide(online, after, Reason::admin, t0 + 1s);
    CHECK(out.changed);
    CHECK_FALSE(out.transition.has_value());
  }
}

TEST_CASE("register_device: a new device is connected, online, seen now, reason registered") {
  const Outcome out = register_device(t0 + 3s, Seconds{120});
  CHECK(out.changed);
  CHECK_FALSE(out.ignored);
  CHECK(out.next.connected);
  CHECK_FALSE(out.next.reported_error);
  CHECK_FALSE(out.next.maintenance);
  CHECK(out.next.status() == Status::online);
  CHECK(out.next.last_seen == t0 + 3s);
  CHECK(out.next.last_heartbeat == TimePoint{});
  REQUIRE(out.next.offline_after.has_value());
  CHECK(*out.next.offline_after == Seconds{120});
  REQUIRE(out.transition.has_value());
  CHECK_FALSE(out.transition->from.has_value());
  CHECK(out.transition->to == Status::online);
  CHECK(out.transition->reason == Reason::registered);
  CHECK(out.transition->at == t0 + 3s);

  CHECK_FALSE(register_device(t0, std::nullopt).next.offline_after.has_value());
}

TEST_CASE("apply_admin_status from every starting state") {
  struct Start {
    std::string_view name;
    DeviceState state;
  };
  const Start starts[] = {
      {"online", state_of(true, false, false)},
      {"offline", state_of(false, false, false)},
      {"error", state_of(true, true, false)},
      {"offline with a stale reported error", state_of(false, true, false)},
      {"maintenance over online", state_of(true, false, true)},
      {"maintenance over offline", state_of(false, false, true)},
      {"maintenance over error", state_of(true, true, true)},
  };
  struct Expect {
    Status result;
    bool changed;
  };
  // Rows follow `starts`; columns are the requested maintenance, offline, error, online.
  const Expect expected[7][4] = {
      /* online           */ {{Status::maintenance, true}, {Status::offline, true}, {Status::error, true}, {Status::online, false}},
      /* offline          */ {{Status::maintenance, true}, {Status::offline, false}, {Status::offline, true}, {Status::offline, false}},
      /* error            */ {{Status::maintenance, true}, {Status::offline, true}, {Status::error, false}, {Status::online, true}},
      /* offline+error    */ {{Status::maintenance, true}, {Status::offline, false}, {Status::offline, false}, {Status::offline, true}},
      /* maint/online     */ {{Status::maintenance, false}, {Status::offline, true}, {Status::error, true}, {Status::online, true}},
      /* maint/offline    */ {{Status::maintenance, false}, {Status::offline, true}, {Status::offline, true}, {Status::offline, true}},
      /* maint/error      */ {{Status::maintenance, false}, {Status::offline, true}, {Status::error, true}, {Status::online, true}},
  };
  const Status requests[] = {Status::maintenance, Status::offline, Status::error, Status::online};

  for (std::size_t row = 0; row < 7; ++row) {
    for (std::size_t col = 0; col < 4; ++col) {
      const Start& start = starts[row];
      const Status requested = requests[col];
      const Expect& want = expected[row][col];
      CAPTURE(start.name);
      CAPTURE(requested);
      const Outcome out = apply_admin_status(start.state, requested, t0 + 10s);
      CHECK(out.next.status() == want.result);
      CHECK(out.changed == want.changed);
      CHECK_FALSE(out.ignored);
      CHECK(out.next.maintenance == (requested == Status::maintenance));
      CHECK(out.next.last_seen == start.state.last_seen);  // the administrator is not a sign of life
      if (start.state.status() == want.result) {
        CHECK_FALSE(out.transition.has_value());
      } else {
        REQUIRE(out.transition.has_value());
        CHECK(*out.transition->from == start.state.status());
        CHECK(out.transition->to == want.result);
        CHECK(out.transition->reason == Reason::admin);
        CHECK(out.transition->at == t0 + 10s);
      }
    }
  }
}

TEST_CASE("clearing maintenance recomputes the status from presence") {
  DeviceState s = state_of(true, false, false);
  s = apply_admin_status(s, Status::maintenance, t0 + 1s).next;
  CHECK(s.status() == Status::maintenance);

  SUBCASE("still connected: back to online") {
    const Outcome out = apply_admin_status(s, Status::online, t0 + 2s);
    CHECK(out.next.status() == Status::online);
    REQUIRE(out.transition);
    CHECK(*out.transition->from == Status::maintenance);
  }
  SUBCASE("the device went silent meanwhile: `online` gives offline") {
    s.connected = false;  // a will or timeout arrived during maintenance
    const Outcome out = apply_admin_status(s, Status::online, t0 + 2s);
    CHECK(out.next.status() == Status::offline);
    REQUIRE(out.transition);
    CHECK(out.transition->to == Status::offline);
    CHECK(out.transition->reason == Reason::admin);
  }
  SUBCASE("clearing with `online` also clears an error reported during maintenance") {
    s.reported_error = true;
    CHECK(apply_admin_status(s, Status::online, t0 + 2s).next.status() == Status::online);
  }
}

TEST_CASE("apply_admin_status keeps the per-device offline_after and session") {
  DeviceState s = state_of(true, false, false);
  s.offline_after = Seconds{45};
  s.presence_session = 7;
  for (const Status requested : {Status::maintenance, Status::offline, Status::error, Status::online}) {
    CAPTURE(requested);
    const Outcome out = apply_admin_status(s, requested, t0 + 1s);
    CHECK(out.next.offline_after == std::optional<Seconds>{Seconds{45}});
    CHECK(out.next.presence_session == 7);
  }
}

}  // TEST_SUITE
