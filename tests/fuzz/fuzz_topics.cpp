// Fuzz target for MQTT topic names: core::Topics::parse (which device-facing
// topic a message arrived on, and its id level), core::parse_device_id on that
// level, core::is_topic_level and core::is_valid_topic_prefix.
// Input: first line = a topic prefix (used when valid, else "maestra"), the rest
// = the topic a message arrived on.
// Invariants: a recognised topic is exactly prefix/family/level/leaf with a level
// free of '/'; names the service builds parse back to their kind and id; an
// accepted device id is a canonical UUID that round-trips.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/ids.hpp"
#include "core/topics.hpp"
#include "fuzz_support.hpp"

using namespace maestra;

namespace {

void check_built_names(const core::Topics& topics, const core::DeviceId& id, std::string_view hardware_id) {
  // Topics::parse returns a view into its argument: keep each name alive.
  const std::string heartbeat_topic = topics.heartbeat(id);
  const auto heartbeat = topics.parse(heartbeat_topic);
  FUZZ_CHECK(heartbeat.kind == core::Topics::Kind::heartbeat && heartbeat.level == id.to_string(),
             "the heartbeat topic the service names does not parse back");
  const std::string presence_topic = topics.presence(id);
  const auto presence = topics.parse(presence_topic);
  FUZZ_CHECK(presence.kind == core::Topics::Kind::presence && presence.level == id.to_string(),
             "the presence topic the service names does not parse back");
  FUZZ_CHECK(topics.parse(topics.status(id)).kind == core::Topics::Kind::other, "a status topic parses as input");
  FUZZ_CHECK(topics.parse(topics.fleet_status()).kind == core::Topics::Kind::other, "fleet/status parses as input");
  FUZZ_CHECK(topics.parse(topics.fleet_summary()).kind == core::Topics::Kind::other, "fleet/summary parses as input");
  if (core::is_topic_level(hardware_id)) {
    FUZZ_CHECK(hardware_id.find_first_of("/+#") == std::string_view::npos, "is_topic_level accepted / + or #");
    const std::string request_topic = topics.register_request(hardware_id);
    const auto request = topics.parse(request_topic);
    FUZZ_CHECK(request.kind == core::Topics::Kind::register_request && request.level == hardware_id,
               "the register topic of a valid hardware id does not parse back");
    FUZZ_CHECK(topics.parse(topics.registration_reply(hardware_id)).kind == core::Topics::Kind::other,
               "a registration reply parses as input");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return fuzz::guarded([&] {
    const auto [prefix_line, topic] = fuzz::split_first_line(fuzz::as_text(data, size));
    const bool prefix_ok = core::is_valid_topic_prefix(prefix_line);
    if (prefix_ok)
      FUZZ_CHECK(!prefix_line.empty() && prefix_line.front() != '$' && prefix_line.front() != '/' &&
                     prefix_line.back() != '/' && prefix_line.find_first_of("+#") == std::string_view::npos &&
                     prefix_line.find("//") == std::string_view::npos,
                 "is_valid_topic_prefix accepted a bad prefix");
    const core::Topics topics(prefix_ok ? std::string(prefix_line) : std::string("maestra"));

    const auto parsed = topics.parse(topic);
    if (parsed.kind != core::Topics::Kind::other) {
      const char* family = parsed.kind == core::Topics::Kind::register_request ? "hardware" : "devices";
      const char* leaf = parsed.kind == core::Topics::Kind::heartbeat  ? "heartbeat"
                         : parsed.kind == core::Topics::Kind::presence ? "presence"
                                                                       : "register";
      FUZZ_CHECK(parsed.level.find('/') == std::string_view::npos, "a parsed level contains '/'");
      FUZZ_CHECK(std::string(topic) ==
                     topics.prefix() + "/" + family + "/" + std::string(parsed.level) + "/" + leaf,
                 "a recognised topic is not prefix/family/level/leaf");
      FUZZ_CHECK(parsed.level.data() >= topic.data() && parsed.level.data() + parsed.level.size() <= topic.data() + topic.size(),
                 "a parsed level points outside the topic");
      if (parsed.kind != core::Topics::Kind::register_request) fuzz::check_device_id(parsed.level);
    }
    for (const auto& filter : topics.subscriptions())
      FUZZ_CHECK(filter.rfind(topics.prefix() + "/", 0) == 0, "a subscription is outside the prefix");

    fuzz::check_device_id(topic);
    fuzz::check_device_id(prefix_line);
    core::DeviceId id;
    for (std::size_t i = 0; i < id.bytes.size() && i < topic.size(); ++i) id.bytes[i] = static_cast<std::uint8_t>(topic[i]);
    check_built_names(topics, id, topic);
    if (parsed.kind != core::Topics::Kind::other) check_built_names(topics, id, parsed.level);
  });
}
