// The simulated fleet: N devices, each its own MQTT connection with a will,
// connected at a paced rate, announcing themselves with a retained birth, then
// heartbeating by interval or at a fleet-wide rate; optionally a fraction is
// killed abruptly; at the end they leave as --on-exit says. One thread.
#pragma once
#include <netinet/in.h>

#include <string>
#include <vector>

#include "options.hpp"
#include "progress.hpp"

namespace fleet_sim {

// Runs the fleet to the end (duration, count, or Ctrl-C) and returns the tally.
// Progress lines and the kill event are printed on stdout as they happen.
FleetSummary run_fleet(const SimOptions& options, const sockaddr_in& broker,
                       const std::vector<std::string>& device_ids);

}  // namespace fleet_sim
