// Throttling of failed credentials per client address. After `max_failures`
// refused secrets (admin token, device password, provisioning key) within one
// window, the address is refused for the rest of that window without its
// secret being checked, so a weak token cannot be guessed at wire speed. Memory
// is bounded: at most `max_addresses` are tracked; when full, expired windows
// are dropped first, and an address that does not fit is not throttled.
// Pure: time is passed in; the caller serialises access.
#pragma once
#include <cstddef>
#include <string>
#include <unordered_map>

#include "core/clock.hpp"

namespace maestra::core {

class AuthThrottle {
 public:
  AuthThrottle(int max_failures, Millis window, std::size_t max_addresses = 10000)
      : max_failures_(max_failures), window_(window), max_addresses_(max_addresses) {}

  // How long `address` must still wait; zero when it may try now.
  Millis retry_after(const std::string& address, TimePoint now) const;
  // One refused secret from `address`.
  void record_failure(const std::string& address, TimePoint now);
  std::size_t tracked() const { return entries_.size(); }

 private:
  struct Entry {
    TimePoint window_start;
    int failures = 0;
  };
  void drop_expired(TimePoint now);

  int max_failures_;
  Millis window_;
  std::size_t max_addresses_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace maestra::core
