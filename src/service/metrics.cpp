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
  family(out, "maestra_frequent_heartbeats_total", "counter", "Heartbeats closer than 10 s to the previous one.");
  sample(out, "maestra_frequent_heartbeats_total", "", static_cast<double>(frequent_heartbeats.load()));
  family(out, "maestra_last_seen_flushes_total", "counter", "Coalesced last_seen flushes written.");
  sample(out, "maestra_last_seen_flushes_total", "", static_cast<double>(flushes.load()));
  family(out, "maestra_last_seen_flushed_rows_total", "counter", "Rows written by coalesced last_seen flushes.");
  sample(out, "maestra_last_seen_flushed_rows_total", "", static_cast<double>(flushed_rows.load()));
  family(out, "maestra_last_seen_flush_seconds_total", "counter", "Time spent in last_seen flushes.");
  sample(out, "maestra_last_seen_flush_seconds_total", "", static_cast<double>(flush_seconds_micros.load()) / 1e6);
  family(out, "maestra_last_seen_last_flush_rows", "gauge", "Rows in the most recent last_seen flush.");
  sample(out, "maestra_last_seen_last_flush_rows", "", static_cast<double>(last_flush_rows.load()));
  family(out, "maestra_transition_batches_total", "counter", "Transactions that stored status transitions.");
  sample(out, "maestra_transition_batches_total", "", static_cast<double>(transition_batches.load()));
  family(out, "maestra_mqtt_connected", "gauge", "1 while the service is connected to the broker.");
  sample(out, "maestra_mqtt_connected", "", mqtt_connected.load());
  family(out, "maestra_mqtt_reconnects_total", "counter", "Connections to the broker after the first.");
  sample(out, "maestra_mqtt_reconnects_total", "", static_cast<double>(mqtt_reconnects.load()));
  family(out, "maestra_mqtt_messages_total", "counter", "MQTT messages received on subscribed topics.");
  sample(out, "maestra_mqtt_messages_total", "", static_cast<double>(mqtt_messages.load()));
  family(out, "maestra_status_published_total", "counter", "Retained status messages acknowledged by the broker.");
  sample(out, "maestra_status_published_total", "", static_cast<double>(status_published.load()));
  family(out, "maestra_database_errors_total", "counter", "Database operations that failed.");
  sample(out, "maestra_database_errors_total", "", static_cast<double>(database_errors.load()));
  family(out, "maestra_http_requests_total", "counter", "HTTP requests served.");
  sample(out, "maestra_http_requests_total", "", static_cast<double>(http_requests.load()));
  return out;
}

}  // namespace maestra::service
