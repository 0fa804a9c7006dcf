// Fuzz target for registration: core::parse_json_object then
// core::parse_registration, over HTTP (the body names the hardware id) and over
// MQTT (the hardware id comes from the topic maestra/hardware/{id}/register).
// Input: first line = the topic's hardware-id level, the rest = the body.
// Invariants: an accepted registration is within the documented limits on both
// transports (one hardware-id rule), MQTT keeps the topic's id, the two
// transports agree when the body repeats the topic's id, and the device record
// built from it serialises strictly and re-parses to the same registration.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/documents.hpp"
#include "core/requests.hpp"
#include "core/topics.hpp"
#include "fuzz_json.hpp"
#include "fuzz_support.hpp"

using namespace maestra;
using maestra::fuzz::check_text;

namespace {

void check_limits(const core::Registration& r, const std::string& transport) {
  check_text(r.name, core::max_name_chars, true, transport + " registration name");
  check_text(r.device_type, core::max_device_type_chars, true, transport + " registration device_type");
  check_text(r.hardware_id, core::max_hardware_id_chars, true, transport + " registration hardware_id");
  if (r.firmware_version) check_text(*r.firmware_version, core::max_firmware_chars, false, transport + " registration firmware_version");
  if (r.ip_address) FUZZ_CHECK(core::is_valid_ip(*r.ip_address), "accepted ip_address is not an IP address");
  FUZZ_CHECK(r.location.is_null() || r.location.is_object(), "accepted location is neither null nor an object");
  FUZZ_CHECK(r.metadata.is_null() || r.metadata.is_object(), "accepted metadata is neither null nor an object");
  if (r.offline_after)
    FUZZ_CHECK(*r.offline_after >= core::min_offline_after && *r.offline_after <= core::max_offline_after,
               "accepted offline_after is out of range");
  if (r.provisioning_key) check_text(*r.provisioning_key, 256, false, transport + " registration provisioning_key");
}

// The record the service answers with, serialised as strictly as nlohmann allows
// (an invalid UTF-8 string throws here), must read back as the same registration.
void check_round_trip(const core::Registration& r) {
  core::DeviceRecord record;
  record.name = r.name;
  record.device_type = r.device_type;
  record.hardware_id = r.hardware_id;
  record.firmware_version = r.firmware_version;
  record.ip_address = r.ip_address;
  record.location = r.location;
  record.metadata = r.metadata;
  record.offline_after = r.offline_after;
  const std::string text = core::device_record_json(record).dump();
  const auto again_doc = text.size() <= core::max_body_bytes ? core::parse_json_object(text)
                                                             : core::Result<core::Json>(core::Json::parse(text));
  FUZZ_CHECK(again_doc.ok(), "a serialised device record does not parse back");
  const auto again = core::parse_registration(again_doc.value());
  FUZZ_CHECK(again.ok(), "a serialised device record is not an acceptable registration");
  FUZZ_CHECK(again->name == r.name && again->device_type == r.device_type && again->hardware_id == r.hardware_id &&
                 again->firmware_version == r.firmware_version && again->ip_address == r.ip_address &&
                 again->offline_after == r.offline_after,
             "a device record re-parses to different fields");
  FUZZ_CHECK(core::device_record_json(record).dump() == text, "serialising a device record is not stable");
  // location/metadata: one more parse/dump cycle changes nothing (1e400 -> null happens once).
  core::DeviceRecord second = record;
  second.location = again->location;
  second.metadata = again->metadata;
  const std::string second_text = core::device_record_json(second).dump();
  const auto third = core::Json::parse(second_text);  // NOLINT: dump output is JSON
  second.location = third.at("location");
  second.metadata = third.at("metadata");
  FUZZ_CHECK(core::device_record_json(second).dump() == second_text, "location/metadata do not settle after one cycle");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return fuzz::guarded([&] {
    const auto [topic_level, body_text] = fuzz::split_first_line(fuzz::as_text(data, size));
    const auto body = fuzz::checked_parse_json_object(body_text);
    if (!body) return;

    // HTTP: the body alone.
    const auto http = core::parse_registration(body.value());
    if (http) {
      check_limits(http.value(), "HTTP");
      check_round_trip(http.value());
    } else {
      FUZZ_CHECK(!http.error().field.empty(), "a refused registration names no field");
    }

    // MQTT: the level as the adapter gets it from the topic.
    const core::Topics topics("maestra");
    const std::string topic = "maestra/hardware/" + std::string(topic_level) + "/register";
    const auto parsed = topics.parse(topic);
    if (parsed.kind != core::Topics::Kind::register_request) return;
    const auto mqtt = core::parse_registration(body.value(), parsed.level);
    if (mqtt) {
      FUZZ_CHECK(mqtt->hardware_id == parsed.level, "an MQTT registration does not keep the topic's hardware id");
      check_limits(mqtt.value(), "MQTT");
      check_round_trip(mqtt.value());
    }
    const auto named = body->find("hardware_id");
    // (A level with '+', '#' or NUL never arrives: the broker refuses such topics.)
    if (core::is_topic_level(parsed.level) && named != body->end() && named->is_string() &&
        named->get_ref<const std::string&>() == parsed.level)
      FUZZ_CHECK(mqtt.ok() == http.ok(), "HTTP and MQTT disagree on the same registration");
  });
}
