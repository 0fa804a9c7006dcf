// The store the fleet owner works against, in terms of core types: what it
// keeps of each device, its history and the status outbox. Postgres implements
// it (device_store.hpp); the unit tests implement it in memory
// (tests/unit/memory_store.hpp) to test the fleet owner without a database.
//
// Every operation is atomic (one transaction in Postgres). A failure comes
// back as an Error: ErrorKind::unavailable when the database could not be
// reached (the fleet retries), another kind for a refusal (conflict, not_found,
// forbidden) or a fault (internal).
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/documents.hpp"
#include "core/requests.hpp"

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

// A device as loaded at start-up: its state and its current status document
// (what its retained status topic shows).
struct LoadedDevice {
  DeviceId id;
  core::DeviceState state;
  StoredStatus status;
};

// A coalesced last_seen refresh of one device, with the attributes its
// heartbeats reported meanwhile (the latest value of each wins).
struct SeenUpdate {
  DeviceId id;
  TimePoint at;
  std::int64_t presence_session = -1;  // a birth's session (never moves back)
  std::optional<std::string> firmware_version;
  std::optional<std::string> ip_address;
  std::optional<core::Json> metadata;
  bool has_attributes() const { return firmware_version || ip_address || metadata; }
};

class Store {
 public:
  virtual ~Store() = default;

  // Inserts the device, its first history row and (secure mode) its credential
  // in one transaction. A taken hardware_id gives ErrorKind::conflict with
  // existing_id set; a blocked one ErrorKind::forbidden.
  virtual Result<core::DeviceRecord> register_device(const core::Registration& r, TimePoint now,
                                                     const std::optional<StoredSecret>& secret) = 0;
  virtual Result<std::optional<StoredSecret>> credential(const DeviceId& id) = 0;
  virtual Result<core::Done> set_credential(const DeviceId& id, const StoredSecret& secret, TimePoint now) = 0;
  virtual Result<core::Done> block_hardware_id(const std::string& hardware_id,
                                               const std::optional<std::string>& reason, TimePoint now) = 0;
  virtual Result<core::Done> unblock_hardware_id(const std::string& hardware_id) = 0;
  virtual Result<std::vector<BlockedHardwareId>> blocked_hardware_ids() = 0;

  virtual Result<core::DeviceRecord> get(const DeviceId& id) = 0;
  virtual Result<core::DeviceRecord> get_by_hardware_id(const std::string& hardware_id) = 0;
  // Calls `page` with successive pages (bounded memory for big fleets); `page`
  // returns false to stop.
  virtual Result<core::Done> list(const ListQuery& q,
                                  const std::function<bool(const std::vector<core::DeviceRecord>&)>& page) = 0;
  virtual Result<std::vector<HistoryEntry>> history(const DeviceId& id, int limit) = 0;
  // Returns the hardware id of the deleted device; not_found if there was none.
  // Records the device's retained topics as to be cleared (pending_clears).
  virtual Result<std::string> remove(const DeviceId& id) = 0;

  // Stores a batch of state changes in one transaction; rows of devices that no
  // longer exist are skipped. Returns the stored transitions, in batch order.
  virtual Result<std::vector<StoredStatus>> write_states(const std::vector<StateWrite>& batch) = 0;
  // Coalesced last_seen refreshes and heartbeat attributes, one statement;
  // never moves last_seen (or a presence session) back.
  virtual Result<core::Done> flush_last_seen(const std::vector<SeenUpdate>& seen) = 0;
  // An administrator's PATCH: attributes and (optionally) a state change with its
  // transition, in one transaction. Returns the record and the stored transition.
  virtual Result<std::pair<core::DeviceRecord, std::optional<StoredStatus>>> apply_patch(
      const DeviceId& id, const core::DevicePatch& patch, const std::optional<StateWrite>& state, TimePoint now) = 0;

  // Start-up: every device's state, in pages.
  virtual Result<std::size_t> load_states(const std::function<void(const std::vector<LoadedDevice>&)>& page) = 0;
  // Outbox: transitions whose retained message the broker has not acknowledged.
  virtual Result<std::vector<StoredStatus>> unpublished(std::size_t limit) = 0;
  // Every device's current status document (after the broker lost them).
  virtual Result<std::vector<StoredStatus>> all_statuses() = 0;
  virtual Result<core::Done> mark_published(const std::vector<std::pair<DeviceId, std::int64_t>>& acked) = 0;
  // Deleted devices whose retained topics are not yet confirmed cleared.
  virtual Result<std::vector<DeviceId>> pending_clears(std::size_t limit) = 0;
  virtual Result<core::Done> clears_done(const std::vector<DeviceId>& cleared) = 0;

  virtual Result<core::Done> ping() = 0;
};

}  // namespace maestra::store
