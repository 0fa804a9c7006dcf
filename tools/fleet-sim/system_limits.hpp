// The operating-system limits that decide how many devices one process can
// simulate: open file descriptors (RLIMIT_NOFILE, raised here as far as the
// hard limit allows) and the local ephemeral port range.
#pragma once
#include <cstddef>
#include <string>

namespace fleet_sim {

// Raises the soft RLIMIT_NOFILE to at least `needed` (up to the hard limit, or
// beyond it when privileged). Returns an error line when it cannot.
std::string ensure_open_file_limit(std::size_t needed);

// How many local ports connect() can pick from (ip_local_port_range), 0 if unknown.
std::size_t ephemeral_port_count();

}  // namespace fleet_sim
