// What registering a simulated device means, whichever transport carries it:
// the request body, how a reply (HTTP response or MQTT registration message)
// becomes a device id, and the tally of a bulk registration. Pure: the HTTP
// and MQTT transports live in http_registration.cpp and mqtt_registration.cpp.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace fleet_sim {

// {"name":..., "device_type":..., "hardware_id":...}
std::string registration_body(std::string_view name, std::string_view device_type, std::string_view hardware_id);

struct RegistrationReply {
  std::string id;         // the device id; empty when the registration failed
  bool existing = false;  // 409 / {"error":"conflict","id":...}: registered before
  std::string error;      // why it failed, when id is empty
};

// http_status is the HTTP status code, or 0 for a reply that came over MQTT.
RegistrationReply parse_registration_reply(std::string_view body, int http_status);

struct RegistrationTally {
  std::vector<std::string> ids;  // by device index; "" where registration failed
  std::size_t created = 0;
  std::size_t existing = 0;
  std::size_t failed = 0;
  std::string first_error;
  double seconds = 0;

  void record(std::size_t index, const RegistrationReply& reply);
};

}  // namespace fleet_sim
