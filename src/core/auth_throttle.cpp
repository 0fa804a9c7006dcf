// Per-address failure windows for refused credentials.
#include "core/auth_throttle.hpp"

namespace maestra::core {

Millis AuthThrottle::retry_after(const std::string& address, TimePoint now) const {
  const auto it = entries_.find(address);
  if (it == entries_.end() || it->second.failures < max_failures_) return Millis{0};
  const auto ends = it->second.window_start + window_;
  return ends > now ? ends - now : Millis{0};
}

void AuthThrottle::record_failure(const std::string& address, TimePoint now) {
  auto it = entries_.find(address);
  if (it == entries_.end()) {
    if (entries_.size() >= max_addresses_) drop_expired(now);
    if (entries_.size() >= max_addresses_) return;  // full of live windows: not tracked
    it = entries_.emplace(address, Entry{now, 0}).first;
  }
  if (now - it->second.window_start >= window_) it->second = Entry{now, 0};
  ++it->second.failures;
}

void AuthThrottle::drop_expired(TimePoint now) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (now - it->second.window_start >= window_)
      it = entries_.erase(it);
    else
      ++it;
  }
}

}  // namespace maestra::core
