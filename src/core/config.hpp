// The service's configuration: one struct, and one table of options (variable,
// flag, default, help, how a value is checked and stored) that is the only home
// of each default and the source of --help. Parsed, then checked. Reading the
// environment is the caller's job; this file only turns strings into a Config.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "core/errors.hpp"

namespace maestra::core {

// Every field's default is the `default_text` of its row in option_table():
// the constructor stores those texts through the rows, as a variable would be.
struct Config {
  Config();
  bool operator==(const Config&) const = default;

  std::string http_host;
  int http_port = 0;
  int http_threads = 0;
  std::string database_url;
  int database_pool = 0;
  std::string mqtt_url;
  std::string mqtt_client_id;
  std::string mqtt_username;
  std::string mqtt_password;
  std::string mqtt_ca_file;
  Seconds offline_after{0};
  std::string topic_prefix;
  Millis flush_interval{0};
  std::string log_format;
  std::string web_root;  // empty: main() serves the source tree's examples/dashboard if it exists
  std::string admin_token;
  // Refused credentials per client address per minute before it gets 429 (0: off).
  int auth_failure_limit = 0;
  // Secure mode: per-device broker credentials (dynamic-security plugin),
  // credential-checked HTTP heartbeats, admin token required.
  bool secure = false;
  std::string provisioning_key;
  std::string dashboard_username;
  std::string dashboard_password;
  // Telemetry: days metric points and events are kept (whole daily partitions are dropped past them).
  int metrics_retention_days = 0;
  int events_retention_days = 0;
};

// One option: its names, its default (the text a variable would hold; empty
// means empty), its help line, and how a value is checked and kept.
struct OptionSpec {
  std::string_view env;
  std::string_view flag;
  std::string_view default_text;
  std::string_view help;
  // Checks `value` and stores it in its field; a bad value gives the Error to print.
  std::function<std::optional<Error>(Config&, const std::string& value)> store;
  // The field's value as text, in the form `default_text` uses (secrets too: not for logs).
  std::function<std::string(const Config&)> show;
};

const std::vector<OptionSpec>& option_table();

struct ParsedCommandLine {
  Config config;
  bool show_help = false;
  bool show_version = false;
  bool show_routes = false;  // --routes: print the HTTP route table
};

using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;

// Environment first, then flags (`--http-port 8081` or `--http-port=8081`).
// A bad value gives an Error whose detail is the one line to print.
Result<ParsedCommandLine> parse_command_line(const EnvLookup& env, const std::vector<std::string>& args);

std::string help_text(std::string_view program);

// Cross-field checks after parsing (e.g. secure mode needs an admin token).
std::optional<Error> check_config(const Config& config);

// "postgresql://user:secret@host/db" -> "postgresql://user:***@host/db"
std::string redact_url(std::string_view url);

}  // namespace maestra::core
