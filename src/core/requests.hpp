// The requests a device or an administrator can make, parsed and validated once
// for every transport: registration, heartbeat, and the administrator's patch.
// HTTP bodies and MQTT payloads both come through these functions.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/device_state.hpp"
#include "core/ids.hpp"
#include "core/validation.hpp"

namespace maestra::core {

inline constexpr std::size_t max_name_chars = 200;
inline constexpr std::size_t max_device_type_chars = 64;
inline constexpr std::size_t max_hardware_id_chars = 128;
inline constexpr std::size_t max_firmware_chars = 64;
inline constexpr Seconds min_offline_after{1};
inline constexpr Seconds max_offline_after{7 * 24 * 3600};

struct Registration {
  std::string name;
  std::string device_type;
  std::string hardware_id;
  std::optional<std::string> firmware_version;
  std::optional<std::string> ip_address;
  Json location;  // object or null
  Json metadata;  // object or null
  std::optional<Seconds> offline_after;
  std::optional<std::string> provisioning_key;  // when the service requires one
};

// The one rule for a hardware id, whatever carries it (a body, an MQTT topic, a
// path): valid UTF-8, not empty or blank (Unicode spaces included), at most
// max_hardware_id_chars characters, no control characters.
std::optional<Error> check_hardware_id(std::string_view value);

// Provisioning control, for every transport: when a key is configured the
// registration must present it (unauthorized if absent, forbidden if wrong).
std::optional<Error> check_provisioning_key(std::string_view configured, const std::optional<std::string>& presented);

// `topic_hardware_id`, when registering over MQTT, is the id from the topic: the
// body may omit hardware_id, and must not contradict it.
Result<Registration> parse_registration(const Json& body,
                                        std::optional<std::string_view> topic_hardware_id = std::nullopt);

struct HeartbeatRequest {
  std::optional<DeviceId> device_id;        // one of device_id ...
  std::optional<std::string> hardware_id;   // ... or hardware_id (older API)
  bool reports_error = false;
  std::optional<std::string> firmware_version;
  std::optional<std::string> ip_address;
  Json metadata;  // object or null
  bool updates_attributes() const { return firmware_version || ip_address || !metadata.is_null(); }
};

// HTTP: the body names the device. MQTT: the id comes from the topic and the body
// (possibly empty) carries only the optional fields; pass `topic_device_id`.
Result<HeartbeatRequest> parse_heartbeat(const Json& body, std::optional<DeviceId> topic_device_id = std::nullopt);

// A field of a PATCH: absent, set to a value, or (where allowed) set to null.
template <class T>
struct PatchField {
  bool present = false;
  std::optional<T> value;  // empty when set to null
};

struct DevicePatch {
  PatchField<std::string> name;
  PatchField<std::string> firmware_version;
  PatchField<std::string> ip_address;
  PatchField<Json> location;
  PatchField<Json> metadata;
  std::optional<Status> status;
  PatchField<Seconds> offline_after;
  bool changes_attributes() const {
    return name.present || firmware_version.present || ip_address.present || location.present ||
           metadata.present || offline_after.present;
  }
};

Result<DevicePatch> parse_patch(const Json& body);

// GET /devices: filters and paging from the query string. Every value is
// checked as text (valid UTF-8, no control characters, bounded) and named in
// the error; `limit` is optional (absent: every device), at most max_list_limit.
inline constexpr std::int64_t max_list_limit = 100000;
inline constexpr std::int64_t max_list_offset = 1000000000;
inline constexpr int default_history_limit = 50;
inline constexpr int max_history_limit = 1000;

struct ListQuery {
  std::optional<std::string> status;
  std::optional<std::string> device_type;
  std::optional<std::string> hardware_id;
  std::optional<std::int64_t> limit;
  std::int64_t offset = 0;
  // Not a request parameter: set by the fleet when `status` is one few devices
  // have (see list_by_candidates): the only devices that can match.
  std::optional<std::vector<DeviceId>> among;
};

// GET /devices?status=X without an index on status: scan the devices in list
// order until the page is full (about `wanted` x total / matching rows), or look
// up the `matching` devices the registry shows with X by id (`matching` rows,
// each about ten times the cost). True when the lookup by id costs less. `wanted` is offset + page size.
bool list_by_candidates(std::int64_t matching, std::int64_t total, std::int64_t wanted);

// Looks up one query parameter of the request (nullopt when absent).
using ParamLookup = std::function<std::optional<std::string>(std::string_view name)>;

Result<ListQuery> parse_list_query(const ParamLookup& param);
// GET /devices/{id}/history?limit=: 1 to max_history_limit, default default_history_limit.
Result<int> parse_history_limit(const ParamLookup& param);

}  // namespace maestra::core
