// Fuzz target for heartbeats: core::parse_heartbeat over HTTP (the body names
// the device by device_id or hardware_id) and over MQTT (the device id is the
// topic level of maestra/devices/{id}/heartbeat, parsed by core::parse_device_id;
// an empty payload is a plain heartbeat), then core::apply_heartbeat.
// Input: first line = the topic's device-id level, the rest = the body/payload.
// Invariants: an accepted heartbeat names exactly one device (MQTT: the topic's),
// its fields are within the documented limits, and applying it connects the
// device with the reported error set as asked.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/heartbeat.hpp"
#include "core/requests.hpp"
#include "core/topics.hpp"
#include "fuzz_json.hpp"
#include "fuzz_support.hpp"

using namespace maestra;
using maestra::fuzz::check_text;

namespace {

void check_accepted(const core::HeartbeatRequest& h) {
  FUZZ_CHECK(h.device_id.has_value() != h.hardware_id.has_value(),
             "an accepted heartbeat must name exactly one of device_id and hardware_id");
  if (h.device_id) {
    const auto again = core::parse_device_id(h.device_id->to_string());
    FUZZ_CHECK(again && *again == *h.device_id, "a device id does not survive to_string/parse_device_id");
  }
  if (h.hardware_id) {
    check_text(*h.hardware_id, core::max_hardware_id_chars, true, "heartbeat hardware_id");
  }
  if (h.firmware_version) check_text(*h.firmware_version, core::max_firmware_chars, false, "heartbeat firmware_version");
  if (h.ip_address) FUZZ_CHECK(core::is_valid_ip(*h.ip_address), "accepted ip_address is not an IP address");
  FUZZ_CHECK(h.metadata.is_null() || h.metadata.is_object(), "accepted metadata is neither null nor an object");
  FUZZ_CHECK(h.updates_attributes() == (h.firmware_version || h.ip_address || !h.metadata.is_null()),
             "updates_attributes disagrees with the fields");
  if (!h.metadata.is_null()) (void)h.metadata.dump();  // strict: throws on invalid UTF-8

  // The rule it feeds: a heartbeat always leaves the device connected, with the
  // reported error as the heartbeat said, and last_seen never moves back.
  core::DeviceState state;
  state.connected = false;
  state.last_seen = core::TimePoint{std::chrono::seconds(1000)};
  state.last_heartbeat = core::TimePoint{std::chrono::seconds(995)};
  const core::TimePoint now{std::chrono::seconds(1000)};
  const auto outcome = core::apply_heartbeat(state, h.reports_error, now);
  FUZZ_CHECK(outcome.outcome.next.connected, "a heartbeat left the device disconnected");
  FUZZ_CHECK(outcome.outcome.next.reported_error == h.reports_error, "a heartbeat did not set reported_error");
  FUZZ_CHECK(outcome.outcome.next.last_seen >= state.last_seen, "a heartbeat moved last_seen back");
  FUZZ_CHECK(outcome.too_frequent, "a heartbeat 5 s after the last one is not too frequent");
  FUZZ_CHECK(outcome.outcome.next.status() == (h.reports_error ? core::Status::error : core::Status::online),
             "a heartbeat derived the wrong status");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return fuzz::guarded([&] {
    const auto [topic_level, payload] = fuzz::split_first_line(fuzz::as_text(data, size));

    // HTTP: the body names the device.
    const auto body = fuzz::checked_parse_json_object(payload);
    if (body) {
      const auto http = core::parse_heartbeat(body.value());
      if (http)
        check_accepted(http.value());
      else
        FUZZ_CHECK(!http.error().field.empty(), "a refused heartbeat names no field");
    }

    // MQTT: the topic names the device; an empty payload is a plain heartbeat.
    const core::Topics topics("maestra");
    const std::string topic = "maestra/devices/" + std::string(topic_level) + "/heartbeat";
    const auto parsed = topics.parse(topic);  // its level points into `topic`
    if (parsed.kind != core::Topics::Kind::heartbeat) return;
    const auto id = core::parse_device_id(parsed.level);
    if (!id) return;
    core::Json mqtt_body = core::Json::object();
    if (!payload.empty()) {
      if (!body) return;
      mqtt_body = body.value();
    }
    const auto mqtt = core::parse_heartbeat(mqtt_body, *id);
    if (payload.empty()) FUZZ_CHECK(mqtt.ok(), "an empty MQTT heartbeat payload was refused");
    if (!mqtt) return;
    FUZZ_CHECK(mqtt->device_id && *mqtt->device_id == *id && !mqtt->hardware_id,
               "an MQTT heartbeat names another device than its topic");
    check_accepted(mqtt.value());
  });
}
