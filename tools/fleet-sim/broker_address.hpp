// Turns --host/--port into the one IPv4 socket address every connection uses,
// resolved once at start so thousands of connects cost no DNS lookups.
#pragma once
#include <netinet/in.h>

#include <cstdint>
#include <optional>
#include <string>

namespace fleet_sim {

struct ResolvedBroker {
  std::optional<sockaddr_in> address;
  std::string error;
};
ResolvedBroker resolve_broker(const std::string& host, std::uint16_t port);

}  // namespace fleet_sim
