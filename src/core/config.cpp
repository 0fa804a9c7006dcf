// Option table, command-line and environment parsing, and checks.
#include "core/config.hpp"

#include <algorithm>
#include <charconv>
#include <map>

#include "core/topics.hpp"

namespace maestra::core {

const std::vector<OptionSpec>& option_table() {
  static const std::vector<OptionSpec> table = {
      {"MAESTRA_HTTP_PORT", "--http-port", "8080", "HTTP port of the API and dashboard (0 picks a free port)"},
      {"MAESTRA_HTTP_HOST", "--http-host", "0.0.0.0", "address the HTTP server binds"},
      {"MAESTRA_HTTP_THREADS", "--http-threads", "64",
       "HTTP worker threads; a keep-alive connection holds one while it is open, so keep this above the "
       "number of concurrent clients"},
      {"MAESTRA_DATABASE_URL", "--database-url", "postgresql:///maestra", "Postgres connection URL"},
      {"MAESTRA_DATABASE_POOL", "--database-pool", "8", "Postgres connections for request handling"},
      {"MAESTRA_MQTT_URL", "--mqtt-url", "tcp://localhost:1883", "MQTT broker URL (tcp:// or ssl://)"},
      {"MAESTRA_MQTT_CLIENT_ID", "--mqtt-client-id", "fleet-manager",
       "MQTT client id; its persistent session keeps messages while the service is down (unique per instance)"},
      {"MAESTRA_MQTT_USERNAME", "--mqtt-username", "", "MQTT username of the service (empty: anonymous)"},
      {"MAESTRA_MQTT_PASSWORD", "--mqtt-password", "", "MQTT password of the service"},
      {"MAESTRA_MQTT_CA_FILE", "--mqtt-ca-file", "", "CA certificate file for ssl:// broker URLs"},
      {"MAESTRA_OFFLINE_AFTER", "--offline-after", "300", "seconds of silence before a device is offline (1-604800)"},
      {"MAESTRA_TOPIC_PREFIX", "--topic-prefix", "maestra", "first level(s) of every MQTT topic"},
      {"MAESTRA_FLUSH_INTERVAL_MS", "--flush-interval-ms", "250",
       "longest delay before a coalesced last_seen reaches Postgres (10-1000 ms)"},
      {"MAESTRA_LOG_FORMAT", "--log-format", "text", "log line format: text or json"},
      {"MAESTRA_WEB_ROOT", "--web-root", "(built-in examples/dashboard)", "folder of the web dashboard served at /"},
      {"MAESTRA_ADMIN_TOKEN", "--admin-token", "", "when set, admin endpoints require 'Authorization: Bearer <token>'"},
      {"MAESTRA_AUTH_FAILURE_LIMIT", "--auth-failure-limit", "20",
       "refused credentials (admin token, device password, provisioning key) per client address per minute; "
       "past it the address gets 429 until the minute ends (0: no limit)"},
      {"MAESTRA_SECURE", "--secure", "false",
       "secure mode: per-device broker credentials issued at registration (needs the broker's "
       "dynamic-security plugin and MAESTRA_MQTT_USERNAME as its admin), credential-checked HTTP heartbeats"},
      {"MAESTRA_PROVISIONING_KEY", "--provisioning-key", "",
       "when set, registration must present it (header X-Provisioning-Key or field provisioning_key)"},
      {"MAESTRA_DASHBOARD_USERNAME", "--dashboard-username", "",
       "secure mode: read-only broker account for dashboards, created at start"},
      {"MAESTRA_DASHBOARD_PASSWORD", "--dashboard-password", "", "password of that account"},
  };
  return table;
}

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

std::optional<Error> assign(Config& c, std::string_view env, const std::string& value) {
  auto integer = [&](long long low, long long high, auto& target, std::string_view expected) -> std::optional<Error> {
    auto n = to_integer(value);
    if (!n || *n < low || *n > high) return bad(env, value, expected);
    target = static_cast<std::remove_reference_t<decltype(target)>>(*n);
    return std::nullopt;
  };
  if (env == "MAESTRA_HTTP_PORT") return integer(0, 65535, c.http_port, "a port number 0-65535");
  if (env == "MAESTRA_HTTP_THREADS") return integer(1, 1024, c.http_threads, "1-1024 threads");
  if (env == "MAESTRA_DATABASE_POOL") return integer(1, 256, c.database_pool, "1-256 connections");
  if (env == "MAESTRA_AUTH_FAILURE_LIMIT")
    return integer(0, 1000000, c.auth_failure_limit, "a number of failures per minute, 0-1000000 (0: no limit)");
  if (env == "MAESTRA_OFFLINE_AFTER") {
    long long seconds = 0;
    if (auto e = integer(1, 604800, seconds, "seconds between 1 and 604800")) return e;
    c.offline_after = Seconds{seconds};
    return std::nullopt;
  }
  if (env == "MAESTRA_FLUSH_INTERVAL_MS") {
    long long ms = 0;
    if (auto e = integer(10, 1000, ms, "milliseconds between 10 and 1000")) return e;
    c.flush_interval = Millis{ms};
    return std::nullopt;
  }
  if (env == "MAESTRA_HTTP_HOST") { c.http_host = value; return std::nullopt; }
  if (env == "MAESTRA_DATABASE_URL") {
    if (value.empty()) return bad(env, value, "a postgresql:// URL or libpq connection string");
    c.database_url = value;
    return std::nullopt;
  }
  if (env == "MAESTRA_MQTT_URL") {
    for (std::string_view scheme : {"tcp://", "ssl://", "mqtt://", "mqtts://", "ws://", "wss://"})
      if (value.rfind(scheme, 0) == 0 && value.size() > scheme.size()) {
        c.mqtt_url = value;
        return std::nullopt;
      }
    return bad(env, value, "a URL such as tcp://localhost:1883 or ssl://broker:8883");
  }
  if (env == "MAESTRA_MQTT_CLIENT_ID") {
    if (value.empty() || value.size() > 128) return bad(env, value, "1-128 characters");
    c.mqtt_client_id = value;
    return std::nullopt;
  }
  if (env == "MAESTRA_MQTT_USERNAME") { c.mqtt_username = value; return std::nullopt; }
  if (env == "MAESTRA_MQTT_PASSWORD") { c.mqtt_password = value; return std::nullopt; }
  if (env == "MAESTRA_MQTT_CA_FILE") { c.mqtt_ca_file = value; return std::nullopt; }
  if (env == "MAESTRA_TOPIC_PREFIX") {
    if (!is_valid_topic_prefix(value)) return bad(env, value, "topic levels without wildcards, e.g. maestra");
    c.topic_prefix = value;
    return std::nullopt;
  }
  if (env == "MAESTRA_LOG_FORMAT") {
    if (value != "text" && value != "json") return bad(env, value, "text or json");
    c.log_format = value;
    return std::nullopt;
  }
  if (env == "MAESTRA_WEB_ROOT") { c.web_root = value; return std::nullopt; }
  if (env == "MAESTRA_ADMIN_TOKEN") {
    if (!value.empty() && value.size() < 16) return bad(env, "***", "at least 16 characters");
    c.admin_token = value;
    return std::nullopt;
  }
  if (env == "MAESTRA_SECURE") {
    if (value == "true" || value == "1" || value == "yes") c.secure = true;
    else if (value == "false" || value == "0" || value == "no" || value.empty()) c.secure = false;
    else return bad(env, value, "true or false");
    return std::nullopt;
  }
  if (env == "MAESTRA_PROVISIONING_KEY") {
    if (!value.empty() && value.size() < 16) return bad(env, "***", "at least 16 characters");
    c.provisioning_key = value;
    return std::nullopt;
  }
  if (env == "MAESTRA_DASHBOARD_USERNAME") { c.dashboard_username = value; return std::nullopt; }
  if (env == "MAESTRA_DASHBOARD_PASSWORD") { c.dashboard_password = value; return std::nullopt; }
  return Error{ErrorKind::invalid_field, std::string(env), "unknown option " + std::string(env)};
}

}  // namespace

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
    if (auto error = assign(parsed.config, spec.env, value->second)) return *error;
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
