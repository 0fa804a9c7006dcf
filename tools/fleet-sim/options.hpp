// The simulator's configuration: one struct, one table of every option with its
// default and help text, a parser that fills the struct from argv, and a check
// of the combined values. Pure (no I/O besides building strings): unit-tested.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fleet_sim {

enum class RegisterMode { http, mqtt, none };
enum class ExitMode { offline, disconnect, abort };

struct SimOptions {
  // broker and service
  std::string host = "127.0.0.1";
  std::uint16_t port = 1883;
  std::string http_url = "http://127.0.0.1:8080";
  std::string prefix = "maestra";
  std::string client_id_prefix;
  std::optional<std::string> username;  // "{id}" is replaced by the device id
  std::optional<std::string> password;
  std::uint16_t keepalive_s = 60;

  // the fleet and its registration
  std::size_t devices = 1000;
  bool devices_given = false;
  RegisterMode register_mode = RegisterMode::http;
  std::size_t register_parallel = 8;
  std::size_t register_batch = 100;  // MQTT: devices per batch (subscribe, then publish)
  double register_timeout_s = 30;
  std::string run_id = "1";
  std::string device_type = "simulator";
  std::string ids_file;
  std::string write_ids_file;

  // connecting
  double connect_rate = 2000;  // new connections per second
  double connect_timeout_s = 10;

  // heartbeats
  std::uint8_t qos = 1;
  std::uint32_t interval_ms = 30'000;
  bool interval_given = false;
  std::optional<double> rate;   // fleet-wide messages/s; 0 = unthrottled
  std::uint32_t inflight = 10;  // unacknowledged heartbeats per connection (QoS 0: per PINGRESP)
  std::string payload;
  // Telemetry instead of heartbeats: messages of this many metrics on
  // {prefix}/devices/{id}/telemetry/metrics (0: heartbeats).
  std::uint32_t telemetry_metrics = 0;
  double duration_s = 60;
  std::uint64_t count = 0;  // 0 = no count bound
  double drain_s = 3;

  // killing and leaving
  double kill_fraction = 0;
  double kill_after_s = 10;
  std::string killed_file;
  ExitMode exit_mode = ExitMode::offline;
  std::uint64_t seed = 1;

  // answering commands (docs/protocol.md "Commands")
  bool answer_commands = false;
  std::uint32_t answer_delay_ms = 0;
  double answer_fail_rate = 0;

  // subscriber mode
  std::vector<std::string> subscribe_filters;
  bool print_arrivals = false;
  bool skip_retained = false;

  bool quiet = false;
  bool help = false;

  bool subscriber_mode() const { return !subscribe_filters.empty(); }
};

struct ParsedOptions {
  SimOptions options;
  std::string error;  // empty when parsing and checking succeeded
};

// Parses argv (argv[0] skipped) and then checks the combination.
ParsedOptions parse_options(const std::vector<std::string>& arguments);

// The combined-value check parse_options runs last; empty when fine.
std::string check_options(const SimOptions& options);

// The --help text: every option with its default.
std::string help_text();

// A telemetry/metrics payload of `metrics` values: {"m0":0.5,"m1":1.5,...}.
std::string telemetry_payload(std::uint32_t metrics);

// The MQTT user name for a client: --username with "{id}" replaced by `id`.
std::optional<std::string> mqtt_username(const SimOptions& options, std::string_view id);

// --http URL split up: only plain http:// (the shim is local), optional port and base path.
struct HttpEndpoint {
  std::string host;
  int port = 80;
  std::string base_path;  // "" or "/something", no trailing '/'
};
std::optional<HttpEndpoint> parse_http_url(std::string_view url);

}  // namespace fleet_sim
