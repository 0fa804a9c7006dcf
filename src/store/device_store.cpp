// SQL of the registry: registration, reads, batched state writes, coalesced
// last_seen flushes, patches, deletion, start-up load and the status outbox.
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

#include <unordered_map>

namespace maestra::store {

using core::DeviceRecord;
using core::Error;
using core::ErrorKind;
using core::Json;

namespace {

constexpr const char* record_columns =
    "id::text, name, device_type, hardware_id, firmware_version, ip_address, location::text, metadata::text, "
    "status, (extract(epoch from last_seen) * 1000)::bigint, "
    "(extract(epoch from status_changed_at) * 1000)::bigint, (extract(epoch from created_at) * 1000)::bigint, "
    "(extract(epoch from updated_at) * 1000)::bigint, offline_after";

std::int64_t to_ms(TimePoint t) { return t.time_since_epoch().count(); }
TimePoint from_ms(std::int64_t ms) { return TimePoint{core::Millis{ms}}; }

const char* opt(const std::optional<std::string>& value) { return value ? value->c_str() : nullptr; }

std::optional<std::string> json_text(const Json& value) {
  if (value.is_null()) return std::nullopt;
  return value.dump();
}

DeviceRecord to_record(const pqxx::row& row) {
  DeviceRecord r;
  r.id = *core::parse_device_id(row[0].c_str());
  r.name = row[1].as<std::string>();
  r.device_type = row[2].as<std::string>();
  r.hardware_id = row[3].as<std::string>();
  if (!row[4].is_null()) r.firmware_version = row[4].as<std::string>();
  if (!row[5].is_null()) r.ip_address = row[5].as<std::string>();
  r.location = row[6].is_null() ? Json(nullptr) : Json::parse(row[6].c_str());
  r.metadata = row[7].is_null() ? Json(nullptr) : Json::parse(row[7].c_str());
  r.status = core::parse_status(row[8].c_str()).value_or(core::Status::offline);
  r.last_seen = from_ms(row[9].as<std::int64_t>());
  r.status_changed_at = from_ms(row[10].as<std::int64_t>());
  r.created_at = from_ms(row[11].as<std::int64_t>());
  r.updated_at = from_ms(row[12].as<std::int64_t>());
  if (!row[13].is_null()) r.offline_after = core::Seconds{row[13].as<std::int64_t>()};
  return r;
}

// Array literals. A uuid, boolean, integer or one of our fixed status/reason
// words needs no quoting; free text (add_text) is quoted and escaped.
class ArrayLiteral {
 public:
  void add(std::string_view element) {
    text_ += text_.size() > 1 ? "," : "";
    text_ += element;
  }
  void add(std::int64_t n) { add(std::string_view(std::to_string(n))); }
  void add_bool(bool b) { add(std::string_view(b ? "t" : "f")); }
  void add_null() { add(std::string_view("NULL")); }
  void add_text(const std::optional<std::string>& value) {
    if (!value) return add_null();
    std::string quoted = "\"";
    for (const char ch : *value) {
      if (ch == '"' || ch == '\\') quoted += '\\';
      quoted += ch;
    }
    add(std::string_view(quoted + "\""));
  }
  std::string str() const { return text_ + "}"; }

 private:
  std::string text_ = "{";
};

}  // namespace

template <class Fn>
auto DeviceStore::guarded(const char* what, Fn&& fn) -> decltype(fn(std::declval<pqxx::connection&>())) {
  try {
    auto lease = pool_.acquire();
    try {
      return fn(*lease);
    } catch (const pqxx::broken_connection&) {
      lease.discard();
      throw;
    } catch (const pqxx::in_doubt_error&) {
      lease.discard();
      throw;
    }
  } catch (const pqxx::broken_connection& e) {
    return Error{ErrorKind::unavailable, "", std::string(what) + ": database connection lost: " + e.what()};
  } catch (const pqxx::in_doubt_error& e) {
    return Error{ErrorKind::unavailable, "", std::string(what) + ": database connection lost mid-commit: " + e.what()};
  } catch (const pqxx::sql_error& e) {
    // Only a refused or ending connection is "unavailable" (SQLSTATE class 08,
    // admin/crash shutdown, cannot connect now, too many connections); any
    // other SQL error is a bug or bad data: internal, logged by the caller.
    const std::string state = e.sqlstate();
    const bool down = state.rfind("08", 0) == 0 || state == "57P01" || state == "57P02" || state == "57P03" ||
                      state == "53300";
    return Error{down ? ErrorKind::unavailable : ErrorKind::internal, "",
                 std::string(what) + ": database error " + state + ": " + e.what()};
  } catch (const PoolTimeout& e) {
    return Error{ErrorKind::unavailable, "", std::string(what) + ": " + e.what()};
  } catch (const std::exception& e) {
    return Error{ErrorKind::internal, "", std::string(what) + ": " + e.what()};
  }
}

void DeviceStore::prepare_statements(pqxx::connection& c) {
  // The batched statements take arrays whose size varies from 1 to tens of
  // thousands: a generic plan (chosen after five executions) turns the id joins
  // into nested loops, quadratic in the batch size. Plan each execution.
  c.set_variable("plan_cache_mode", "force_custom_plan");
  c.prepare("register",
            std::string("WITH ins AS ("
                        " INSERT INTO devices (name, device_type, hardware_id, firmware_version, ip_address,"
                        "  location, metadata, status, connected, last_seen, status_changed_at, status_reason,"
                        "  offline_after, created_at, updated_at)"
                        " SELECT $1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, 'online', true,"
                        "  to_timestamp($8::bigint / 1000.0), to_timestamp($8::bigint / 1000.0), 'registered', $9,"
                        "  to_timestamp($8::bigint / 1000.0), to_timestamp($8::bigint / 1000.0)"
                        " WHERE NOT EXISTS (SELECT 1 FROM blocked_hardware_ids WHERE hardware_id = $3)"
                        " ON CONFLICT (hardware_id) DO NOTHING RETURNING *),"
                        " hist AS (INSERT INTO device_status_history (device_id, from_status, to_status, reason, at)"
                        "  SELECT id, NULL, 'online', 'registered', created_at FROM ins)"
                        " SELECT ") +
                record_columns + " FROM ins");
  c.prepare("get", std::string("SELECT ") + record_columns + " FROM devices WHERE id = $1::uuid");
  c.prepare("get_by_hardware_id", std::string("SELECT ") + record_columns + " FROM devices WHERE hardware_id = $1");
  c.prepare("id_by_hardware_id", "SELECT id::text FROM devices WHERE hardware_id = $1");
  c.prepare("is_blocked", "SELECT 1 FROM blocked_hardware_ids WHERE hardware_id = $1");
  c.prepare("insert_credential",
            "INSERT INTO device_credentials (device_id, salt, password_hash, created_at)"
            " VALUES ($1::uuid, $2, $3, to_timestamp($4::bigint / 1000.0))");
  c.prepare("credential", "SELECT salt, password_hash FROM device_credentials WHERE device_id = $1::uuid");
  c.prepare("set_credential",
            "INSERT INTO device_credentials (device_id, salt, password_hash, created_at)"
            " VALUES ($1::uuid, $2, $3, to_timestamp($4::bigint / 1000.0))"
            " ON CONFLICT (device_id) DO UPDATE SET salt = excluded.salt, password_hash = excluded.password_hash,"
            " rotated_at = excluded.created_at");
  c.prepare("flush_last_seen",
            "WITH u AS (SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],"
            "  $6::text[]) AS u(id, ms, session, firmware_version, ip_address, metadata)),"
            " locked AS (SELECT d.id FROM devices d JOIN u ON d.id = u.id ORDER BY d.id FOR UPDATE OF d)"
            " UPDATE devices d SET last_seen = GREATEST(d.last_seen, to_timestamp(u.ms / 1000.0)),"
            "  presence_session = GREATEST(d.presence_session, u.session),"
            "  firmware_version = COALESCE(u.firmware_version, d.firmware_version),"
            "  ip_address = COALESCE(u.ip_address, d.ip_address),"
            "  metadata = COALESCE(u.metadata::jsonb, d.metadata),"
            "  updated_at = CASE WHEN u.firmware_version IS NULL AND u.ip_address IS NULL AND u.metadata IS NULL"
            "   THEN d.updated_at ELSE GREATEST(d.updated_at, to_timestamp(u.ms / 1000.0)) END"
            " FROM u WHERE d.id = u.id AND d.id IN (SELECT id FROM locked)"
            "  AND (d.last_seen < to_timestamp(u.ms / 1000.0) OR d.presence_session < u.session"
            "   OR u.firmware_version IS NOT NULL OR u.ip_address IS NOT NULL OR u.metadata IS NOT NULL)");
  c.prepare("write_states",
            "WITH input AS ("
            " SELECT * FROM unnest($1::uuid[], $2::bool[], $3::bool[], $4::bool[], $5::text[], $6::bigint[],"
            "  $7::text[], $8::text[], $9::bigint[], $10::int[], $11::int[], $12::bigint[])"
            "  AS u(id, connected, reported_error, maintenance, status, last_seen_ms, reason, from_status, at_ms,"
            "       offline_after, ord, session)),"
            " locked AS (SELECT d.id FROM devices d JOIN input u ON d.id = u.id ORDER BY d.id FOR UPDATE OF d),"
            " upd AS ("
            " UPDATE devices d SET connected = u.connected, reported_error = u.reported_error,"
            "  maintenance = u.maintenance, status = u.status, offline_after = u.offline_after,"
            "  presence_session = GREATEST(d.presence_session, u.session),"
            "  last_seen = GREATEST(d.last_seen, to_timestamp(u.last_seen_ms / 1000.0)),"
            "  status_changed_at = CASE WHEN u.reason IS NULL THEN d.status_changed_at"
            "                      ELSE to_timestamp(u.at_ms / 1000.0) END,"
            "  status_reason = COALESCE(u.reason, d.status_reason),"
            "  status_seq = d.status_seq + CASE WHEN u.reason IS NULL THEN 0 ELSE 1 END,"
            "  updated_at = to_timestamp(u.at_ms / 1000.0)"
            " FROM input u WHERE d.id = u.id AND d.id IN (SELECT id FROM locked)"
            " RETURNING d.id, d.name, d.device_type, d.hardware_id, d.status,"
            "  (extract(epoch from d.last_seen) * 1000)::bigint AS last_seen_ms,"
            "  (extract(epoch from d.status_changed_at) * 1000)::bigint AS changed_ms, d.status_reason,"
            "  d.status_seq, u.reason IS NOT NULL AS transitioned, u.from_status, u.ord, d.status_changed_at),"
            " hist AS (INSERT INTO device_status_history (device_id, from_status, to_status, reason, at)"
            "  SELECT id, from_status, status, status_reason, status_changed_at FROM upd WHERE transitioned)"
            " SELECT id::text, name, device_type, hardware_id, status, last_seen_ms, changed_ms, status_reason,"
            "  status_seq FROM upd WHERE transitioned ORDER BY ord");
  c.prepare("mark_published",
            "WITH u AS (SELECT * FROM unnest($1::uuid[], $2::bigint[]) AS u(id, seq)),"
            " locked AS (SELECT d.id FROM devices d JOIN u ON d.id = u.id ORDER BY d.id FOR UPDATE OF d)"
            " UPDATE devices d SET published_seq = u.seq FROM u"
            " WHERE d.id = u.id AND d.id IN (SELECT id FROM locked) AND d.published_seq < u.seq");
  c.prepare("unpublished",
            "SELECT id::text, name, device_type, hardware_id, status,"
            " (extract(epoch from last_seen) * 1000)::bigint, (extract(epoch from status_changed_at) * 1000)::bigint,"
            " status_reason, status_seq FROM devices WHERE status_seq <> published_seq LIMIT $1");
  c.prepare("all_statuses",
            "SELECT id::text, name, device_type, hardware_id, status,"
            " (extract(epoch from last_seen) * 1000)::bigint, (extract(epoch from status_changed_at) * 1000)::bigint,"
            " status_reason, status_seq FROM devices ORDER BY status_changed_at");
  c.prepare("delete",
            "WITH d AS (DELETE FROM devices WHERE id = $1::uuid RETURNING id, hardware_id),"
            " t AS (INSERT INTO retained_clears (device_id, deleted_at) SELECT id, now() FROM d"
            "  ON CONFLICT (device_id) DO NOTHING)"
            " SELECT hardware_id FROM d");
  c.prepare("pending_clears", "SELECT device_id::text FROM retained_clears ORDER BY deleted_at LIMIT $1");
  c.prepare("clears_done", "DELETE FROM retained_clears WHERE device_id = ANY($1::uuid[])");
  c.prepare("history",
            "SELECT from_status, to_status, reason, (extract(epoch from at) * 1000)::bigint"
            " FROM device_status_history WHERE device_id = $1::uuid ORDER BY at DESC, id DESC LIMIT $2");
}

namespace {
StoredStatus to_stored_status(const pqxx::row& row) {
  StoredStatus s;
  s.document.device_id = *core::parse_device_id(row[0].c_str());
  s.document.name = row[1].as<std::string>();
  s.document.device_type = row[2].as<std::string>();
  s.document.hardware_id = row[3].as<std::string>();
  s.document.status = core::parse_status(row[4].c_str()).value_or(core::Status::offline);
  s.document.last_seen = from_ms(row[5].as<std::int64_t>());
  s.document.changed_at = from_ms(row[6].as<std::int64_t>());
  s.document.reason = core::parse_reason(row[7].c_str()).value_or(core::Reason::admin);
  s.seq = row[8].as<std::int64_t>();
  return s;
}
}  // namespace

Result<DeviceRecord> DeviceStore::register_device(const core::Registration& r, TimePoint now,
                                                  const std::optional<StoredSecret>& secret) {
  return guarded("register", [&](pqxx::connection& c) -> Result<DeviceRecord> {
    for (int attempt = 0; attempt < 3; ++attempt) {
      pqxx::work tx(c);
      const auto location = json_text(r.location);
      const auto metadata = json_text(r.metadata);
      const auto offline_after = r.offline_after ? std::optional<std::string>(std::to_string(r.offline_after->count()))
                                                 : std::nullopt;
      auto rows = tx.exec_prepared("register", r.name, r.device_type, r.hardware_id, opt(r.firmware_version),
                                   opt(r.ip_address), opt(location), opt(metadata), to_ms(now), opt(offline_after));
      if (!rows.empty()) {
        auto record = to_record(rows[0]);
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
                     existing[0][0].as<std::string>()};
      // Deleted between the insert and the look-up: try again.
    }
    return Error{ErrorKind::unavailable, "", "registration kept racing with deletion"};
  });
}

Result<DeviceRecord> DeviceStore::get(const DeviceId& id) {
  return guarded("get", [&](pqxx::connection& c) -> Result<DeviceRecord> {
    pqxx::read_transaction tx(c);
    auto rows = tx.exec_prepared("get", id.to_string());
    if (rows.empty()) return Error{ErrorKind::not_found, "", "no device with id " + id.to_string()};
    return to_record(rows[0]);
  });
}

Result<DeviceRecord> DeviceStore::get_by_hardware_id(const std::string& hardware_id) {
  return guarded("get_by_hardware_id", [&](pqxx::connection& c) -> Result<DeviceRecord> {
    pqxx::read_transaction tx(c);
    auto rows = tx.exec_prepared("get_by_hardware_id", hardware_id);
    if (rows.empty()) return Error{ErrorKind::not_found, "hardware_id", "no device with this hardware_id"};
    return to_record(rows[0]);
  });
}

Result<core::Done> DeviceStore::list(const ListQuery& q,
                                     const std::function<bool(const std::vector<DeviceRecord>&)>& page) {
  return guarded("list", [&](pqxx::connection& c) -> Result<core::Done> {
    pqxx::read_transaction tx(c);
    std::string where = "TRUE";
    if (q.status) where += " AND status = " + tx.quote(*q.status);
    if (q.device_type) where += " AND device_type = " + tx.quote(*q.device_type);
    if (q.hardware_id) where += " AND hardware_id = " + tx.quote(*q.hardware_id);
    constexpr std::int64_t page_size = 1000;
    std::int64_t remaining = q.limit.value_or(INT64_MAX);
    std::int64_t offset = q.offset;
    std::string after;  // keyset: rows after (created_at, id) of the previous page
    while (remaining > 0) {
      const std::int64_t n = std::min(remaining, page_size);
      // The keyset cursor is created_at exactly as stored (microseconds): the
      // record's millisecond created_at would repeat rows across a page boundary.
      std::string sql = std::string("SELECT ") + record_columns + ", created_at::text AS page_cursor FROM devices WHERE " +
                        where + after + " ORDER BY created_at, id LIMIT " + std::to_string(n);
      if (offset > 0) sql += " OFFSET " + std::to_string(offset);
      auto rows = tx.exec(sql);
      offset = 0;
      std::vector<DeviceRecord> records;
      records.reserve(rows.size());
      for (const auto& row : rows) records.push_back(to_record(row));
      if (!records.empty() && !page(records)) break;  // the caller stopped (its client went away)
      if (static_cast<std::int64_t>(rows.size()) < n) break;
      remaining -= n;
      const auto& last = rows[rows.size() - 1];
      after = " AND (created_at, id) > (" + tx.quote(last["page_cursor"].as<std::string>()) + "::timestamptz, " +
              tx.quote(last[0].as<std::string>()) + "::uuid)";
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
      if (!row[0].is_null()) e.from = core::parse_status(row[0].c_str());
      e.to = core::parse_status(row[1].c_str()).value_or(core::Status::offline);
      e.reason = row[2].as<std::string>();
      e.at = from_ms(row[3].as<std::int64_t>());
      entries.push_back(std::move(e));
    }
    return entries;
  });
}

Result<std::string> DeviceStore::remove(const DeviceId& id) {
  return guarded("delete", [&](pqxx::connection& c) -> Result<std::string> {
    pqxx::work tx(c);
    auto rows = tx.exec_prepared("delete", id.to_string());
    tx.commit();
    if (rows.empty()) return Error{ErrorKind::not_found, "", "no device with id " + id.to_string()};
    return rows[0][0].as<std::string>();
  });
}

Result<std::vector<StoredStatus>> DeviceStore::write_states(const std::vector<StateWrite>& batch) {
  if (batch.empty()) return std::vector<StoredStatus>{};
  return guarded("write_states", [&](pqxx::connection& c) -> Result<std::vector<StoredStatus>> {
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
        at.add(to_ms(w.state.last_seen));
      }
      if (w.state.offline_after)
        offline_after.add(w.state.offline_after->count());
      else
        offline_after.add_null();
      ord.add(static_cast<std::int64_t>(i));
      session.add(w.state.presence_session);
    }
    pqxx::work tx(c);
    auto rows = tx.exec_prepared("write_states", ids.str(), connected.str(), reported_error.str(), maintenance.str(),
                                 status.str(), last_seen.str(), reason.str(), from.str(), at.str(),
                                 offline_after.str(), ord.str(), session.str());
    tx.commit();
    std::vector<StoredStatus> stored;
    stored.reserve(rows.size());
    for (const auto& row : rows) stored.push_back(to_stored_status(row));
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
      metadata.add_text(s.metadata ? std::optional<std::string>(s.metadata->dump()) : std::nullopt);
    }
    pqxx::work tx(c);
    tx.exec_prepared("flush_last_seen", ids.str(), ms.str(), session.str(), firmware.str(), ip.str(), metadata.str());
    tx.commit();
    return core::Done{};
  });
}

Result<std::pair<DeviceRecord, std::optional<StoredStatus>>> DeviceStore::apply_patch(
    const DeviceId& id, const core::DevicePatch& p, const std::optional<StateWrite>& state, TimePoint now) {
  using Out = std::pair<DeviceRecord, std::optional<StoredStatus>>;
  return guarded("patch", [&](pqxx::connection& c) -> Result<Out> {
    pqxx::work tx(c);
    auto text_or_null = [&](const std::optional<std::string>& v) { return v ? tx.quote(*v) : std::string("NULL"); };
    std::vector<std::string> sets;
    if (p.name.present) sets.push_back("name = " + text_or_null(p.name.value));
    if (p.firmware_version.present) sets.push_back("firmware_version = " + text_or_null(p.firmware_version.value));
    if (p.ip_address.present) sets.push_back("ip_address = " + text_or_null(p.ip_address.value));
    if (p.location.present)
      sets.push_back("location = " + (p.location.value ? tx.quote(p.location.value->dump()) + "::jsonb" : "NULL"));
    if (p.metadata.present)
      sets.push_back("metadata = " + (p.metadata.value ? tx.quote(p.metadata.value->dump()) + "::jsonb" : "NULL"));
    if (p.offline_after.present)
      sets.push_back("offline_after = " +
                     (p.offline_after.value ? std::to_string(p.offline_after.value->count()) : std::string("NULL")));
    const std::string at = "to_timestamp(" + std::to_string(to_ms(now)) + " / 1000.0)";
    if (state) {
      const auto& s = state->state;
      sets.push_back(std::string("connected = ") + (s.connected ? "true" : "false"));
      sets.push_back(std::string("reported_error = ") + (s.reported_error ? "true" : "false"));
      sets.push_back(std::string("maintenance = ") + (s.maintenance ? "true" : "false"));
      sets.push_back("status = " + tx.quote(std::string(core::to_string(s.status()))));
      if (state->transition) {
        sets.push_back("status_changed_at = " + at);
        sets.push_back("status_reason = " + tx.quote(std::string(core::to_string(state->transition->reason))));
        sets.push_back("status_seq = status_seq + 1");
      }
    }
    sets.push_back("updated_at = " + at);
    std::string sql = "UPDATE devices SET ";
    for (std::size_t i = 0; i < sets.size(); ++i) sql += (i ? ", " : "") + sets[i];
    sql += " WHERE id = " + tx.quote(id.to_string()) + "::uuid RETURNING " + record_columns + ", status_seq";
    auto rows = tx.exec(sql);
    if (rows.empty()) return Error{ErrorKind::not_found, "", "no device with id " + id.to_string()};
    Out out{to_record(rows[0]), std::nullopt};
    if (state && state->transition) {
      const auto& t = *state->transition;
      tx.exec_params(
          "INSERT INTO device_status_history (device_id, from_status, to_status, reason, at)"
          " VALUES ($1::uuid, $2, $3, $4, to_timestamp($5::bigint / 1000.0))",
          id.to_string(), t.from ? std::string(core::to_string(*t.from)).c_str() : nullptr,
          std::string(core::to_string(t.to)), std::string(core::to_string(t.reason)), to_ms(t.at));
      StoredStatus s;
      const auto& r = out.first;
      s.document = core::StatusDocument{r.id,     r.name,      r.device_type,       r.hardware_id,
                                        r.status, r.last_seen, r.status_changed_at, t.reason};
      s.seq = rows[0][14].as<std::int64_t>();
      out.second = s;
    }
    tx.commit();
    return out;
  });
}

Result<std::size_t> DeviceStore::load_states(const std::function<void(const std::vector<LoadedDevice>&)>& page) {
  return guarded("load_states", [&](pqxx::connection& c) -> Result<std::size_t> {
    pqxx::work tx(c);
    tx.exec(
        "DECLARE load_states NO SCROLL CURSOR FOR SELECT id::text, name, device_type, hardware_id, status,"
        " (extract(epoch from last_seen) * 1000)::bigint, (extract(epoch from status_changed_at) * 1000)::bigint,"
        " status_reason, status_seq, connected, reported_error, maintenance, offline_after, presence_session"
        " FROM devices");
    std::size_t total = 0;
    while (true) {
      auto rows = tx.exec("FETCH 50000 FROM load_states");
      if (rows.empty()) break;
      std::vector<LoadedDevice> devices;
      devices.reserve(rows.size());
      for (const auto& row : rows) {
        LoadedDevice d;
        d.status = to_stored_status(row);
        d.id = d.status.document.device_id;
        d.state.connected = row[9].as<bool>();
        d.state.reported_error = row[10].as<bool>();
        d.state.maintenance = row[11].as<bool>();
        d.state.last_seen = d.status.document.last_seen;
        if (!row[12].is_null()) d.state.offline_after = core::Seconds{row[12].as<std::int64_t>()};
        d.state.presence_session = row[13].as<std::int64_t>();
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
    std::vector<StoredStatus> out;
    for (const auto& row : tx.exec_prepared("unpublished", static_cast<std::int64_t>(limit)))
      out.push_back(to_stored_status(row));
    return out;
  });
}

Result<std::vector<StoredStatus>> DeviceStore::all_statuses() {
  return guarded("all_statuses", [&](pqxx::connection& c) -> Result<std::vector<StoredStatus>> {
    pqxx::read_transaction tx(c);
    std::vector<StoredStatus> out;
    for (const auto& row : tx.exec_prepared("all_statuses")) out.push_back(to_stored_status(row));
    return out;
  });
}

Result<std::vector<DeviceId>> DeviceStore::pending_clears(std::size_t limit) {
  return guarded("pending_clears", [&](pqxx::connection& c) -> Result<std::vector<DeviceId>> {
    pqxx::read_transaction tx(c);
    std::vector<DeviceId> out;
    for (const auto& row : tx.exec_prepared("pending_clears", static_cast<std::int64_t>(limit)))
      if (auto id = core::parse_device_id(row[0].c_str())) out.push_back(*id);
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
    return std::optional<StoredSecret>{StoredSecret{rows[0][0].as<std::string>(), rows[0][1].as<std::string>()}};
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
    tx.exec_params(
        "INSERT INTO blocked_hardware_ids (hardware_id, reason, blocked_at) VALUES ($1, $2,"
        " to_timestamp($3::bigint / 1000.0)) ON CONFLICT (hardware_id) DO UPDATE SET reason = excluded.reason",
        hardware_id, opt(reason), to_ms(now));
    tx.commit();
    return core::Done{};
  });
}

Result<core::Done> DeviceStore::unblock_hardware_id(const std::string& hardware_id) {
  return guarded("unblock", [&](pqxx::connection& c) -> Result<core::Done> {
    pqxx::work tx(c);
    auto rows = tx.exec_params("DELETE FROM blocked_hardware_ids WHERE hardware_id = $1 RETURNING 1", hardware_id);
    tx.commit();
    if (rows.empty()) return Error{ErrorKind::not_found, "hardware_id", "this hardware_id is not blocked"};
    return core::Done{};
  });
}

Result<std::vector<BlockedHardwareId>> DeviceStore::blocked_hardware_ids() {
  return guarded("blocked", [&](pqxx::connection& c) -> Result<std::vector<BlockedHardwareId>> {
    pqxx::read_transaction tx(c);
    std::vector<BlockedHardwareId> out;
    for (const auto& row : tx.exec("SELECT hardware_id, reason, (extract(epoch from blocked_at) * 1000)::bigint"
                                   " FROM blocked_hardware_ids ORDER BY blocked_at, hardware_id")) {
      BlockedHardwareId b;
      b.hardware_id = row[0].as<std::string>();
      if (!row[1].is_null()) b.reason = row[1].as<std::string>();
      b.blocked_at = from_ms(row[2].as<std::int64_t>());
      out.push_back(std::move(b));
    }
    return out;
  });
}

Result<core::Done> DeviceStore::ping() {
  return guarded("ping", [&](pqxx::connection& c) -> Result<core::Done> {
    pqxx::nontransaction tx(c);
    tx.exec("SELECT 1");
    return core::Done{};
  });
}

}  // namespace maestra::store
