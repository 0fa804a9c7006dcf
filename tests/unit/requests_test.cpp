// Tests of core/requests, table-driven: registration (required fields, limits, ip,
// location/metadata, offline_after, the MQTT topic's hardware id), heartbeats
// (device_id, hardware_id fallback, status, topic id) and the administrator's patch.
#include "unit_test.hpp"

#include <map>
#include <string>

#include "core/requests.hpp"

using namespace maestra::core;
using namespace maestra::core::unit;

namespace {
// The registration body of the device registration guide.
Json guide_registration() {
  return Json::parse(R"({
    "name": "Arduino Sensor 1",
    "device_type": "arduino",
    "hardware_id": "AA:BB:CC:DD:EE:FF",
    "firmware_version": "1.0.0",
    "ip_address": "192.168.1.100",
    "location": {"building": "Main", "floor": 1, "room": "Lab"},
    "metadata": {"serial_number": "ARD-12345", "manufacturer": "Arduino", "model": "Uno R3"}
  })");
}

Json minimal_registration() {
  return Json{{"name", "ESP32 Sensor"}, {"device_type", "esp32"}, {"hardware_id", "24:6F:28:AA:BB:CC"}};
}

Json with(Json body, const std::string& field, Json value) {
  body[field] = std::move(value);
  return body;
}

Json without(Json body, const std::string& field) {
  body.erase(field);
  return body;
}

const char* const uuid_text = "123e4567-e89b-12d3-a456-426614174000";
}  // namespace

TEST_SUITE("requests") {

// --- registration ------------------------------------------------------------

TEST_CASE("parse_registration: the guide's example body") {
  const auto r = parse_registration(guide_registration());
  REQUIRE(r.ok());
  CHECK(r->name == "Arduino Sensor 1");
  CHECK(r->device_type == "arduino");
  CHECK(r->hardware_id == "AA:BB:CC:DD:EE:FF");
  CHECK(r->firmware_version == std::optional<std::string>{"1.0.0"});
  CHECK(r->ip_address == std::optional<std::string>{"192.168.1.100"});
  CHECK(r->location == Json{{"building", "Main"}, {"floor", 1}, {"room", "Lab"}});
  CHECK(r->metadata["model"] == "Uno R3");
  CHECK_FALSE(r->offline_after.has_value());
}

TEST_CASE("parse_registration: only the three required fields") {
  const auto r = parse_registration(minimal_registration());
  REQUIRE(r.ok());
  CHECK_FALSE(r->firmware_version.has_value());
  CHECK_FALSE(r->ip_address.has_value());
  CHECK(r->location.is_null());
  CHECK(r->metadata.is_null());
  CHECK_FALSE(r->offline_after.has_value());
}

TEST_CASE("parse_registration: null optional fields are absent, unknown fields are ignored") {
  Json body = minimal_registration();
  for (const char* field : {"firmware_version", "ip_address", "location", "metadata", "offline_after"})
    body[field] = nullptr;
  body["sdk"] = "python";
  const auto r = parse_registration(body);
  REQUIRE(r.ok());
  CHECK_FALSE(r->firmware_version.has_value());
  CHECK_FALSE(r->ip_address.has_value());
  CHECK(r->location.is_null());
  CHECK(r->metadata.is_null());
  CHECK_FALSE(r->offline_after.has_value());
}

TEST_CASE("parse_registration: every invalid field is named in Error.field") {
  struct Row {
    std::string_view why;
    Json body;
    std::string_view field;
  };
  const std::string long_name(max_name_chars + 1, 'n');
  const std::string long_type(max_device_type_chars + 1, 't');
  const std::string long_hw(max_hardware_id_chars + 1, 'h');
  const std::string long_fw(max_firmware_chars + 1, 'f');
  const Json base = minimal_registration();
  const Row table[] = {
      {"name missing", without(base, "name"), "name"},
      {"name null", with(base, "name", nullptr), "name"},
      {"name number", with(base, "name", 5), "name"},
      {"name object", with(base, "name", Json::object()), "name"},
      {"name empty", with(base, "name", ""), "name"},
      {"name blank", with(base, "name", "   "), "name"},
      {"name too long", with(base, "name", long_name), "name"},
      {"name with newline", with(base, "name", "a\nb"), "name"},
      {"device_type missing", without(base, "device_type"), "device_type"},
      {"device_type array", with(base, "device_type", Json::array({"esp32"})), "device_type"},
      {"device_type blank", with(base, "device_type", " "), "device_type"},
      {"device_type too long", with(base, "device_type", long_type), "device_type"},
      {"hardware_id missing", without(base, "hardware_id"), "hardware_id"},
      {"hardware_id null", with(base, "hardware_id", nullptr), "hardware_id"},
      {"hardware_id number", with(base, "hardware_id", 42), "hardware_id"},
      {"hardware_id empty", with(base, "hardware_id", ""), "hardware_id"},
      {"hardware_id too long", with(base, "hardware_id", long_hw), "hardware_id"},
      {"hardware_id with NUL", with(base, "hardware_id", std::string("a\0b", 3)), "hardware_id"},
      {"firmware_version number", with(base, "firmware_version", 1.0), "firmware_version"},
      {"firmware_version too long", with(base, "firmware_version", long_fw), "firmware_version"},
      {"firmware_version with tab", with(base, "firmware_version", "1.0\t"), "firmware_version"},
      {"ip_address invalid", with(base, "ip_address", "999.1.1.1"), "ip_address"},
      {"ip_address host name", with(base, "ip_address", "esp32.local"), "ip_address"},
      {"ip_address blank", with(base, "ip_address", ""), "ip_address"},
      {"ip_address number", with(base, "ip_address", 3232235876), "ip_address"},
      {"ip_address with port", with(base, "ip_address", "192.168.1.100:80"), "ip_address"},
      {"location string", with(base, "location", "Lab"), "location"},
      {"location array", with(base, "location", Json::array({1, 2})), "location"},
      {"metadata number", with(base, "metadata", 7), "metadata"},
      {"metadata array", with(base, "metadata", Json::array()), "metadata"},
      {"NUL in a metadata value", with(base, "metadata", Json{{"serial", std::string("A\0B", 3)}}), "metadata"},
      {"NUL in a metadata key", with(base, "metadata", Json{{std::string("se\0rial", 7), "x"}}), "metadata"},
      {"NUL deep in metadata", with(base, "metadata", Json{{"a", Json::array({Json{{"b", std::string(1, '\0')}}})}}),
       "metadata"},
      {"NUL in location", with(base, "location", Json{{"room", std::string("L\0ab", 4)}}), "location"},
      {"offline_after zero", with(base, "offline_after", 0), "offline_after"},
      {"offline_after negative", with(base, "offline_after", -5), "offline_after"},
      {"offline_after over a week", with(base, "offline_after", 604801), "offline_after"},
      {"offline_after fraction", with(base, "offline_after", 30.5), "offline_after"},
      {"offline_after string", with(base, "offline_after", "60"), "offline_after"},
      {"offline_after huge", with(base, "offline_after", 18446744073709551615ULL), "offline_after"},
  };
  for (const Row& row : table) {
    CAPTURE(row.why);
    const auto r = parse_registration(row.body);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::invalid_field);
    CHECK(r.error().field == row.field);
    CHECK(r.error().detail.find(row.field) != std::string::npos);
  }
}

TEST_CASE("parse_registration: limits are inclusive") {
  const Json base = minimal_registration();
  CHECK(parse_registration(with(base, "name", std::string(max_name_chars, 'n'))).ok());
  CHECK(parse_registration(with(base, "device_type", std::string(max_device_type_chars, 't'))).ok());
  CHECK(parse_registration(with(base, "hardware_id", std::string(max_hardware_id_chars, 'h'))).ok());
  CHECK(parse_registration(with(base, "firmware_version", std::string(max_firmware_chars, 'f'))).ok());
  CHECK(parse_registration(with(base, "firmware_version", "")).ok());  // optional strings may be empty

  const auto shortest = parse_registration(with(base, "offline_after", 1));
  REQUIRE(shortest.ok());
  CHECK(shortest->offline_after == std::optional<Seconds>{Seconds{1}});
  const auto longest = parse_registration(with(base, "offline_after", 604800));
  REQUIRE(longest.ok());
  CHECK(longest->offline_after == std::optional<Seconds>{Seconds{604800}});
}

TEST_CASE("parse_registration: names in any script count code points") {
  std::string name;
  for (std::size_t i = 0; i < max_name_chars; ++i) name += "\xe2\x82\xac";  // 200 x U+20AC, 600 bytes
  const auto r = parse_registration(with(minimal_registration(), "name", name));
  REQUIRE(r.ok());
  CHECK(r->name == name);
  CHECK_FALSE(parse_registration(with(minimal_registration(), "name", name + "x")).ok());
}

TEST_CASE("parse_registration: IPv4 and IPv6 addresses") {
  for (const char* ip : {"10.0.0.1", "::1", "fe80::1", "2001:db8::8a2e:370:7334", "::ffff:192.168.1.1"}) {
    CAPTURE(std::string_view(ip));
    const auto r = parse_registration(with(minimal_registration(), "ip_address", ip));
    REQUIRE(r.ok());
    CHECK(r->ip_address == std::optional<std::string>{ip});
  }
}

TEST_CASE("parse_registration: metadata keeps any JSON, including unicode") {
  const Json metadata = Json::parse(R"({"list":[1,2,{"x":null}],"nested":{"deep":true},"text":"caf\u00e9"})");
  const auto r = parse_registration(with(minimal_registration(), "metadata", metadata));
  REQUIRE(r.ok());
  CHECK(r->metadata == metadata);
}

TEST_CASE("parse_registration over MQTT: the topic's hardware id") {
  const std::string topic_id = "24:6F:28:AA:BB:CC";

  SUBCASE("body omits hardware_id: the topic's is used") {
    const auto r = parse_registration(without(minimal_registration(), "hardware_id"), topic_id);
    REQUIRE(r.ok());
    CHECK(r->hardware_id == topic_id);
  }
  SUBCASE("body hardware_id null: the topic's is used") {
    const auto r = parse_registration(with(minimal_registration(), "hardware_id", nullptr), topic_id);
    REQUIRE(r.ok());
    CHECK(r->hardware_id == topic_id);
  }
  SUBCASE("body matches the topic") {
    const auto r = parse_registration(minimal_registration(), topic_id);
    REQUIRE(r.ok());
    CHECK(r->hardware_id == topic_id);
  }
  SUBCASE("body contradicts the topic") {
    const auto r = parse_registration(with(minimal_registration(), "hardware_id", "other"), topic_id);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::invalid_field);
    CHECK(r.error().field == "hardware_id");
    CHECK(r.error().detail.find("topic") != std::string::npos);
  }
  SUBCASE("a case difference is a contradiction") {
    CHECK_FALSE(parse_registration(with(minimal_registration(), "hardware_id", "24:6f:28:aa:bb:cc"), topic_id).ok());
  }
  SUBCASE("body hardware_id present but invalid") {
    const auto r = parse_registration(with(minimal_registration(), "hardware_id", 5), topic_id);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().field == "hardware_id");
  }
  SUBCASE("without a topic id, hardware_id stays required") {
    const auto r = parse_registration(without(minimal_registration(), "hardware_id"));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().field == "hardware_id");
  }
}

// --- heartbeat -------------------------------------------------------------------

TEST_CASE("parse_heartbeat: the guide's body names the device by id") {
  const auto h = parse_heartbeat(Json{{"device_id", uuid_text}});
  REQUIRE(h.ok());
  REQUIRE(h->device_id.has_value());
  CHECK(*h->device_id == id_from(uuid_text));
  CHECK_FALSE(h->hardware_id.has_value());
  CHECK_FALSE(h->reports_error);
  CHECK_FALSE(h->updates_attributes());
}

TEST_CASE("parse_heartbeat: an upper-case UUID is the same device") {
  const auto h = parse_heartbeat(Json{{"device_id", "123E4567-E89B-12D3-A456-426614174000"}});
  REQUIRE(h.ok());
  CHECK(*h->device_id == id_from(uuid_text));
}

TEST_CASE("parse_heartbeat: hardware_id is the fallback of the older API") {
  const auto by_hw = parse_heartbeat(Json{{"hardware_id", "AA:BB:CC:DD:EE:FF"}});
  REQUIRE(by_hw.ok());
  CHECK_FALSE(by_hw->device_id.has_value());
  CHECK(by_hw->hardware_id == std::optional<std::string>{"AA:BB:CC:DD:EE:FF"});

  const auto null_id = parse_heartbeat(Json{{"device_id", nullptr}, {"hardware_id", "AA:BB:CC:DD:EE:FF"}});
  REQUIRE(null_id.ok());
  CHECK(null_id->hardware_id.has_value());

  const auto both = parse_heartbeat(Json{{"device_id", uuid_text}, {"hardware_id", "AA:BB:CC:DD:EE:FF"}});
  REQUIRE(both.ok());
  CHECK(both->device_id.has_value());
  CHECK_FALSE(both->hardware_id.has_value());  // device_id wins
}

TEST_CASE("parse_heartbeat: invalid bodies name the field") {
  struct Row {
    std::string_view why;
    Json body;
    std::string_view field;
  };
  const Row table[] = {
      {"empty body", Json::object(), "device_id"},
      {"device_id null and no hardware_id", Json{{"device_id", nullptr}}, "device_id"},
      {"device_id not a UUID", Json{{"device_id", "device-1"}}, "device_id"},
      {"device_id without hyphens", Json{{"device_id", "123e4567e89b12d3a456426614174000"}}, "device_id"},
      {"device_id empty", Json{{"device_id", ""}}, "device_id"},
      {"device_id number", Json{{"device_id", 12}}, "device_id"},
      {"device_id object", Json{{"device_id", Json::object()}}, "device_id"},
      {"hardware_id number", Json{{"hardware_id", 12}}, "hardware_id"},
      {"hardware_id with control characters", Json{{"hardware_id", "a\nb"}}, "hardware_id"},
      {"status offline", Json{{"device_id", uuid_text}, {"status", "offline"}}, "status"},
      {"status maintenance", Json{{"device_id", uuid_text}, {"status", "maintenance"}}, "status"},
      {"status upper case", Json{{"device_id", uuid_text}, {"status", "ERROR"}}, "status"},
      {"status empty", Json{{"device_id", uuid_text}, {"status", ""}}, "status"},
      {"status boolean", Json{{"device_id", uuid_text}, {"status", true}}, "status"},
      {"status number", Json{{"device_id", uuid_text}, {"status", 1}}, "status"},
      {"ip_address invalid", Json{{"device_id", uuid_text}, {"ip_address", "1.2.3"}}, "ip_address"},
      {"firmware_version number", Json{{"device_id", uuid_text}, {"firmware_version", 2}}, "firmware_version"},
      {"metadata string", Json{{"device_id", uuid_text}, {"metadata", "x"}}, "metadata"},
      {"metadata with NUL", Json{{"device_id", uuid_text}, {"metadata", Json{{"k", std::string(1, '\0')}}}},
       "metadata"},
  };
  for (const Row& row : table) {
    CAPTURE(row.why);
    const auto h = parse_heartbeat(row.body);
    REQUIRE_FALSE(h.ok());
    CHECK(h.error().kind == ErrorKind::invalid_field);
    CHECK(h.error().field == row.field);
  }
}

TEST_CASE("parse_heartbeat: status online, error or absent") {
  struct Row {
    Json status;
    bool reports_error;
  };
  const Row table[] = {{"online", false}, {"error", true}, {nullptr, false}};
  for (const Row& row : table) {
    CAPTURE(row.status.dump());
    const auto h = parse_heartbeat(Json{{"device_id", uuid_text}, {"status", row.status}});
    REQUIRE(h.ok());
    CHECK(h->reports_error == row.reports_error);
  }
}

TEST_CASE("parse_heartbeat: optional attributes") {
  const auto h = parse_heartbeat(Json{{"device_id", uuid_text},
                                      {"firmware_version", "1.2.0"},
                                      {"ip_address", "fe80::1"},
                                      {"metadata", Json{{"uptime", 12}}}});
  REQUIRE(h.ok());
  CHECK(h->firmware_version == std::optional<std::string>{"1.2.0"});
  CHECK(h->ip_address == std::optional<std::string>{"fe80::1"});
  CHECK(h->metadata == Json{{"uptime", 12}});
  CHECK(h->updates_attributes());

  CHECK(parse_heartbeat(Json{{"device_id", uuid_text}, {"firmware_version", "2"}})->updates_attributes());
  CHECK(parse_heartbeat(Json{{"device_id", uuid_text}, {"ip_address", "10.0.0.2"}})->updates_attributes());
  CHECK(parse_heartbeat(Json{{"device_id", uuid_text}, {"metadata", Json::object()}})->updates_attributes());
  CHECK_FALSE(parse_heartbeat(Json{{"device_id", uuid_text}, {"metadata", nullptr}})->updates_attributes());
}

TEST_CASE("parse_heartbeat over MQTT: the id comes from the topic") {
  const DeviceId topic_id = id_from(uuid_text);

  const auto empty = parse_heartbeat(Json::object(), topic_id);
  REQUIRE(empty.ok());
  CHECK(*empty->device_id == topic_id);
  CHECK_FALSE(empty->reports_error);

  const auto failing = parse_heartbeat(Json{{"status", "error"}, {"firmware_version", "1.1"}}, topic_id);
  REQUIRE(failing.ok());
  CHECK(*failing->device_id == topic_id);
  CHECK(failing->reports_error);
  CHECK(failing->updates_attributes());

  const auto bad_status = parse_heartbeat(Json{{"status", "offline"}}, topic_id);
  REQUIRE_FALSE(bad_status.ok());
  CHECK(bad_status.error().field == "status");
}

// --- patch -------------------------------------------------------------------------

TEST_CASE("parse_patch: an empty patch changes nothing") {
  const auto p = parse_patch(Json::object());
  REQUIRE(p.ok());
  CHECK_FALSE(p->changes_attributes());
  CHECK_FALSE(p->status.has_value());
  CHECK_FALSE(p->name.present);
  CHECK_FALSE(p->offline_after.present);
}

TEST_CASE("parse_patch: each field set to a value") {
  const auto p = parse_patch(Json::parse(R"({
    "name": "Renamed", "firmware_version": "2.0.0", "ip_address": "10.0.0.9",
    "location": {"room": "Hall"}, "metadata": {"k": "v"}, "status": "maintenance", "offline_after": 60
  })"));
  REQUIRE(p.ok());
  CHECK(p->name.present);
  CHECK(p->name.value == std::optional<std::string>{"Renamed"});
  CHECK(p->firmware_version.present);
  CHECK(p->firmware_version.value == std::optional<std::string>{"2.0.0"});
  CHECK(p->ip_address.present);
  CHECK(p->ip_address.value == std::optional<std::string>{"10.0.0.9"});
  CHECK(p->location.present);
  REQUIRE(p->location.value.has_value());
  CHECK(*p->location.value == Json{{"room", "Hall"}});
  CHECK(p->metadata.present);
  REQUIRE(p->metadata.value.has_value());
  CHECK(*p->metadata.value == Json{{"k", "v"}});
  REQUIRE(p->status.has_value());
  CHECK(*p->status == Status::maintenance);
  CHECK(p->offline_after.present);
  CHECK(p->offline_after.value == std::optional<Seconds>{Seconds{60}});
  CHECK(p->changes_attributes());
}

TEST_CASE("parse_patch: each field alone is present and the others are not") {
  const std::pair<const char*, Json> fields[] = {
      {"name", "n"},         {"firmware_version", "1"},  {"ip_address", "::1"},
      {"location", Json::object()}, {"metadata", Json::object()}, {"offline_after", 30},
  };
  for (const auto& [field, value] : fields) {
    CAPTURE(std::string_view(field));
    const auto p = parse_patch(Json{{field, value}});
    REQUIRE(p.ok());
    CHECK(p->changes_attributes());
    const std::string f = field;
    CHECK(p->name.present == (f == "name"));
    CHECK(p->firmware_version.present == (f == "firmware_version"));
    CHECK(p->ip_address.present == (f == "ip_address"));
    CHECK(p->location.present == (f == "location"));
    CHECK(p->metadata.present == (f == "metadata"));
    CHECK(p->offline_after.present == (f == "offline_after"));
    CHECK_FALSE(p->status.has_value());
  }
}

TEST_CASE("parse_patch: null clears the optional fields") {
  const auto p = parse_patch(Json::parse(
      R"({"firmware_version": null, "ip_address": null, "location": null, "metadata": null, "offline_after": null})"));
  REQUIRE(p.ok());
  CHECK(p->firmware_version.present);
  CHECK_FALSE(p->firmware_version.value.has_value());
  CHECK(p->ip_address.present);
  CHECK_FALSE(p->ip_address.value.has_value());
  CHECK(p->location.present);
  CHECK_FALSE(p->location.value.has_value());
  CHECK(p->metadata.present);
  CHECK_FALSE(p->metadata.value.has_value());
  CHECK(p->offline_after.present);  // back to the service default
  CHECK_FALSE(p->offline_after.value.has_value());
  CHECK(p->changes_attributes());
}

TEST_CASE("parse_patch: status alone is not an attribute change") {
  for (const Status s : {Status::online, Status::offline, Status::error, Status::maintenance}) {
    CAPTURE(s);
    const auto p = parse_patch(Json{{"status", to_string(s)}});
    REQUIRE(p.ok());
    REQUIRE(p->status.has_value());
    CHECK(*p->status == s);
    CHECK_FALSE(p->changes_attributes());
  }
}

TEST_CASE("parse_patch: invalid values and unknown fields name the field") {
  struct Row {
    std::string_view why;
    Json body;
    std::string_view field;
  };
  const Row table[] = {
      {"name null (a name cannot be cleared)", Json{{"name", nullptr}}, "name"},
      {"name empty", Json{{"name", ""}}, "name"},
      {"name number", Json{{"name", 1}}, "name"},
      {"name too long", Json{{"name", std::string(max_name_chars + 1, 'n')}}, "name"},
      {"firmware_version number", Json{{"firmware_version", 1}}, "firmware_version"},
      {"ip_address invalid", Json{{"ip_address", "300.1.1.1"}}, "ip_address"},
      {"location array", Json{{"location", Json::array()}}, "location"},
      {"metadata string", Json{{"metadata", "x"}}, "metadata"},
      {"metadata with NUL", Json{{"metadata", Json{{"k", std::string(1, '\0')}}}}, "metadata"},
      {"status unknown", Json{{"status", "broken"}}, "status"},
      {"status upper case", Json{{"status", "Online"}}, "status"},
      {"status null", Json{{"status", nullptr}}, "status"},
      {"status number", Json{{"status", 2}}, "status"},
      {"offline_after zero", Json{{"offline_after", 0}}, "offline_after"},
      {"offline_after too large", Json{{"offline_after", 604801}}, "offline_after"},
      {"offline_after string", Json{{"offline_after", "300"}}, "offline_after"},
      {"unknown field", Json{{"colour", "red"}}, "colour"},
      {"hardware_id cannot change", Json{{"hardware_id", "x"}}, "hardware_id"},
      {"id cannot change", Json{{"id", uuid_text}}, "id"},
      {"device_type cannot change", Json{{"device_type", "esp32"}}, "device_type"},
      {"unknown next to valid fields", Json{{"name", "ok"}, {"last_seen", "2026-02-02T00:00:00Z"}}, "last_seen"},
  };
  for (const Row& row : table) {
    CAPTURE(row.why);
    const auto p = parse_patch(row.body);
    REQUIRE_FALSE(p.ok());
    CHECK(p.error().kind == ErrorKind::invalid_field);
    CHECK(p.error().field == row.field);
    CHECK(p.error().detail.find(row.field) != std::string::npos);
  }
}

// --- hardware ids: one rule for bodies, topics and paths -----------------------

TEST_CASE("check_hardware_id: the one rule") {
  CHECK_FALSE(check_hardware_id("AA:BB:CC:DD:EE:FF"));
  CHECK_FALSE(check_hardware_id(std::string(max_hardware_id_chars, 'x')));
  CHECK_FALSE(check_hardware_id("\xc3\xa9tag\xc3\xa8re-1"));  // non-ASCII is fine
  for (const std::string& bad : {std::string(""), std::string(" "), std::string("\xc2\xa0"), std::string("\xe2\x80\x8b"),
                                std::string(max_hardware_id_chars + 1, 'x'), std::string(20000, 'x'),
                                std::string("a\x01b"), std::string("\xff\xfe")}) {
    CAPTURE(bad.substr(0, 20));
    const auto error = check_hardware_id(bad);
    REQUIRE(error);
    CHECK(error->kind == ErrorKind::invalid_field);
    CHECK(error->field == "hardware_id");
  }
}

TEST_CASE("parse_registration over MQTT: the topic's hardware id follows the same rule as the body's") {
  const Json body{{"name", "n"}, {"device_type", "t"}};
  for (const std::string& bad : {std::string(129, 'x'), std::string(3000, 'x'), std::string(" "),
                                std::string("\xc2\xa0"), std::string("\xe2\x80\x8b")}) {
    CAPTURE(bad.size());
    const auto r = parse_registration(body, std::string_view(bad));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().field == "hardware_id");
    const auto http = parse_registration(with(body, "hardware_id", bad));
    REQUIRE_FALSE(http.ok());
    CHECK(http.error().field == "hardware_id");
  }
  CHECK(parse_registration(body, std::string_view(std::string(128, 'x'))).ok());
}

TEST_CASE("parse_heartbeat: a blank hardware id is refused like at registration") {
  const auto r = parse_heartbeat(Json{{"hardware_id", "\xe2\x80\x8b"}});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().field == "hardware_id");
}

// --- list queries ---------------------------------------------------------------

namespace {
ParamLookup params(std::map<std::string, std::string> values) {
  return [values = std::move(values)](std::string_view name) -> std::optional<std::string> {
    const auto it = values.find(std::string(name));
    if (it == values.end()) return std::nullopt;
    return it->second;
  };
}
}  // namespace

TEST_CASE("parse_list_query: filters, limit and offset") {
  const auto none = parse_list_query(params({}));
  REQUIRE(none.ok());
  CHECK_FALSE(none->limit);  // every device
  CHECK(none->offset == 0);
  const auto all = parse_list_query(params({{"status", "offline"}, {"device_type", "esp32"},
                                            {"hardware_id", "AA:BB"}, {"limit", "100000"}, {"offset", "5"}}));
  REQUIRE(all.ok());
  CHECK(*all->status == "offline");
  CHECK(*all->limit == 100000);
  CHECK(all->offset == 5);
}

TEST_CASE("parse_list_query: every bad value names its parameter") {
  const std::pair<std::map<std::string, std::string>, std::string> cases[] = {
      {{{"status", "asleep"}}, "status"},           {{{"device_type", "\xff"}}, "device_type"},
      {{{"hardware_id", "\xff"}}, "hardware_id"},  {{{"hardware_id", std::string(129, 'x')}}, "hardware_id"},
      {{{"device_type", "a\x01"}}, "device_type"}, {{{"limit", "100001"}}, "limit"},
      {{{"limit", "-1"}}, "limit"},                 {{{"limit", "1e3"}}, "limit"},
      {{{"offset", "x"}}, "offset"},                {{{"offset", "99999999999999"}}, "offset"},
  };
  for (const auto& [values, field] : cases) {
    CAPTURE(field);
    const auto q = parse_list_query(params(values));
    REQUIRE_FALSE(q.ok());
    CHECK(q.error().kind == ErrorKind::invalid_field);
    CHECK(q.error().field == field);
  }
}

TEST_CASE("parse_history_limit: 1-1000, default 50") {
  CHECK(parse_history_limit(params({})).value() == 50);
  CHECK(parse_history_limit(params({{"limit", "1"}})).value() == 1);
  CHECK(parse_history_limit(params({{"limit", "1000"}})).value() == 1000);
  CHECK_FALSE(parse_history_limit(params({{"limit", "0"}})).ok());
  CHECK_FALSE(parse_history_limit(params({{"limit", "1001"}})).ok());
}

}  // TEST_SUITE

TEST_CASE("list_by_candidates: look devices up by id only when fewer rows are read that way") {
  // None match: the empty id list answers at once.
  CHECK(list_by_candidates(0, 1000000, 100));
  // Every device matches: read in list order.
  CHECK_FALSE(list_by_candidates(1000000, 1000000, 100));
  // 1,000,000 devices, a page of 100: a scan reads about 100 x 1,000,000 / matching rows,
  // a lookup costs 10 x matching.
  CHECK(list_by_candidates(3000, 1000000, 100));          // 30,000 against 33,333
  CHECK_FALSE(list_by_candidates(3500, 1000000, 100));    // 35,000 against 28,571
  // A deep offset makes the scan read further.
  CHECK(list_by_candidates(3500, 1000000, 10100));
  // Every matching device wanted (no limit): the scan reads the whole table.
  CHECK(list_by_candidates(3, 100, 3));
  CHECK_FALSE(list_by_candidates(3, 20, 3));
  CHECK_FALSE(list_by_candidates(17, 20, 17));
}
