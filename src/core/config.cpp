// The option table (each option's names, default, help, check and field), the
// Config it builds, command-line and environment parsing, --help, and checks.
#include "core/config.hpp"

#include <charconv>
#include <chrono>
#include <map>
#include <stdexcept>

#include "core/topics.hpp"

namespace maestra::core {

namespace {

std::optional<long long> to_integer(std::string_view text) {
  long long value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || ptr != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

Error bad(std::string_view name, std::string_view value, std::string_view expected) {
  return Error{ErrorKind::invalid_field, std::string(name),
               std::string(name) + "=" + std::string(value) + " is invalid: expected " + std::string(expected)};
}

// How one option's value is checked and kept: the store and show of its row,
// before the row's name is known.
struct Field {
  std::function<std::optional<Error>(Config&, std::string_view env, const std::string& value)> store;
  std::function<std::string(const Config&)> show;
};

template <typename T>
constexpr bool is_duration = false;
template <typename Rep, typename Period>
constexpr bool is_duration<std::chrono::duration<Rep, Period>> = true;

// A decimal integer in [low, high], kept as an int or as a count of a duration.
template <typename T>
Field number(T Config::*member, long long low, long long high, std::string_view expected) {
  return {[=](Config& c, std::string_view env, const std::string& value) -> std::optional<Error> {
            const auto n = to_integer(value);
            if (!n || *n < low || *n > high) return bad(env, value, expected);
            if constexpr (is_duration<T>) c.*member = T{*n};
            else c.*member = static_cast<T>(*n);
            return std::nullopt;
          },
          [=](const Config& c) {
            if constexpr (is_duration<T>) return std::to_string((c.*member).count());
            else return std::to_string(c.*member);
          }};
}

// Any text that `accepts` (by default any text at all).
Field text(std::string Config::*member, bool (*accepts)(std::string_view) = nullptr,
           std::string_view expected = {}) {
  return {[=](Config& c, std::string_view env, const std::string& value) -> std::optional<Error> {
            if (accepts && !accepts(value)) return bad(env, value, expected);
            c.*member = value;
            return std::nullopt;
          },
          [=](const Config& c) { return c.*member; }};
}

// A token or key: empty (off) or 16 characters and more; a refused one is not echoed.
Field secret(std::string Config::*member) {
  return {[=](Config& c, std::string_view env, const std::string& value) -> std::optional<Error> {
            if (!value.empty() && value.size() < 16) return bad(env, "***", "at least 16 characters");
            c.*member = value;
            return std::nullopt;
          },
          [=](const Config& c) { return c.*member; }};
}

Field boolean(bool Config::*member) {
  return {[=](Config& c, std::string_view env, const std::string& value) -> std::optional<Error> {
            if (value == "true" || value == "1" || value == "yes") c.*member = true;
            else if (value == "false" || value == "0" || value == "no" || value.empty()) c.*member = false;
            else return bad(env, value, "true or false");
            return std::nullopt;
          },
          [=](const Config& c) { return std::string(c.*member ? "true" : "false"); }};
}

bool is_mqtt_url(std::string_view value) {
  for (std::string_view scheme : {"tcp://", "ssl://", "mqtt://", "mqtts://", "ws://", "wss://"})
    if (value.rfind(scheme, 0) == 0 && value.size() > scheme.size()) return true;
  return false;
}

OptionSpec option(std::string_view env, std::string_view flag, std::string_view default_text, std::string_view help,
                  Field field) {
  return {env, flag, default_text, help,
          [env, store = std::move(field.store)](Config& c, const std::string& value) { return store(c, env, value); },
          std::move(field.show)};
}

}  // namespace

const std::vector<OptionSpec>& option_table() {
  static const std::vector<OptionSpec> table = {
      option("MAESTRA_HTTP_PORT", "--http-port", "8080", "HTTP port of the API and dashboard (0 picks a free port)",
             number(&Config::http_port, 0, 65535, "a port number 0-65535")),
      option("MAESTRA_HTTP_HOST", "--http-host", "0.0.0.0", "address the HTTP server binds", text(&Config::http_host)),
      option("MAESTRA_HTTP_THREADS", "--http-threads", "64",
             "HTTP worker threads; a keep-alive connection holds one while it is open, so keep this above the "
             "number of concurrent clients",
             number(&Config::http_threads, 1, 1024, "1-1024 threads")),
      option("MAESTRA_DATABASE_URL", "--database-url", "postgresql:///maestra", "Postgres connection URL",
             text(&Config::database_url, [](std::string_view v) { return !v.empty(); },
                  "a postgresql:// URL or libpq connection string")),
      option("MAESTRA_DATABASE_POOL", "--database-pool", "8", "Postgres connections for request handling",
             number(&Config::database_pool, 1, 256, "1-256 connections")),
      option("MAESTRA_MQTT_URL", "--mqtt-url", "tcp://localhost:1883", "MQTT broker URL (tcp:// or ssl://)",
             text(&Config::mqtt_url, is_mqtt_url, "a URL such as tcp://localhost:1883 or ssl://broker:8883")),
      option("MAESTRA_MQTT_CLIENT_ID", "--mqtt-client-id", "fleet-manager",
             "MQTT client id; its persistent session keeps messages while the service is down (unique per instance)",
             text(&Config::mqtt_client_id, [](std::string_view v) { return !v.empty() && v.size() <= 128; },
                  "1-128 characters")),
      option("MAESTRA_MQTT_USERNAME", "--mqtt-username", "", "MQTT username of the service (empty: anonymous)",
             text(&Config::mqtt_username)),
      option("MAESTRA_MQTT_PASSWORD", "--mqtt-password", "", "MQTT password of the service",
             text(&Config::mqtt_password)),
      option("MAESTRA_MQTT_CA_FILE", "--mqtt-ca-file", "", "CA certificate file for ssl:// broker URLs",
             text(&Config::mqtt_ca_file)),
      option("MAESTRA_OFFLINE_AFTER", "--offline-after", "300",
             "seconds of silence before a device is offline (1-604800)",
             number(&Config::offline_after, 1, 604800, "seconds between 1 and 604800")),
      option("MAESTRA_TOPIC_PREFIX", "--topic-prefix", "maestra", "first level(s) of every MQTT topic",
             text(&Config::topic_prefix, is_valid_topic_prefix, "topic levels without wildcards, e.g. maestra")),
      option("MAESTRA_FLUSH_INTERVAL_MS", "--flush-interval-ms", "250",
             "longest delay before a coalesced last_seen reaches Postgres (10-1000 ms)",
             number(&Config::flush_interval, 10, 1000, "milliseconds between 10 and 1000")),
      option("MAESTRA_LOG_FORMAT", "--log-format", "text", "log line format: text or json",
             text(&Config::log_format, [](std::string_view v) { return v == "text" || v == "json"; },
                  "text or json")),
      option("MAESTRA_WEB_ROOT", "--web-root", "",
             "folder of the web dashboard served at / (empty: the built-in examples/dashboard of the source tree, "
             "if it exists)",
             text(&Config::web_root)),
      option("MAESTRA_ADMIN_TOKEN", "--admin-token", "",
             "when set, admin endpoints require 'Authorization: Bearer <token>'", secret(&Config::admin_token)),
      option("MAESTRA_AUTH_FAILURE_LIMIT", "--auth-failure-limit", "20",
             "refused credentials (admin token, device password, provisioning key) per client address per minute; "
             "past it the address gets 429 until the minute ends (0: no limit)",
             number(&Config::auth_failure_limit, 0, 1000000,
                    "a number of failures per minute, 0-1000000 (0: no limit)")),
      option("MAESTRA_SECURE", "--secure", "false",
             "secure mode: per-device broker credentials issued at registration (needs the broker's "
             "dynamic-security plugin and MAESTRA_MQTT_USERNAME as its admin), credential-checked HTTP heartbeats",
             boolean(&Config::secure)),
      option("MAESTRA_PROVISIONING_KEY", "--provisioning-key", "",
             "when set, registration must present it (header X-Provisioning-Key or field provisioning_key)",
             secret(&Config::provisioning_key)),
      option("MAESTRA_DASHBOARD_USERNAME", "--dashboard-username", "",
             "secure mode: read-only broker account for dashboards, created at start",
             text(&Config::dashboard_username)),
      option("MAESTRA_DASHBOARD_PASSWORD", "--dashboard-password", "", "password of that account",
             text(&Config::dashboard_password)),
      option("MAESTRA_METRICS_RETENTION_DAYS", "--metrics-retention-days", "90",
             "days metric points are kept (1-3650); older daily partitions are dropped whole, older points refused",
             number(&Config::metrics_retention_days, 1, 3650, "days between 1 and 3650")),
      option("MAESTRA_EVENTS_RETENTION_DAYS", "--events-retention-days", "30",
             "days events are kept (1-3650); older daily partitions are dropped whole, older events refused",
             number(&Config::events_retention_days, 1, 3650, "days between 1 and 3650")),
  };
  return table;
}

Config::Config() {
  // A default that its own row refuses is a mistake in the table (config_test catches it).
  for (const auto& spec : option_table())
    if (const auto error = spec.store(*this, std::string(spec.default_text)))
      throw std::logic_error("option table: " + error->detail);
}

Result<ParsedCommandLine> parse_command_line(const EnvLookup& env, const std::vector<std::string>& args) {
  // Raw values first, environment then flags, so a flag replaces a variable
  // before either is checked: a bad variable that a flag overrides is no error.
  ParsedCommandLine parsed;
  std::map<std::string_view, std::string> raw;
  for (const auto& spec : option_table())
    if (auto value = env(spec.env)) raw[spec.env] = *value;

  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") { parsed.show_help = true; continue; }
    if (arg == "--version") { parsed.show_version = true; continue; }
    if (arg == "--routes") { parsed.show_routes = true; continue; }
    const auto eq = arg.find('=');
    const std::string flag = arg.substr(0, eq);
    const OptionSpec* spec = nullptr;
    for (const auto& candidate : option_table())
      if (candidate.flag == flag) spec = &candidate;
    if (!spec)
      return Error{ErrorKind::invalid_field, arg, "unknown option " + arg + " (see --help)"};
    if (eq != std::string::npos) {
      raw[spec->env] = arg.substr(eq + 1);
    } else if (i + 1 < args.size()) {
      raw[spec->env] = args[++i];
    } else {
      return Error{ErrorKind::invalid_field, arg, "option " + arg + " needs a value"};
    }
  }
  for (const auto& spec : option_table()) {
    const auto value = raw.find(spec.env);
    if (value == raw.end()) continue;
    if (auto error = spec.store(parsed.config, value->second)) return *error;
  }
  return parsed;
}

std::optional<Error> check_config(const Config& c) {
  if (c.secure && c.admin_token.empty())
    return Error{ErrorKind::invalid_field, "MAESTRA_ADMIN_TOKEN",
                 "MAESTRA_SECURE=true needs MAESTRA_ADMIN_TOKEN (the admin endpoints must not be open)"};
  if (c.secure && c.mqtt_username.empty())
    return Error{ErrorKind::invalid_field, "MAESTRA_MQTT_USERNAME",
                 "MAESTRA_SECURE=true needs MAESTRA_MQTT_USERNAME/PASSWORD: the service's dynamic-security admin account"};
  if (c.dashboard_username.empty() != c.dashboard_password.empty())
    return Error{ErrorKind::invalid_field, "MAESTRA_DASHBOARD_USERNAME",
                 "MAESTRA_DASHBOARD_USERNAME and MAESTRA_DASHBOARD_PASSWORD go together"};
  return std::nullopt;
}

std::string help_text(std::string_view program) {
  std::string text = "Usage: " + std::string(program) + " [options]\n\n"
                     "Maestra Fleet Manager: registry and liveness of a fleet of devices over MQTT and HTTP.\n"
                     "Every option is also an environment variable; flags win over the environment.\n\n";
  for (const auto& o : option_table()) {
    text += "  " + std::string(o.flag) + " VALUE";
    text += std::string(o.flag.size() < 22 ? 22 - o.flag.size() : 1, ' ');
    text += std::string(o.env) + " (default: " + (o.default_text.empty() ? "empty" : std::string(o.default_text)) +
            ")\n      " + std::string(o.help) + "\n";
  }
  text += "  --help                      show this text\n  --version                   print the version\n"
          "  --routes                    print the HTTP routes (method, path, admin or open, what it does)\n";
  return text;
}

std::string redact_url(std::string_view url) {
  std::string out(url);
  // user:password@ of a URL
  const auto scheme = out.find("://");
  if (scheme != std::string::npos) {
    const auto authority_end = out.find_first_of("/?#", scheme + 3);
    const auto at = out.rfind('@', authority_end == std::string::npos ? std::string::npos : authority_end);
    if (at != std::string::npos && at > scheme) {
      const auto colon = out.find(':', scheme + 3);
      if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  // password=... of a query string or a key=value connection string, wherever it is
  for (auto pw = out.find("password="); pw != std::string::npos; pw = out.find("password=", pw + 9)) {
    const auto end = out.find_first_of(" &", pw + 9);
    out.replace(pw + 9, (end == std::string::npos ? out.size() : end) - pw - 9, "***");
  }
  return out;
}

}  // namespace maestra::core
