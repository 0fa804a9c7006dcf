// An in-memory Store (store/store.hpp) for the fleet owner's unit tests: the same
// contract as the Postgres store (conflicts, history rows, the status outbox,
// last_seen never moving back), in maps, with switches a test sets: the
// database is down (every call fails `unavailable`), and counters of what was
// called. Single-threaded use by the tests; a mutex keeps it safe anyway.
#pragma once
#include <map>
#include <mutex>

#include "store/store.hpp"

namespace maestra::unit {

using core::DeviceId;
using core::Result;
using core::TimePoint;

class MemoryStore final : public store::Store {
 public:
  struct Row {
    core::DeviceRecord record;
    core::DeviceState state;
    core::Reason reason = core::Reason::registered;
    std::int64_t status_seq = 1;
    std::int64_t published_seq = 0;
  };

  // --- switches and counters for the tests ---
  bool down = false;                          // every call fails as unavailable
  int write_states_calls = 0;                 // successful write_states calls
  std::vector<std::size_t> write_sizes;       // rows in each successful write_states
  int flush_calls = 0;

  // A device as if stored by an earlier run (load() reads it).
  DeviceId add_device(const std::string& hardware_id, const core::DeviceState& state, TimePoint created);
  Row row(const DeviceId& id) const;
  bool exists(const DeviceId& id) const;
  std::vector<store::HistoryEntry> all_history(const DeviceId& id) const;  // oldest first

  Result<core::DeviceRecord> register_device(const core::Registration& r, TimePoint now,
                                             const std::optional<store::StoredSecret>& secret) override;
  Result<std::optional<store::StoredSecret>> credential(const DeviceId& id) override;
  Result<core::Done> set_credential(const DeviceId& id, const store::StoredSecret& secret, TimePoint now) override;
  Result<core::Done> block_hardware_id(const std::string& hardware_id, const std::optional<std::string>& reason,
                                       TimePoint now) override;
  Result<core::Done> unblock_hardware_id(const std::string& hardware_id) override;
  Result<std::vector<store::BlockedHardwareId>> blocked_hardware_ids() override;
  Result<core::DeviceRecord> get(const DeviceId& id) override;
  Result<core::DeviceRecord> get_by_hardware_id(const std::string& hardware_id) override;
  Result<core::Done> list(const store::ListQuery& q,
                          const std::function<bool(const std::vector<core::DeviceRecord>&)>& page) override;
  Result<std::vector<store::HistoryEntry>> history(const DeviceId& id, int limit) override;
  Result<std::string> remove(const DeviceId& id) override;
  Result<std::vector<store::StoredStatus>> write_states(const std::vector<store::StateWrite>& batch) override;
  Result<core::Done> flush_last_seen(const std::vector<store::SeenUpdate>& seen) override;
  Result<std::pair<core::DeviceRecord, std::optional<store::StoredStatus>>> apply_patch(
      const DeviceId& id, const core::DevicePatch& patch, const std::optional<store::StateWrite>& state,
      TimePoint now) override;
  Result<std::size_t> load_states(const std::function<void(const std::vector<store::LoadedDevice>&)>& page) override;
  Result<std::vector<store::StoredStatus>> unpublished(std::size_t limit) override;
  Result<std::vector<store::StoredStatus>> all_statuses() override;
  Result<core::Done> mark_published(const std::vector<std::pair<DeviceId, std::int64_t>>& acked) override;
  Result<std::vector<DeviceId>> pending_clears(std::size_t limit) override;
  Result<core::Done> clears_done(const std::vector<DeviceId>& cleared) override;
  Result<core::Done> ping() override;

 private:
  core::Error unavailable() const;
  store::StoredStatus status_of(const Row& row) const;
  DeviceId next_id();

  mutable std::mutex mutex_;
  std::map<DeviceId, Row> rows_;
  std::map<DeviceId, std::vector<store::HistoryEntry>> history_;
  std::map<DeviceId, store::StoredSecret> secrets_;
  std::map<std::string, store::BlockedHardwareId> blocked_;
  std::vector<DeviceId> clears_;
  std::uint32_t ids_issued_ = 0;
};

}  // namespace maestra::unit
