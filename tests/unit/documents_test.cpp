// Tests of core/documents: the device record's field names and RFC 3339 millisecond
// timestamps, the retained status document's exact field set, the fleet summary and
// fleet status documents, and error bodies.
#include "unit_test.hpp"

#include <regex>
#include <set>
#include <string>

#include "core/documents.hpp"

using namespace maestra::core;
using namespace maestra::core::unit;

namespace {
std::set<std::string> keys_of(const Json& doc) {
  std::set<std::string> keys;
  for (const auto& [key, value] : doc.items()) keys.insert(key);
  return keys;
}

bool is_rfc3339_millis(const Json& value) {
  static const std::regex form(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)");
  return value.is_string() && std::regex_match(value.get<std::string>(), form);
}

const char* const uuid_text = "123e4567-e89b-12d3-a456-426614174000";

DeviceRecord sample_record() {
  DeviceRecord r;
  r.id = id_from(uuid_text);
  r.name = "Arduino Sensor 1";
  r.device_type = "arduino";
  r.hardware_id = "AA:BB:CC:DD:EE:FF";
  r.firmware_version = "1.0.0";
  r.ip_address = "192.168.1.100";
  r.location = Json{{"building", "Main"}, {"floor", 1}, {"room", "Lab"}};
  r.metadata = Json{{"serial_number", "ARD-12345"}};
  r.status = Status::online;
  r.created_at = t0 + 12h + 34min + 56s + 789ms;
  r.last_seen = t0 + 12h + 35min;
  r.status_changed_at = t0 + 12h + 34min + 56s + 789ms;
  r.updated_at = t0 + 12h + 35min + 1ms;
  r.offline_after = Seconds{120};
  return r;
}

StatusDocument sample_status() {
  return StatusDocument{id_from(uuid_text), "Arduino Sensor 1", "arduino", "AA:BB:CC:DD:EE:FF",
                        Status::offline,    t0 + 5s,            t0 + 305s, Reason::timeout};
}
}  // namespace

TEST_SUITE("documents") {

TEST_CASE("device_record_json: field names") {
  const Json doc = device_record_json(sample_record());
  CHECK(keys_of(doc) == std::set<std::string>{"id", "name", "device_type", "hardware_id", "firmware_version",
                                              "ip_address", "location", "metadata", "status", "last_seen",
                                              "status_changed_at", "created_at", "updated_at", "offline_after"});
}

TEST_CASE("device_record_json: it carries the guide's registration response fields") {
  const Json doc = device_record_json(sample_record());
  CHECK(doc["id"] == uuid_text);
  CHECK(doc["name"] == "Arduino Sensor 1");
  CHECK(doc["device_type"] == "arduino");
  CHECK(doc["hardware_id"] == "AA:BB:CC:DD:EE:FF");
  CHECK(doc["status"] == "online");
  CHECK(doc["created_at"] == "2026-02-02T12:34:56.789Z");
}

TEST_CASE("device_record_json: values and RFC 3339 millisecond timestamps") {
  const Json doc = device_record_json(sample_record());
  CHECK(doc["firmware_version"] == "1.0.0");
  CHECK(doc["ip_address"] == "192.168.1.100");
  CHECK(doc["location"] == Json{{"building", "Main"}, {"floor", 1}, {"room", "Lab"}});
  CHECK(doc["metadata"] == Json{{"serial_number", "ARD-12345"}});
  CHECK(doc["last_seen"] == "2026-02-02T12:35:00.000Z");
  CHECK(doc["status_changed_at"] == "2026-02-02T12:34:56.789Z");
  CHECK(doc["updated_at"] == "2026-02-02T12:35:00.001Z");
  CHECK(doc["offline_after"] == 120);
  for (const char* field : {"last_seen", "status_changed_at", "created_at", "updated_at"}) {
    CAPTURE(std::string_view(field));
    CHECK(is_rfc3339_millis(doc[field]));
  }
}

TEST_CASE("device_record_json: absent optional values are null, never missing") {
  DeviceRecord r = sample_record();
  r.firmware_version.reset();
  r.ip_address.reset();
  r.location = nullptr;
  r.metadata = nullptr;
  r.offline_after.reset();
  const Json doc = device_record_json(r);
  for (const char* field : {"firmware_version", "ip_address", "location", "metadata", "offline_after"}) {
    CAPTURE(std::string_view(field));
    REQUIRE(doc.contains(field));
    CHECK(doc[field].is_null());
  }
}

TEST_CASE("device_record_json: every status by name") {
  for (const Status s : {Status::online, Status::offline, Status::error, Status::maintenance}) {
    CAPTURE(s);
    DeviceRecord r = sample_record();
    r.status = s;
    CHECK(device_record_json(r)["status"] == to_string(s));
  }
}

TEST_CASE("status_document_json: exactly the eight fields of docs/protocol.md") {
  const Json doc = Json::parse(status_document_json(sample_status()));
  CHECK(keys_of(doc) == std::set<std::string>{"device_id", "name", "device_type", "hardware_id", "status",
                                              "last_seen", "changed_at", "reason"});
  CHECK(doc["device_id"] == uuid_text);
  CHECK(doc["name"] == "Arduino Sensor 1");
  CHECK(doc["device_type"] == "arduino");
  CHECK(doc["hardware_id"] == "AA:BB:CC:DD:EE:FF");
  CHECK(doc["status"] == "offline");
  CHECK(doc["last_seen"] == "2026-02-02T00:00:05.000Z");
  CHECK(doc["changed_at"] == "2026-02-02T00:05:05.000Z");
  CHECK(doc["reason"] == "timeout");
}

TEST_CASE("status_document_json: every reason by name") {
  for (const Reason reason : {Reason::registered, Reason::heartbeat, Reason::will, Reason::disconnect,
                              Reason::timeout, Reason::admin, Reason::reported_error, Reason::restart}) {
    CAPTURE(reason);
    StatusDocument d = sample_status();
    d.reason = reason;
    CHECK(Json::parse(status_document_json(d))["reason"] == to_string(reason));
  }
}

TEST_CASE("status_document_json: names with quotes and unicode stay valid JSON") {
  StatusDocument d = sample_status();
  d.name = "Caf\xc3\xa9 \"Lab\" \\ sensor";
  const Json doc = Json::parse(status_document_json(d));
  CHECK(doc["name"] == d.name);
}

TEST_CASE("fleet summary: counts per status, total and time") {
  FleetCounts counts;
  counts.by_status = {3, 2, 1, 4};  // online, offline, error, maintenance
  CHECK(counts.total() == 10);
  const Json doc = Json::parse(fleet_summary_json(counts, t0 + 1s + 500ms));
  CHECK(keys_of(doc) == std::set<std::string>{"online", "offline", "error", "maintenance", "total", "at"});
  CHECK(doc["online"] == 3);
  CHECK(doc["offline"] == 2);
  CHECK(doc["error"] == 1);
  CHECK(doc["maintenance"] == 4);
  CHECK(doc["total"] == 10);
  CHECK(doc["at"] == "2026-02-02T00:00:01.500Z");
}

TEST_CASE("fleet summary: an empty fleet is all zeros") {
  const Json doc = Json::parse(fleet_summary_json(FleetCounts{}, t0));
  for (const char* field : {"online", "offline", "error", "maintenance", "total"}) {
    CAPTURE(std::string_view(field));
    CHECK(doc[field] == 0);
  }
}

TEST_CASE("FleetCounts compare by value") {
  FleetCounts a;
  FleetCounts b;
  CHECK(a == b);
  b.by_status[static_cast<std::size_t>(Status::error)] = 1;
  CHECK_FALSE(a == b);
  CHECK(b.total() == 1);
}

TEST_CASE("fleet_status_json: the service's birth and will") {
  const Json online = Json::parse(fleet_status_json(true, t0 + 2s));
  CHECK(keys_of(online) == std::set<std::string>{"status", "since"});
  CHECK(online["status"] == "online");
  CHECK(online["since"] == "2026-02-02T00:00:02.000Z");

  const Json offline = Json::parse(fleet_status_json(false, std::nullopt));
  CHECK(offline["status"] == "offline");
  CHECK(offline["since"].is_null());
}

TEST_CASE("error_json: code, detail and the field when there is one") {
  const Json with_field = error_json(invalid("name", "name is required"));
  CHECK(with_field == Json{{"error", "invalid_field"}, {"detail", "name is required"}, {"field", "name"}});

  const Json without_field = error_json(Error{ErrorKind::malformed, "", "body is not valid JSON"});
  CHECK(keys_of(without_field) == std::set<std::string>{"error", "detail"});
  CHECK(without_field["error"] == "malformed_json");
  CHECK(without_field["detail"] == "body is not valid JSON");

  Error conflict{ErrorKind::conflict, "hardware_id", "hardware_id is already registered"};
  conflict.existing_id = "123e4567-e89b-12d3-a456-426614174000";
  const Json conflict_doc = error_json(conflict);
  CHECK(keys_of(conflict_doc) == std::set<std::string>{"error", "detail", "field", "id"});
  CHECK(conflict_doc["error"] == "conflict");
  CHECK(conflict_doc["id"] == "123e4567-e89b-12d3-a456-426614174000");
  CHECK_FALSE(error_json(invalid("name", "x")).contains("id"));

  struct Row {
    ErrorKind kind;
    std::string_view code;
  };
  const Row table[] = {
      {ErrorKind::malformed, "malformed_json"}, {ErrorKind::invalid_field, "invalid_field"},
      {ErrorKind::not_found, "not_found"},      {ErrorKind::conflict, "conflict"},
      {ErrorKind::too_large, "payload_too_large"}, {ErrorKind::unavailable, "unavailable"},
      {ErrorKind::unauthorized, "unauthorized"}, {ErrorKind::forbidden, "forbidden"},
  };
  for (const Row& row : table) {
    CAPTURE(row.code);
    CHECK(error_json(Error{row.kind, "", "x"})["error"] == row.code);
  }
}

}  // TEST_SUITE
