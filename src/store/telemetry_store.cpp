// The TelemetryStore on Postgres: binds the statements of src/store/sql/telemetry_*.sql
// (the points by COPY, events through unnest of array parameters, the latest-value upsert,
// partition creation and dropping through the functions of schema/008, the
// query reads) and reads their rows. It decides nothing; no SQL text lives here
// (the COPY's table and columns are named in copy_metrics).
//
// A note on metric names: each name is stored once (metric_names); the writer
// keeps the ids it has seen in memory and asks only for new names, so a batch is
// normally two statements in one transaction (points, latest values) plus events.
//
// A note on durability: a transaction holding only MQTT telemetry commits with
// synchronous_commit off (SET LOCAL: this transaction only), so the writer does
// not wait for the WAL flush; one holding an HTTP request's rows waits for it,
// and that flush also covers every earlier asynchronous commit.
#include "store/telemetry_store.hpp"

#include <charconv>
#include <cstdio>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

#include "store/connection_pool.hpp"
#include "store/guarded.hpp"

#include <pqxx/tablewriter>

namespace maestra::store {

using core::Done;
using core::Error;
using core::ErrorKind;
using core::Result;

std::string_view to_string(TelemetryTable table) { return table == TelemetryTable::metrics ? "metrics" : "events"; }

namespace {

std::int64_t to_ms(core::TimePoint t) { return t.time_since_epoch().count(); }
core::TimePoint from_ms(std::int64_t ms) { return core::TimePoint{core::Millis{ms}}; }

// A Postgres array literal; text elements are quoted and escaped.
class Array {
 public:
  void add_raw(std::string_view element) {
    if (text_.size() > 1) text_ += ',';
    text_ += element;
  }
  void add(std::int64_t n) { add_raw(std::to_string(n)); }
  void add(double d) {  // the shortest text that reads back as the same double
    char buf[32];
    const auto end = std::to_chars(buf, buf + sizeof buf, d).ptr;
    add_raw(std::string_view(buf, static_cast<std::size_t>(end - buf)));
  }
  void add_text(std::string_view value) {
    if (text_.size() > 1) text_ += ',';
    text_ += '"';
    for (const char ch : value) {
      if (ch == '"' || ch == '\\') text_ += '\\';
      text_ += ch;
    }
    text_ += '"';
  }
  void add_text(const std::optional<std::string>& value) {
    if (value) add_text(std::string_view(*value));
    else add_raw("NULL");
  }
  std::string str() const { return text_ + "}"; }
  void reserve(std::size_t n) { text_.reserve(n); }

 private:
  std::string text_ = "{";
};

std::string day_text(core::TimePoint day) {
  const std::chrono::year_month_day ymd{std::chrono::floor<std::chrono::days>(day)};
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                static_cast<unsigned>(ymd.day()));
  return buf;
}

void append_number(std::string& out, std::int64_t n) {
  char buf[24];
  out.append(buf, static_cast<std::size_t>(std::to_chars(buf, buf + sizeof buf, n).ptr - buf));
}

// COPY's text format: \N for NULL; backslash, tab, newline and carriage return escaped.
void append_copy_text(std::string& out, const std::optional<std::string>& value) {
  if (!value) {
    out += "\\N";
    return;
  }
  for (const char ch : *value) {
    switch (ch) {
      case '\\': out += "\\\\"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      default: out += ch;
    }
  }
}

// "2026-11-29 23:05:01.123+00": a timestamptz as COPY reads it, in UTC.
std::string copy_time_text(core::TimePoint t) {
  const auto day = std::chrono::floor<std::chrono::days>(t);
  const std::chrono::year_month_day ymd{day};
  const auto ms = (t - day).count();  // milliseconds into the day
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u %02lld:%02lld:%02lld.%03lld+00", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<long long>(ms / 3600000), static_cast<long long>(ms / 60000 % 60),
                static_cast<long long>(ms / 1000 % 60), static_cast<long long>(ms % 1000));
  return buf;
}

std::optional<std::string> optional_text(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<std::string>();
}


class PostgresTelemetryStore final : public TelemetryStore {
 public:
  explicit PostgresTelemetryStore(ConnectionPool& pool) : pool_(pool) {}

  Result<Done> write(const MetricChunks& metrics, const std::vector<core::EventRecord>& events,
                     const std::vector<LatestValue>& latest, bool durable) override {
    return guarded(pool_, "telemetry_write", [&](pqxx::connection& c) -> Result<Done> {
      try {
        return write_batch(c, metrics, events, latest, durable);
      } catch (...) {
        name_ids_.clear();  // names this transaction added were rolled back with it
        throw;
      }
    });
  }

  Result<Done> write_batch(pqxx::connection& c, const MetricChunks& metrics,
                           const std::vector<core::EventRecord>& events, const std::vector<LatestValue>& latest,
                           bool durable) {
    {
      pqxx::work tx(c);
      if (!durable) tx.exec_prepared("telemetry_async_commit");
      if (!metrics.empty() || !latest.empty()) resolve_names(tx, metrics, latest);
      if (!metrics.empty()) copy_metrics(tx, metrics);
      if (!latest.empty()) {
        Array device, name, time, value, unit;
        for (const auto& l : latest) {
          device.add_raw(l.device.to_string());
          name.add(static_cast<std::int64_t>(name_ids_.at(l.name)));
          time.add(to_ms(l.time));
          value.add(l.value);
          unit.add_text(l.unit);
        }
        tx.exec_prepared("telemetry_upsert_latest", device.str(), name.str(), time.str(), value.str(), unit.str());
      }
      if (!events.empty()) {
        Array device, time, type, severity, message, data;
        for (const auto& e : events) {
          device.add_raw(e.device.to_string());
          time.add(to_ms(e.time));
          type.add_text(std::string_view(e.event_type));
          severity.add_raw(core::to_string(e.severity));
          message.add_text(e.message);
          data.add_text(e.data);
        }
        tx.exec_prepared("telemetry_insert_events", device.str(), time.str(), type.str(), severity.str(),
                         message.str(), data.str());
      }
      tx.commit();
      return Done{};
    }
  }

  Result<std::vector<LatestValue>> load_latest() override {
    return guarded(pool_, "telemetry_load_latest", [&](pqxx::connection& c) -> Result<std::vector<LatestValue>> {
      pqxx::read_transaction tx(c);
      const auto rows = tx.exec_prepared("telemetry_load_latest");
      std::vector<LatestValue> out;
      out.reserve(rows.size());
      for (const auto& row : rows) {
        const auto id = core::parse_device_id(row["device_id"].c_str());
        if (!id) continue;
        out.push_back({*id, row["name"].as<std::string>(), row["value"].as<double>(), optional_text(row["unit"]),
                       from_ms(row["ms"].as<std::int64_t>())});
      }
      return out;
    });
  }

  Result<std::size_t> purge_deleted_latest() override {
    return guarded(pool_, "telemetry_purge_latest", [&](pqxx::connection& c) -> Result<std::size_t> {
      pqxx::work tx(c);
      const auto rows = tx.exec_prepared("telemetry_purge_latest");
      tx.commit();
      return rows.empty() ? std::size_t{0} : rows[0]["devices"].as<std::size_t>();
    });
  }

  Result<Done> create_partition(TelemetryTable table, core::TimePoint day) override {
    return guarded(pool_, "telemetry_create_partition", [&](pqxx::connection& c) -> Result<Done> {
      pqxx::work tx(c);
      tx.exec_prepared("telemetry_create_partition", std::string(to_string(table)), day_text(day));
      tx.commit();
      return Done{};
    });
  }

  Result<std::vector<std::string>> partitions(TelemetryTable table) override {
    return guarded(pool_, "telemetry_partitions", [&](pqxx::connection& c) -> Result<std::vector<std::string>> {
      pqxx::read_transaction tx(c);
      std::vector<std::string> out;
      for (const auto& row : tx.exec_prepared("telemetry_partitions", std::string(to_string(table))))
        out.push_back(row["name"].as<std::string>());
      return out;
    });
  }

  Result<Done> drop_partition(TelemetryTable table, core::TimePoint day) override {
    return guarded(pool_, "telemetry_drop_partition", [&](pqxx::connection& c) -> Result<Done> {
      pqxx::work tx(c);
      tx.exec_prepared("telemetry_drop_partition", std::string(to_string(table)), day_text(day));
      tx.commit();
      return Done{};
    });
  }

  Result<std::vector<MetricSample>> metric_points(const core::DeviceId& device, const core::MetricQuery& q) override {
    return guarded(pool_, "telemetry_metric_points", [&](pqxx::connection& c) -> Result<std::vector<MetricSample>> {
      pqxx::read_transaction tx(c);
      const char* name = q.name ? q.name->c_str() : nullptr;
      const auto rows = tx.exec_prepared("telemetry_metric_points", device.to_string(), name, to_ms(q.from),
                                         to_ms(q.to), q.limit);
      std::vector<MetricSample> out;
      out.reserve(rows.size());
      for (const auto& row : rows)
        out.push_back({row["name"].as<std::string>(), from_ms(row["ms"].as<std::int64_t>()), row["value"].as<double>(),
                       optional_text(row["unit"]), optional_text(row["tags"])});
      return out;
    });
  }

  Result<std::vector<MetricBucket>> metric_buckets(const core::DeviceId& device, const core::MetricQuery& q) override {
    return guarded(pool_, "telemetry_metric_buckets", [&](pqxx::connection& c) -> Result<std::vector<MetricBucket>> {
      pqxx::read_transaction tx(c);
      const char* name = q.name ? q.name->c_str() : nullptr;
      const auto rows = tx.exec_prepared("telemetry_metric_buckets", device.to_string(), name, to_ms(q.from),
                                         to_ms(q.to), static_cast<std::int64_t>(q.bucket->count()), q.limit);
      std::vector<MetricBucket> out;
      out.reserve(rows.size());
      for (const auto& row : rows)
        out.push_back({row["name"].as<std::string>(), from_ms(row["ms"].as<std::int64_t>()), row["avg"].as<double>(),
                       row["min"].as<double>(), row["max"].as<double>(), row["sum"].as<double>(),
                       row["count"].as<std::int64_t>()});
      return out;
    });
  }

  Result<std::vector<core::EventRecord>> events(const core::DeviceId& device, const core::EventQuery& q) override {
    return guarded(pool_, "telemetry_events", [&](pqxx::connection& c) -> Result<std::vector<core::EventRecord>> {
      pqxx::read_transaction tx(c);
      const char* type = q.event_type ? q.event_type->c_str() : nullptr;
      const std::string severity = q.severity ? std::string(core::to_string(*q.severity)) : std::string();
      const auto rows = tx.exec_prepared("telemetry_events", device.to_string(), to_ms(q.from), to_ms(q.to), type,
                                         q.severity ? severity.c_str() : nullptr, q.limit);
      std::vector<core::EventRecord> out;
      out.reserve(rows.size());
      for (const auto& row : rows) {
        core::EventRecord e;
        e.device = device;
        e.time = from_ms(row["ms"].as<std::int64_t>());
        e.event_type = row["event_type"].as<std::string>();
        e.severity = core::parse_severity(row["severity"].c_str()).value_or(core::Severity::info);
        e.message = optional_text(row["message"]);
        e.data = optional_text(row["data"]);
        out.push_back(std::move(e));
      }
      return out;
    });
  }

 private:
  // The points, by COPY (text format) into metrics: Postgres routes the rows to
  // their partitions and inserts them in multi-row batches, several times
  // cheaper in its CPU than INSERT ... SELECT FROM unnest of the same rows (on
  // this 2-core machine that CPU is shared with the broker and the service).
  // The whole batch goes as one block of lines.
  void copy_metrics(pqxx::work& tx, const MetricChunks& metrics) {
    std::size_t rows = 0;
    for (const auto& chunk : metrics) rows += chunk.size();
    std::string lines;
    lines.reserve(rows * 96);
    std::int64_t last_ms = std::numeric_limits<std::int64_t>::min();
    std::string time_text;
    for (const auto& chunk : metrics)
      for (const auto& p : chunk) {
        if (!lines.empty()) lines += '\n';
        lines += p.device.to_string();
        lines += '\t';
        append_number(lines, static_cast<std::int64_t>(name_ids_.at(p.name)));
        lines += '\t';
        if (const auto ms = to_ms(p.time); ms != last_ms) {  // the points of one message share their time
          time_text = copy_time_text(p.time);
          last_ms = ms;
        }
        lines += time_text;
        lines += '\t';
        char buf[32];
        lines.append(buf, static_cast<std::size_t>(std::to_chars(buf, buf + sizeof buf, p.value).ptr - buf));
        lines += '\t';
        append_copy_text(lines, p.unit);
        lines += '\t';
        append_copy_text(lines, p.tags);
      }
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    // libpqxx 6.4's stream_to offers no raw lines; tablewriter does (deprecated there, not gone).
    const std::vector<std::string> columns{"device_id", "name_id", "time", "value", "unit", "tags"};
    pqxx::tablewriter copy(tx, "metrics", columns.begin(), columns.end());
    copy.write_raw_line(lines);
    copy.complete();
#pragma GCC diagnostic pop
  }

  // Fills name_ids_ with every name of the batch (adding new names).
  void resolve_names(pqxx::work& tx, const MetricChunks& metrics,
                     const std::vector<LatestValue>& latest) {
    Array missing;
    bool any = false;
    auto need = [&](const std::string& name) {
      if (name_ids_.count(name)) return;
      name_ids_.emplace(name, -1);  // asked once per batch
      missing.add_text(std::string_view(name));
      any = true;
    };
    for (const auto& chunk : metrics)
      for (const auto& p : chunk) need(p.name);
    for (const auto& l : latest) need(l.name);
    if (!any) return;
    for (const auto& row : tx.exec_prepared("telemetry_metric_names", missing.str()))
      name_ids_[row["name"].as<std::string>()] = row["id"].as<int>();
  }

  ConnectionPool& pool_;
  // Metric name -> id. Only the writer thread calls write(); after a failed
  // write the whole map is asked for again (its new names were rolled back).
  std::unordered_map<std::string, int> name_ids_;
};

}  // namespace

std::unique_ptr<TelemetryStore> make_postgres_telemetry_store(ConnectionPool& pool) {
  return std::make_unique<PostgresTelemetryStore>(pool);
}

}  // namespace maestra::store
