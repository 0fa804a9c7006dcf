// fleet-sim entry point: parses the options, then either runs subscriber mode,
// or gets the fleet's device ids (ids file, HTTP or MQTT registration, or
// generated) and runs the fleet. Owns the process-level concerns: exit status,
// the open-file limit, and where the final summary goes (stdout).
#include <cstdio>
#include <string>
#include <unordered_set>
#include <vector>

#include "broker_address.hpp"
#include "device_ids.hpp"
#include "fleet.hpp"
#include "http_registration.hpp"
#include "mqtt_registration.hpp"
#include "options.hpp"
#include "stop_signal.hpp"
#include "subscriber.hpp"
#include "system_limits.hpp"

namespace {

using namespace fleet_sim;

constexpr std::size_t spare_descriptors = 64;  // stdio, epoll, registration clients, ids files

int fail(const std::string& message) {
  std::fprintf(stderr, "fleet-sim: %s\n", message.c_str());
  return 1;
}

const char* register_mode_name(RegisterMode mode) {
  switch (mode) {
    case RegisterMode::http:
      return "http";
    case RegisterMode::mqtt:
      return "mqtt";
    case RegisterMode::none:
      return "none";
  }
  return "?";
}

// The device ids of this run, or an error. Failed registrations are dropped
// (and reported); the run goes on with the devices that did register.
struct FleetIds {
  std::vector<std::string> ids;
  std::size_t registration_failures = 0;
  std::string error;
};

FleetIds obtain_device_ids(const SimOptions& options, const sockaddr_in& broker) {
  FleetIds result;
  if (!options.ids_file.empty()) {
    IdsFile file = read_ids_file(options.ids_file);
    if (!file.error.empty()) {
      result.error = file.error;
      return result;
    }
    if (options.devices_given && options.devices > file.ids.size()) {
      result.error = "--devices " + std::to_string(options.devices) + " but " + options.ids_file + " holds only " +
                     std::to_string(file.ids.size()) + " ids";
      return result;
    }
    if (options.devices_given) file.ids.resize(options.devices);
    result.ids = std::move(file.ids);
    return result;
  }
  if (options.register_mode == RegisterMode::none) {
    for (std::size_t index = 0; index < options.devices; ++index) {
      result.ids.push_back(generated_device_id(options.run_id, index));
    }
    return result;
  }

  const RegistrationTally tally = options.register_mode == RegisterMode::http
                                      ? register_over_http(options, options.devices)
                                      : register_over_mqtt(options, broker, options.devices);
  std::fprintf(stderr,
               "fleet-sim: registered %zu of %zu devices over %s in %.2f s: %zu new, %zu existing, %zu failed%s%s\n",
               tally.created + tally.existing, options.devices, register_mode_name(options.register_mode),
               tally.seconds, tally.created, tally.existing, tally.failed,
               tally.first_error.empty() ? "" : "; first error: ", tally.first_error.c_str());
  result.registration_failures = tally.failed;
  for (const auto& id : tally.ids) {
    if (!id.empty()) result.ids.push_back(id);
  }
  if (result.ids.empty()) result.error = "no device could be registered";
  return result;
}

int run_fleet_mode(const SimOptions& options, const sockaddr_in& broker) {
  const std::size_t planned = options.ids_file.empty() ? options.devices : options.devices_given ? options.devices : 0;
  if (const std::string error = ensure_open_file_limit(std::max<std::size_t>(planned, 1) + spare_descriptors);
      !error.empty()) {
    return fail(error);
  }

  const FleetIds fleet = obtain_device_ids(options, broker);
  if (!fleet.error.empty()) return fail(fleet.error);
  if (stop_requested()) return fail("interrupted");
  if (const std::string error = ensure_open_file_limit(fleet.ids.size() + spare_descriptors); !error.empty()) {
    return fail(error);
  }
  std::unordered_set<std::string> unique(fleet.ids.begin(), fleet.ids.end());
  if (unique.size() != fleet.ids.size()) return fail("the device ids are not unique (each needs its own client id)");
  if (!options.write_ids_file.empty()) {
    if (const std::string error = write_lines(options.write_ids_file, fleet.ids); !error.empty()) return fail(error);
  }
  if (const std::size_t ports = ephemeral_port_count(); ports > 0 && fleet.ids.size() > ports) {
    std::fprintf(stderr, "fleet-sim: warning: %zu devices but only %zu local ports (ip_local_port_range)\n",
                 fleet.ids.size(), ports);
  }

  const FleetSummary summary = run_fleet(options, broker, fleet.ids);
  std::printf("%s\n", fleet_summary_json(summary).c_str());
  std::fflush(stdout);
  if (summary.counters.connected_max == 0) {
    return fail("no device could connect to the broker at " + options.host + ":" + std::to_string(options.port));
  }
  return summary.counters.errors > 0 || fleet.registration_failures > 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> arguments(argv + 1, argv + argc);
  const ParsedOptions parsed = parse_options(arguments);
  if (parsed.options.help) {
    std::fputs(help_text().c_str(), stdout);
    return 0;
  }
  if (!parsed.error.empty()) {
    std::fprintf(stderr, "fleet-sim: %s\n", parsed.error.c_str());
    return 2;
  }
  const SimOptions& options = parsed.options;
  install_stop_handlers();

  const ResolvedBroker broker = resolve_broker(options.host, options.port);
  if (!broker.address) return fail(broker.error);

  try {
    if (options.subscriber_mode()) {
      if (const std::string error = ensure_open_file_limit(spare_descriptors); !error.empty()) return fail(error);
      return run_subscriber(options, *broker.address);
    }
    return run_fleet_mode(options, *broker.address);
  } catch (const std::exception& error) {
    return fail(error.what());
  }
}
