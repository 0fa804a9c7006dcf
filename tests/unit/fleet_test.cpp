// Tests of the fleet owner (src/service) without Postgres or a broker: an
// in-memory store (memory_store.hpp), a publisher that records, and a clock the
// test sets. The owner and flusher cycles are stepped by the test
// (run_owner_cycle / run_flush_cycle), so every case is deterministic: each
// device's order under retries, one transaction per cycle, restart grace,
// timeouts during broker outages, the outbox, and the coalesced flush.
#include "unit_test.hpp"

#include "memory_store.hpp"
#include "recording_publisher.hpp"
#include "service/fleet.hpp"

using namespace maestra;
using namespace maestra::core;
using namespace maestra::core::unit;
using maestra::service::Fleet;
using maestra::service::Transport;
using maestra::unit::MemoryStore;
using maestra::unit::RecordingPublisher;

namespace {

struct World {
  MemoryStore store;
  service::Metrics metrics;
  RecordingPublisher publisher;
  TimePoint now = t0;
  Fleet fleet;

  // `will_first`: the will gate's first hold (WillGateOptions::first); 0 here so
  // that cases about other rules see a will applied in the cycle it arrives.
  explicit World(Seconds offline_after = Seconds{300}, TimePoint watch_started = t0, Millis will_first = Millis{0})
      : fleet(store, metrics, options(offline_after, watch_started, will_first), [this] { return now; }) {
    fleet.set_publisher(&publisher);
    fleet.broker_connected(false);  // connected, no session (nothing to replay)
    fleet.run_owner_cycle();
    publisher.statuses.clear();
  }
  static service::FleetOptions options(Seconds offline_after, TimePoint watch_started, Millis will_first) {
    service::FleetOptions o;
    o.will_gate.first = will_first;
    o.deadlines.default_offline_after = offline_after;
    o.deadlines.watch_started = watch_started;
    return o;
  }
  DeviceId add(const std::string& hardware_id, Transport transport = Transport::mqtt,
               std::optional<Seconds> offline_after = std::nullopt) {
    Registration r;
    r.name = "device " + hardware_id;
    r.device_type = "sensor";
    r.hardware_id = hardware_id;
    r.offline_after = offline_after;
    auto registered = fleet.register_device(r, transport);
    REQUIRE(registered);
    fleet.run_owner_cycle();
    return registered->record.id;
  }
  void at(Millis since_t0) { now = t0 + since_t0; }
  // The device's will, then its birth, and so on, `changes` times, one a second from 10 s.
  void flap(const DeviceId& id, int changes) {
    for (int i = 0; i < changes; ++i) {
      at(Millis{10000 + 1000 * i});
      fleet.presence_async(id, i % 2 == 0 ? PresenceSignal{PresenceKind::will, std::nullopt}
                                          : PresenceSignal{PresenceKind::birth, std::nullopt});
      cycle();
    }
  }
  void cycle() { fleet.run_owner_cycle(); }
  Status status(const DeviceId& id) const { return store.row(id).state.status(); }
  // The history as "to/reason" words, oldest first.
  std::vector<std::string> history(const DeviceId& id) const {
    std::vector<std::string> out;
    for (const auto& h : store.all_history(id)) out.push_back(std::string(to_string(h.to)) + "/" + h.reason);
    return out;
  }
};

const PresenceSignal will{PresenceKind::will, std::nullopt};
const Millis production_first = WillGateOptions{}.first;
HeartbeatRequest plain_heartbeat() { return HeartbeatRequest{}; }
HeartbeatRequest error_heartbeat() {
  HeartbeatRequest h;
  h.reports_error = true;
  return h;
}

}  // namespace

TEST_SUITE("fleet") {

TEST_CASE("a will the database could not take keeps its place: the device's later heartbeat is applied after it") {
  World w;
  const auto d = w.add("hw-1");
  w.store.down = true;
  w.at(1000ms);
  w.fleet.presence_async(d, will);
  w.cycle();  // the store refuses: the will waits for a retry
  CHECK(w.status(d) == Status::online);
  w.store.down = false;
  w.at(1200ms);
  w.fleet.heartbeat_async(d, plain_heartbeat());  // sent after the will
  w.cycle();                                      // the retry is not due: the heartbeat waits behind the will
  CHECK(w.history(d) == std::vector<std::string>{"online/registered"});
  w.at(2000ms);
  w.cycle();
  // Applied in the device's order: offline by its will, online by its heartbeat.
  CHECK(w.history(d) == std::vector<std::string>{"online/registered", "offline/will", "online/heartbeat"});
  CHECK(w.status(d) == Status::online);
  const auto history = w.store.all_history(d);
  CHECK(history[1].at == t0 + 1000ms);  // at arrival, not at the retry
  CHECK(history[2].at == t0 + 1200ms);
  CHECK(w.publisher.of(d).back().document.status == Status::online);
}

TEST_CASE("an error heartbeat that waits for a retry is not overtaken by a plain heartbeat sent after it") {
  World w;
  const auto d = w.add("hw-1");
  w.store.down = true;
  w.at(20s);
  w.fleet.heartbeat_async(d, error_heartbeat());
  w.cycle();
  w.store.down = false;
  w.at(20500ms);  // before the retry is due
  w.fleet.heartbeat_async(d, plain_heartbeat());
  w.cycle();
  w.at(21s);
  w.cycle();
  CHECK(w.history(d) == std::vector<std::string>{"online/registered", "error/reported_error", "online/heartbeat"});
  CHECK(w.status(d) == Status::online);
}

TEST_CASE("an HTTP heartbeat is answered 503 when its change cannot be stored, and not retried") {
  World w;
  const auto d = w.add("hw-1", Transport::http);
  w.fleet.start();  // heartbeat() waits for the owner's answer
  w.store.down = true;
  HeartbeatRequest h = error_heartbeat();
  h.device_id = d;
  auto reply = w.fleet.heartbeat(h, Transport::http);
  w.fleet.stop();
  REQUIRE_FALSE(reply);
  CHECK(reply.error().kind == ErrorKind::unavailable);
  w.store.down = false;
  CHECK(w.history(d) == std::vector<std::string>{"online/registered"});
}

TEST_CASE("a mailbox that waits for a retry holds only its own device: others go on") {
  World w;
  const auto a = w.add("hw-a");
  const auto b = w.add("hw-b");
  w.store.down = true;
  w.at(1s);
  w.fleet.presence_async(a, will);
  w.cycle();
  w.store.down = false;
  w.at(1100ms);
  w.fleet.heartbeat_async(b, error_heartbeat());
  w.cycle();
  CHECK(w.status(b) == Status::error);
  CHECK(w.status(a) == Status::online);  // not yet: its retry is due at 2 s
  w.at(2s);
  w.cycle();
  CHECK(w.status(a) == Status::offline);
}

TEST_CASE("the changes of one cycle are stored in one transaction and published after it") {
  World w;
  std::vector<DeviceId> ids;
  for (int i = 0; i < 50; ++i) ids.push_back(w.add("hw-" + std::to_string(i)));
  const int before = w.store.write_states_calls;
  const auto published = w.publisher.statuses.size();
  w.at(5s);
  for (const auto& id : ids) w.fleet.heartbeat_async(id, error_heartbeat());
  w.cycle();
  CHECK(w.store.write_states_calls == before + 1);
  CHECK(w.store.write_sizes.back() == 50);
  CHECK(w.publisher.statuses.size() == published + 50);
  for (const auto& id : ids) CHECK(w.status(id) == Status::error);
  CHECK(w.fleet.counts().by_status[static_cast<std::size_t>(Status::error)] == 50);
}

TEST_CASE("nothing is published that is not stored") {
  World w;
  const auto d = w.add("hw-1");
  const auto published = w.publisher.statuses.size();
  w.store.down = true;
  w.at(1s);
  w.fleet.presence_async(d, will);
  w.cycle();
  CHECK(w.publisher.statuses.size() == published);
  CHECK(w.fleet.counts().by_status[static_cast<std::size_t>(Status::online)] == 1);
}

TEST_CASE("restart grace: a device silent since before the restart gets one full window, then reason restart") {
  World w(Seconds{60}, t0);
  auto stale = register_device(t0 - std::chrono::hours{1}, std::nullopt).next;
  const auto quiet = w.store.add_device("hw-quiet", stale, t0 - std::chrono::hours{2});
  const auto heard = w.store.add_device("hw-heard", stale, t0 - std::chrono::hours{2});
  REQUIRE(w.fleet.load());
  w.at(30s);
  w.fleet.heartbeat_async(heard, plain_heartbeat());
  w.at(59s);
  w.cycle();
  CHECK(w.status(quiet) == Status::online);
  w.at(60s);
  w.cycle();
  CHECK(w.status(quiet) == Status::offline);
  CHECK(w.store.row(quiet).reason == Reason::restart);
  CHECK(w.status(heard) == Status::online);
  w.at(90s);
  w.cycle();
  CHECK(w.status(heard) == Status::offline);
  CHECK(w.store.row(heard).reason == Reason::timeout);
}

TEST_CASE("no device heard over MQTT times out while the broker link is down; its deadline moves by the outage") {
  World w(Seconds{10});
  const auto mqtt = w.add("hw-mqtt", Transport::mqtt);
  const auto http = w.add("hw-http", Transport::http);
  w.at(5s);
  w.fleet.broker_disconnected();
  w.cycle();
  w.at(30s);
  w.cycle();
  CHECK(w.status(mqtt) == Status::online);
  CHECK(w.status(http) == Status::offline);  // its heartbeats do not need the broker
  w.at(31s);
  w.fleet.broker_connected(true);
  w.cycle();
  w.at(35900ms);  // 10 s after its last sign of life, plus the 26 s outage
  w.cycle();
  CHECK(w.status(mqtt) == Status::online);
  w.at(36s);
  w.cycle();
  CHECK(w.status(mqtt) == Status::offline);
  CHECK(w.store.row(mqtt).reason == Reason::timeout);
}

TEST_CASE("outbox: the broker's ack is recorded; a session kept gets what is owed, a session lost gets everything") {
  World w;
  const auto a = w.add("hw-a");
  const auto b = w.add("hw-b");
  w.fleet.status_acked(a, 1);
  w.fleet.run_flush_cycle();
  CHECK(w.store.row(a).published_seq == 1);
  CHECK(w.store.row(b).published_seq == 0);
  w.publisher.statuses.clear();
  w.fleet.broker_connected(true);
  w.cycle();
  REQUIRE(w.publisher.statuses.size() == 1);  // only b's was not acknowledged
  CHECK(w.publisher.statuses[0].document.device_id == b);
  w.publisher.statuses.clear();
  w.fleet.broker_connected(false);
  w.cycle();
  CHECK(w.publisher.statuses.size() == 2);
}

TEST_CASE("acks wait while transitions are being stored (an expiry storm), at most ack_delay_max") {
  World w(Seconds{60});
  const auto a = w.add("hw-a");
  const auto b = w.add("hw-b");
  w.fleet.status_acked(a, 1);
  w.fleet.run_flush_cycle(true);  // no transition stored yet: written at once
  CHECK(w.store.row(a).published_seq == 1);
  w.at(60s);
  w.cycle();  // both time out: transitions stored at 60 s
  REQUIRE(w.status(a) == Status::offline);
  w.fleet.status_acked(a, 2);
  w.fleet.run_flush_cycle(true);
  CHECK(w.store.row(a).published_seq == 1);  // transitions 0 ms ago: waits
  w.at(60s + 499ms);
  w.fleet.run_flush_cycle(true);
  CHECK(w.store.row(a).published_seq == 1);
  w.at(60s + 500ms);  // ack_quiet without transitions
  w.fleet.run_flush_cycle(true);
  CHECK(w.store.row(a).published_seq == 2);
  // Transitions stored every cycle (a storm that goes on): the acks are written
  // ack_delay_max after the oldest of them came.
  std::vector<DeviceId> others;
  for (int i = 0; i < 15; ++i) others.push_back(w.add("hw-other-" + std::to_string(i)));
  w.at(61s);
  w.fleet.heartbeat_async(others[0], error_heartbeat());
  w.cycle();
  w.fleet.status_acked(b, 2);
  w.fleet.run_flush_cycle(true);  // the ack came at 61 s
  for (int i = 1; i < 15; ++i) {
    w.at(61s + std::chrono::milliseconds{350 * i});  // up to 65.9 s
    w.fleet.heartbeat_async(others[static_cast<std::size_t>(i)], error_heartbeat());
    w.cycle();
    REQUIRE(w.status(others[static_cast<std::size_t>(i)]) == Status::error);
    w.fleet.run_flush_cycle(true);
    CHECK(w.store.row(b).published_seq == 0);
  }
  w.at(66s);
  w.fleet.run_flush_cycle(true);
  CHECK(w.store.row(b).published_seq == 2);
  // The last flush (shutdown, or a test step) writes everything.
  w.fleet.heartbeat_async(others[0], plain_heartbeat());
  w.cycle();
  w.fleet.status_acked(others[0], 3);
  w.fleet.run_flush_cycle();
  CHECK(w.store.row(others[0]).published_seq == 3);
}

TEST_CASE("a deleted device's retained topics are cleared, and the clear is recorded when acknowledged") {
  World w;
  const auto d = w.add("hw-1");
  REQUIRE(w.fleet.remove(d));
  w.cycle();
  CHECK(w.publisher.cleared == std::vector<DeviceId>{d});
  CHECK(w.fleet.size() == 0);
  CHECK(w.store.pending_clears(10).value().size() == 1);
  w.fleet.clear_acked(d);
  w.fleet.run_flush_cycle();
  CHECK(w.store.pending_clears(10).value().empty());
}

TEST_CASE("heartbeats are coalesced: last_seen and attributes in one flush, the latest of each winning") {
  World w;
  const auto d = w.add("hw-1");
  HeartbeatRequest first;
  first.firmware_version = "1.0.0";
  first.ip_address = "10.0.0.7";
  w.at(15s);
  w.fleet.heartbeat_async(d, first);
  HeartbeatRequest second;
  second.firmware_version = "1.0.1";
  w.at(28s);
  w.fleet.heartbeat_async(d, second);
  const int writes = w.store.write_states_calls;
  CHECK(w.store.row(d).state.last_seen == t0);  // not yet flushed
  w.fleet.run_flush_cycle();
  CHECK(w.store.flush_calls == 1);
  CHECK(w.store.write_states_calls == writes);  // no transaction of their own
  const auto row = w.store.row(d);
  CHECK(row.state.last_seen == t0 + 28s);
  CHECK(row.record.firmware_version == std::optional<std::string>("1.0.1"));
  CHECK(row.record.ip_address == std::optional<std::string>("10.0.0.7"));
}

TEST_CASE("a flush the database refused is kept and written with the next one") {
  World w;
  const auto d = w.add("hw-1");
  w.store.down = true;
  w.at(15s);
  w.fleet.heartbeat_async(d, plain_heartbeat());
  w.fleet.run_flush_cycle();
  w.store.down = false;
  w.fleet.run_flush_cycle();
  CHECK(w.store.row(d).state.last_seen == t0 + 15s);
}

TEST_CASE("the 30-second refresh of a live device's document comes from memory, with its fresh last_seen") {
  World w;
  const auto d = w.add("hw-1");
  w.at(31s);
  w.fleet.heartbeat_async(d, plain_heartbeat());
  w.store.down = true;  // served without the database
  const auto published = w.publisher.statuses.size();
  w.cycle();
  REQUIRE(w.publisher.statuses.size() == published + 1);
  const auto& doc = w.publisher.statuses.back().document;
  CHECK(doc.status == Status::online);
  CHECK(doc.last_seen == t0 + 31s);
  CHECK(doc.changed_at == t0);
  CHECK(doc.name == "device hw-1");
  w.at(45s);  // within 30 s of the last refresh: none
  w.fleet.heartbeat_async(d, plain_heartbeat());
  w.cycle();
  CHECK(w.publisher.statuses.size() == published + 1);
}

TEST_CASE("events of a device deleted while they waited for a retry are dropped") {
  World w;
  const auto d = w.add("hw-1");
  w.store.down = true;
  w.at(1s);
  w.fleet.presence_async(d, will);
  w.cycle();
  w.store.down = false;
  REQUIRE(w.fleet.remove(d));
  w.cycle();
  w.at(3s);
  w.cycle();
  CHECK_FALSE(w.store.exists(d));
  CHECK(w.fleet.size() == 0);
}

TEST_CASE("broker going away: wills held in a burst are discarded when the link drops; devices keep their status") {
  World w(Seconds{60}, t0, production_first);
  std::vector<DeviceId> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(w.add("hw-" + std::to_string(i)));
  w.at(10s);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    w.now = t0 + 10s + Millis{static_cast<std::int64_t>(i)};
    w.fleet.presence_async(ids[i], will);
  }
  w.at(10s + 20ms);
  w.fleet.broker_disconnected();
  w.cycle();
  // The first will too: still in its first hold when the second made a burst.
  for (const auto& id : ids) CHECK(w.status(id) == Status::online);
  CHECK(w.metrics.wills_discarded == 5);
  CHECK(w.history(ids[0]) == std::vector<std::string>{"online/registered"});
  // The broker is back at 15 s; device 1 comes back, the others do not.
  w.at(15s);
  w.fleet.broker_connected(true);
  w.cycle();
  w.at(16s);
  w.fleet.presence_async(ids[1], PresenceSignal{PresenceKind::birth, std::nullopt});
  w.cycle();
  w.at(74900ms);
  w.cycle();
  for (std::size_t i = 1; i < ids.size(); ++i) CHECK(w.status(ids[i]) == Status::online);
  w.at(75s);  // a full offline_after (60 s) from the broker's return
  w.cycle();
  CHECK(w.status(ids[1]) == Status::online);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i == 1) continue;
    CHECK(w.status(ids[i]) == Status::offline);
    CHECK(w.store.row(ids[i]).reason == Reason::restart);
  }
}

TEST_CASE("a burst of wills with the link up is a real mass death: applied when the hold ends, at arrival time") {
  World w(Seconds{300}, t0, production_first);
  const auto a = w.add("hw-a");
  const auto b = w.add("hw-b");
  const auto c = w.add("hw-c");
  w.at(10s);
  w.fleet.presence_async(a, will);
  w.cycle();
  w.at(10s + 5ms);
  w.fleet.presence_async(b, will);
  w.fleet.presence_async(c, will);
  w.cycle();
  CHECK(w.status(a) == Status::online);  // its first hold (10 ms): then held with the burst
  CHECK(w.status(b) == Status::online);
  w.at(10s + 10ms);
  w.cycle();
  CHECK(w.status(a) == Status::online);
  w.at(10s + 99ms);
  w.cycle();
  CHECK(w.status(a) == Status::online);
  w.at(10s + 100ms);  // a: its arrival + 100 ms (WillGateOptions::window)
  w.cycle();
  CHECK(w.status(a) == Status::offline);
  CHECK(w.status(b) == Status::online);
  w.at(10s + 105ms);
  w.cycle();
  CHECK(w.status(b) == Status::offline);
  CHECK(w.status(c) == Status::offline);
  CHECK(w.store.all_history(a).back().at == t0 + 10s);
  CHECK(w.store.all_history(b).back().at == t0 + 10s + 5ms);
  CHECK(w.metrics.wills_discarded == 0);
}

TEST_CASE("a single will is applied after the gate's first hold (10 ms), at arrival time, and is not counted as held") {
  World w(Seconds{300}, t0, production_first);
  const auto a = w.add("hw-a");
  w.at(10s);
  w.fleet.presence_async(a, will);
  w.cycle();
  CHECK(w.status(a) == Status::online);
  w.at(10s + production_first);
  w.cycle();
  CHECK(w.status(a) == Status::offline);
  CHECK(w.store.row(a).reason == Reason::will);
  CHECK(w.store.all_history(a).back().at == t0 + 10s);
  CHECK(w.metrics.wills_held == 0);
}

TEST_CASE("a held will keeps the device's order: its birth right after it waits behind it") {
  World w;
  const auto a = w.add("hw-a");
  const auto b = w.add("hw-b");
  w.at(10s);
  w.fleet.presence_async(a, will);
  w.fleet.presence_async(b, will);  // held
  w.at(10s + 50ms);
  w.fleet.presence_async(b, PresenceSignal{PresenceKind::birth, std::nullopt});
  w.cycle();
  w.at(10s + 300ms);
  w.cycle();
  CHECK(w.history(b) == std::vector<std::string>{"online/registered", "offline/will", "online/heartbeat"});
}

TEST_CASE("wills replayed from the session right after a reconnect are discarded when they come in a burst") {
  World w(Seconds{60});
  const auto a = w.add("hw-a");
  const auto b = w.add("hw-b");
  const auto c = w.add("hw-c");
  w.at(10s);
  w.fleet.broker_disconnected();
  w.cycle();
  w.at(12s);
  w.fleet.broker_connected(true);
  w.fleet.presence_async(a, will);
  w.fleet.presence_async(b, will);
  w.cycle();
  CHECK(w.status(a) == Status::online);
  w.at(14s);  // the replay window (2 s) is over
  w.cycle();
  CHECK(w.status(a) == Status::online);
  CHECK(w.status(b) == Status::online);
  CHECK(w.metrics.wills_discarded == 2);
  w.at(20s);
  w.fleet.presence_async(c, will);  // later, alone: a death
  w.cycle();
  CHECK(w.status(c) == Status::offline);
  w.at(72s);  // a and b never came back: offline a full window after the broker's return
  w.cycle();
  CHECK(w.status(a) == Status::offline);
  CHECK(w.store.row(a).reason == Reason::restart);
}

TEST_CASE("a single will replayed after a reconnect is applied when the replay window ends") {
  World w;
  const auto a = w.add("hw-a");
  w.at(10s);
  w.fleet.broker_disconnected();
  w.cycle();
  w.at(12s);
  w.fleet.broker_connected(true);
  w.fleet.presence_async(a, will);
  w.cycle();
  CHECK(w.status(a) == Status::online);
  w.at(14s);
  w.cycle();
  CHECK(w.status(a) == Status::offline);
  CHECK(w.store.row(a).reason == Reason::will);
}

TEST_CASE("a reconnect after a lost connection publishes every status, even with the session kept") {
  World w;
  const auto a = w.add("hw-a");
  const auto b = w.add("hw-b");
  w.fleet.status_acked(a, 1);
  w.fleet.status_acked(b, 1);
  w.fleet.run_flush_cycle();
  w.publisher.statuses.clear();
  w.fleet.broker_disconnected();
  w.fleet.broker_connected(true);  // a broker back from a crash restores an older save, session and all
  w.cycle();
  CHECK(w.publisher.statuses.size() == 2);
}

TEST_CASE("a flapping device: from its 4th change in a minute on, one settled row once its status holds 10 s") {
  World w;
  const auto d = w.add("hw-flappy");
  const auto published = w.publisher.statuses.size();
  w.flap(d, 10);  // drops and comes back every second from 10 s
  // The last message was a birth: online in the registry at once.
  CHECK(w.fleet.counts().by_status[static_cast<std::size_t>(Status::online)] +
            w.fleet.counts().by_status[static_cast<std::size_t>(Status::offline)] == 1);
  CHECK(w.history(d).size() == 4);  // registered + the first three changes
  CHECK(w.publisher.statuses.size() == published + 3);
  CHECK(w.metrics.flap_changes_held == 7);
  w.at(28900ms);  // the last change was at 19 s: not settled yet
  w.cycle();
  CHECK(w.history(d).size() == 4);
  w.at(29s);
  w.cycle();
  const auto history = w.store.all_history(d);
  REQUIRE(history.size() == 5);
  CHECK(history.back().to == Status::online);  // from offline (the 3rd change) to where it settled
  CHECK(history.back().reason == "heartbeat");
  CHECK(history.back().at == t0 + 19s);
  CHECK(w.status(d) == Status::online);
  CHECK(w.publisher.of(d).back().document.status == Status::online);
}

TEST_CASE("a flapping device that settles where it was stored adds no row") {
  World w;
  const auto d = w.add("hw-flappy");
  w.flap(d, 5);  // will, birth, will, birth (held), will (held)
  CHECK(w.status(d) == Status::offline);  // stored by the 3rd change
  w.at(60s);
  w.cycle();
  CHECK(w.history(d).size() == 4);
  CHECK(w.status(d) == Status::offline);
}

TEST_CASE("a settled status the database could not take is stored when it is back") {
  World w;
  const auto d = w.add("hw-flappy");
  w.flap(d, 4);
  CHECK(w.status(d) == Status::offline);
  w.store.down = true;
  w.at(23s);
  w.cycle();
  w.store.down = false;
  w.at(24s);
  w.cycle();
  CHECK(w.status(d) == Status::online);
  CHECK(w.history(d).back() == "online/heartbeat");
}

TEST_CASE("a device flapping by heartbeats (error, plain, ...) in one cycle settles where its last heartbeat left it") {
  World w;
  const auto d = w.add("hw-flappy");
  w.at(20s);
  for (int i = 0; i < 6; ++i) w.fleet.heartbeat_async(d, i % 2 == 0 ? error_heartbeat() : plain_heartbeat());
  w.cycle();
  CHECK(w.history(d) == std::vector<std::string>{"online/registered", "error/reported_error", "online/heartbeat",
                                                 "error/reported_error"});
  w.at(30s);
  w.cycle();
  CHECK(w.history(d).back() == "online/heartbeat");
  CHECK(w.status(d) == Status::online);
}

TEST_CASE("a registration's document is the first refresh: a heartbeat within 30 s publishes nothing") {
  World w;
  const auto d = w.add("hw-1");
  const auto published = w.publisher.statuses.size();
  w.at(5s);
  w.fleet.heartbeat_async(d, plain_heartbeat());
  w.cycle();
  CHECK(w.publisher.statuses.size() == published);
  w.at(30s);
  w.fleet.heartbeat_async(d, plain_heartbeat());
  w.cycle();
  CHECK(w.publisher.statuses.size() == published + 1);
}

}  // TEST_SUITE
