// The service's configuration: one struct, one table of options (environment
// variable, flag, default, help), parsed then checked. Reading the environment
// is the caller's job; this file only turns strings into a checked Config.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "core/errors.hpp"

namespace maestra::core {

struct Config {
  std::string http_host = "0.0.0.0";
  int http_port = 8080;
  int http_threads = 64;
  std::string database_url = "postgresql:///maestra";
  int database_pool = 8;
  std::string mqtt_url = "tcp://localhost:1883";
  std::string mqtt_client_id = "fleet-manager";
  std::string mqtt_username;
  std::string mqtt_password;
  std::string mqtt_ca_file;
  Seconds offline_after{300};
  std::string topic_prefix = "maestra";
  Millis flush_interval{250};
  std::string log_format = "text";
  std::string web_root;
  std::string admin_token;
  // Refused credentials per client address per minute before it gets 429 (0: off).
  int auth_failure_limit = 20;
  // Secure mode: per-device broker credentials (dynamic-security plugin),
  // credential-checked HTTP heartbeats, admin token required.
  bool secure = false;
  std::string provisioning_key;
  std::string dashboard_username;
  std::string dashboard_password;
};

struct OptionSpec {
  std::string_view env;
  std::string_view flag;
  std::string_view default_text;
  std::string_view help;
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
