// Counters and gauges of the service, rendered in the Prometheus text format at
// GET /metrics. Plain atomics: any thread may count, nothing here blocks.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "core/device_state.hpp"

namespace maestra::service {

enum class Transport : std::uint8_t { mqtt, http };

enum class Rejection : std::uint8_t {
  bad_topic,        // topic level is not a UUID / not a valid hardware id
  unknown_device,   // well-formed id that is not registered
  malformed,        // not JSON / wrong JSON shape
  invalid_field,    // validation failed
  too_large,        // payload over 64 KiB
  conflict,         // duplicate hardware_id on registration
  stale_will,       // will of an older session
  unauthorized,     // missing or wrong credentials
  throttled,        // refused unchecked: too many refused credentials from the address (HTTP 429)
};
inline constexpr std::array<const char*, 9> rejection_names{"bad_topic",   "unknown_device", "malformed",
                                                            "invalid_field", "too_large",   "conflict",
                                                            "stale_will",  "unauthorized", "throttled"};

struct Metrics {
  std::array<std::atomic<std::int64_t>, 4> devices_by_status{};
  std::array<std::atomic<std::uint64_t>, 2> heartbeats{};     // by Transport
  std::array<std::atomic<std::uint64_t>, 2> registrations{};  // by Transport
  std::array<std::atomic<std::uint64_t>, rejection_names.size()> rejected{};  // by Rejection
  std::array<std::atomic<std::uint64_t>, 8> transitions{};    // by core::Reason
  std::atomic<std::uint64_t> frequent_heartbeats{0};
  std::atomic<std::uint64_t> flushes{0};
  std::atomic<std::uint64_t> flushed_rows{0};
  std::atomic<std::uint64_t> flush_seconds_micros{0};
  std::atomic<std::uint64_t> last_flush_rows{0};
  std::atomic<std::uint64_t> transition_batches{0};
  std::atomic<std::uint64_t> wills_held{0};
  std::atomic<std::uint64_t> wills_discarded{0};
  std::atomic<std::uint64_t> flap_changes_held{0};
  std::atomic<int> mqtt_connected{0};
  std::atomic<std::uint64_t> mqtt_reconnects{0};
  std::atomic<std::uint64_t> mqtt_messages{0};
  std::atomic<std::uint64_t> status_published{0};
  std::atomic<std::uint64_t> database_errors{0};
  std::atomic<std::uint64_t> internal_errors{0};  // answered 500: a bug or bad stored data, logged with its cause
  std::atomic<std::uint64_t> http_requests{0};

  void reject(Rejection r) { ++rejected[static_cast<std::size_t>(r)]; }
  std::string render_prometheus() const;
};

}  // namespace maestra::service
