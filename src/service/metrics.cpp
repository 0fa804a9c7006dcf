// Prometheus text exposition of the service's metrics.
#include "service/metrics.hpp"

namespace maestra::service {

namespace {
void family(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += " ";
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += " ";
  out += type;
  out += "\n";
}
void sample(std::string& out, const char* name, const std::string& labels, double value) {
  out += name;
  if (!labels.empty()) out += "{" + labels + "}";
  char buf[64];
  std::snprintf(buf, sizeof buf, " %.17g\n", value);
  out += buf;
}
}  // namespace

std::string Metrics::render_prometheus() const {
  std::string out;
  family(out, "maestra_devices", "gauge", "Registered devices by current status.");
  for (std::size_t i = 0; i < 4; ++i)
    sample(out, "maestra_devices", "status=\"" + std::string(core::to_string(static_cast<core::Status>(i))) + "\"",
           static_cast<double>(devices_by_status[i].load()));
  family(out, "maestra_heartbeats_total", "counter", "Heartbeats accepted, by transport.");
  sample(out, "maestra_heartbeats_total", "transport=\"mqtt\"", static_cast<double>(heartbeats[0].load()));
  sample(out, "maestra_heartbeats_total", "transport=\"http\"", static_cast<double>(heartbeats[1].load()));
  family(out, "maestra_registrations_total", "counter", "Devices registered, by transport.");
  sample(out, "maestra_registrations_total", "transport=\"mqtt\"", static_cast<double>(registrations[0].load()));
  sample(out, "maestra_registrations_total", "transport=\"http\"", static_cast<double>(registrations[1].load()));
  family(out, "maestra_rejected_total", "counter", "Inputs rejected or dropped, by reason.");
  for (std::size_t i = 0; i < rejection_names.size(); ++i)
    sample(out, "maestra_rejected_total", std::string("reason=\"") + rejection_names[i] + "\"",
           static_cast<double>(rejected[i].load()));
  family(out, "maestra_status_transitions_total", "counter", "Stored status transitions, by reason.");
  for (std::size_t i = 0; i < 8; ++i)
    sample(out, "maestra_status_transitions_total",
           "reason=\"" + std::string(core::to_string(static_cast<core::Reason>(i))) + "\"",
           static_cast<double>(transitions[i].load()));
  struct Single {
    const char* name;
    const char* type;
    const char* help;
    double value;
  };
  const Single singles[] = {
      {"maestra_frequent_heartbeats_total", "counter", "Heartbeats closer than 10 s to the previous one.",
       static_cast<double>(frequent_heartbeats.load())},
      {"maestra_last_seen_flushes_total", "counter", "Coalesced last_seen flushes written.",
       static_cast<double>(flushes.load())},
      {"maestra_last_seen_flushed_rows_total", "counter", "Rows written by coalesced last_seen flushes.",
       static_cast<double>(flushed_rows.load())},
      {"maestra_last_seen_flush_seconds_total", "counter", "Time spent in last_seen flushes.",
       static_cast<double>(flush_seconds_micros.load()) / 1e6},
      {"maestra_last_seen_last_flush_rows", "gauge", "Rows in the most recent last_seen flush.",
       static_cast<double>(last_flush_rows.load())},
      {"maestra_transition_batches_total", "counter", "Transactions that stored status transitions.",
       static_cast<double>(transition_batches.load())},
      {"maestra_wills_held_total", "counter", "Wills held because they came in a burst or right after a reconnect.",
       static_cast<double>(wills_held.load())},
      {"maestra_wills_discarded_total", "counter",
       "Held wills discarded: the broker was going away (its shutdown sends every client's will).",
       static_cast<double>(wills_discarded.load())},
      {"maestra_flap_changes_held_total", "counter",
       "Status changes of flapping devices held until their status settled (not stored one by one).",
       static_cast<double>(flap_changes_held.load())},
      {"maestra_mqtt_connected", "gauge", "1 while the service is connected to the broker and subscribed.",
       static_cast<double>(mqtt_connected.load())},
      {"maestra_mqtt_reconnects_total", "counter", "Connections to the broker after the first.",
       static_cast<double>(mqtt_reconnects.load())},
      {"maestra_mqtt_messages_total", "counter", "MQTT messages received on subscribed topics.",
       static_cast<double>(mqtt_messages.load())},
      {"maestra_status_published_total", "counter", "Retained status messages acknowledged by the broker.",
       static_cast<double>(status_published.load())},
      {"maestra_database_errors_total", "counter", "Database operations that failed.",
       static_cast<double>(database_errors.load())},
      {"maestra_internal_errors_total", "counter",
       "Requests that failed inside the service (HTTP 500): a bug or bad stored data, each logged with its cause.",
       static_cast<double>(internal_errors.load())},
      {"maestra_http_requests_total", "counter", "HTTP requests served.", static_cast<double>(http_requests.load())},
  };
  for (const auto& single : singles) {
    family(out, single.name, single.type, single.help);
    sample(out, single.name, "", single.value);
  }
  return out;
}

}  // namespace maestra::service
