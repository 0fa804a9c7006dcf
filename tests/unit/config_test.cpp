// Tests of core/config: defaults (each in its table row only), environment parsing,
// flags over the environment (`--x v` and `--x=v`), one clear error line per bad
// value naming the variable, unknown flags, --help/--version, help_text and redact_url.
#include "unit_test.hpp"

#include <map>
#include <set>
#include <string>

#include "core/config.hpp"

using namespace maestra::core;
using namespace maestra::core::unit;

namespace {
using Env = std::map<std::string, std::string, std::less<>>;

EnvLookup lookup_in(const Env& env) {
  return [&env](std::string_view name) -> std::optional<std::string> {
    const auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
}

Result<ParsedCommandLine> parse(const Env& env, const std::vector<std::string>& args = {}) {
  return parse_command_line(lookup_in(env), args);
}

// The flag of an environment variable, from the option table.
std::string flag_of(std::string_view env) {
  for (const auto& spec : option_table())
    if (spec.env == env) return std::string(spec.flag);
  FAIL("no option for " << env);
  return {};
}
}  // namespace

TEST_SUITE("config") {

// The values other programs rely on (docs/configuration.md, scripts, compose.yaml): a change
// to a row's default must be a deliberate change here too.
TEST_CASE("defaults with no environment and no flags") {
  const auto parsed = parse({});
  REQUIRE(parsed.ok());
  const Config& c = parsed->config;
  CHECK(c.http_host == "0.0.0.0");
  CHECK(c.http_port == 8080);
  CHECK(c.http_threads == 64);
  CHECK(c.database_url == "postgresql:///maestra");
  CHECK(c.database_pool == 8);
  CHECK(c.mqtt_url == "tcp://localhost:1883");
  CHECK(c.mqtt_client_id == "fleet-manager");
  CHECK(c.mqtt_username.empty());
  CHECK(c.mqtt_password.empty());
  CHECK(c.mqtt_ca_file.empty());
  CHECK(c.offline_after == Seconds{300});
  CHECK(c.topic_prefix == "maestra");
  CHECK(c.flush_interval == Millis{250});
  CHECK(c.log_format == "text");
  CHECK(c.web_root.empty());
  CHECK(c.admin_token.empty());
  CHECK(c.auth_failure_limit == 20);
  CHECK_FALSE(c.secure);
  CHECK(c.provisioning_key.empty());
  CHECK(c.dashboard_username.empty());
  CHECK(c.dashboard_password.empty());
  CHECK_FALSE(parsed->show_help);
  CHECK_FALSE(parsed->show_version);
}

TEST_CASE("the option table: docs/configuration.md's variables, unique names and flags, help for each") {
  std::set<std::string_view> envs;
  std::set<std::string_view> flags;
  for (const auto& spec : option_table()) {
    CAPTURE(spec.env);
    CHECK(spec.env.substr(0, 8) == "MAESTRA_");
    CHECK(spec.flag.substr(0, 2) == "--");
    CHECK_FALSE(spec.help.empty());
    CHECK(envs.insert(spec.env).second);
    CHECK(flags.insert(spec.flag).second);
  }
  for (const std::string_view required : {"MAESTRA_HTTP_PORT", "MAESTRA_DATABASE_URL", "MAESTRA_MQTT_URL",
                                          "MAESTRA_OFFLINE_AFTER", "MAESTRA_TOPIC_PREFIX"}) {
    CAPTURE(required);
    CHECK(envs.count(required) == 1);
  }
}

TEST_CASE("a default lives once: in its row, and a fresh Config is the rows' defaults") {
  const Config fresh;
  CHECK(parse({})->config == fresh);
  for (const auto& spec : option_table()) {
    CAPTURE(spec.env);
    CHECK(spec.show(fresh) == spec.default_text);
    // Given explicitly, as a variable or as a flag, the default changes nothing.
    const auto as_variable = parse(Env{{std::string(spec.env), std::string(spec.default_text)}});
    REQUIRE(as_variable.ok());
    CHECK(as_variable->config == fresh);
    const auto as_flag = parse({}, {std::string(spec.flag) + "=" + std::string(spec.default_text)});
    REQUIRE(as_flag.ok());
    CHECK(as_flag->config == fresh);
  }
}

TEST_CASE("each row stores into a field of its own, and shows what it stored") {
  const std::map<std::string_view, std::string> sample{
      {"MAESTRA_HTTP_PORT", "9090"},
      {"MAESTRA_HTTP_HOST", "127.0.0.1"},
      {"MAESTRA_HTTP_THREADS", "4"},
      {"MAESTRA_DATABASE_URL", "postgresql://db/fleet"},
      {"MAESTRA_DATABASE_POOL", "3"},
      {"MAESTRA_MQTT_URL", "ssl://broker:8883"},
      {"MAESTRA_MQTT_CLIENT_ID", "fleet-manager-2"},
      {"MAESTRA_MQTT_USERNAME", "service"},
      {"MAESTRA_MQTT_PASSWORD", "s3cret"},
      {"MAESTRA_MQTT_CA_FILE", "/etc/ssl/ca.pem"},
      {"MAESTRA_OFFLINE_AFTER", "60"},
      {"MAESTRA_TOPIC_PREFIX", "site/a"},
      {"MAESTRA_FLUSH_INTERVAL_MS", "100"},
      {"MAESTRA_LOG_FORMAT", "json"},
      {"MAESTRA_WEB_ROOT", "/srv/dashboard"},
      {"MAESTRA_ADMIN_TOKEN", "0123456789abcdef"},
      {"MAESTRA_AUTH_FAILURE_LIMIT", "7"},
      {"MAESTRA_SECURE", "true"},
      {"MAESTRA_PROVISIONING_KEY", "fedcba9876543210"},
      {"MAESTRA_DASHBOARD_USERNAME", "dashboard"},
      {"MAESTRA_DASHBOARD_PASSWORD", "dashboard-pw"},
      {"MAESTRA_METRICS_RETENTION_DAYS", "7"},
      {"MAESTRA_EVENTS_RETENTION_DAYS", "3"},
  };
  CHECK(sample.size() == option_table().size());
  for (const auto& spec : option_table()) {
    CAPTURE(spec.env);
    const auto value = sample.find(spec.env);
    REQUIRE(value != sample.end());
    REQUIRE(value->second != spec.default_text);
    Config c;
    REQUIRE_FALSE(spec.store(c, value->second));
    CHECK(spec.show(c) == value->second);
    CHECK_FALSE(c == Config{});
    for (const auto& other : option_table()) {
      if (other.env == spec.env) continue;
      CAPTURE(other.env);
      CHECK(other.show(c) == other.default_text);
    }
  }
}

TEST_CASE("every variable is read from the environment") {
  const Env env{
      {"MAESTRA_HTTP_PORT", "9090"},
      {"MAESTRA_HTTP_HOST", "127.0.0.1"},
      {"MAESTRA_HTTP_THREADS", "4"},
      {"MAESTRA_DATABASE_URL", "postgresql://fleet:pw@db:5432/fleet"},
      {"MAESTRA_DATABASE_POOL", "3"},
      {"MAESTRA_MQTT_URL", "ssl://broker:8883"},
      {"MAESTRA_MQTT_CLIENT_ID", "fleet-manager-2"},
      {"MAESTRA_MQTT_USERNAME", "service"},
      {"MAESTRA_MQTT_PASSWORD", "s3cret"},
      {"MAESTRA_MQTT_CA_FILE", "/etc/ssl/ca.pem"},
      {"MAESTRA_OFFLINE_AFTER", "60"},
      {"MAESTRA_TOPIC_PREFIX", "site/a"},
      {"MAESTRA_FLUSH_INTERVAL_MS", "100"},
      {"MAESTRA_LOG_FORMAT", "json"},
      {"MAESTRA_WEB_ROOT", "/srv/dashboard"},
      {"MAESTRA_ADMIN_TOKEN", "0123456789abcdef"},
      {"MAESTRA_AUTH_FAILURE_LIMIT", "7"},
  };
  const auto parsed = parse(env);
  REQUIRE(parsed.ok());
  const Config& c = parsed->config;
  CHECK(c.http_port == 9090);
  CHECK(c.http_host == "127.0.0.1");
  CHECK(c.http_threads == 4);
  CHECK(c.database_url == "postgresql://fleet:pw@db:5432/fleet");
  CHECK(c.database_pool == 3);
  CHECK(c.mqtt_url == "ssl://broker:8883");
  CHECK(c.mqtt_client_id == "fleet-manager-2");
  CHECK(c.mqtt_username == "service");
  CHECK(c.mqtt_password == "s3cret");
  CHECK(c.mqtt_ca_file == "/etc/ssl/ca.pem");
  CHECK(c.offline_after == Seconds{60});
  CHECK(c.topic_prefix == "site/a");
  CHECK(c.flush_interval == Millis{100});
  CHECK(c.log_format == "json");
  CHECK(c.web_root == "/srv/dashboard");
  CHECK(c.admin_token == "0123456789abcdef");
  CHECK(c.auth_failure_limit == 7);
}

TEST_CASE("the environment lookup is asked only for the table's names") {
  std::set<std::string> asked;
  const EnvLookup spy = [&asked](std::string_view name) -> std::optional<std::string> {
    asked.insert(std::string(name));
    return std::nullopt;
  };
  REQUIRE(parse_command_line(spy, {}).ok());
  std::set<std::string> table;
  for (const auto& spec : option_table()) table.insert(std::string(spec.env));
  CHECK(asked == table);
}

TEST_CASE("flags override the environment, in both spellings") {
  const Env env{{"MAESTRA_HTTP_PORT", "9000"}, {"MAESTRA_OFFLINE_AFTER", "60"}, {"MAESTRA_LOG_FORMAT", "json"}};

  SUBCASE("--flag value") {
    const auto parsed = parse(env, {"--http-port", "9001", "--offline-after", "90"});
    REQUIRE(parsed.ok());
    CHECK(parsed->config.http_port == 9001);
    CHECK(parsed->config.offline_after == Seconds{90});
    CHECK(parsed->config.log_format == "json");  // not overridden: the environment stands
  }
  SUBCASE("--flag=value") {
    const auto parsed = parse(env, {"--http-port=9002", "--log-format=text"});
    REQUIRE(parsed.ok());
    CHECK(parsed->config.http_port == 9002);
    CHECK(parsed->config.log_format == "text");
    CHECK(parsed->config.offline_after == Seconds{60});
  }
  SUBCASE("the last flag wins") {
    const auto parsed = parse(env, {"--http-port=1", "--http-port", "2"});
    REQUIRE(parsed.ok());
    CHECK(parsed->config.http_port == 2);
  }
  SUBCASE("a value may contain '='") {
    const auto parsed = parse({}, {"--database-url=host=db password=x"});
    REQUIRE(parsed.ok());
    CHECK(parsed->config.database_url == "host=db password=x");
  }
  SUBCASE("a flag replaces a bad variable before it is checked") {
    const auto parsed = parse({{"MAESTRA_HTTP_PORT", "abc"}, {"MAESTRA_OFFLINE_AFTER", "0"}},
                              {"--http-port", "18099", "--offline-after=5"});
    REQUIRE(parsed.ok());
    CHECK(parsed->config.http_port == 18099);
    CHECK(parsed->config.offline_after == Seconds{5});
  }
  SUBCASE("a bad variable with no flag over it is still an error") {
    const auto parsed = parse({{"MAESTRA_HTTP_PORT", "abc"}}, {"--offline-after=5"});
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.error().field == "MAESTRA_HTTP_PORT");
  }
  SUBCASE("an empty value with --flag= is taken as given") {
    const auto parsed = parse({{"MAESTRA_MQTT_USERNAME", "user"}}, {"--mqtt-username="});
    REQUIRE(parsed.ok());
    CHECK(parsed->config.mqtt_username.empty());
  }
}

TEST_CASE("inclusive bounds of the numeric options") {
  struct Row {
    std::string_view env;
    std::string_view value;
  };
  const Row accepted[] = {
      {"MAESTRA_HTTP_PORT", "0"},          {"MAESTRA_HTTP_PORT", "65535"},
      {"MAESTRA_HTTP_THREADS", "1"},       {"MAESTRA_HTTP_THREADS", "1024"},
      {"MAESTRA_DATABASE_POOL", "1"},      {"MAESTRA_DATABASE_POOL", "256"},
      {"MAESTRA_OFFLINE_AFTER", "1"},      {"MAESTRA_OFFLINE_AFTER", "604800"},
      {"MAESTRA_FLUSH_INTERVAL_MS", "10"}, {"MAESTRA_FLUSH_INTERVAL_MS", "1000"},
      {"MAESTRA_AUTH_FAILURE_LIMIT", "0"}, {"MAESTRA_AUTH_FAILURE_LIMIT", "1000000"},
  };
  for (const Row& row : accepted) {
    CAPTURE(row.env);
    CAPTURE(row.value);
    CHECK(parse(Env{{std::string(row.env), std::string(row.value)}}).ok());
  }
  CHECK(parse({{"MAESTRA_OFFLINE_AFTER", "604800"}})->config.offline_after == Seconds{604800});
  CHECK(parse({{"MAESTRA_FLUSH_INTERVAL_MS", "10"}})->config.flush_interval == Millis{10});
}

TEST_CASE("other accepted values") {
  for (const char* url : {"tcp://localhost:1883", "ssl://b:8883", "mqtt://b", "mqtts://b", "ws://b/mqtt", "wss://b"}) {
    CAPTURE(std::string_view(url));
    CHECK(parse({{"MAESTRA_MQTT_URL", url}}).ok());
  }
  CHECK(parse({{"MAESTRA_DATABASE_URL", "host=/tmp dbname=maestra"}}).ok());
  CHECK(parse({{"MAESTRA_MQTT_CLIENT_ID", std::string(128, 'c')}}).ok());
  CHECK(parse({{"MAESTRA_ADMIN_TOKEN", ""}}).ok());
  CHECK(parse({{"MAESTRA_ADMIN_TOKEN", std::string(16, 't')}}).ok());
  CHECK(parse({{"MAESTRA_TOPIC_PREFIX", "a/b/c"}}).ok());
}

TEST_CASE("every bad value fails with one line naming the variable") {
  struct Row {
    std::string_view env;
    std::string value;
  };
  const Row table[] = {
      {"MAESTRA_HTTP_PORT", "abc"},
      {"MAESTRA_HTTP_PORT", ""},
      {"MAESTRA_HTTP_PORT", "-1"},
      {"MAESTRA_HTTP_PORT", "65536"},
      {"MAESTRA_HTTP_PORT", "80x"},
      {"MAESTRA_HTTP_PORT", " 80"},
      {"MAESTRA_HTTP_PORT", "80 "},
      {"MAESTRA_HTTP_PORT", "+80"},
      {"MAESTRA_HTTP_PORT", "8080.0"},
      {"MAESTRA_HTTP_PORT", "99999999999999999999999"},
      {"MAESTRA_HTTP_THREADS", "0"},
      {"MAESTRA_HTTP_THREADS", "1025"},
      {"MAESTRA_DATABASE_POOL", "0"},
      {"MAESTRA_DATABASE_POOL", "257"},
      {"MAESTRA_OFFLINE_AFTER", "0"},
      {"MAESTRA_OFFLINE_AFTER", "-300"},
      {"MAESTRA_OFFLINE_AFTER", "604801"},
      {"MAESTRA_OFFLINE_AFTER", "5m"},
      {"MAESTRA_OFFLINE_AFTER", "300s"},
      {"MAESTRA_FLUSH_INTERVAL_MS", "9"},
      {"MAESTRA_FLUSH_INTERVAL_MS", "1001"},
      {"MAESTRA_AUTH_FAILURE_LIMIT", "-1"},
      {"MAESTRA_AUTH_FAILURE_LIMIT", "1000001"},
      {"MAESTRA_AUTH_FAILURE_LIMIT", "many"},
      {"MAESTRA_DATABASE_URL", ""},
      {"MAESTRA_MQTT_URL", ""},
      {"MAESTRA_MQTT_URL", "localhost:1883"},
      {"MAESTRA_MQTT_URL", "tcp://"},
      {"MAESTRA_MQTT_URL", "http://broker"},
      {"MAESTRA_MQTT_URL", "TCP://broker"},
      {"MAESTRA_MQTT_CLIENT_ID", ""},
      {"MAESTRA_MQTT_CLIENT_ID", std::string(129, 'c')},
      {"MAESTRA_TOPIC_PREFIX", ""},
      {"MAESTRA_TOPIC_PREFIX", "/maestra"},
      {"MAESTRA_TOPIC_PREFIX", "maestra/"},
      {"MAESTRA_TOPIC_PREFIX", "a//b"},
      {"MAESTRA_TOPIC_PREFIX", "$SYS"},
      {"MAESTRA_TOPIC_PREFIX", "maestra/+"},
      {"MAESTRA_TOPIC_PREFIX", "maestra/#"},
      {"MAESTRA_LOG_FORMAT", "xml"},
      {"MAESTRA_LOG_FORMAT", "JSON"},
      {"MAESTRA_LOG_FORMAT", ""},
      {"MAESTRA_ADMIN_TOKEN", "short"},
  };
  for (const Row& row : table) {
    CAPTURE(row.env);
    CAPTURE(row.value);
    for (const bool as_flag : {false, true}) {
      CAPTURE(as_flag);
      const auto parsed = as_flag ? parse({}, {flag_of(row.env) + "=" + row.value})
                                  : parse(Env{{std::string(row.env), row.value}});
      REQUIRE_FALSE(parsed.ok());
      const Error& error = parsed.error();
      CHECK(error.kind == ErrorKind::invalid_field);
      CHECK(error.field == row.env);
      CHECK(error.detail.find(row.env) != std::string::npos);
      CHECK(error.detail.find("expected") != std::string::npos);
      CHECK(error.detail.find('\n') == std::string::npos);
    }
  }
}

TEST_CASE("a bad admin token is not echoed in the error") {
  const auto parsed = parse({{"MAESTRA_ADMIN_TOKEN", "tooshort"}});
  REQUIRE_FALSE(parsed.ok());
  CHECK(parsed.error().detail.find("tooshort") == std::string::npos);
  CHECK(parsed.error().detail.find("16") != std::string::npos);
}

TEST_CASE("unknown flags, stray arguments and missing values") {
  struct Row {
    std::vector<std::string> args;
    std::string_view names;
  };
  const Row table[] = {
      {{"--nope"}, "--nope"},
      {{"--nope=1"}, "--nope=1"},
      {{"--http_port", "1"}, "--http_port"},
      {{"-p", "8080"}, "-p"},
      {{"serve"}, "serve"},
      {{"MAESTRA_HTTP_PORT=1"}, "MAESTRA_HTTP_PORT=1"},
      {{"--http-port"}, "--http-port"},  // the value is missing
      {{"--offline-after=60", "--database-url"}, "--database-url"},
  };
  for (const Row& row : table) {
    CAPTURE(row.names);
    const auto parsed = parse({}, row.args);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.error().detail.find(row.names) != std::string::npos);
    CHECK(parsed.error().detail.find('\n') == std::string::npos);
  }
  CHECK(parse({}, {"--nope"}).error().detail.find("--help") != std::string::npos);
}

TEST_CASE("--help, -h and --version") {
  const auto help = parse({}, {"--help"});
  REQUIRE(help.ok());
  CHECK(help->show_help);
  CHECK_FALSE(help->show_version);

  CHECK(parse({}, {"-h"})->show_help);

  const auto version = parse({}, {"--version"});
  REQUIRE(version.ok());
  CHECK(version->show_version);
  CHECK_FALSE(version->show_help);

  const auto mixed = parse({}, {"--http-port", "81", "--help", "--version"});
  REQUIRE(mixed.ok());
  CHECK(mixed->show_help);
  CHECK(mixed->show_version);
  CHECK(mixed->config.http_port == 81);
}

TEST_CASE("help_text lists every option with its variable and default, from the table") {
  const std::string text = help_text("fleet-manager");
  CHECK(text.rfind("Usage: fleet-manager", 0) == 0);
  for (const auto& spec : option_table()) {
    CAPTURE(spec.env);
    const std::string shown = spec.default_text.empty() ? "empty" : std::string(spec.default_text);
    const std::string entry = "  " + std::string(spec.flag) + " VALUE";
    const auto at = text.find(entry);
    REQUIRE(at != std::string::npos);
    const auto line_end = text.find('\n', at);
    const std::string line = text.substr(at, line_end - at);
    CHECK(line.size() >= entry.size() + 1);
    CHECK(line.substr(line.find_first_not_of(' ', entry.size())) ==
          std::string(spec.env) + " (default: " + shown + ")");
    CHECK(text.compare(line_end, spec.help.size() + 8, "\n      " + std::string(spec.help) + "\n") == 0);
  }
  CHECK(text.find("(default: 8080)") != std::string::npos);
  CHECK(text.find("(default: 300)") != std::string::npos);
  CHECK(text.find("(default: empty)") != std::string::npos);
  CHECK(text.find("--help") != std::string::npos);
  CHECK(text.find("--version") != std::string::npos);
  CHECK(text.back() == '\n');
}

TEST_CASE("redact_url hides passwords and nothing else") {
  struct Row {
    std::string_view url;
    std::string_view redacted;
  };
  const Row table[] = {
      {"postgresql://user:secret@host/db", "postgresql://user:***@host/db"},
      {"postgresql://user:secret@host:5432/db?sslmode=require", "postgresql://user:***@host:5432/db?sslmode=require"},
      {"postgres://u:p@h/d", "postgres://u:***@h/d"},
      {"tcp://service:s3cret@broker:1883", "tcp://service:***@broker:1883"},
      {"postgresql://user@host/db", "postgresql://user@host/db"},
      {"postgresql://user@host:5432/db", "postgresql://user@host:5432/db"},
      {"postgresql://host:5432/db", "postgresql://host:5432/db"},
      {"postgresql:///maestra", "postgresql:///maestra"},
      {"tcp://localhost:1883", "tcp://localhost:1883"},
      {"host=db password=secret user=fleet", "host=db password=*** user=fleet"},
      {"password=secret", "password=***"},
      {"host=/tmp dbname=maestra", "host=/tmp dbname=maestra"},
      // found by tests/fuzz: a password in the query string of a URL
      {"postgresql://maestra@localhost/maestra?password=hunter2", "postgresql://maestra@localhost/maestra?password=***"},
      {"postgresql://u:pw@h/db?password=x&sslmode=require", "postgresql://u:***@h/db?password=***&sslmode=require"},
      {"postgresql://h/db?user=a@b", "postgresql://h/db?user=a@b"},
      {"", ""},
  };
  for (const Row& row : table) {
    CAPTURE(row.url);
    const std::string out = redact_url(row.url);
    CHECK(out == row.redacted);
  }
}

}  // TEST_SUITE
