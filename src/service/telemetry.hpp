// The telemetry writer: the one thread that stores metric points and events in
// batches, the latest value of each metric of each device (in memory, and in
// metrics_latest for restarts), and the daily partitions (created ahead, dropped
// past retention). HTTP handlers wait for the batch holding their points to
// commit (group commit); MQTT messages are queued and never waited for. It
// shares no lock and no connection with the heartbeat path.
//
// A note on what a crash can lose: an answered HTTP point is committed, and so
// is its latest value. MQTT points wait in memory until the next batch commits
// (normally well under a second; longer while the database is down, up to
// max_queued_points, past which new messages are dropped and counted), so a
// crash loses what was queued and not yet committed. A batch of MQTT points
// only commits without waiting for the WAL flush (a crash of Postgres or the
// machine, not of the service, can lose its last ~0.6 s), and writes the latest
// values to metrics_latest at most once every latest_every (1 s): after a crash
// the latest values read at start-up can be up to that much older than the
// stored points (memory holds the newest all along; a clean stop writes them).
#pragma once
#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/log_budget.hpp"
#include "core/telemetry.hpp"
#include "service/metrics.hpp"
#include "store/telemetry_store.hpp"

namespace maestra::service {

// Ingest counters, rendered after the service's own at GET /metrics.
struct TelemetryCounters {
  // by Transport
  std::array<std::atomic<std::uint64_t>, 2> points_accepted{};
  std::array<std::atomic<std::uint64_t>, 2> events_accepted{};
  std::array<std::atomic<std::uint64_t>, 2> rejected{};  // messages or bodies refused (invalid, unknown device)
  std::atomic<std::uint64_t> unknown_device_dropped{0};  // MQTT messages of devices not registered
  std::atomic<std::uint64_t> queue_full_dropped{0};      // MQTT messages dropped: too many points waiting
  std::atomic<std::uint64_t> batches{0};
  std::atomic<std::uint64_t> batch_rows{0};
  std::atomic<std::uint64_t> write_errors{0};
  std::atomic<std::uint64_t> partitions_created{0};
  std::atomic<std::uint64_t> partitions_dropped{0};
  std::atomic<std::int64_t> queued_points{0};
  // Flush latency (one transaction), a histogram over flush_buckets_ms.
  static constexpr std::array<double, 9> flush_buckets_ms{1, 5, 10, 25, 50, 100, 250, 500, 1000};
  std::array<std::atomic<std::uint64_t>, 10> flush_histogram{};  // the last is +Inf
  std::atomic<std::uint64_t> flush_micros{0};
  // Batch size (rows), a histogram.
  static constexpr std::array<double, 6> batch_buckets{1, 10, 100, 1000, 10000, 100000};
  std::array<std::atomic<std::uint64_t>, 7> batch_histogram{};

  void observe_flush(std::uint64_t micros, std::uint64_t rows);
  std::string render_prometheus() const;
};

struct TelemetryOptions {
  core::TelemetryLimits limits;
  // Points and events waiting for the writer; past this an MQTT message is
  // dropped and an HTTP request answered 503.
  std::size_t max_queued_rows = 500000;
  // How long an HTTP request waits for its batch to commit before it is
  // answered 503.
  std::chrono::milliseconds commit_wait{10000};
  std::chrono::milliseconds maintenance_every{3600 * 1000};
  // How often MQTT batches also write the latest values to metrics_latest (a
  // batch holding an HTTP request's points always does).
  std::chrono::milliseconds latest_every{1000};
};

class Telemetry {
 public:
  using Clock = std::function<core::TimePoint()>;
  using DeviceCheck = std::function<bool(const core::DeviceId&)>;

  Telemetry(store::TelemetryStore& store, TelemetryOptions options, Clock clock, DeviceCheck registered);
  ~Telemetry();
  Telemetry(const Telemetry&) = delete;
  Telemetry& operator=(const Telemetry&) = delete;

  // Before start(): the latest values stored, and one maintenance pass
  // (partitions of today and the next two days; those past retention dropped).
  core::Result<std::size_t> load();
  void start();
  // Stores what is queued (bounded by commit_wait), then joins the writer.
  void stop();

  // HTTP: waits until the points (events) are committed. not_found (naming the
  // index of the first point of an unknown device in `field`) when a device is
  // not registered; unavailable when the queue is full or the database fails.
  core::Result<core::Done> store_metrics(std::vector<core::MetricPoint> points, bool batch);
  core::Result<core::Done> store_events(std::vector<core::EventRecord> events, bool batch);
  // MQTT: queued, never waited for; unknown devices and a full queue are counted and dropped.
  void offer_metrics(const core::DeviceId& device, std::vector<core::MetricPoint> points);
  void offer_event(const core::DeviceId& device, core::EventRecord event);
  void rejected(Transport transport) { ++counters_.rejected[static_cast<std::size_t>(transport)]; }
  // An MQTT message dropped before it was parsed: too many waiting for the parser.
  void dropped_queue_full() { ++counters_.queue_full_dropped; }

  // The latest value of each metric of a device, by name.
  std::vector<store::LatestValue> latest(const core::DeviceId& device) const;
  bool registered(const core::DeviceId& device) const { return registered_(device); }

  // Reads, straight from the store (not through the writer).
  store::TelemetryStore& reader() { return store_; }
  const core::TelemetryLimits& limits() const { return options_.limits; }
  core::TimePoint now() const { return clock_(); }
  const TelemetryCounters& counters() const { return counters_; }

  // One maintenance pass now (the writer runs one every maintenance_every).
  void maintain();
  // Drops the latest values of devices that were deleted (memory and table).
  void forget_deleted_devices();
  // One flush of what is queued, on the caller's thread (tests, and stop()).
  void flush();

 private:
  // An HTTP request's rows, answered when the batch holding them commits.
  struct HttpJob {
    std::vector<core::MetricPoint> metrics;
    std::vector<core::EventRecord> events;
    std::promise<core::Result<core::Done>> done;
  };
  // What waits for the writer: MQTT rows (kept and retried when the database
  // is down) and HTTP jobs (answered with the error instead).
  struct Pending {
    store::MetricChunks metrics;
    std::vector<core::EventRecord> events;
    std::vector<HttpJob> jobs;
    std::size_t rows = 0;
  };

  core::Result<core::Done> enqueue_and_wait(std::vector<core::MetricPoint> metrics,
                                            std::vector<core::EventRecord> events);
  bool enqueue_mqtt(std::vector<core::MetricPoint> metrics, std::vector<core::EventRecord> events);
  void writer_loop();
  // Stores `batch` in one transaction; true when it committed. `final`: the last
  // batch before stopping (writes the latest values whatever their cadence).
  bool write(Pending& batch, bool final);
  // The latest values not yet in metrics_latest are due (writer thread only).
  bool latest_due(std::chrono::steady_clock::time_point now) const {
    return !unwritten_latest_.empty() && now - latest_written_ >= options_.latest_every;
  }
  // Creates the partitions of the days these rows fall in that are not known yet.
  core::Result<core::Done> ensure_partitions(const store::MetricChunks& metrics,
                                             const std::vector<core::EventRecord>& events);
  void remember_latest(const std::vector<store::LatestValue>& values);

  store::TelemetryStore& store_;
  TelemetryOptions options_;
  Clock clock_;
  DeviceCheck registered_;
  TelemetryCounters counters_;

  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  Pending queue_;
  bool stopping_ = false;
  std::thread writer_;

  // Writer thread only (and load/maintain/flush before start or after stop).
  std::map<store::TelemetryTable, std::set<core::TimePoint>> partitions_;
  // Latest values stored in metrics but not yet in metrics_latest, by device and
  // name, and when metrics_latest was last written.
  std::map<std::pair<core::DeviceId, std::string>, store::LatestValue> unwritten_latest_;
  std::chrono::steady_clock::time_point latest_written_{};
  core::LogBudget error_log_{5, std::chrono::seconds{60}};

  mutable std::shared_mutex latest_mutex_;
  std::unordered_map<core::DeviceId, std::map<std::string, store::LatestValue>, core::DeviceIdHash> latest_;
};

}  // namespace maestra::service
