// Serialisation of device records, status documents, summaries and errors.
#include "core/documents.hpp"

namespace maestra::core {

namespace {
Json optional_text(const std::optional<std::string>& value) { return value ? Json(*value) : Json(nullptr); }
}  // namespace

Json device_record_json(const DeviceRecord& r) {
  return Json{{"id", r.id.to_string()},
              {"name", r.name},
              {"device_type", r.device_type},
              {"hardware_id", r.hardware_id},
              {"firmware_version", optional_text(r.firmware_version)},
              {"ip_address", optional_text(r.ip_address)},
              {"location", r.location},
              {"metadata", r.metadata},
              {"status", to_string(r.status)},
              {"last_seen", format_rfc3339(r.last_seen)},
              {"status_changed_at", format_rfc3339(r.status_changed_at)},
              {"created_at", format_rfc3339(r.created_at)},
              {"updated_at", format_rfc3339(r.updated_at)},
              {"offline_after", r.offline_after ? Json(r.offline_after->count()) : Json(nullptr)}};
}

std::string status_document_json(const StatusDocument& d) {
  return Json{{"device_id", d.device_id.to_string()},
              {"name", d.name},
              {"device_type", d.device_type},
              {"hardware_id", d.hardware_id},
              {"status", to_string(d.status)},
              {"last_seen", format_rfc3339(d.last_seen)},
              {"changed_at", format_rfc3339(d.changed_at)},
              {"reason", to_string(d.reason)}}
      .dump();
}

std::string fleet_summary_json(const FleetCounts& counts, TimePoint at) {
  Json doc = Json::object();
  for (std::size_t i = 0; i < counts.by_status.size(); ++i)
    doc[std::string(to_string(static_cast<Status>(i)))] = counts.by_status[i];
  doc["total"] = counts.total();
  doc["at"] = format_rfc3339(at);
  return doc.dump();
}

std::string fleet_status_json(bool online, std::optional<TimePoint> since) {
  return Json{{"status", online ? "online" : "offline"}, {"since", since ? Json(format_rfc3339(*since)) : Json(nullptr)}}
      .dump();
}

Json mqtt_credentials_json(const DeviceId& id, std::string_view password, const Topics& topics) {
  const std::string device = id.to_string();
  return Json{{"username", device},
              {"password", password},
              {"client_id", device},
              {"topics",
               {{"heartbeat", topics.heartbeat(id)},
                {"presence", topics.presence(id)},
                {"status", topics.status(id)},
                {"commands", topics.prefix() + "/devices/" + device + "/commands/#"}}}};
}

Json error_json(const Error& error) {
  Json doc{{"error", error_code(error.kind)}, {"detail", error.detail}};
  if (!error.field.empty()) doc["field"] = error.field;
  if (!error.existing_id.empty()) doc["id"] = error.existing_id;
  return doc;
}

}  // namespace maestra::core
