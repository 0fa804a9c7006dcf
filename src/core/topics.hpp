// MQTT topic names of docs/protocol.md, built from the configured prefix, and the parser
// that tells which device-facing topic a message arrived on. Pure string work:
// the MQTT adapter subscribes and publishes, this file decides names.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "core/ids.hpp"

namespace maestra::core {

class Topics {
 public:
  explicit Topics(std::string prefix) : prefix_(std::move(prefix)) {}
  const std::string& prefix() const { return prefix_; }

  std::string heartbeat(const DeviceId& id) const { return prefix_ + "/devices/" + id.to_string() + "/heartbeat"; }
  std::string presence(const DeviceId& id) const { return prefix_ + "/devices/" + id.to_string() + "/presence"; }
  std::string status(const DeviceId& id) const { return prefix_ + "/devices/" + id.to_string() + "/status"; }
  std::string register_request(std::string_view hardware_id) const {
    return prefix_ + "/hardware/" + std::string(hardware_id) + "/register";
  }
  std::string registration_reply(std::string_view hardware_id) const {
    return prefix_ + "/hardware/" + std::string(hardware_id) + "/registration";
  }
  std::string fleet_status() const { return prefix_ + "/fleet/status"; }
  std::string fleet_summary() const { return prefix_ + "/fleet/summary"; }

  // What the service subscribes to.
  std::vector<std::string> subscriptions() const {
    return {prefix_ + "/devices/+/heartbeat", prefix_ + "/devices/+/presence", prefix_ + "/hardware/+/register"};
  }

  enum class Kind { heartbeat, presence, register_request, other };
  struct Parsed {
    Kind kind = Kind::other;
    std::string_view level;  // the device id or hardware id, unvalidated
  };
  Parsed parse(std::string_view topic) const;

 private:
  std::string prefix_;
};

// A hardware id can be a topic level when it is non-empty and has no '/', '+',
// '#' or NUL; others register over HTTP only.
bool is_topic_level(std::string_view text);

// A topic prefix: one or more levels, no wildcards, no leading '$'.
bool is_valid_topic_prefix(std::string_view prefix);

}  // namespace maestra::core
