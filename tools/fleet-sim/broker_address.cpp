// Host name resolution for the broker (see broker_address.hpp): getaddrinfo,
// IPv4 only, first answer wins.
#include "broker_address.hpp"

#include <netdb.h>
#include <sys/socket.h>

#include <cstring>

namespace fleet_sim {

ResolvedBroker resolve_broker(const std::string& host, std::uint16_t port) {
  ResolvedBroker result;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* answers = nullptr;
  const int status = ::getaddrinfo(host.c_str(), nullptr, &hints, &answers);
  if (status != 0 || answers == nullptr) {
    result.error = "cannot resolve broker host '" + host + "': " + ::gai_strerror(status);
    return result;
  }
  sockaddr_in address{};
  std::memcpy(&address, answers->ai_addr, sizeof address);
  address.sin_port = htons(port);
  ::freeaddrinfo(answers);
  result.address = address;
  return result;
}

}  // namespace fleet_sim
