// Subscriber mode, the benchmark's other end: one MQTT client subscribes to the
// --subscribe filters, counts what arrives per second and in total, and with
// --print-arrivals prints "epoch_ms topic payload" per message (latency probes).
#pragma once
#include <netinet/in.h>

#include "options.hpp"

namespace fleet_sim {

// Runs until --duration after the SUBACK, --count messages, or Ctrl-C; prints
// the final JSON summary. Returns the process exit status.
int run_subscriber(const SimOptions& options, const sockaddr_in& broker);

}  // namespace fleet_sim
