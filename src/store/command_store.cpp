// PgCommandStore: binds parameters to src/store/sql/command_*.sql and reads
// their rows (see command_store.hpp). No SQL text and no rule lives here.
#include "store/command_store.hpp"

#include <deque>
#include <unordered_map>

#include "store/connection_pool.hpp"
#include "store/array_literal.hpp"
#include "store/guarded.hpp"

namespace maestra::store {

using core::Command;
using core::CommandState;
using core::Error;
using core::ErrorKind;
using core::Json;
using core::Result;
using core::TimePoint;

namespace {

constexpr const char* null = nullptr;
constexpr int max_undelivered = 1000;  // per device and call

std::int64_t to_ms(TimePoint t) { return t.time_since_epoch().count(); }
TimePoint from_ms(std::int64_t ms) { return TimePoint{core::Millis{ms}}; }

Command read_command(const pqxx::row& row) {
  Command c;
  c.id = *core::parse_device_id(row["id"].c_str());
  c.device_id = *core::parse_device_id(row["device_id"].c_str());
  c.name = row["name"].as<std::string>();
  c.params = Json::parse(row["params"].c_str());
  c.state = core::parse_command_state(row["state"].c_str()).value_or(CommandState::queued);
  c.created_at = from_ms(row["created_ms"].as<std::int64_t>());
  c.expires_at = from_ms(row["expires_ms"].as<std::int64_t>());
  c.updated_at = from_ms(row["updated_ms"].as<std::int64_t>());
  if (!row["delivered_ms"].is_null()) c.delivered_at = from_ms(row["delivered_ms"].as<std::int64_t>());
  c.timeout = core::Seconds{row["timeout_s"].as<std::int64_t>()};
  c.result = row["result"].is_null() ? Json(nullptr) : Json::parse(row["result"].c_str());
  if (!row["error"].is_null()) c.error = row["error"].as<std::string>();
  c.seq = row["seq"].as<std::int64_t>();
  return c;
}

std::vector<Command> read_commands(const pqxx::result& rows) {
  std::vector<Command> out;
  out.reserve(rows.size());
  for (const auto& row : rows) out.push_back(read_command(row));
  return out;
}


Error no_device(const core::DeviceId& id) {
  return Error{ErrorKind::not_found, "", "no device with id " + id.to_string()};
}

}  // namespace

Result<CreatedCommand> PgCommandStore::create(const core::DeviceId& device, const core::CommandRequest& request,
                                              const std::optional<std::string>& idempotency_key, TimePoint now) {
  const std::string hash = request.fingerprint();
  return guarded(pool_, "command_create", [&](pqxx::connection& c) -> Result<CreatedCommand> {
    for (int attempt = 0; attempt < 3; ++attempt) {
      pqxx::work tx(c);
      auto rows = tx.exec_prepared("command_create", device.to_string(), request.name, request.params.dump(),
                                   to_ms(now), request.expires_in.count(), request.timeout.count(),
                                   idempotency_key ? idempotency_key->c_str() : null, hash);
      if (!rows.empty()) {
        auto command = read_command(rows[0]);
        tx.commit();
        return CreatedCommand{std::move(command), false, hash};
      }
      if (tx.exec_prepared("command_device_exists", device.to_string()).empty()) return no_device(device);
      if (idempotency_key) {
        auto existing = tx.exec_prepared("command_by_key", device.to_string(), *idempotency_key);
        tx.commit();
        if (!existing.empty())
          return CreatedCommand{read_command(existing[0]), true, existing[0]["request_hash"].as<std::string>("")};
      }
      // The key's command was deleted meanwhile (its device deleted): try again.
    }
    return Error{ErrorKind::unavailable, "", "command creation kept racing with deletion"};
  });
}

Result<std::vector<Command>> PgCommandStore::create_many(const std::vector<core::DeviceId>& devices,
                                                         const core::CommandRequest& request, TimePoint now) {
  if (devices.empty()) return std::vector<Command>{};
  const std::string hash = request.fingerprint();
  ArrayLiteral ids;
  for (const auto& d : devices) ids.add(d.to_string());
  const std::string ids_text = ids.str();
  return guarded(pool_, "command_create_many", [&](pqxx::connection& c) -> Result<std::vector<Command>> {
    pqxx::work tx(c);
    auto rows = tx.exec_prepared("command_create_many", ids_text, request.name, request.params.dump(), to_ms(now),
                                 request.expires_in.count(), request.timeout.count(), hash);
    auto stored = read_commands(rows);
    tx.commit();
    // Back in the order asked for (a device named twice: its commands in creation order).
    std::unordered_map<core::DeviceId, std::deque<Command>, core::DeviceIdHash> by_device;
    for (auto& cmd : stored) by_device[cmd.device_id].push_back(std::move(cmd));
    std::vector<Command> out;
    out.reserve(stored.size());
    for (const auto& d : devices) {
      auto it = by_device.find(d);
      if (it == by_device.end() || it->second.empty()) continue;
      out.push_back(std::move(it->second.front()));
      it->second.pop_front();
    }
    return out;
  });
}

Result<CommandWithHistory> PgCommandStore::get(const core::CommandId& id) {
  return guarded(pool_, "command_get", [&](pqxx::connection& c) -> Result<CommandWithHistory> {
    pqxx::read_transaction tx(c);
    auto rows = tx.exec_prepared("command_get", id.to_string());
    if (rows.empty()) return Error{ErrorKind::not_found, "", "no command with id " + id.to_string()};
    CommandWithHistory out{read_command(rows[0]), {}};
    for (const auto& row : tx.exec_prepared("command_history", id.to_string())) {
      core::CommandHistoryEntry e{};
      if (!row["from_state"].is_null()) e.from = core::parse_command_state(row["from_state"].c_str());
      e.to = core::parse_command_state(row["to_state"].c_str()).value_or(CommandState::queued);
      e.at = from_ms(row["at_ms"].as<std::int64_t>());
      out.history.push_back(e);
    }
    return out;
  });
}

Result<std::vector<Command>> PgCommandStore::list(const core::DeviceId& device, const core::CommandListQuery& q) {
  return guarded(pool_, "command_list", [&](pqxx::connection& c) -> Result<std::vector<Command>> {
    pqxx::read_transaction tx(c);
    if (tx.exec_prepared("command_device_exists", device.to_string()).empty()) return no_device(device);
    const std::string state = q.state ? std::string(core::to_string(*q.state)) : std::string();
    return read_commands(tx.exec_prepared("command_list", device.to_string(), q.state ? state.c_str() : null,
                                          q.limit, q.offset));
  });
}

Result<std::optional<Command>> PgCommandStore::transition(const core::CommandId& id, CommandState from,
                                                          CommandState to, TimePoint now, const Json& result,
                                                          const std::optional<std::string>& error) {
  const bool marks_delivery = core::is_delivered(to) && to != CommandState::timed_out;
  const std::string result_text = result.is_null() ? std::string() : result.dump();
  return guarded(pool_, "command_transition", [&](pqxx::connection& c) -> Result<std::optional<Command>> {
    pqxx::work tx(c);
    auto rows = tx.exec_prepared("command_transition", id.to_string(), std::string(core::to_string(from)),
                                 std::string(core::to_string(to)), to_ms(now),
                                 result.is_null() ? null : result_text.c_str(), error ? error->c_str() : null,
                                 marks_delivery);
    tx.commit();
    if (rows.empty()) return std::optional<Command>{};
    return std::optional<Command>{read_command(rows[0])};
  });
}

Result<std::vector<Command>> PgCommandStore::transition_many(const std::vector<CommandMove>& moves, TimePoint now) {
  if (moves.empty()) return std::vector<Command>{};
  ArrayLiteral ids, from, to, results, errors, marks;
  for (const auto& m : moves) {
    ids.add(m.id.to_string());
    from.add(core::to_string(m.from));
    to.add(core::to_string(m.to));
    results.add_text(m.result.is_null() ? std::nullopt : std::optional<std::string>(m.result.dump()));
    errors.add_text(m.error);
    marks.add_bool(core::is_delivered(m.to) && m.to != CommandState::timed_out);
  }
  const std::string ids_text = ids.str(), from_text = from.str(), to_text = to.str(), results_text = results.str(),
                    errors_text = errors.str(), marks_text = marks.str();
  return guarded(pool_, "command_transition_many", [&](pqxx::connection& c) -> Result<std::vector<Command>> {
    pqxx::work tx(c);
    auto rows = tx.exec_prepared("command_transition_many", ids_text, from_text, to_text, to_ms(now), results_text,
                                 errors_text, marks_text);
    auto out = read_commands(rows);
    tx.commit();
    return out;
  });
}

Result<std::vector<Command>> PgCommandStore::undelivered(const core::DeviceId& device, TimePoint now) {
  return guarded(pool_, "command_undelivered", [&](pqxx::connection& c) -> Result<std::vector<Command>> {
    pqxx::read_transaction tx(c);
    return read_commands(tx.exec_prepared("command_undelivered", device.to_string(), to_ms(now), max_undelivered));
  });
}

Result<std::vector<Command>> PgCommandStore::undelivered_all(TimePoint now, std::int64_t after_seq, int limit) {
  return guarded(pool_, "command_undelivered_all", [&](pqxx::connection& c) -> Result<std::vector<Command>> {
    pqxx::read_transaction tx(c);
    return read_commands(tx.exec_prepared("command_undelivered_all", to_ms(now), limit, after_seq));
  });
}

Result<std::vector<Command>> PgCommandStore::due(TimePoint now, int limit) {
  return guarded(pool_, "command_due", [&](pqxx::connection& c) -> Result<std::vector<Command>> {
    pqxx::read_transaction tx(c);
    return read_commands(tx.exec_prepared("command_due", to_ms(now), limit));
  });
}

}  // namespace maestra::store
