// Fuzz target for the administrator's PATCH /devices/{id}: core::parse_json_object
// then core::parse_patch, then core::apply_admin_status for a requested status.
// Input: the body.
// Invariants: an accepted patch names only changeable fields, each within its
// documented limits (null only where allowed); written back as JSON it parses to
// the same patch; a refused one names a field; the status rule yields the
// documented status.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/requests.hpp"
#include "fuzz_json.hpp"
#include "fuzz_support.hpp"

using namespace maestra;
using maestra::fuzz::check_text;

namespace {

template <class T>
core::Json field_json(const core::PatchField<T>& field) {
  if (!field.value) return nullptr;
  if constexpr (std::is_same_v<T, core::Seconds>)
    return field.value->count();
  else
    return *field.value;
}

// The patch written back as the body that would produce it.
core::Json patch_json(const core::DevicePatch& p) {
  core::Json body = core::Json::object();
  if (p.name.present) body["name"] = field_json(p.name);
  if (p.firmware_version.present) body["firmware_version"] = field_json(p.firmware_version);
  if (p.ip_address.present) body["ip_address"] = field_json(p.ip_address);
  if (p.location.present) body["location"] = field_json(p.location);
  if (p.metadata.present) body["metadata"] = field_json(p.metadata);
  if (p.status) body["status"] = std::string(core::to_string(*p.status));
  if (p.offline_after.present) body["offline_after"] = field_json(p.offline_after);
  return body;
}

void check_accepted(const core::Json& body, const core::DevicePatch& p) {
  static constexpr std::string_view changeable[] = {"name",     "firmware_version", "ip_address",   "location",
                                                    "metadata", "status",           "offline_after"};
  for (const auto& [key, value] : body.items()) {
    bool known = false;
    for (auto k : changeable) known = known || key == k;
    FUZZ_CHECK(known, "an accepted patch carries a field that cannot be changed");
  }
  if (p.name.present) {
    FUZZ_CHECK(p.name.value.has_value(), "an accepted patch sets name to null");
    check_text(*p.name.value, core::max_name_chars, true, "patch name");
  }
  if (p.firmware_version.value)
    check_text(*p.firmware_version.value, core::max_firmware_chars, false, "patch firmware_version");
  if (p.ip_address.value) FUZZ_CHECK(core::is_valid_ip(*p.ip_address.value), "accepted ip_address is not an IP");
  for (const auto* object : {&p.location, &p.metadata})
    if (object->value) {
      FUZZ_CHECK(object->value->is_object(), "accepted location/metadata is not an object");
      (void)object->value->dump();  // strict: throws on invalid UTF-8
    }
  if (p.offline_after.value)
    FUZZ_CHECK(*p.offline_after.value >= core::min_offline_after && *p.offline_after.value <= core::max_offline_after,
               "accepted offline_after is out of range");
  FUZZ_CHECK(p.changes_attributes() == (p.name.present || p.firmware_version.present || p.ip_address.present ||
                                        p.location.present || p.metadata.present || p.offline_after.present),
             "changes_attributes disagrees with the fields");

  const auto again = core::parse_patch(patch_json(p));
  FUZZ_CHECK(again.ok(), "a patch written back as JSON is refused");
  FUZZ_CHECK(patch_json(again.value()).dump() == patch_json(p).dump(), "a patch written back parses differently");

  if (p.status) {
    for (const bool connected : {false, true}) {
      core::DeviceState state;
      state.connected = connected;
      state.maintenance = true;
      const auto outcome = core::apply_admin_status(state, *p.status, core::TimePoint{});
      const auto status = outcome.next.status();
      switch (*p.status) {
        case core::Status::maintenance: FUZZ_CHECK(status == core::Status::maintenance, "maintenance not set"); break;
        case core::Status::offline: FUZZ_CHECK(status == core::Status::offline, "offline not forced"); break;
        case core::Status::error:
          FUZZ_CHECK(status == (connected ? core::Status::error : core::Status::offline), "error not derived");
          break;
        case core::Status::online:
          FUZZ_CHECK(status == (connected ? core::Status::online : core::Status::offline), "online not derived");
          break;
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return fuzz::guarded([&] {
    const auto body = fuzz::checked_parse_json_object(fuzz::as_text(data, size));
    if (!body) return;
    const auto patch = core::parse_patch(body.value());
    if (patch)
      check_accepted(body.value(), patch.value());
    else  // the field may be "" when the body's unknown key is ""
      FUZZ_CHECK(patch.error().kind == core::ErrorKind::invalid_field, "a refused patch is not an invalid field");
  });
}
