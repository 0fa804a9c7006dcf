// The store of telemetry, in terms of core types: batches of metric points and
// events written in one transaction, the latest value of each metric, the daily
// partitions, and the query routes' reads. Postgres implements it
// (make_postgres_telemetry_store, telemetry_store.cpp); this header carries no
// libpqxx, so the service that drives it never compiles against the database.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/telemetry.hpp"

namespace maestra::store {

class ConnectionPool;

// The latest value of one metric of one device.
struct LatestValue {
  core::DeviceId device;
  std::string name;
  double value = 0;
  std::optional<std::string> unit;
  core::TimePoint time;
};

struct MetricSample {
  std::string name;
  core::TimePoint time;
  double value = 0;
  std::optional<std::string> unit;
  std::optional<std::string> tags;  // JSON object text
};

// One time bucket of one metric, with every aggregate.
struct MetricBucket {
  std::string name;
  core::TimePoint time;  // the bucket's start
  double avg = 0, min = 0, max = 0, sum = 0;
  std::int64_t count = 0;
};

// Metric points in chunks as they arrived (one MQTT message, one HTTP body
// each): queued and handed to the store without being copied into one vector.
using MetricChunks = std::vector<std::vector<core::MetricPoint>>;

enum class TelemetryTable { metrics, events };
std::string_view to_string(TelemetryTable table);

class TelemetryStore {
 public:
  virtual ~TelemetryStore() = default;

  // One transaction: the points, the events, and the latest values (at most one
  // per device and name; an older time never replaces a newer stored one). The
  // partitions of every day they fall in must exist. `durable`: the commit
  // returns once it is on disk (an HTTP request waits for it); otherwise it may
  // return before (Postgres' synchronous_commit off for this transaction: a crash
  // of Postgres or of the machine, not of the service, can lose the last ~0.6 s).
  virtual core::Result<core::Done> write(const MetricChunks& metrics,
                                         const std::vector<core::EventRecord>& events,
                                         const std::vector<LatestValue>& latest, bool durable) = 0;
  virtual core::Result<std::vector<LatestValue>> load_latest() = 0;
  // Removes the latest values of devices that were deleted; returns how many devices.
  virtual core::Result<std::size_t> purge_deleted_latest() = 0;

  // The partition of `table` for the UTC day starting at `day`, if missing.
  virtual core::Result<core::Done> create_partition(TelemetryTable table, core::TimePoint day) = 0;
  // Partition names of `table` (all of them, including any not made by us).
  virtual core::Result<std::vector<std::string>> partitions(TelemetryTable table) = 0;
  virtual core::Result<core::Done> drop_partition(TelemetryTable table, core::TimePoint day) = 0;

  // Reads of the query routes, bounded by the query's limit.
  virtual core::Result<std::vector<MetricSample>> metric_points(const core::DeviceId& device,
                                                                const core::MetricQuery& q) = 0;
  virtual core::Result<std::vector<MetricBucket>> metric_buckets(const core::DeviceId& device,
                                                                 const core::MetricQuery& q) = 0;
  virtual core::Result<std::vector<core::EventRecord>> events(const core::DeviceId& device,
                                                              const core::EventQuery& q) = 0;
};

// The Postgres store, on connections of `pool` (whose connections prepare the
// embedded statements, DeviceStore::prepare_statements).
std::unique_ptr<TelemetryStore> make_postgres_telemetry_store(ConnectionPool& pool);

}  // namespace maestra::store
