// The in-memory Store of the fleet's unit tests (see memory_store.hpp).
#include "memory_store.hpp"

#include <algorithm>

namespace maestra::unit {

using core::Error;
using core::ErrorKind;

core::Error MemoryStore::unavailable() const { return Error{ErrorKind::unavailable, "", "the test's database is down"}; }

DeviceId MemoryStore::next_id() {
  DeviceId id{};
  const auto n = ++ids_issued_;
  id.bytes[0] = 0x4d;  // 'M'
  for (int i = 0; i < 4; ++i) id.bytes[15 - i] = static_cast<std::uint8_t>(n >> (8 * i));
  return id;
}

store::StoredStatus MemoryStore::status_of(const Row& row) const {
  const auto& r = row.record;
  return store::StoredStatus{
      core::StatusDocument{r.id, r.name, r.device_type, r.hardware_id, row.state.status(), row.state.last_seen,
                           r.status_changed_at, row.reason},
      row.status_seq};
}

DeviceId MemoryStore::add_device(const std::string& hardware_id, const core::DeviceState& state, TimePoint created) {
  std::lock_guard lock(mutex_);
  Row row;
  row.record.id = next_id();
  row.record.name = "device " + hardware_id;
  row.record.device_type = "sensor";
  row.record.hardware_id = hardware_id;
  row.record.created_at = row.record.updated_at = row.record.status_changed_at = created;
  row.record.status = state.status();
  row.record.last_seen = state.last_seen;
  row.state = state;
  rows_[row.record.id] = row;
  history_[row.record.id].push_back({std::nullopt, state.status(), "registered", created});
  return row.record.id;
}

MemoryStore::Row MemoryStore::row(const DeviceId& id) const {
  std::lock_guard lock(mutex_);
  return rows_.at(id);
}

bool MemoryStore::exists(const DeviceId& id) const {
  std::lock_guard lock(mutex_);
  return rows_.count(id) > 0;
}

std::vector<store::HistoryEntry> MemoryStore::all_history(const DeviceId& id) const {
  std::lock_guard lock(mutex_);
  auto it = history_.find(id);
  return it == history_.end() ? std::vector<store::HistoryEntry>{} : it->second;
}

Result<core::DeviceRecord> MemoryStore::register_device(const core::Registration& r, TimePoint now,
                                                        const std::optional<store::StoredSecret>& secret) {
  std::lock_guard lock(mutex_);
  if (down) return unavailable();
  if (blocked_.count(r.hardware_id)) return Error{ErrorKind::forbidden, "hardware_id", "blocked"};
  for (const auto& [id, row] : rows_)
    if (row.record.hardware_id == r.hardware_id)
      return Error{ErrorKind::conflict, "hardware_id", "already registered", id.to_string()};
  Row row;
  row.record.id = next_id();
  row.record.name = r.name;
  row.record.device_type = r.device_type;
  row.record.hardware_id = r.hardware_id;
  row.record.firmware_version = r.firmware_version;
  row.record.ip_address = r.ip_address;
  row.record.location = r.location;
  row.record.metadata = r.metadata;
  row.record.created_at = row.record.updated_at = row.record.status_changed_at = row.record.last_seen = now;
  row.record.offline_after = r.offline_after;
  row.state = core::register_device(now, r.offline_after).next;
  rows_[row.record.id] = row;
  history_[row.record.id].push_back({std::nullopt, core::Status::online, "registered", now});
  if (secret) secrets_[row.record.id] = *secret;
  return row.record;
}

Result<std::optional<store::StoredSecret>> MemoryStore::credential(const DeviceId& id) {
  std::lock_guard lock(mutex_);
  if (down) return unavailable();
  auto it = secrets_.find(id);
  return it == secrets_.end() ? std::optional<store::StoredSecret>{} : std::optional{it->second};
}

Result<core::Done> MemoryStore::set_credential(const DeviceId& id, const store::StoredSecret& secret, TimePoint) {
  std::lock_guard lock(mutex_);
  if (down) return unavailable();
  secrets_[id] = secret;
  return core::Done{};
}

Result<core::Done> MemoryStore::block_hardware_id(const std::string& hardware_id,
                                                  const std::optional<std::string>& reason, TimePoint now) {
  std::lock_guard lock(mutex_);
  if (down) return unavailable();
  blocked_[hardware_id] = store::BlockedHardwareId{hardware_id, reason, now};
  return core::Done{};
}

Result<core::Done> MemoryStore::unblock_hardware_id(const std::string& hardware_id) {
  std::lock_guard lock(mutex_);
  if (down) return unavailable();
  if (!blocked_.erase(hardware_id)) return Error{ErrorKind::not_found, "", "not blocked"};
  return core::Done{};
}

Result<std::vector<store::BlockedHardwareId>> MemoryStore::blocked_hardware_ids() {
  std::lock_guard lock(mutex_);
  if (down) return unavailable();
  std::vector<store::BlockedHardwareId> out;
  for (const auto& [_, b] : blocked_) out.push_back(b);
  return out;
}

Result<core::DeviceRecord> MemoryStore::get(const DeviceId& id) {
  std::lock_guard lock(mutex_);
  if (down) return unavailable();
  auto it = rows_.find(id);
  if (it == rows_.end()) return Error{ErrorKind::not_found, "", "no device with id " + id.to_string()};
  auto record = it->second.record;
  record.status = it->second.state.status();
  record.last_seen = it->second.state.last_seen;
  return record;
}

Result<core::DeviceRecord> MemoryStore::get_by_hardware_id(const std::string& hardware_id) {
  DeviceId found{};
  {
    std::lock_guard lock(mutex_);
    if (down) return unavailable();
    auto it = std::find_if(rows_.begin(), rows_.end(), [&](const auto& kv) { return kv.second.record.hardware_id == hardware_id; });
    if (it == rows_.end()) return Error{ErrorKind::not_found, "hardware_id", "no device with hardware_id " + hardware_id};
    found = it->first;
  }
  return get(found);
}

Result<core::Done> MemoryStore::list(const store::ListQuery&,
                                     const std::function<bool(const std::vector<core::DeviceRecord>&)>& page) {
  std::vector<core::DeviceRecord> all;
  {
    std::lock_guard lock(mutex_);
    if (down) return unavailable();
    for (const auto& [id, row] : rows_) {
      auto record = row.record;
      record.status = row.state.status();
      record.last_seen = row.state.last_seen;
      all.push_back(record);
    }
  }
  page(all);
  return core::Done{};
}

Result<std::vector<store::HistoryEntry>> MemoryStore::history(const DeviceId& id, int limit) {
  std::lock_guard lock(mutex_);
  if (down) return unavailable();
  auto rows = history_[id];
  std::reverse(rows.begin(), rows.end());  // newest first, as the Postgres store
  if (rows.size() > static_cast<std::size_t>(limit)) rows.resize(static_cast<std::size_t>(limit));
  return rows;
}

Result<std::string> MemoryStore::remove(const DeviceId& id) {
  std::lock_guard lock(mutex_);
  if (down) return unavailable();
  auto it = rows_.find(id);
  if (it == rows_.end()) return Error{ErrorKind::not_found, "", "no device with id " + id.to_string()};
  std::string hardware_id = it->second.record.hardware_id;
  rows_.erase(it);
  history_.erase(id);
  clears_.push_back(id);
  return hardware_id;
}

Result<std::vector<store::StoredStatus>> MemoryStore::write_states(const std::vector<store::StateWrite>& batch) {
  std::lock_guard lock(mutex_);
  if (down) return unavailable();
  ++write_states_calls;
  write_sizes.push_back(batch.size());
  std::vector<store::StoredStatus> stored;
  for (const auto& w : batch) {
    auto it = rows_.find(w.id);
    if (it == rows_.end()) continue;
    auto& row = it->second;
    const TimePoint last_seen = std::max(row.state.last_seen, w.state.last_seen);
    const std::int64_t session = std::max(row.state.presence_session, w.state.presence_session);
    row.state = w.state;
    row.state.last_seen = last_seen;
    row.state.presence_session = session;
    if (w.transition) {
      row.reason = w.transition->reason;
      row.record.status_changed_at = w.transition->at;
      ++row.status_seq;
      history_[w.id].push_back({w.transition->from, w.transition->to, std::string(core::to_string(w.transition->reason)),
                                w.transition->at});
      stored.push_back(status_of(row));
    }
  }
  return stored;
}

Result<core::Done> MemoryStore::flush_last_seen(const std::vector<store::SeenUpdate>& seen) {
  std::lock_guard lock(mutex_);
  if (down) return unavailable();
  ++flush_calls;
  for (const auto& s : seen) {
    auto it = rows_.find(s.id);
    if (it == rows_.end()) continue;
    auto& row = it->second;
    row.state.last_seen = std::max(row.state.last_seen, s.at);
    row.state.presence_session = std::max(row.state.presence_session, s.presence_session);
    if (s.firmware_version) row.record.firmware_version = s.firmware_version;
    if (s.ip_address) row.record.ip_address = s.ip_address;
    if (s.metadata) row.record.metadata = *s.metadata;
  }
  return core::Done{};
}

Result<std::pair<core::DeviceRecord, std::optional<store::StoredStatus>>> MemoryStore::apply_patch(
    const DeviceId& id, const core::DevicePatch& patch, const std::optional<store::StateWrite>& state, TimePoint now) {
  std::lock_guard lock(mutex_);
  if (down) return unavailable();
  auto it = rows_.find(id);
  if (it == rows_.end()) return Error{ErrorKind::not_found, "", "no device with id " + id.to_string()};
  auto& row = it->second;
  if (patch.name.present && patch.name.value) row.record.name = *patch.name.value;
  if (patch.offline_after.present) row.record.offline_after = patch.offline_after.value;
  row.record.updated_at = now;
  std::optional<store::StoredStatus> stored;
  if (state) {
    row.state.connected = state->state.connected;
    row.state.reported_error = state->state.reported_error;
    row.state.maintenance = state->state.maintenance;
    row.state.offline_after = state->state.offline_after;
    if (state->transition) {
      row.reason = state->transition->reason;
      row.record.status_changed_at = state->transition->at;
      ++row.status_seq;
      history_[id].push_back({state->transition->from, state->transition->to,
                              std::string(core::to_string(state->transition->reason)), state->transition->at});
      stored = status_of(row);
    }
  }
  auto record = row.record;
  record.status = row.state.status();
  return std::pair{record, stored};
}

Result<std::size_t> MemoryStore::load_states(const std::function<void(const std::vector<store::LoadedDevice>&)>& page) {
  std::vector<store::LoadedDevice> all;
  {
    std::lock_guard lock(mutex_);
    if (down) return unavailable();
    for (const auto& [id, row] : rows_) all.push_back(store::LoadedDevice{id, row.state, status_of(row)});
  }
  page(all);
  return all.size();
}

Result<std::vector<store::StoredStatus>> MemoryStore::unpublished(std::size_t limit) {
  std::lock_guard lock(mutex_);
  if (down) return unavailable();
  std::vector<store::StoredStatus> out;
  for (const auto& [id, row] : rows_)
    if (row.status_seq != row.published_seq && out.size() < limit) out.push_back(status_of(row));
  return out;
}

Result<std::vector<store::StoredStatus>> MemoryStore::all_statuses() {
  std::lock_guard lock(mutex_);
  if (down) return unavailable();
  std::vector<store::StoredStatus> out;
  for (const auto& [id, row] : rows_) out.push_back(status_of(row));
  return out;
}

Result<core::Done> MemoryStore::mark_published(const std::vector<std::pair<DeviceId, std::int64_t>>& acked) {
  std::lock_guard lock(mutex_);
  if (down) return unavailable();
  for (const auto& [id, seq] : acked)
    if (auto it = rows_.find(id); it != rows_.end()) it->second.published_seq = std::max(it->second.published_seq, seq);
  return core::Done{};
}

Result<std::vector<DeviceId>> MemoryStore::pending_clears(std::size_t limit) {
  std::lock_guard lock(mutex_);
  if (down) return unavailable();
  std::vector<DeviceId> out(clears_.begin(), clears_.begin() + static_cast<std::ptrdiff_t>(std::min(limit, clears_.size())));
  return out;
}

Result<core::Done> MemoryStore::clears_done(const std::vector<DeviceId>& cleared) {
  std::lock_guard lock(mutex_);
  if (down) return unavailable();
  std::erase_if(clears_, [&](const DeviceId& id) { return std::find(cleared.begin(), cleared.end(), id) != cleared.end(); });
  return core::Done{};
}

Result<core::Done> MemoryStore::ping() {
  std::lock_guard lock(mutex_);
  if (down) return unavailable();
  return core::Done{};
}

}  // namespace maestra::unit
