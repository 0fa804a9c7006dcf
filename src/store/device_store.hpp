// The Postgres side of the registry: every SQL statement the service runs lives
// here. It stores what the core decided; it decides nothing. Each operation is
// one transaction; a database failure comes back as ErrorKind::unavailable and
// the broken connection is re-opened on next use.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/documents.hpp"
#include "core/requests.hpp"
#include "store/connection_pool.hpp"

namespace maestra::store {

using core::DeviceId;
using core::Result;
using core::TimePoint;

// A state change decided by the core, to be stored (and, with a transition,
// appended to the history and published).
struct StateWrite {
  DeviceId id;
  core::DeviceState state;
  std::optional<core::Transition> transition;
};

// What the publisher needs after a transition is stored.
struct StoredStatus {
  core::StatusDocument document;
  std::int64_t seq = 0;  // status_seq of this transition (outbox)
};

using ListQuery = core::ListQuery;  // filters and paging, parsed by the core

struct HistoryEntry {
  std::optional<core::Status> from;
  core::Status to;
  std::string reason;
  TimePoint at;
};

// A device password as stored: salt and salted hash (hex), never the password.
struct StoredSecret {
  std::string salt;
  std::string hash;
};

struct BlockedHardwareId {
  std::string hardware_id;
  std::optional<std::string> reason;
  TimePoint blocked_at;
};

struct LoadedDevice {
  DeviceId id;
  core::DeviceState state;
};

class DeviceStore {
 public:
  explicit DeviceStore(ConnectionPool& pool) : pool_(pool) {}

  static void prepare_statements(pqxx::connection& c);

  // Inserts the device, its first history row and (secure mode) its credential
  // in one transaction. A taken hardware_id gives ErrorKind::conflict with
  // existing_id set; a blocked one ErrorKind::forbidden.
  Result<core::DeviceRecord> register_device(const core::Registration& r, TimePoint now,
                                             const std::optional<StoredSecret>& secret = std::nullopt);
  Result<std::optional<StoredSecret>> credential(const DeviceId& id);
  Result<core::Done> set_credential(const DeviceId& id, const StoredSecret& secret, TimePoint now);
  Result<core::Done> block_hardware_id(const std::string& hardware_id, const std::optional<std::string>& reason,
                                       TimePoint now);
  Result<core::Done> unblock_hardware_id(const std::string& hardware_id);
  Result<std::vector<BlockedHardwareId>> blocked_hardware_ids();

  Result<core::DeviceRecord> get(const DeviceId& id);
  Result<core::DeviceRecord> get_by_hardware_id(const std::string& hardware_id);
  // Calls `page` with successive pages (bounded memory for big fleets).
  Result<core::Done> list(const ListQuery& q, const std::function<bool(const std::vector<core::DeviceRecord>&)>& page);
  Result<std::vector<HistoryEntry>> history(const DeviceId& id, int limit);
  // Returns the hardware id of the deleted device; not_found if there was none.
  Result<std::string> remove(const DeviceId& id);

  // Stores a batch of state changes in one transaction; rows of devices that no
  // longer exist are skipped. Returns the stored transitions, in batch order.
  Result<std::vector<StoredStatus>> write_states(const std::vector<StateWrite>& batch);
  // Coalesced last_seen refreshes, one statement; never moves last_seen back.
  // Returns the current status of the rows asked to `refresh` their document.
  struct SeenUpdate {
    DeviceId id;
    TimePoint at;
    bool refresh = false;
    std::int64_t presence_session = -1;  // a birth's session (never moves back)
  };
  Result<std::vector<StoredStatus>> flush_last_seen(const std::vector<SeenUpdate>& seen);
  // Attribute updates of a heartbeat (firmware_version, ip_address, metadata).
  Result<core::Done> update_heartbeat_attributes(const DeviceId& id, const core::HeartbeatRequest& h, TimePoint now);
  // An administrator's PATCH: attributes and (optionally) a state change with its
  // transition, in one transaction. Returns the record and the stored transition.
  Result<std::pair<core::DeviceRecord, std::optional<StoredStatus>>> apply_patch(
      const DeviceId& id, const core::DevicePatch& patch, const std::optional<StateWrite>& state, TimePoint now);

  // Start-up: every device's state, in pages.
  Result<std::size_t> load_states(const std::function<void(const std::vector<LoadedDevice>&)>& page);
  // Outbox: transitions whose retained message the broker has not acknowledged.
  Result<std::vector<StoredStatus>> unpublished(std::size_t limit);
  // Every device's current status document (after the broker lost them).
  Result<std::vector<StoredStatus>> all_statuses();
  Result<core::Done> mark_published(const std::vector<std::pair<DeviceId, std::int64_t>>& acked);
  // Deleted devices whose retained topics are not yet confirmed cleared (a
  // DELETE records one in its transaction; see schema/005).
  Result<std::vector<DeviceId>> pending_clears(std::size_t limit);
  Result<core::Done> clears_done(const std::vector<DeviceId>& cleared);

  Result<core::Done> ping();

 private:
  template <class Fn>
  auto guarded(const char* what, Fn&& fn) -> decltype(fn(std::declval<pqxx::connection&>()));

  ConnectionPool& pool_;
};

}  // namespace maestra::store
