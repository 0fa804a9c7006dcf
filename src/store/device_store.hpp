// The Postgres side of the registry: the Store (store.hpp) on Postgres, where
// every SQL statement the service runs lives. It stores what the core decided;
// it decides nothing. Each operation is one transaction; a database failure
// comes back as ErrorKind::unavailable and the broken connection is re-opened
// on next use.
#pragma once
#include "store/connection_pool.hpp"
#include "store/store.hpp"

namespace maestra::store {

class DeviceStore final : public Store {
 public:
  explicit DeviceStore(ConnectionPool& pool) : pool_(pool) {}

  static void prepare_statements(pqxx::connection& c);

  // The operations are documented on Store.

  Result<core::DeviceRecord> register_device(const core::Registration& r, TimePoint now,
                                             const std::optional<StoredSecret>& secret) override;
  Result<std::optional<StoredSecret>> credential(const DeviceId& id) override;
  Result<core::Done> set_credential(const DeviceId& id, const StoredSecret& secret, TimePoint now) override;
  Result<core::Done> block_hardware_id(const std::string& hardware_id, const std::optional<std::string>& reason,
                                       TimePoint now) override;
  Result<core::Done> unblock_hardware_id(const std::string& hardware_id) override;
  Result<std::vector<BlockedHardwareId>> blocked_hardware_ids() override;

  Result<core::DeviceRecord> get(const DeviceId& id) override;
  Result<core::DeviceRecord> get_by_hardware_id(const std::string& hardware_id) override;
  Result<core::Done> list(const ListQuery& q, const std::function<bool(const std::vector<core::DeviceRecord>&)>& page) override;
  Result<std::vector<HistoryEntry>> history(const DeviceId& id, int limit) override;
  Result<std::string> remove(const DeviceId& id) override;

  Result<std::vector<StoredStatus>> write_states(const std::vector<StateWrite>& batch) override;
  Result<core::Done> flush_last_seen(const std::vector<SeenUpdate>& seen) override;
  Result<std::pair<core::DeviceRecord, std::optional<StoredStatus>>> apply_patch(
      const DeviceId& id, const core::DevicePatch& patch, const std::optional<StateWrite>& state, TimePoint now) override;

  Result<std::size_t> load_states(const std::function<void(const std::vector<LoadedDevice>&)>& page) override;
  Result<std::vector<StoredStatus>> unpublished(std::size_t limit) override;
  Result<std::vector<StoredStatus>> all_statuses() override;
  Result<core::Done> mark_published(const std::vector<std::pair<DeviceId, std::int64_t>>& acked) override;
  Result<std::vector<DeviceId>> pending_clears(std::size_t limit) override;
  Result<core::Done> clears_done(const std::vector<DeviceId>& cleared) override;

  Result<core::Done> ping() override;

 private:
  template <class Fn>
  auto guarded(const char* what, Fn&& fn) -> decltype(fn(std::declval<pqxx::connection&>()));

  ConnectionPool& pool_;
};

}  // namespace maestra::store
