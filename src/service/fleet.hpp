// The fleet owner: the one place where the core's rules meet the store and the
// publisher. It holds the in-memory registry (state of every device), the
// deadline queue, each device's current status document and the coalescing
// buffer, and runs two threads:
//   - the owner thread, which decides every change that must be stored (presence,
//     timeouts, admin changes, heartbeats that change the status) through the
//     core, stores them in batches (one transaction per cycle, before anything
//     is published) and publishes them;
//   - the flusher thread, which writes coalesced last_seen refreshes with the
//     attributes heartbeats reported (at most flush_interval late) and outbox acks.
// Transports (HTTP handlers, Paho callbacks) call the public functions from their
// own threads. A heartbeat that changes nothing stored is applied right there
// under the registry lock, unless the device already has an event in the owner's
// hands, so each device's messages stay in order.
//
// The class is written in one file per concern:
//   fleet.cpp          lifecycle (load, start, stop) and queries
//   registration.cpp   registration, deletion, credentials, blocked hardware ids
//   device_events.cpp  heartbeats and presence: in place or through the owner
//   owner_loop.cpp     the owner's cycle, each device's mailbox, batches, retries
//   admin.cpp          PATCH
//   flapping.cpp       holding the changes of a flapping device until they settle
//   timeouts.cpp       deadlines, and the broker link's outages
//   outbox.cpp         publishing statuses, broker acks, republishing, the 30 s refresh
//   flusher.cpp        the flusher thread
//   summary.cpp        fleet counts and the summary topic
//
// A note on ordering: each device's events go through one ordered mailbox. An
// event the store could not take (database down) is retried at the head of its
// device's mailbox, and the device's later events wait behind it, so a plain
// heartbeat can never be applied before a will the device sent earlier.
//
// A note on what a crash loses: transitions are committed before they are
// published and before the caller is answered; only last_seen refreshes and
// heartbeat attributes still in the coalescing buffer (at most flush_interval
// old) can be lost.
#pragma once
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <queue>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/deadlines.hpp"
#include "core/flap.hpp"
#include "core/heartbeat.hpp"
#include "core/log_budget.hpp"
#include "core/presence.hpp"
#include "core/will_gate.hpp"
#include "service/metrics.hpp"
#include "store/store.hpp"

namespace maestra::service {

using core::DeviceId;
using core::Result;
using core::TimePoint;

// Implemented by the MQTT adapter. Calls are non-blocking; the adapter reports
// broker acknowledgements back through Fleet::status_acked (status messages) and
// Fleet::clear_acked (a deleted device's cleared topics).
class StatusPublisher {
 public:
  virtual ~StatusPublisher() = default;
  virtual void publish_status(const store::StoredStatus& status) = 0;
  virtual void clear_device(const DeviceId& id) = 0;
  virtual void publish_summary(const core::FleetCounts& counts, TimePoint now) = 0;
};

// Implemented by the broker's security adapter (secure mode): per-device broker
// accounts. Calls block until the broker answered (bounded).
class DeviceAccess {
 public:
  virtual ~DeviceAccess() = default;
  virtual Result<core::Done> grant(const DeviceId& id, const std::string& password) = 0;
  virtual Result<core::Done> set_password(const DeviceId& id, const std::string& password) = 0;
  // Removes the account and disconnects a connected device; an absent account is fine.
  virtual Result<core::Done> revoke(const DeviceId& id) = 0;
  // A read-only dashboard account that may connect only with client id
  // `username`, removed by the adapter once `expires_at` has passed.
  virtual Result<core::Done> grant_dashboard(const std::string& username, const std::string& password,
                                             TimePoint expires_at) = 0;
};

// A short-lived broker account for one dashboard (one browser): read-only, bound
// to its own client id (the username), so it cannot take over a device's.
struct DashboardCredential {
  std::string username;
  std::string password;
  std::string client_id;
  TimePoint expires_at;
};

using Clock = std::function<TimePoint()>;

struct RegisteredDevice {
  core::DeviceRecord record;
  std::optional<std::string> mqtt_password;  // secure mode: shown once
};

struct HeartbeatReply {
  DeviceId id;
  core::Status status;
  TimePoint last_seen;
  bool too_frequent = false;
};

// The owner's working types, used across the fleet's files.
namespace detail {

// One thing for the owner to decide: a device's message, an admin change, a
// registration or deletion, a change of the broker link.
struct Event {
  enum class Kind { heartbeat, presence, registered, patch, removed, broker_connected, broker_disconnected } kind;
  DeviceId id{};
  Transport transport = Transport::mqtt;
  bool reports_error = false;
  core::PresenceSignal presence{};
  std::shared_ptr<std::promise<Result<HeartbeatReply>>> heartbeat_reply = {};
  struct PatchJob {
    core::DevicePatch patch;
    std::promise<Result<core::DeviceRecord>> reply;
  };
  std::shared_ptr<PatchJob> patch = {};
  core::DeviceState registered_state{};
  store::StoredStatus registered_status{};
  int attempts = 0;            // stores that failed (database down)
  bool gate_passed = false;    // a will the will gate let through (or a retained one: no gate)
  bool counted = false;        // counted in queued_for_owner_ until released
  bool session_present = true;  // kind broker_connected
  TimePoint at{};               // when it happened: a device message's receipt, a link change
};

// A state change decided in this cycle, with what it came from.
struct PendingWrite {
  store::StateWrite write;
  core::DeviceState before;
  bool too_frequent = false;
  bool settles_flaps = false;   // the settled status of a flapping device
  std::optional<Event> source;  // the device's event (its reply, its retry)
};

// One cycle's writes: at most one per device, stored in one transaction.
struct Batch {
  std::vector<PendingWrite> writes;
  std::unordered_map<DeviceId, std::size_t, core::DeviceIdHash> index;
};

// A device's mailbox while its first event waits: to be stored again (the
// database was down), or, a will, for the will gate's verdict.
struct Held {
  std::deque<Event> events;
  TimePoint not_before{};
  bool will_held = false;  // the first event is a will the will gate holds
};

// A device's coalesced last_seen and the attributes its heartbeats reported.
struct PendingSeen {
  TimePoint at{};
  std::int64_t presence_session = -1;
  std::optional<std::string> firmware_version;
  std::optional<std::string> ip_address;
  std::optional<core::Json> metadata;
  void merge(PendingSeen&& later);
};

}  // namespace detail

struct FleetOptions {
  core::DeadlinePolicy deadlines;
  core::WillGateOptions will_gate;
  core::FlapOptions flaps;
  core::Millis flush_interval{250};
  // The broker's acks of status messages only tell the outbox what not to
  // publish again: while the owner stores transitions (an expiry storm) the
  // flusher writes them once the owner has stored none for ack_quiet, and never
  // later than ack_delay_max after they came.
  core::Millis ack_quiet{500};
  core::Millis ack_delay_max{5000};
  std::chrono::milliseconds reply_timeout{10000};
  std::string provisioning_key;
};

class Fleet {
 public:
  Fleet(store::Store& store, Metrics& metrics, FleetOptions options, Clock clock);
  ~Fleet();
  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;

  void set_publisher(StatusPublisher* publisher) { publisher_ = publisher; }
  // Commands: told (on the owner thread; must not block) when a device comes
  // back (`back`: its birth, or its first heartbeat after being offline) and
  // when a stored change takes it away.
  void set_connectivity_listener(std::function<void(const DeviceId&, bool back)> listener) {
    connectivity_ = std::move(listener);
  }
  // Secure mode: every registration gets a broker account through `access`.
  void set_device_access(DeviceAccess* access) { access_ = access; }
  bool secure() const { return access_ != nullptr; }

  // Loads every device from the store (before start()).
  Result<std::size_t> load();
  void start();
  // Shutdown begins: no more timeouts (the devices did not go silent, we are
  // leaving), so a slow shutdown never marks anyone offline.
  void begin_shutdown() { shutting_down_ = true; }
  void stop();  // drains, flushes, joins

  // Without start(): one cycle of the owner, and one of the flusher, on the
  // caller's thread at the clock's current time. The threads run exactly these
  // in a loop; unit tests call them to step the fleet with a clock they set.
  void run_owner_cycle();
  // `steady`: as the flusher thread runs it, acks wait while transitions are
  // being stored (FleetOptions::ack_quiet); otherwise everything is written.
  void run_flush_cycle(bool steady = false);

  // --- commands, from any transport ---
  Result<RegisteredDevice> register_device(const core::Registration& r, Transport transport);
  // Waits for the decision (and, for a transition, until it is stored).
  Result<HeartbeatReply> heartbeat(const core::HeartbeatRequest& h, Transport transport);
  // Fire and forget (MQTT): unknown devices are counted and dropped.
  void heartbeat_async(const DeviceId& id, core::HeartbeatRequest h);
  // `retained`: delivered because the service subscribed (the broker's current
  // presence of the device), not forwarded live or replayed from the session:
  // applied without the will gate.
  void presence_async(const DeviceId& id, core::PresenceSignal signal, bool retained = false);
  Result<core::DeviceRecord> patch(const DeviceId& id, const core::DevicePatch& patch);
  Result<core::Done> remove(const DeviceId& id);
  // Secure mode: a new broker password for the device (the old one stops working).
  Result<std::string> rotate_credentials(const DeviceId& id);
  // Secure mode: a read-only broker account for one dashboard, valid for `ttl`.
  Result<DashboardCredential> issue_dashboard_credential(std::chrono::seconds ttl);
  // Secure mode: true when `password` is the device's current password.
  Result<bool> verify_credential(const DeviceId& id, std::string_view password);
  Result<core::Done> block_hardware_id(const std::string& hardware_id, const std::optional<std::string>& reason);
  Result<core::Done> unblock_hardware_id(const std::string& hardware_id) { return store_.unblock_hardware_id(hardware_id); }
  Result<std::vector<store::BlockedHardwareId>> blocked_hardware_ids() { return store_.blocked_hardware_ids(); }

  // --- queries ---
  Result<core::DeviceRecord> get(const DeviceId& id);
  // Connected as far as presence knows (the registry; no database read).
  bool connected(const DeviceId& id) const;
  // Pages of at most 1,000 records, in order; `page` returns false to stop early.
  Result<core::Done> list(const store::ListQuery& q,
                          const std::function<bool(const std::vector<core::DeviceRecord>&)>& page);
  // The device a hardware id belongs to (not_found when none).
  Result<DeviceId> resolve_hardware_id(const std::string& hardware_id);
  Result<std::vector<store::HistoryEntry>> history(const DeviceId& id, int limit);
  Result<core::Done> database_health() { return store_.ping(); }
  core::FleetCounts counts() const;
  std::size_t size() const;
  // Whether the device is registered (in memory, no I/O): the telemetry check.
  bool knows(const DeviceId& id) const;

  // --- from the MQTT adapter ---
  // Connected (again). Without a session on the broker (session_present false)
  // every device's status is published again, else what the outbox owes.
  void broker_connected(bool session_present);
  // The link to the broker is down.
  void broker_disconnected();
  void status_acked(const DeviceId& id, std::int64_t seq);
  // The broker confirmed clearing a deleted device's retained topics.
  void clear_acked(const DeviceId& id);

 private:
  using Event = detail::Event;
  using PendingWrite = detail::PendingWrite;
  using Batch = detail::Batch;
  using Held = detail::Held;
  using PendingSeen = detail::PendingSeen;
  enum class InPlace { applied, queued, unknown };

  // lifecycle (fleet.cpp)
  void post(Event event);
  void overlay_last_seen(core::DeviceRecord& record) const;

  // device events (device_events.cpp)
  // The common case, on the caller's thread: a heartbeat that changes nothing
  // stored is applied to the registry and coalesced at once (with the attributes
  // of `h`, when given). `queued` when the owner must decide (a change to store)
  // and the caller is about to post it; `from_owner` says the caller is the
  // owner, handling the device's events in their order.
  InPlace heartbeat_in_place(const DeviceId& id, const core::HeartbeatRequest* h, bool reports_error,
                             Transport transport, TimePoint now, HeartbeatReply* reply, bool from_owner = false);
  void count_heartbeat(const DeviceId& id, Transport transport, const core::HeartbeatOutcome& decided);
  // A heartbeat for the owner, from either transport.
  static Event heartbeat_event(const DeviceId& id, bool reports_error, Transport transport, TimePoint received,
                               InPlace in_place);
  void handle_heartbeat(Event& event, Batch& batch, TimePoint now);
  void handle_presence(Event& event, Batch& batch, TimePoint now);

  // the owner's cycle (owner_loop.cpp)
  void owner_loop();
  TimePoint next_wake(TimePoint now) const;
  void handle(Event& event, Batch& batch, TimePoint now);
  // A device whose earlier event waits for a retry: `event` joins its mailbox
  // (true). Commits first when the batch holds a write for the device.
  bool wait_behind_retry(Event& event);
  // The event is done with (applied, refused, stored or given up): the device's
  // later heartbeats may be applied in place again.
  void release(Event& event);
  void release_locked(Event& event);  // the caller holds registry_mutex_
  // The write joins the batch, unless the device is flapping (flapping.cpp):
  // `too_frequent` goes into the reply of the source's heartbeat either way.
  void add_write(Batch& batch, const DeviceId& id, const core::DeviceState& before, const core::Outcome& outcome,
                 Event* source, bool too_frequent = false);
  void append(Batch& batch, PendingWrite write);  // at most one write per device per batch
  void commit(Batch& batch);
  void retry_later(Event event, TimePoint now);
  // The will gate holds this will until `until`; the device's later events wait behind it.
  void hold_will(Event event, core::WillHold hold);
  // Wills discarded as the broker went away: counted and logged; their devices
  // keep their status and get a full window from the broker's return.
  void wills_discarded(std::vector<DeviceId> ids, const char* why);
  void grant_grace(std::vector<DeviceId> ids, TimePoint from);
  void log_transition(const DeviceId& id, const core::Transition& t, TimePoint now);
  // When a device's event arrived (its `at`), or `now` when it carries none.
  static TimePoint received_time(const Event& event, TimePoint now);

  // flapping (flapping.cpp)
  // A change of a flapping device (or any write of one whose change is held):
  // kept out of the batch until it settles (true). Replies and releases `source`.
  bool damp(const DeviceId& id, const core::Outcome& outcome, Event* source, bool too_frequent);
  // Held statuses that have held for the settle time go into the batch.
  void settle_flaps(Batch& batch, TimePoint now);
  // A settled status could not be stored: held again, retried.
  void unsettle(const DeviceId& id, TimePoint now);

  // admin (admin.cpp)
  void handle_patch(Event& event, TimePoint now);

  // timeouts (timeouts.cpp)
  void watch(const DeviceId& id, const core::DeviceState& state);
  void expire_due(Batch& batch, TimePoint now);
  // The broker link went down or came back (owner thread): deadlines of devices
  // heard over MQTT wait out the outage (core/deadlines).
  void link_changed(bool up, TimePoint at);

  // outbox (outbox.cpp)
  void publish(const store::StoredStatus& status);
  // What the outbox owes, or, with a reason, every device's status.
  void republish_outbox(const char* everything = nullptr);
  void publish_refreshes(const Batch& batch);

  // summary (summary.cpp)
  void apply_counts(std::optional<core::Status> from, std::optional<core::Status> to);
  void publish_summary_if_due(TimePoint now);
  TimePoint summary_due() const;  // when the owner must wake for it

  store::Store& store_;
  Metrics& metrics_;
  FleetOptions options_;
  Clock clock_;
  StatusPublisher* publisher_ = nullptr;
  DeviceAccess* access_ = nullptr;
  std::function<void(const DeviceId&, bool back)> connectivity_;
  std::mutex credentials_mutex_;
  std::unordered_map<DeviceId, store::StoredSecret, core::DeviceIdHash> credentials_;  // cache

  // The registry: written by the owner and by in-place heartbeats; readers overlay.
  mutable std::shared_mutex registry_mutex_;
  std::unordered_map<DeviceId, core::DeviceState, core::DeviceIdHash> registry_;
  // Devices with heartbeat/presence events in the owner's hands, and how many.
  std::unordered_map<DeviceId, int, core::DeviceIdHash> queued_for_owner_;
  // Guarded by registry_mutex_ (a heartbeat records its last_seen under the
  // lock it already holds, one global lock per heartbeat): what the flusher
  // writes next, and devices whose status document is due a 30 s refresh.
  std::unordered_map<DeviceId, PendingSeen, core::DeviceIdHash> pending_seen_;
  std::unordered_set<DeviceId, core::DeviceIdHash> refresh_due_;
  std::atomic<bool> refresh_pending_{false};  // refresh_due_ may be non-empty (the owner skips the lock otherwise)
  core::FleetCounts counts_;  // guarded by registry_mutex_

  // Owner thread only.
  core::DeadlineQueue deadlines_;
  core::LogBudget transition_log_{20, std::chrono::seconds{1}};
  std::unordered_map<DeviceId, store::StoredStatus, core::DeviceIdHash> status_docs_;  // as last published
  std::unordered_map<DeviceId, Held, core::DeviceIdHash> held_;  // mailboxes waiting (retry, will gate)
  using Due = std::pair<TimePoint, DeviceId>;
  std::priority_queue<Due, std::vector<Due>, std::greater<>> held_due_;  // when each is due, soonest first
  core::WillGate will_gate_;
  std::unordered_map<DeviceId, core::FlapDamper, core::DeviceIdHash> flaps_;
  std::priority_queue<Due, std::vector<Due>, std::greater<>> flap_checks_;  // settle or forget, soonest first
  bool link_was_up_ = false;  // a connect after this is a reconnect after a loss
  bool link_up_ = false;
  TimePoint link_up_at_{};
  // Devices whose wills were discarded while the link was down: their window
  // starts when the broker is back.
  std::vector<DeviceId> awaiting_return_;
  bool counts_dirty_ = true;
  TimePoint last_summary_{};
  core::LogBudget store_error_log_{1, std::chrono::seconds{60}};  // one line a minute

  // The owner's queue.
  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<Event> queue_;
  bool stopping_ = false;
  std::atomic<bool> shutting_down_{false};

  // The flusher: acks under flush_mutex_, the rest it keeps across cycles.
  std::mutex flush_mutex_;
  std::condition_variable flush_cv_;
  std::vector<std::pair<DeviceId, std::int64_t>> pending_acks_;
  std::vector<DeviceId> pending_clear_acks_;
  // Flusher only: what it took and has not yet written (a failed write keeps it).
  std::unordered_map<DeviceId, PendingSeen, core::DeviceIdHash> unflushed_seen_;
  std::vector<std::pair<DeviceId, std::int64_t>> unflushed_acks_;
  std::vector<DeviceId> unflushed_clear_acks_;
  TimePoint acks_waiting_since_{};  // flusher only: when the oldest unwritten ack was taken
  std::atomic<TimePoint> last_transitions_stored_{TimePoint{}};  // set by the owner
  core::LogBudget flush_error_log_{1, std::chrono::seconds{60}};  // flusher only: one line a minute
  bool flusher_stopping_ = false;

  std::thread owner_;
  std::thread flusher_;
};

}  // namespace maestra::service
