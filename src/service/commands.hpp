// The command owner: creates commands (stored before anything is sent), sends
// them to devices in creation order, applies the devices' replies, cancels,
// expires and times out, and publishes every state change for dashboards. The
// rules are the core's (core/commands); the store keeps, the publisher (the
// MQTT adapter) carries.
//
// Threads: HTTP handlers call create/get/list/cancel/reply/pending on their
// own threads (these wait for the database). Paho's callbacks (broker acks,
// MQTT replies) and the fleet owner (a device came back or went away) only
// queue a job. Four worker threads run the jobs, each for its share of the
// devices (by id), in order; the first also runs the sweep (expiry, result
// timeouts) every 200 ms.
//
// A note on order: every publish of a command to a device happens on its
// device's worker, and a device's new commands reach it in creation order (a
// striped lock spans a command's store and its job). A device is "caught up"
// once the worker has sent it every undelivered command since it last came
// back; until then, a new command makes the worker send the whole undelivered
// list in order (a device drops an id it has already seen). A device that goes
// away is no longer caught up.
//
// A note on what a crash loses: nothing a caller was told. A command is
// committed as queued before it is answered; queued and sent commands that the
// device has not acknowledged are sent again after a start, after a lost
// broker link and when their device comes back. Dashboard state messages are
// not retained and not replayed: GET /commands/{id} is the truth.
#pragma once
#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "service/fleet.hpp"
#include "store/command_store.hpp"

namespace maestra::service {

// Implemented by the MQTT adapter; never blocks. The adapter reports the
// broker's PUBACK of a command through Commands::command_acked.
class CommandPublisher {
 public:
  virtual ~CommandPublisher() = default;
  // QoS 1, not retained, on {prefix}/devices/{id}/commands/{command_id}.
  virtual void publish_command(const core::Command& command, TimePoint now) = 0;
  // Not retained, on {prefix}/commands/{id}/{command_id}: the command document.
  virtual void publish_command_state(const core::Command& command) = 0;
};

// Why a reply was ignored (counted, never applied).
enum class IgnoredReply : std::uint8_t { malformed, unknown_command, other_device, terminal, backwards, duplicate };
inline constexpr std::array<const char*, 6> ignored_reply_names{"malformed", "unknown_command", "other_device",
                                                                "terminal",  "backwards",       "duplicate"};

struct CommandMetrics {
  std::atomic<std::uint64_t> created{0};
  std::atomic<std::uint64_t> published{0};  // sends to devices (first and again)
  std::array<std::atomic<std::uint64_t>, core::command_state_count> transitions{};  // by the state entered
  std::array<std::atomic<std::uint64_t>, ignored_reply_names.size()> replies_ignored{};
  std::atomic<std::uint64_t> replies_applied{0};
  std::atomic<std::uint64_t> store_errors{0};
  std::atomic<std::int64_t> open_cached{0};  // commands in the cache of open commands
  std::atomic<std::uint64_t> batches{0};       // statements of gathered acks and replies
  std::atomic<std::uint64_t> batch_moves{0};   // the moves they carried
  std::string render_prometheus() const;
};

// What happened to a device's reply.
struct ReplyOutcome {
  bool applied = false;
  std::optional<IgnoredReply> ignored;
  core::Command command;  // as it is now (when known)
};

class Commands {
 public:
  Commands(store::CommandStore& store, Fleet& fleet, Clock clock);
  ~Commands();
  Commands(const Commands&) = delete;
  Commands& operator=(const Commands&) = delete;

  void set_publisher(CommandPublisher* publisher) { publisher_ = publisher; }
  void start();
  // Ends every wait (?wait, long polls) at once: for shutdown, before the HTTP server stops.
  void stop_waits();
  void stop();

  // --- the administrator ---
  // 201 (created) or, an Idempotency-Key the device already used with the same
  // request, that command (existing); another request with it: conflict.
  Result<store::CreatedCommand> create(const DeviceId& device, const core::CommandRequest& request,
                                       const std::optional<std::string>& idempotency_key);
  // One command per device the fan-out names (devices resolved through the fleet).
  Result<std::vector<store::CreatedCommand>> fan_out(const core::FanOut& fan_out,
                                                     const std::optional<std::string>& idempotency_key);
  Result<store::CommandWithHistory> get(const core::CommandId& id) { return store_.get(id); }
  Result<std::vector<core::Command>> list(const DeviceId& device, const core::CommandListQuery& q) {
    return store_.list(device, q);
  }
  // conflict when the command is already terminal.
  Result<core::Command> cancel(const core::CommandId& id);
  // The command once terminal, or as it is when `wait` has passed.
  Result<core::Command> wait_for_end(const core::Command& command, core::Seconds wait);

  // --- devices ---
  // A reply over HTTP (the caller waits) or MQTT (queued for the worker).
  Result<ReplyOutcome> reply(const DeviceId& device, const core::CommandId& id, const core::CommandReply& reply);
  void reply_async(const DeviceId& device, const core::CommandId& id, core::CommandReply reply);
  void reply_malformed() { count_ignored(IgnoredReply::malformed); }
  // HTTP long poll: the device's undelivered commands (waiting up to `wait` for
  // one), marked sent. not_found for an unknown device.
  Result<std::vector<core::Command>> pending(const DeviceId& device, core::Seconds wait);

  // --- the fleet and the MQTT adapter (never block) ---
  void device_back(const DeviceId& device);
  void device_gone(const DeviceId& device);
  // The device was deleted (its commands with it, ON DELETE CASCADE): its open
  // commands leave the cache of open commands, and its worker forgets it.
  void device_removed(const DeviceId& device);
  void broker_connected();
  // The broker link dropped: nothing is published until it is back, when the
  // outbox sends every undelivered command in order (a publish queued while
  // the link was down would reach a device ahead of older commands).
  void broker_disconnected();
  void command_acked(const core::CommandId& id);

  const CommandMetrics& metrics() const { return metrics_; }

 private:
  struct Job {
    enum class Kind { send, device_back, device_gone, broker_connected, broker_disconnected, acked, reply } kind;
    DeviceId device{};
    core::CommandId command{};
    core::CommandReply reply{};
    std::int64_t seq = 0;
    int attempts = 0;  // stores that failed (database down)
    std::optional<core::Command> snapshot{};  // send: the command as created
    std::uint64_t cancels = 0;              // send: cancels_ when it was created
  };
  // One worker: its queue and thread, and what only it touches.
  struct Shard {
    std::mutex mutex;
    std::condition_variable cv;
    std::deque<Job> jobs;
    std::thread thread;
    std::unordered_map<DeviceId, std::int64_t, core::DeviceIdHash> caught_up;  // device -> last seq sent
    bool link_up = false;  // the broker link, as the MQTT adapter last said
    std::deque<std::pair<core::TimePoint, Job>> retries;  // acks and replies the database did not take
  };
  // Acks and replies of one worker cycle, stored in one statement
  // (transition_many): at most one move per command.
  struct Gathered {
    std::vector<store::CommandMove> moves;
    std::vector<Job> jobs;
    std::unordered_set<core::CommandId, core::DeviceIdHash> ids;
    void clear() {
      moves.clear();
      jobs.clear();
      ids.clear();
    }
  };
  static constexpr std::size_t shard_count = 4;
  static std::size_t shard_of(const DeviceId& id) { return core::DeviceIdHash{}(id) % shard_count; }
  void post(Job job);
  void post_to(std::size_t shard, Job job);
  // Many jobs, one lock and one wake-up per worker.
  void post_all(std::vector<Job> jobs);
  void worker_loop(std::size_t index);
  // False when the database did not take it: retried (acks and replies).
  bool run_job(Shard& shard, std::size_t index, Job& job);
  // run_job, and a job the database did not take waits for its retry.
  void run_one(Shard& shard, std::size_t index, Job& job);
  // Worker only: an ack or a reply joins the cycle's batch (or, when the cache
  // of open commands cannot decide it, runs alone after the batch so far).
  void gather(Shard& shard, std::size_t index, Gathered& g, Job& job);
  // Worker only: stores the batch in one statement; a reply whose command had
  // moved on meanwhile is decided again on the stored state (run alone).
  void flush(Shard& shard, std::size_t index, Gathered& g);
  // Worker only: sends the device's undelivered commands in order.
  void send_all(Shard& shard, const DeviceId& device);
  // Worker only: the outbox of this worker's devices.
  void resend_outbox(Shard& shard, std::size_t index);
  void sweep();
  // Stores from -> to, publishes the document and wakes waiters; nullopt when
  // the command had moved on meanwhile.
  Result<std::optional<core::Command>> move(const core::Command& command, core::CommandState to,
                                            const core::Json& result = nullptr,
                                            const std::optional<std::string>& error = std::nullopt);
  void changed(const core::Command& command) { changed_all(std::span<const core::Command>(&command, 1)); }
  void changed_all(std::span<const core::Command> commands);
  // A note on concurrent changes: changed() runs on the workers and the HTTP
  // threads, so two changes of one command may be reported out of order.
  // States only move forward, so a report behind the one already seen is
  // ignored (in known_ and in what waiters see).
  // The state this process last stored for an open command (nullopt: ask the store).
  std::optional<core::Command> known(const core::CommandId& id);
  void count_ignored(IgnoredReply why) { ++metrics_.replies_ignored[static_cast<std::size_t>(why)]; }
  void log_store_error(const char* what, const core::Error& error);

  store::CommandStore& store_;
  Fleet& fleet_;
  Clock clock_;
  CommandPublisher* publisher_ = nullptr;
  CommandMetrics metrics_;

  // A note on the cache of open commands: every state change this process
  // stores passes through changed(), which keeps known_ (device and state of
  // each command that is not terminal), so a reply or an ack is decided
  // without reading the store first. The store's guarded transition stays the
  // arbiter: a decision made on a stale entry changes nothing and is made
  // again on the stored state.
  std::mutex known_mutex_;
  std::unordered_map<core::CommandId, std::pair<DeviceId, core::CommandState>, core::DeviceIdHash> known_;
  // Commands that ended lately: a late report of an earlier state (changed()
  // runs on several threads) never brings one back into known_.
  std::unordered_set<core::CommandId, core::DeviceIdHash> ended_;
  std::deque<core::CommandId> ended_order_;
  // Cancels so far: a send job created before a cancel reads the store first.
  std::atomic<std::uint64_t> cancels_{0};

  // Spans a command's store and its send job, per device (striped).
  std::array<std::mutex, 64> create_locks_;

  std::array<Shard, shard_count> shards_;
  std::atomic<bool> stopping_{false};
  core::TimePoint last_sweep_{};                  // the first worker only
  std::atomic<std::int64_t> last_error_log_ms_{0};  // one line a minute across workers

  // Waiters (?wait, long polls): woken on every change.
  std::mutex watch_mutex_;
  std::condition_variable watch_cv_;
  // Commands someone waits on (waiters, latest state), devices that poll (pollers, changes).
  std::unordered_map<core::CommandId, std::pair<int, core::Command>, core::DeviceIdHash> watched_;
  std::unordered_map<DeviceId, std::pair<int, std::uint64_t>, core::DeviceIdHash> polled_;
  bool waits_stopping_ = false;
};

}  // namespace maestra::service
