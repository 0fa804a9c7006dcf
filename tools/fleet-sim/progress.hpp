// What the simulator prints: the fleet's counters, the once-a-second progress
// line, and the JSON lines a benchmark parses (kill event, final summaries).
// Pure formatting: callers pass the numbers and the elapsed time in.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fleet_sim {

struct FleetCounters {
  std::uint64_t connected = 0;  // devices with an accepted CONNACK right now
  std::uint64_t connected_max = 0;
  std::uint64_t sent = 0;     // heartbeats written to sockets
  std::uint64_t acked = 0;    // PUBACKs of heartbeats
  std::uint64_t errors = 0;   // failed connects, lost connections, protocol errors
  std::uint64_t skipped = 0;  // interval beats skipped because the in-flight window was full
  std::uint64_t reconnects = 0;
  std::uint64_t killed = 0;
};

// "elapsed=12.0 connected=10000 sent=120000 sent/s=10000 acked=119990 acked/s=10001 errors=0"
std::string progress_line(double elapsed_s, const FleetCounters& now, const FleetCounters& before, double window_s);

struct FleetSummary {
  FleetCounters counters;
  std::size_t devices = 0;
  double duration_s = 0;  // first heartbeat to the end of sending (or the last PUBACK, if later)
  double connect_s = 0;   // start of connecting to the end of the connect phase
  double run_s = 0;       // start of connecting to the end, exit included
};
// {"sent":..,"acked":..,"connected_max":..,"duration_s":..,"rate_sent":..,"rate_acked":..,...}
std::string fleet_summary_json(const FleetSummary& summary);

// {"event":"kill","kill_epoch_ms":..,"killed":N,"ids":[...]} or with "killed_file" instead of "ids".
std::string kill_event_json(std::int64_t kill_epoch_ms, const std::vector<std::string>& killed_ids,
                            const std::string& killed_file, double close_ms);

struct SubscriberSummary {
  std::uint64_t received = 0;
  std::uint64_t retained_skipped = 0;
  double duration_s = 0;            // from SUBACK to the end
  std::int64_t first_epoch_ms = 0;  // first and last counted arrival, 0 if none
  std::int64_t last_epoch_ms = 0;
};
// {"received":..,"rate":..,"duration_s":..,"active_rate":..,...}
std::string subscriber_summary_json(const SubscriberSummary& summary);

// "elapsed=3.0 received=300000 received/s=100000"
std::string subscriber_progress_line(double elapsed_s, std::uint64_t received, std::uint64_t received_before,
                                     double window_s);

}  // namespace fleet_sim
