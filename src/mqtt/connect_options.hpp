// What both of the service's broker connections (the main link and the
// telemetry link) connect with: MQTT 5, a persistent session kept 24 h, a 20 s
// keepalive, a 3 s connect timeout, reconnects left to the links' own
// supervisors, the service's account, and TLS for ssl:// and mqtts:// URLs.
#pragma once
#include <mqtt/connect_options.h>

#include "core/config.hpp"

namespace maestra::mqtt_adapter {

inline constexpr int session_expiry_seconds = 24 * 3600;

// Sets them on `builder`, which the caller owns. Filled in place, not returned:
// Paho C++ 1.2.0's options hold pointers into themselves, and a builder
// returned from a function (moved) crashed the service in connect.
void set_service_connect_options(mqtt::connect_options_builder& builder, const core::Config& config, bool clean_start);

}  // namespace maestra::mqtt_adapter
