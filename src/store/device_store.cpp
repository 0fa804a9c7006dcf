// The Store on Postgres: binds parameters to the statements of src/store/sql/
// (registration, reads, batched state writes, coalesced last_seen flushes,
// patches, deletion, start-up load, the status outbox) and reads their rows by
// column name. No SQL text lives here.
//
// A note on parameters: batches travel as Postgres array literals of uuids,
// booleans and epoch milliseconds (built here, no user text inside), unnested
// server-side, so a batch of any size is one statement and one round trip.
//
// A note on locking: the batched statements (transitions, last_seen flushes,
// outbox acks) run concurrently on different connections and touch overlapping
// rows. Each first locks its rows in id order (the `locked` CTE), so two batches
// never wait on each other in a cycle (no deadlocks).
#include "store/device_store.hpp"
#include "store/array_literal.hpp"
#include "store/guarded.hpp"

#include <stdexcept>
#include <type_traits>
#include <unordered_map>

namespace maestra::store {

using core::DeviceRecord;
using core::Error;
using core::ErrorKind;
using core::Json;

namespace {

constexpr const char* null = nullptr;  // a NULL parameter

std::int64_t to_ms(TimePoint t) { return t.time_since_epoch().count(); }
TimePoint from_ms(std::int64_t ms) { return TimePoint{core::Millis{ms}}; }

const char* opt(const std::optional<std::string>& value) { return value ? value->c_str() : nullptr; }

std::optional<std::string> json_text(const std::optional<Json>& value) {
  if (!value || value->is_null()) return std::nullopt;
  return value->dump();
}

std::optional<std::string> seconds_text(const std::optional<core::Seconds>& value) {
  if (!value) return std::nullopt;
  return std::to_string(value->count());
}

const std::string& statement_sql(const std::string& name) {
  for (const auto& s : embedded_statements())
    if (s.name == name) return s.sql;
  throw std::logic_error("no statement src/store/sql/" + name + ".sql");
}

// A result's fields by column name, each name looked up once per result rather
// than once per row (start-up reads a million rows). Names are string literals:
// the cache compares their addresses; a literal at another address is just
// looked up again.
class Columns {
 public:
  explicit Columns(const pqxx::result& r) : result_(r) {}
  pqxx::field operator()(const pqxx::row& row, const char* name) {
    for (const auto& [known, number] : numbers_)
      if (known == name) return row[number];
    numbers_.emplace_back(name, result_.column_number(name));
    return row[numbers_.back().second];
  }

 private:
  const pqxx::result& result_;
  std::vector<std::pair<const char*, pqxx::row::size_type>> numbers_;
};

// A device record (register.sql, find_devices.sql).
DeviceRecord read_record(const pqxx::row& row, Columns& col) {
  DeviceRecord r;
  r.id = *core::parse_device_id(col(row, "id").c_str());
  r.name = col(row, "name").as<std::string>();
  r.device_type = col(row, "device_type").as<std::string>();
  r.hardware_id = col(row, "hardware_id").as<std::string>();
  if (const auto f = col(row, "firmware_version"); !f.is_null()) r.firmware_version = f.as<std::string>();
  if (const auto f = col(row, "ip_address"); !f.is_null()) r.ip_address = f.as<std::string>();
  const auto location = col(row, "location"), metadata = col(row, "metadata");
  r.location = location.is_null() ? Json(nullptr) : Json::parse(location.c_str());
  r.metadata = metadata.is_null() ? Json(nullptr) : Json::parse(metadata.c_str());
  r.status = core::parse_status(col(row, "status").c_str()).value_or(core::Status::offline);
  r.last_seen = from_ms(col(row, "last_seen_ms").as<std::int64_t>());
  r.status_changed_at = from_ms(col(row, "status_changed_ms").as<std::int64_t>());
  r.created_at = from_ms(col(row, "created_ms").as<std::int64_t>());
  r.updated_at = from_ms(col(row, "updated_ms").as<std::int64_t>());
  if (const auto f = col(row, "offline_after"); !f.is_null()) r.offline_after = core::Seconds{f.as<std::int64_t>()};
  return r;
}

// A status document and its outbox seq (write_states.sql, unpublished.sql,
// all_statuses.sql, load_states.sql).
StoredStatus read_status(const pqxx::row& row, Columns& col) {
  StoredStatus s;
  auto& d = s.document;
  d.device_id = *core::parse_device_id(col(row, "id").c_str());
  d.name = col(row, "name").as<std::string>();
  d.device_type = col(row, "device_type").as<std::string>();
  d.hardware_id = col(row, "hardware_id").as<std::string>();
  d.status = core::parse_status(col(row, "status").c_str()).value_or(core::Status::offline);
  d.last_seen = from_ms(col(row, "last_seen_ms").as<std::int64_t>());
  d.changed_at = from_ms(col(row, "status_changed_ms").as<std::int64_t>());
  d.reason = core::parse_reason(col(row, "status_reason").c_str()).value_or(core::Reason::admin);
  s.seq = col(row, "status_seq").as<std::int64_t>();
  return s;
}

// Every row of a result, read by `read` (read_record or read_status).
template <class Read>
auto read_all(const pqxx::result& rows, Read read) {
  Columns col(rows);
  std::vector<std::invoke_result_t<Read, const pqxx::row&, Columns&>> out;
  out.reserve(rows.size());
  for (const auto& row : rows) out.push_back(read(row, col));
  return out;
}

// Devices by id, or by hardware_id (find_devices.sql with one filter).
pqxx::result find_by_id(pqxx::transaction_base& tx, const DeviceId& id) {
  return tx.exec_prepared("find_devices", id.to_string(), null, null, null, null, null, 1, 0, null);
}

// write_states.sql over a batch. A write without a transition sets updated_at to
// `untransitioned_at` when given (PATCH: now), else to the device's last_seen.
// Returns the stored transitions in batch order.
std::vector<StoredStatus> exec_write_states(pqxx::transaction_base& tx, const std::vector<StateWrite>& batch,
                                            std::optional<TimePoint> untransitioned_at) {
  ArrayLiteral ids, connected, reported_error, maintenance, status, last_seen, reason, from, at, offline_after, ord,
      session;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const auto& w = batch[i];
    ids.add(w.id.to_string());
    connected.add_bool(w.state.connected);
    reported_error.add_bool(w.state.reported_error);
    maintenance.add_bool(w.state.maintenance);
    status.add(core::to_string(w.state.status()));
    last_seen.add(to_ms(w.state.last_seen));
    if (w.transition) {
      reason.add(core::to_string(w.transition->reason));
      if (w.transition->from)
        from.add(core::to_string(*w.transition->from));
      else
        from.add_null();
      at.add(to_ms(w.transition->at));
    } else {
      reason.add_null();
      from.add_null();
      at.add(to_ms(untransitioned_at.value_or(w.state.last_seen)));
    }
    if (w.state.offline_after)
      offline_after.add(w.state.offline_after->count());
    else
      offline_after.add_null();
    ord.add(static_cast<std::int64_t>(i));
    session.add(w.state.presence_session);
  }
  const auto rows =
      tx.exec_prepared("write_states", ids.str(), connected.str(), reported_error.str(), maintenance.str(),
                       status.str(), last_seen.str(), reason.str(), from.str(), at.str(), offline_after.str(),
                       ord.str(), session.str());
  return read_all(rows, read_status);
}

}  // namespace

template <class Fn>
auto DeviceStore::guarded(const char* what, Fn&& fn) -> decltype(fn(std::declval<pqxx::connection&>())) {
  return store::guarded(pool_, what, std::forward<Fn>(fn));
}

void DeviceStore::prepare_statements(pqxx::connection& c) {
  // The batched statements take arrays whose size varies from 1 to tens of
  // thousands: a generic plan (chosen after five executions) turns the id joins
  // into nested loops, quadratic in the batch size. Plan each execution (which
  // also folds find_devices.sql's absent filters away).
  c.set_variable("plan_cache_mode", "force_custom_plan");
  for (const auto& s : embedded_statements()) c.prepare(s.name, s.sql);
}

Result<DeviceRecord> DeviceStore::register_device(const core::Registration& r, TimePoint now,
                                                  const std::optional<StoredSecret>& secret) {
  return guarded("register", [&](pqxx::connection& c) -> Result<DeviceRecord> {
    for (int attempt = 0; attempt < 3; ++attempt) {
      pqxx::work tx(c);
      auto rows = tx.exec_prepared("register", r.name, r.device_type, r.hardware_id, opt(r.firmware_version),
                                   opt(r.ip_address), opt(json_text(r.location)), opt(json_text(r.metadata)),
                                   to_ms(now), opt(seconds_text(r.offline_after)));
      if (!rows.empty()) {
        auto record = read_all(rows, read_record).front();
        if (secret)
          tx.exec_prepared("insert_credential", record.id.to_string(), secret->salt, secret->hash, to_ms(now));
        tx.commit();
        return record;
      }
      if (!tx.exec_prepared("is_blocked", r.hardware_id).empty())
        return Error{ErrorKind::forbidden, "hardware_id", "this hardware_id is blocked from registering"};
      auto existing = tx.exec_prepared("id_by_hardware_id", r.hardware_id);
      tx.commit();
      if (!existing.empty())
        return Error{ErrorKind::conflict, "hardware_id", "a device with this hardware_id is already registered",
                     existing[0]["id"].as<std::string>()};
      // Deleted between the insert and the look-up: try again.
    }
    return Error{ErrorKind::unavailable, "", "registration kept racing with deletion"};
  });
}

Result<DeviceRecord> DeviceStore::get(const DeviceId& id) {
  return guarded("get", [&](pqxx::connection& c) -> Result<DeviceRecord> {
    pqxx::read_transaction tx(c);
    auto records = read_all(find_by_id(tx, id), read_record);
    if (records.empty()) return Error{ErrorKind::not_found, "", "no device with id " + id.to_string()};
    return records.front();
  });
}

Result<DeviceRecord> DeviceStore::get_by_hardware_id(const std::string& hardware_id) {
  return guarded("get_by_hardware_id", [&](pqxx::connection& c) -> Result<DeviceRecord> {
    pqxx::read_transaction tx(c);
    auto records =
        read_all(tx.exec_prepared("find_devices", null, null, null, hardware_id, null, null, 1, 0, null), read_record);
    if (records.empty()) return Error{ErrorKind::not_found, "hardware_id", "no device with this hardware_id"};
    return records.front();
  });
}

Result<core::Done> DeviceStore::list(const ListQuery& q,
                                     const std::function<bool(const std::vector<DeviceRecord>&)>& page) {
  return guarded("list", [&](pqxx::connection& c) -> Result<core::Done> {
    pqxx::read_transaction tx(c);
    constexpr std::int64_t page_size = 1000;
    std::int64_t remaining = q.limit.value_or(INT64_MAX);
    std::int64_t offset = q.offset;
    // Keyset: rows after (created_at, id) of the previous page. The cursor is
    // created_at exactly as stored (microseconds): the record's millisecond
    // created_at would repeat rows across a page boundary.
    std::optional<std::string> after_created_at, after_id, among;
    if (q.among) {
      ArrayLiteral ids;
      for (const auto& id : *q.among) ids.add(id.to_string());
      among = ids.str();
    }
    while (remaining > 0) {
      const std::int64_t n = std::min(remaining, page_size);
      auto rows = tx.exec_prepared("find_devices", null, opt(q.status), opt(q.device_type), opt(q.hardware_id),
                                   opt(after_created_at), opt(after_id), n, offset, opt(among));
      offset = 0;
      const auto records = read_all(rows, read_record);
      if (!records.empty() && !page(records)) break;  // the caller stopped (its client went away)
      if (static_cast<std::int64_t>(rows.size()) < n) break;
      remaining -= n;
      const auto last = rows[rows.size() - 1];
      after_created_at = last["page_cursor"].as<std::string>();
      after_id = last["id"].as<std::string>();
    }
    return core::Done{};
  });
}

Result<std::vector<HistoryEntry>> DeviceStore::history(const DeviceId& id, int limit) {
  return guarded("history", [&](pqxx::connection& c) -> Result<std::vector<HistoryEntry>> {
    pqxx::read_transaction tx(c);
    std::vector<HistoryEntry> entries;
    for (const auto& row : tx.exec_prepared("history", id.to_string(), limit)) {
      HistoryEntry e;
      if (!row["from_status"].is_null()) e.from = core::parse_status(row["from_status"].c_str());
      e.to = core::parse_status(row["to_status"].c_str()).value_or(core::Status::offline);
      e.reason = row["reason"].as<std::string>();
      e.at = from_ms(row["at_ms"].as<std::int64_t>());
      entries.push_back(std::move(e));
    }
    return entries;
  });
}

Result<std::string> DeviceStore::remove(const DeviceId& id) {
  return guarded("delete", [&](pqxx::connection& c) -> Result<std::string> {
    pqxx::work tx(c);
    auto rows = tx.exec_prepared("delete", id.to_string());
    if (!rows.empty()) tx.exec_prepared("delete_history", id.to_string());
    tx.commit();
    if (rows.empty()) return Error{ErrorKind::not_found, "", "no device with id " + id.to_string()};
    return rows[0]["hardware_id"].as<std::string>();
  });
}

Result<std::vector<StoredStatus>> DeviceStore::write_states(const std::vector<StateWrite>& batch) {
  if (batch.empty()) return std::vector<StoredStatus>{};
  return guarded("write_states", [&](pqxx::connection& c) -> Result<std::vector<StoredStatus>> {
    pqxx::work tx(c);
    auto stored = exec_write_states(tx, batch, std::nullopt);
    tx.commit();
    return stored;
  });
}

Result<core::Done> DeviceStore::flush_last_seen(const std::vector<SeenUpdate>& seen) {
  if (seen.empty()) return core::Done{};
  return guarded("flush_last_seen", [&](pqxx::connection& c) -> Result<core::Done> {
    ArrayLiteral ids, ms, session, firmware, ip, metadata;
    for (const auto& s : seen) {
      ids.add(s.id.to_string());
      ms.add(to_ms(s.at));
      session.add(s.presence_session);
      firmware.add_text(s.firmware_version);
      ip.add_text(s.ip_address);
      metadata.add_text(json_text(s.metadata));
    }
    pqxx::work tx(c);
    tx.exec_prepared("flush_last_seen", ids.str(), ms.str(), session.str(), firmware.str(), ip.str(), metadata.str());
    tx.commit();
    return core::Done{};
  });
}

// The attributes through patch_attributes.sql, the state change and its history
// row through write_states.sql (the owner's batches' statement), then the record
// as stored; one transaction.
Result<std::pair<DeviceRecord, std::optional<StoredStatus>>> DeviceStore::apply_patch(
    const DeviceId& id, const core::DevicePatch& p, const std::optional<StateWrite>& state, TimePoint now) {
  using Out = std::pair<DeviceRecord, std::optional<StoredStatus>>;
  return guarded("patch", [&](pqxx::connection& c) -> Result<Out> {
    pqxx::work tx(c);
    auto updated = tx.exec_prepared(
        "patch_attributes", id.to_string(), p.name.present, opt(p.name.value), p.firmware_version.present,
        opt(p.firmware_version.value), p.ip_address.present, opt(p.ip_address.value), p.location.present,
        opt(json_text(p.location.value)), p.metadata.present, opt(json_text(p.metadata.value)),
        p.offline_after.present, opt(seconds_text(p.offline_after.value)), to_ms(now));
    if (updated.empty()) return Error{ErrorKind::not_found, "", "no device with id " + id.to_string()};
    std::optional<StoredStatus> transition;
    if (state) {
      auto stored = exec_write_states(tx, {*state}, now);
      if (!stored.empty()) transition = stored.front();
    }
    auto records = read_all(find_by_id(tx, id), read_record);
    tx.commit();
    return Out{records.at(0), transition};
  });
}

Result<std::size_t> DeviceStore::load_states(const std::function<void(const std::vector<LoadedDevice>&)>& page) {
  return guarded("load_states", [&](pqxx::connection& c) -> Result<std::size_t> {
    pqxx::work tx(c);
    pqxx::icursorstream cursor(tx, statement_sql("load_states"), "load_states", 50000);
    std::size_t total = 0;
    for (pqxx::result rows; cursor >> rows;) {
      Columns col(rows);
      std::vector<LoadedDevice> devices;
      devices.reserve(rows.size());
      for (const auto& row : rows) {
        LoadedDevice d;
        d.status = read_status(row, col);
        d.id = d.status.document.device_id;
        d.state.connected = col(row, "connected").as<bool>();
        d.state.reported_error = col(row, "reported_error").as<bool>();
        d.state.maintenance = col(row, "maintenance").as<bool>();
        d.state.last_seen = d.status.document.last_seen;
        if (const auto f = col(row, "offline_after"); !f.is_null())
          d.state.offline_after = core::Seconds{f.as<std::int64_t>()};
        d.state.presence_session = col(row, "presence_session").as<std::int64_t>();
        devices.push_back(d);
      }
      total += devices.size();
      page(devices);
    }
    tx.commit();
    return total;
  });
}

Result<std::vector<StoredStatus>> DeviceStore::unpublished(std::size_t limit) {
  return guarded("unpublished", [&](pqxx::connection& c) -> Result<std::vector<StoredStatus>> {
    pqxx::read_transaction tx(c);
    return read_all(tx.exec_prepared("unpublished", static_cast<std::int64_t>(limit)), read_status);
  });
}

Result<std::vector<StoredStatus>> DeviceStore::all_statuses() {
  return guarded("all_statuses", [&](pqxx::connection& c) -> Result<std::vector<StoredStatus>> {
    pqxx::read_transaction tx(c);
    return read_all(tx.exec_prepared("all_statuses"), read_status);
  });
}

Result<std::vector<DeviceId>> DeviceStore::pending_clears(std::size_t limit) {
  return guarded("pending_clears", [&](pqxx::connection& c) -> Result<std::vector<DeviceId>> {
    pqxx::read_transaction tx(c);
    std::vector<DeviceId> out;
    for (const auto& row : tx.exec_prepared("pending_clears", static_cast<std::int64_t>(limit)))
      if (auto id = core::parse_device_id(row["device_id"].c_str())) out.push_back(*id);
    return out;
  });
}

Result<core::Done> DeviceStore::clears_done(const std::vector<DeviceId>& cleared) {
  if (cleared.empty()) return core::Done{};
  return guarded("clears_done", [&](pqxx::connection& c) -> Result<core::Done> {
    ArrayLiteral ids;
    for (const auto& id : cleared) ids.add(id.to_string());
    pqxx::work tx(c);
    tx.exec_prepared("clears_done", ids.str());
    tx.commit();
    return core::Done{};
  });
}

Result<core::Done> DeviceStore::mark_published(const std::vector<std::pair<DeviceId, std::int64_t>>& acked) {
  if (acked.empty()) return core::Done{};
  // One row per device (an UPDATE ... FROM applies only one of duplicate ids): the highest seq.
  std::unordered_map<DeviceId, std::int64_t, core::DeviceIdHash> highest;
  for (const auto& [id, seq] : acked) {
    auto& slot = highest[id];
    slot = std::max(slot, seq);
  }
  return guarded("mark_published", [&](pqxx::connection& c) -> Result<core::Done> {
    ArrayLiteral ids, seqs;
    for (const auto& [id, seq] : highest) {
      ids.add(id.to_string());
      seqs.add(seq);
    }
    pqxx::work tx(c);
    tx.exec_prepared("mark_published", ids.str(), seqs.str());
    tx.commit();
    return core::Done{};
  });
}

Result<std::optional<StoredSecret>> DeviceStore::credential(const DeviceId& id) {
  return guarded("credential", [&](pqxx::connection& c) -> Result<std::optional<StoredSecret>> {
    pqxx::read_transaction tx(c);
    auto rows = tx.exec_prepared("credential", id.to_string());
    if (rows.empty()) return std::optional<StoredSecret>{};
    return std::optional<StoredSecret>{
        StoredSecret{rows[0]["salt"].as<std::string>(), rows[0]["password_hash"].as<std::string>()}};
  });
}

Result<core::Done> DeviceStore::set_credential(const DeviceId& id, const StoredSecret& secret, TimePoint now) {
  return guarded("set_credential", [&](pqxx::connection& c) -> Result<core::Done> {
    pqxx::work tx(c);
    tx.exec_prepared("set_credential", id.to_string(), secret.salt, secret.hash, to_ms(now));
    tx.commit();
    return core::Done{};
  });
}

Result<core::Done> DeviceStore::block_hardware_id(const std::string& hardware_id,
                                                  const std::optional<std::string>& reason, TimePoint now) {
  return guarded("block", [&](pqxx::connection& c) -> Result<core::Done> {
    pqxx::work tx(c);
    tx.exec_prepared("block_hardware_id", hardware_id, opt(reason), to_ms(now));
    tx.commit();
    return core::Done{};
  });
}

Result<core::Done> DeviceStore::unblock_hardware_id(const std::string& hardware_id) {
  return guarded("unblock", [&](pqxx::connection& c) -> Result<core::Done> {
    pqxx::work tx(c);
    auto rows = tx.exec_prepared("unblock_hardware_id", hardware_id);
    tx.commit();
    if (rows.empty()) return Error{ErrorKind::not_found, "hardware_id", "this hardware_id is not blocked"};
    return core::Done{};
  });
}

Result<std::vector<BlockedHardwareId>> DeviceStore::blocked_hardware_ids() {
  return guarded("blocked", [&](pqxx::connection& c) -> Result<std::vector<BlockedHardwareId>> {
    pqxx::read_transaction tx(c);
    std::vector<BlockedHardwareId> out;
    for (const auto& row : tx.exec_prepared("blocked_hardware_ids")) {
      BlockedHardwareId b;
      b.hardware_id = row["hardware_id"].as<std::string>();
      if (!row["reason"].is_null()) b.reason = row["reason"].as<std::string>();
      b.blocked_at = from_ms(row["blocked_ms"].as<std::int64_t>());
      out.push_back(std::move(b));
    }
    return out;
  });
}

Result<core::Done> DeviceStore::ping() {
  return guarded("ping", [&](pqxx::connection& c) -> Result<core::Done> {
    pqxx::nontransaction tx(c);
    tx.exec_prepared("ping");
    return core::Done{};
  });
}

}  // namespace maestra::store
