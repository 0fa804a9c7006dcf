// The telemetry writer: queueing (HTTP jobs that wait, MQTT rows that do not),
// the writer loop and its group commit, the latest values, and the ingest
// counters. Partition maintenance is in telemetry_maintenance.cpp.
//
// A note on batching: the writer stores whatever is queued as soon as it is
// idle, in one transaction (MQTT-only batches without waiting for the WAL flush,
// and with the latest values at most once a second: see telemetry.hpp). Under load, rows pile up while a batch commits and
// the next batch takes them all, so the batch grows with the load and the delay
// stays about one commit (well under the 1 s bound); at low load each message
// is stored at once. A failed write answers its HTTP jobs with the error and
// keeps its MQTT rows for the next attempt, one second later.
#include "service/telemetry.hpp"

#include <algorithm>
#include <cstdio>

#include "service/log.hpp"

namespace maestra::service {

using core::Done;
using core::Error;
using core::ErrorKind;
using core::Result;

namespace {
constexpr std::size_t http = static_cast<std::size_t>(Transport::http);
constexpr std::size_t mqtt = static_cast<std::size_t>(Transport::mqtt);

// The latest value of each (device, name) among the points.
std::vector<store::LatestValue> latest_of(const store::MetricChunks& chunks) {
  struct Key {
    core::DeviceId device;
    const std::string* name;
    bool operator==(const Key& o) const { return device == o.device && *name == *o.name; }
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const {
      return core::DeviceIdHash{}(k.device) ^ (std::hash<std::string>{}(*k.name) * 31);
    }
  };
  std::unordered_map<Key, const core::MetricPoint*, KeyHash> newest;
  for (const auto& points : chunks)
    for (const auto& p : points) {
      auto [it, added] = newest.try_emplace(Key{p.device, &p.name}, &p);
      if (!added && it->second->time <= p.time) it->second = &p;
    }
  std::vector<store::LatestValue> out;
  out.reserve(newest.size());
  for (const auto& [key, p] : newest) out.push_back({p->device, p->name, p->value, p->unit, p->time});
  return out;
}
}  // namespace

void TelemetryCounters::observe_flush(std::uint64_t micros, std::uint64_t rows) {
  ++batches;
  batch_rows += rows;
  flush_micros += micros;
  const double ms = static_cast<double>(micros) / 1000.0;
  std::size_t i = 0;
  while (i < flush_buckets_ms.size() && ms > flush_buckets_ms[i]) ++i;
  ++flush_histogram[i];
  std::size_t j = 0;
  while (j < batch_buckets.size() && static_cast<double>(rows) > batch_buckets[j]) ++j;
  ++batch_histogram[j];
}

std::string TelemetryCounters::render_prometheus() const {
  std::string out;
  auto line = [&out](const std::string& name_and_labels, double value) {
    char buf[64];
    std::snprintf(buf, sizeof buf, " %.17g\n", value);
    out += name_and_labels + buf;
  };
  auto family = [&out](const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  auto d = [](const auto& atomic) { return static_cast<double>(atomic.load()); };
  family("maestra_telemetry_points_total", "counter", "Metric points stored, by transport.");
  line("maestra_telemetry_points_total{transport=\"mqtt\"}", d(points_accepted[mqtt]));
  line("maestra_telemetry_points_total{transport=\"http\"}", d(points_accepted[http]));
  family("maestra_telemetry_events_total", "counter", "Events stored, by transport.");
  line("maestra_telemetry_events_total{transport=\"mqtt\"}", d(events_accepted[mqtt]));
  line("maestra_telemetry_events_total{transport=\"http\"}", d(events_accepted[http]));
  family("maestra_telemetry_rejected_total", "counter",
         "Telemetry messages (MQTT) or request bodies (HTTP) refused: invalid, or of a device not registered.");
  line("maestra_telemetry_rejected_total{transport=\"mqtt\"}", d(rejected[mqtt]));
  line("maestra_telemetry_rejected_total{transport=\"http\"}", d(rejected[http]));
  family("maestra_telemetry_dropped_total", "counter", "MQTT telemetry messages dropped, by reason.");
  line("maestra_telemetry_dropped_total{reason=\"unknown_device\"}", d(unknown_device_dropped));
  line("maestra_telemetry_dropped_total{reason=\"queue_full\"}", d(queue_full_dropped));
  family("maestra_telemetry_queued_rows", "gauge", "Points and events waiting for the telemetry writer.");
  line("maestra_telemetry_queued_rows", d(queued_points));
  family("maestra_telemetry_write_errors_total", "counter", "Telemetry batches whose transaction failed.");
  line("maestra_telemetry_write_errors_total", d(write_errors));
  family("maestra_telemetry_partitions_created_total", "counter", "Daily telemetry partitions created.");
  line("maestra_telemetry_partitions_created_total", d(partitions_created));
  family("maestra_telemetry_partitions_dropped_total", "counter", "Daily telemetry partitions dropped past retention.");
  line("maestra_telemetry_partitions_dropped_total", d(partitions_dropped));

  family("maestra_telemetry_flush_seconds", "histogram", "Time of one telemetry batch transaction.");
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < flush_buckets_ms.size(); ++i) {
    cumulative += flush_histogram[i].load();
    char le[32];
    std::snprintf(le, sizeof le, "%g", flush_buckets_ms[i] / 1000.0);
    line(std::string("maestra_telemetry_flush_seconds_bucket{le=\"") + le + "\"}", static_cast<double>(cumulative));
  }
  cumulative += flush_histogram.back().load();
  line("maestra_telemetry_flush_seconds_bucket{le=\"+Inf\"}", static_cast<double>(cumulative));
  line("maestra_telemetry_flush_seconds_sum", static_cast<double>(flush_micros.load()) / 1e6);
  line("maestra_telemetry_flush_seconds_count", d(batches));

  family("maestra_telemetry_batch_rows", "histogram", "Rows (points and events) in one telemetry batch.");
  cumulative = 0;
  for (std::size_t i = 0; i < batch_buckets.size(); ++i) {
    cumulative += batch_histogram[i].load();
    char le[32];
    std::snprintf(le, sizeof le, "%g", batch_buckets[i]);
    line(std::string("maestra_telemetry_batch_rows_bucket{le=\"") + le + "\"}", static_cast<double>(cumulative));
  }
  cumulative += batch_histogram.back().load();
  line("maestra_telemetry_batch_rows_bucket{le=\"+Inf\"}", static_cast<double>(cumulative));
  line("maestra_telemetry_batch_rows_sum", d(batch_rows));
  line("maestra_telemetry_batch_rows_count", d(batches));
  return out;
}

Telemetry::Telemetry(store::TelemetryStore& store, TelemetryOptions options, Clock clock, DeviceCheck registered)
    : store_(store), options_(std::move(options)), clock_(std::move(clock)), registered_(std::move(registered)) {}

Telemetry::~Telemetry() { stop(); }

Result<std::size_t> Telemetry::load() {
  auto values = store_.load_latest();
  if (!values) return values.error();
  remember_latest(values.value());
  maintain();
  return values->size();
}

void Telemetry::start() {
  writer_ = std::thread([this] { writer_loop(); });
}

void Telemetry::stop() {
  {
    std::lock_guard lock(queue_mutex_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
}

Result<Done> Telemetry::store_metrics(std::vector<core::MetricPoint> points, bool batch) {
  for (std::size_t i = 0; i < points.size(); ++i)
    if (!registered_(points[i].device)) {
      ++counters_.rejected[http];
      return Error{ErrorKind::not_found, batch ? "[" + std::to_string(i) + "].device_id" : "device_id",
                   "device " + points[i].device.to_string() + " is not registered"};
    }
  return enqueue_and_wait(std::move(points), {});
}

Result<Done> Telemetry::store_events(std::vector<core::EventRecord> events, bool batch) {
  for (std::size_t i = 0; i < events.size(); ++i)
    if (!registered_(events[i].device)) {
      ++counters_.rejected[http];
      return Error{ErrorKind::not_found, batch ? "[" + std::to_string(i) + "].device_id" : "device_id",
                   "device " + events[i].device.to_string() + " is not registered"};
    }
  return enqueue_and_wait({}, std::move(events));
}

void Telemetry::offer_metrics(const core::DeviceId& device, std::vector<core::MetricPoint> points) {
  if (!registered_(device)) {
    ++counters_.unknown_device_dropped;
    ++counters_.rejected[mqtt];
    return;
  }
  enqueue_mqtt(std::move(points), {});
}

void Telemetry::offer_event(const core::DeviceId& device, core::EventRecord event) {
  if (!registered_(device)) {
    ++counters_.unknown_device_dropped;
    ++counters_.rejected[mqtt];
    return;
  }
  std::vector<core::EventRecord> events;
  events.push_back(std::move(event));
  enqueue_mqtt({}, std::move(events));
}

Result<Done> Telemetry::enqueue_and_wait(std::vector<core::MetricPoint> metrics, std::vector<core::EventRecord> events) {
  const std::size_t rows = metrics.size() + events.size();
  std::future<Result<Done>> committed;
  {
    std::lock_guard lock(queue_mutex_);
    if (stopping_) return Error{ErrorKind::unavailable, "", "the service is stopping"};
    if (queue_.rows + rows > options_.max_queued_rows)
      return Error{ErrorKind::unavailable, "", "too much telemetry is waiting to be stored; try again"};
    HttpJob job{std::move(metrics), std::move(events), {}};
    committed = job.done.get_future();
    queue_.jobs.push_back(std::move(job));
    queue_.rows += rows;
    counters_.queued_points = static_cast<std::int64_t>(queue_.rows);
  }
  queue_cv_.notify_one();
  if (committed.wait_for(options_.commit_wait) != std::future_status::ready)
    return Error{ErrorKind::unavailable, "",
                 "telemetry was not stored within " + std::to_string(options_.commit_wait.count()) + " ms"};
  return committed.get();
}

bool Telemetry::enqueue_mqtt(std::vector<core::MetricPoint> metrics, std::vector<core::EventRecord> events) {
  const std::size_t rows = metrics.size() + events.size();
  {
    std::lock_guard lock(queue_mutex_);
    if (queue_.rows + rows > options_.max_queued_rows) {
      ++counters_.queue_full_dropped;
      return false;
    }
    if (!metrics.empty()) queue_.metrics.push_back(std::move(metrics));
    std::move(events.begin(), events.end(), std::back_inserter(queue_.events));
    queue_.rows += rows;
    counters_.queued_points = static_cast<std::int64_t>(queue_.rows);
  }
  queue_cv_.notify_one();
  return true;
}

void Telemetry::writer_loop() {
  auto next_maintenance = std::chrono::steady_clock::now() + options_.maintenance_every;
  while (true) {
    bool stopping = false;
    {
      // Latest values not yet written wake the writer when they are due, even
      // when nothing else arrives.
      const auto wake = unwritten_latest_.empty() ? next_maintenance
                                                  : std::min(next_maintenance, latest_written_ + options_.latest_every);
      std::unique_lock lock(queue_mutex_);
      queue_cv_.wait_until(lock, wake, [this] { return stopping_ || queue_.rows > 0; });
      stopping = stopping_;
    }
    if (std::chrono::steady_clock::now() >= next_maintenance) {
      maintain();
      next_maintenance = std::chrono::steady_clock::now() + options_.maintenance_every;
    }
    flush();
    if (stopping) {
      std::lock_guard lock(queue_mutex_);
      if (queue_.rows == 0) break;
    }
  }
}

void Telemetry::flush() {
  Pending batch;
  bool stopping = false;
  {
    std::lock_guard lock(queue_mutex_);
    std::swap(batch, queue_);
    counters_.queued_points = 0;
    stopping = stopping_;
  }
  if (batch.rows == 0 && !(stopping ? !unwritten_latest_.empty() : latest_due(std::chrono::steady_clock::now())))
    return;
  if (write(batch, stopping)) return;
  // The MQTT rows go back in front of what came meanwhile (bounded by the queue
  // limit); the HTTP jobs were answered with the error.
  std::size_t lost = 0;
  {
    std::lock_guard lock(queue_mutex_);
    std::size_t rows = batch.events.size();
    for (const auto& chunk : batch.metrics) rows += chunk.size();
    if (stopping_ || queue_.rows + rows > options_.max_queued_rows) {
      lost = rows;
    } else {
      batch.metrics.insert(batch.metrics.end(), std::make_move_iterator(queue_.metrics.begin()),
                           std::make_move_iterator(queue_.metrics.end()));
      batch.events.insert(batch.events.end(), std::make_move_iterator(queue_.events.begin()),
                          std::make_move_iterator(queue_.events.end()));
      queue_.metrics = std::move(batch.metrics);
      queue_.events = std::move(batch.events);
      queue_.rows += rows;
      counters_.queued_points = static_cast<std::int64_t>(queue_.rows);
    }
  }
  if (lost > 0) {
    counters_.queue_full_dropped += lost;
    log_error("telemetry_dropped", {{"rows", std::to_string(lost)},
                                    {"reason", stopping ? "stopping while the database fails" : "queue full"}});
  }
  if (!stopping) {
    // Waits a second before the next attempt (sooner when stopping).
    std::unique_lock lock(queue_mutex_);
    queue_cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; });
  }
}

bool Telemetry::write(Pending& batch, bool final) {
  const std::size_t mqtt_chunks = batch.metrics.size();
  const std::size_t mqtt_events = batch.events.size();
  store::MetricChunks metrics = std::move(batch.metrics);
  std::vector<core::EventRecord> events = std::move(batch.events);
  std::size_t mqtt_points = 0;
  for (const auto& chunk : metrics) mqtt_points += chunk.size();
  std::size_t points = mqtt_points;
  for (auto& job : batch.jobs) {
    points += job.metrics.size();
    if (!job.metrics.empty()) metrics.push_back(std::move(job.metrics));
    events.insert(events.end(), std::make_move_iterator(job.events.begin()), std::make_move_iterator(job.events.end()));
  }
  const auto started = std::chrono::steady_clock::now();
  const auto latest = latest_of(metrics);
  for (const auto& l : latest) {
    auto [it, added] = unwritten_latest_.try_emplace({l.device, l.name}, l);
    if (!added && it->second.time <= l.time) it->second = l;
  }
  // HTTP rows are answered once committed: their commit waits for the disk, and
  // carries the latest values. MQTT-only batches write those once a second.
  const bool durable = !batch.jobs.empty();
  const bool with_latest = durable || final || latest_due(started);
  std::vector<store::LatestValue> latest_rows;
  if (with_latest) {
    latest_rows.reserve(unwritten_latest_.size());
    for (const auto& [key, value] : unwritten_latest_)
      if (registered_(value.device)) latest_rows.push_back(value);  // a device deleted meanwhile: not kept
  }
  Result<Done> written = ensure_partitions(metrics, events);
  if (written) written = store_.write(metrics, events, latest_rows, durable);
  if (written && with_latest) {
    unwritten_latest_.clear();
    latest_written_ = started;
  }
  if (written) {
    const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started);
    if (points + events.size() > 0)  // (not a write of the latest values alone)
      counters_.observe_flush(static_cast<std::uint64_t>(micros.count()), points + events.size());
    counters_.points_accepted[mqtt] += mqtt_points;
    counters_.points_accepted[http] += points - mqtt_points;
    counters_.events_accepted[mqtt] += mqtt_events;
    counters_.events_accepted[http] += events.size() - mqtt_events;
    remember_latest(latest);
    for (auto& job : batch.jobs) job.done.set_value(Done{});
    return true;
  }
  ++counters_.write_errors;
  if (const auto take = error_log_.take(clock_()); take.write)
    log_error("telemetry_write_failed", {{"rows", std::to_string(points + events.size())},
                                         {"error", written.error().detail},
                                         {"held_back", std::to_string(take.held_back)}});
  for (auto& job : batch.jobs) job.done.set_value(written.error());
  // The MQTT rows are the first chunks and events: handed back to flush().
  metrics.resize(mqtt_chunks);
  events.resize(mqtt_events);
  batch.metrics = std::move(metrics);
  batch.events = std::move(events);
  batch.jobs.clear();
  return false;
}

void Telemetry::remember_latest(const std::vector<store::LatestValue>& values) {
  if (values.empty()) return;
  std::unique_lock lock(latest_mutex_);
  for (const auto& v : values) {
    auto& names = latest_[v.device];
    auto [it, added] = names.try_emplace(v.name, v);
    if (!added && it->second.time <= v.time) it->second = v;
  }
}

std::vector<store::LatestValue> Telemetry::latest(const core::DeviceId& device) const {
  std::shared_lock lock(latest_mutex_);
  std::vector<store::LatestValue> out;
  const auto it = latest_.find(device);
  if (it == latest_.end()) return out;
  out.reserve(it->second.size());
  for (const auto& [name, value] : it->second) out.push_back(value);
  return out;
}

}  // namespace maestra::service
