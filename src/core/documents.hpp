// The JSON documents the service emits: the device record (HTTP responses and the
// MQTT registration reply), the retained status document, the fleet summary and
// error bodies. One definition per document, used by every adapter.
#pragma once
#include <array>
#include <optional>
#include <string>

#include "core/device_state.hpp"
#include "core/errors.hpp"
#include "core/ids.hpp"
#include "core/topics.hpp"
#include "core/validation.hpp"

namespace maestra::core {

struct DeviceRecord {
  DeviceId id;
  std::string name;
  std::string device_type;
  std::string hardware_id;
  std::optional<std::string> firmware_version;
  std::optional<std::string> ip_address;
  Json location;  // object or null
  Json metadata;  // object or null
  Status status = Status::online;
  TimePoint last_seen{};
  TimePoint status_changed_at{};
  TimePoint created_at{};
  TimePoint updated_at{};
  std::optional<Seconds> offline_after;
};

Json device_record_json(const DeviceRecord& record);

// {"device_id","name","device_type","hardware_id","status","last_seen","changed_at","reason"}
struct StatusDocument {
  DeviceId device_id;
  std::string name;
  std::string device_type;
  std::string hardware_id;
  Status status;
  TimePoint last_seen;
  TimePoint changed_at;
  Reason reason;
};
std::string status_document_json(const StatusDocument& doc);

struct FleetCounts {
  std::array<std::int64_t, 4> by_status{};  // indexed by Status
  std::int64_t total() const { return by_status[0] + by_status[1] + by_status[2] + by_status[3]; }
  friend bool operator==(const FleetCounts&, const FleetCounts&) = default;
};
std::string fleet_summary_json(const FleetCounts& counts, TimePoint at);
std::string fleet_status_json(bool online, std::optional<TimePoint> since);

// Secure mode: the broker account issued to a device, shown once.
// {"username","password","client_id","topics":{"heartbeat","presence","status","commands"}}
Json mqtt_credentials_json(const DeviceId& id, std::string_view password, const Topics& topics);

// {"error": "<code>", "detail": "...", "field": "..."}; `id` added for conflicts.
Json error_json(const Error& error);

}  // namespace maestra::core
