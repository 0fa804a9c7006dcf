// Partition maintenance of the telemetry writer: the daily partitions of metrics
// and events are created ahead (today and the next two days) and for the days
// of accepted past times, and dropped whole once every time they can hold is
// past retention. The latest values of deleted devices go too (in memory and in
// metrics_latest, which has no foreign key to devices). Runs on the writer thread (at start-up, then hourly), so a
// partition is never created and dropped at the same time.
#include "service/log.hpp"
#include "service/telemetry.hpp"

namespace maestra::service {

using core::Done;
using core::Result;

namespace {
constexpr int days_ahead = 2;
}  // namespace

void Telemetry::maintain() {
  const core::TimePoint now = clock_();
  const core::TimePoint today = core::day_start(now);
  for (const auto table : {store::TelemetryTable::metrics, store::TelemetryTable::events}) {
    const int retention = table == store::TelemetryTable::metrics ? options_.limits.metrics_retention_days
                                                                  : options_.limits.events_retention_days;
    const std::string name(store::to_string(table));
    auto names = store_.partitions(table);
    if (!names) {
      log_error("telemetry_maintenance_failed", {{"table", name}, {"error", names.error().detail}});
      continue;
    }
    std::set<core::TimePoint> days;
    for (const auto& partition : names.value())
      if (const auto day = core::partition_day(name, partition)) days.insert(*day);
    for (int i = 0; i <= days_ahead; ++i) {
      const auto day = today + std::chrono::days{i};
      if (days.count(day)) continue;
      if (auto created = store_.create_partition(table, day); !created) {
        log_error("telemetry_partition_not_created",
                  {{"partition", core::partition_name(name, day)}, {"error", created.error().detail}});
        continue;
      }
      ++counters_.partitions_created;
      days.insert(day);
    }
    // A partition holds [day, day + 1 d); it goes once day + 1 d is at or before
    // the oldest time still accepted (now - retention).
    const core::TimePoint oldest_kept = now - std::chrono::days{retention};
    for (auto it = days.begin(); it != days.end();) {
      if (*it + std::chrono::days{1} > oldest_kept) break;
      if (auto dropped = store_.drop_partition(table, *it); !dropped) {
        log_error("telemetry_partition_not_dropped",
                  {{"partition", core::partition_name(name, *it)}, {"error", dropped.error().detail}});
        ++it;
        continue;
      }
      ++counters_.partitions_dropped;
      log_info("telemetry_partition_dropped",
               {{"partition", core::partition_name(name, *it)}, {"retention_days", std::to_string(retention)}});
      it = days.erase(it);
    }
    partitions_[table] = std::move(days);
  }
  forget_deleted_devices();
}

void Telemetry::forget_deleted_devices() {
  std::size_t in_memory = 0;
  {
    std::unique_lock lock(latest_mutex_);
    for (auto it = latest_.begin(); it != latest_.end();) {
      if (registered_(it->first)) {
        ++it;
        continue;
      }
      it = latest_.erase(it);
      ++in_memory;
    }
  }
  auto purged = store_.purge_deleted_latest();
  if (!purged) {
    log_error("telemetry_latest_purge_failed", {{"error", purged.error().detail}});
    return;
  }
  if (purged.value() || in_memory)
    log_info("telemetry_latest_purged", {{"devices", std::to_string(purged.value())},
                                         {"in_memory", std::to_string(in_memory)},
                                         {"why", "the devices were deleted"}});
}

Result<Done> Telemetry::ensure_partitions(const store::MetricChunks& metrics,
                                          const std::vector<core::EventRecord>& events) {
  auto ensure = [this](store::TelemetryTable table, core::TimePoint time) -> Result<Done> {
    const auto day = core::day_start(time);
    auto& known = partitions_[table];
    if (known.count(day)) return Done{};
    auto created = store_.create_partition(table, day);
    if (!created) return created.error();
    ++counters_.partitions_created;
    known.insert(day);
    return Done{};
  };
  // Rows mostly share one day: the last day checked is remembered.
  auto last = core::TimePoint::min();
  for (const auto& chunk : metrics)
    for (const auto& p : chunk) {
      if (core::day_start(p.time) == last) continue;
      if (auto r = ensure(store::TelemetryTable::metrics, p.time); !r) return r;
      last = core::day_start(p.time);
    }
  last = core::TimePoint::min();
  for (const auto& e : events) {
    if (core::day_start(e.time) == last) continue;
    if (auto r = ensure(store::TelemetryTable::events, e.time); !r) return r;
    last = core::day_start(e.time);
  }
  return Done{};
}

}  // namespace maestra::service
