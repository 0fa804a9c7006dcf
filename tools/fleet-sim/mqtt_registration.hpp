// Bulk registration over MQTT: --register-parallel clients each take batches of
// devices, subscribe to their {prefix}/hardware/{hardware_id}/registration reply
// topics first, then publish the registration JSON to .../register and collect
// the replies (the device record, or {"error":"conflict","id":...}).
#pragma once
#include <netinet/in.h>

#include <cstddef>

#include "options.hpp"
#include "registration.hpp"

namespace fleet_sim {

RegistrationTally register_over_mqtt(const SimOptions& options, const sockaddr_in& broker, std::size_t devices);

}  // namespace fleet_sim
