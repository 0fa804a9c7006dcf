// Progress lines and JSON summaries (see progress.hpp). Numbers are rounded to
// milliseconds / whole messages per second so the lines stay short and stable.
#include "progress.hpp"

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace fleet_sim {
namespace {

// Rounds to 1/scale (scale 1000: milliseconds); dividing by the exact scale
// keeps the printed value short (5.8, not 5.800000000000001).
double rounded(double value, double scale = 1000) { return std::round(value * scale) / scale; }

double per_second(std::uint64_t count, double seconds) {
  return seconds > 0 ? rounded(static_cast<double>(count) / seconds, 10) : 0.0;
}

}  // namespace

std::string progress_line(double elapsed_s, const FleetCounters& now, const FleetCounters& before, double window_s) {
  char line[320];
  std::snprintf(line, sizeof line,
                "elapsed=%.1f connected=%llu sent=%llu sent/s=%.0f acked=%llu acked/s=%.0f errors=%llu", elapsed_s,
                static_cast<unsigned long long>(now.connected), static_cast<unsigned long long>(now.sent),
                per_second(now.sent - before.sent, window_s), static_cast<unsigned long long>(now.acked),
                per_second(now.acked - before.acked, window_s), static_cast<unsigned long long>(now.errors));
  std::string text = line;
  if (now.skipped > 0) text += " skipped=" + std::to_string(now.skipped);
  if (now.killed > 0) text += " killed=" + std::to_string(now.killed);
  return text;
}

std::string fleet_summary_json(const FleetSummary& summary) {
  const FleetCounters& counters = summary.counters;
  const nlohmann::ordered_json json = {
      {"sent", counters.sent},
      {"acked", counters.acked},
      {"connected_max", counters.connected_max},
      {"duration_s", rounded(summary.duration_s)},
      {"rate_sent", per_second(counters.sent, summary.duration_s)},
      {"rate_acked", per_second(counters.acked, summary.duration_s)},
      {"devices", summary.devices},
      {"errors", counters.errors},
      {"skipped", counters.skipped},
      {"reconnects", counters.reconnects},
      {"killed", counters.killed},
      {"connect_s", rounded(summary.connect_s)},
      {"run_s", rounded(summary.run_s)},
  };
  return json.dump();
}

std::string kill_event_json(std::int64_t kill_epoch_ms, const std::vector<std::string>& killed_ids,
                            const std::string& killed_file, double close_ms) {
  nlohmann::ordered_json json = {
      {"event", "kill"},
      {"kill_epoch_ms", kill_epoch_ms},
      {"killed", killed_ids.size()},
      {"close_ms", rounded(close_ms)},
  };
  if (killed_file.empty()) {
    json["ids"] = killed_ids;
  } else {
    json["killed_file"] = killed_file;
  }
  return json.dump();
}

std::string subscriber_summary_json(const SubscriberSummary& summary) {
  const double active_s = static_cast<double>(summary.last_epoch_ms - summary.first_epoch_ms) / 1000.0;
  const nlohmann::ordered_json json = {
      {"received", summary.received},
      {"rate", per_second(summary.received, summary.duration_s)},
      {"duration_s", rounded(summary.duration_s)},
      {"active_rate", per_second(summary.received, active_s)},
      {"first_epoch_ms", summary.first_epoch_ms},
      {"last_epoch_ms", summary.last_epoch_ms},
      {"retained_skipped", summary.retained_skipped},
  };
  return json.dump();
}

std::string subscriber_progress_line(double elapsed_s, std::uint64_t received, std::uint64_t received_before,
                                     double window_s) {
  char line[160];
  std::snprintf(line, sizeof line, "elapsed=%.1f received=%llu received/s=%.0f", elapsed_s,
                static_cast<unsigned long long>(received), per_second(received - received_before, window_s));
  return line;
}

}  // namespace fleet_sim
