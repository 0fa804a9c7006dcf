// Tests of the fleet's connectivity listener, which commands to devices rely on
// (service/commands sends a device's undelivered commands when it comes back):
// a birth, or the first heartbeat after being offline, says "back"; a stored
// change that takes the device away says "gone"; an ordinary heartbeat says
// nothing. The owner cycle is stepped by the test on an in-memory store.
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

struct Listening {
  MemoryStore store;
  service::Metrics metrics;
  RecordingPublisher publisher;
  TimePoint now = t0;
  Fleet fleet;
  std::vector<std::pair<DeviceId, bool>> heard;

  Listening() : fleet(store, metrics, options(), [this] { return now; }) {
    fleet.set_publisher(&publisher);
    fleet.set_connectivity_listener([this](const DeviceId& id, bool back) { heard.emplace_back(id, back); });
    fleet.broker_connected(false);
    fleet.run_owner_cycle();
  }
  static service::FleetOptions options() {
    service::FleetOptions o;
    o.deadlines.default_offline_after = Seconds{300};
    o.deadlines.watch_started = t0;
    return o;
  }
  DeviceId add(const std::string& hardware_id) {
    Registration r;
    r.name = "device " + hardware_id;
    r.device_type = "sensor";
    r.hardware_id = hardware_id;
    auto registered = fleet.register_device(r, Transport::mqtt);
    REQUIRE(registered);
    fleet.run_owner_cycle();
    return registered->record.id;
  }
};

const PresenceSignal birth{PresenceKind::birth, std::nullopt};
const PresenceSignal will{PresenceKind::will, std::nullopt};

}  // namespace

TEST_SUITE("fleet") {
  TEST_CASE("a birth says a device is back, even when it never looked gone") {
    Listening w;
    const auto id = w.add("conn-1");
    CHECK(w.heard.empty());  // registering is not coming back
    w.now = t0 + 1s;
    w.fleet.presence_async(id, birth);
    w.fleet.run_owner_cycle();
    REQUIRE(w.heard.size() == 1);
    CHECK(w.heard[0] == std::pair{id, true});
  }

  TEST_CASE("an ordinary heartbeat says nothing; a will says gone once stored; the next heartbeat says back") {
    Listening w;
    const auto id = w.add("conn-2");
    w.now = t0 + 30s;
    w.fleet.heartbeat_async(id, HeartbeatRequest{});
    w.fleet.run_owner_cycle();
    CHECK(w.heard.empty());

    w.now = t0 + 40s;
    w.fleet.presence_async(id, will);
    w.fleet.run_owner_cycle();
    CHECK(w.heard.empty());  // the will gate holds every will 10 ms (WillGateOptions::first)
    w.now = t0 + 40s + WillGateOptions{}.first;
    w.fleet.run_owner_cycle();
    CHECK(w.store.row(id).state.status() == Status::offline);
    REQUIRE(w.heard.size() == 1);
    CHECK(w.heard[0] == std::pair{id, false});

    w.now = t0 + 100s;
    w.fleet.heartbeat_async(id, HeartbeatRequest{});
    w.fleet.run_owner_cycle();
    REQUIRE(w.heard.size() == 2);
    CHECK(w.heard[1] == std::pair{id, true});
    w.now = t0 + 130s;
    w.fleet.heartbeat_async(id, HeartbeatRequest{});
    w.fleet.run_owner_cycle();
    CHECK(w.heard.size() == 2);  // back already: nothing new
  }

  TEST_CASE("a device that times out is gone") {
    Listening w;
    const auto id = w.add("conn-3");
    w.now = t0 + 302s;
    w.fleet.run_owner_cycle();
    CHECK(w.store.row(id).state.status() == Status::offline);
    REQUIRE(w.heard.size() == 1);
    CHECK(w.heard[0] == std::pair{id, false});
  }
}
