// Bulk registration over the HTTP shim: POST {http}/devices/register for every
// device, spread over --register-parallel keep-alive connections (one thread
// each, cpp-httplib clients). 201 and 409-with-id both yield the device id.
#pragma once
#include <cstddef>

#include "options.hpp"
#include "registration.hpp"

namespace fleet_sim {

RegistrationTally register_over_http(const SimOptions& options, std::size_t devices);

}  // namespace fleet_sim
