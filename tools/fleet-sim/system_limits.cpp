// RLIMIT_NOFILE raising and the ephemeral port range (see system_limits.hpp).
#include "system_limits.hpp"

#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace fleet_sim {

std::string ensure_open_file_limit(std::size_t needed) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return std::string("getrlimit(RLIMIT_NOFILE): ") + std::strerror(errno);
  const auto wanted = static_cast<rlim_t>(needed);
  if (limit.rlim_cur >= wanted) return "";

  if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < wanted) {
    // Only a privileged process (CAP_SYS_RESOURCE) may raise the hard limit.
    rlimit raised{wanted, wanted};
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) return "";
    return "need " + std::to_string(needed) + " open files but the hard limit (RLIMIT_NOFILE) is " +
           std::to_string(limit.rlim_max) + " and cannot be raised by this process (" + std::strerror(errno) +
           "); raise it (ulimit -Hn, /etc/security/limits.conf, systemd LimitNOFILE) or simulate fewer --devices";
  }
  limit.rlim_cur = limit.rlim_max;  // all the hard limit allows: the loop may open a few more sockets later
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return "need " + std::to_string(needed) + " open files; setrlimit(RLIMIT_NOFILE) failed: " + std::strerror(errno);
  }
  return "";
}

std::size_t ephemeral_port_count() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  std::size_t low = 0;
  std::size_t high = 0;
  if (!(in >> low >> high) || high < low) return 0;
  return high - low + 1;
}

}  // namespace fleet_sim
