// Fuzz target for start-up configuration: core::parse_command_line (environment
// then flags), core::check_config and core::redact_url.
// Input: lines; those before a line "--" are environment entries NAME=VALUE,
// those after it (all lines, without a "--" line) are the arguments.
// Invariants: an accepted configuration holds every value within the range its
// option documents; a refused one has a line to print; the refusal of a secret
// (admin token, provisioning key) does not depend on the secret's text; --help and
// --version only set their flags; redact_url hides the password of a URL.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.hpp"
#include "core/topics.hpp"
#include "fuzz_support.hpp"

using namespace maestra;

namespace {

struct Input {
  std::map<std::string, std::string, std::less<>> env;
  std::vector<std::string> args;
};

Input split_input(std::string_view text) {
  Input in;
  const auto lines = fuzz::split(text, '\n');
  std::size_t first_arg = 0;
  for (std::size_t i = 0; i < lines.size(); ++i)
    if (lines[i] == "--") {
      for (std::size_t k = 0; k < i; ++k) {
        const auto eq = lines[k].find('=');
        if (eq == std::string_view::npos) continue;
        in.env[std::string(lines[k].substr(0, eq))] = std::string(lines[k].substr(eq + 1));
      }
      first_arg = i + 1;
      break;
    }
  for (std::size_t i = first_arg; i < lines.size(); ++i) in.args.emplace_back(lines[i]);
  if (!in.args.empty() && in.args.back().empty()) in.args.pop_back();  // a trailing newline
  return in;
}

core::Result<core::ParsedCommandLine> parse(const Input& in) {
  const core::EnvLookup lookup = [&in](std::string_view name) -> std::optional<std::string> {
    const auto it = in.env.find(name);
    if (it == in.env.end()) return std::nullopt;
    return it->second;
  };
  return core::parse_command_line(lookup, in.args);
}

void check_accepted(const core::Config& c) {
  FUZZ_CHECK(c.http_port >= 0 && c.http_port <= 65535, "http_port out of range");
  FUZZ_CHECK(c.http_threads >= 1 && c.http_threads <= 1024, "http_threads out of range");
  FUZZ_CHECK(c.database_pool >= 1 && c.database_pool <= 256, "database_pool out of range");
  FUZZ_CHECK(c.auth_failure_limit >= 0 && c.auth_failure_limit <= 1000000, "auth_failure_limit out of range");
  FUZZ_CHECK(c.offline_after.count() >= 1 && c.offline_after.count() <= 604800, "offline_after out of range");
  FUZZ_CHECK(c.flush_interval.count() >= 10 && c.flush_interval.count() <= 1000, "flush_interval out of range");
  FUZZ_CHECK(c.log_format == "text" || c.log_format == "json", "log_format is neither text nor json");
  FUZZ_CHECK(core::is_valid_topic_prefix(c.topic_prefix), "topic_prefix is not a valid prefix");
  FUZZ_CHECK(!c.mqtt_client_id.empty() && c.mqtt_client_id.size() <= 128, "mqtt_client_id is not 1-128 characters");
  FUZZ_CHECK(!c.database_url.empty(), "database_url is empty");
  FUZZ_CHECK(c.admin_token.empty() || c.admin_token.size() >= 16, "admin_token shorter than 16 characters");
  FUZZ_CHECK(c.provisioning_key.empty() || c.provisioning_key.size() >= 16, "provisioning_key shorter than 16");
  bool scheme = false;
  for (std::string_view s : {"tcp://", "ssl://", "mqtt://", "mqtts://", "ws://", "wss://"})
    scheme = scheme || (c.mqtt_url.rfind(s, 0) == 0 && c.mqtt_url.size() > s.size());
  FUZZ_CHECK(scheme, "mqtt_url has no known scheme and host");
  if (const auto problem = core::check_config(c)) {
    FUZZ_CHECK(!problem->field.empty() && !problem->detail.empty(), "a refused configuration names no option");
  } else {
    FUZZ_CHECK(!c.secure || (!c.admin_token.empty() && !c.mqtt_username.empty()),
               "secure mode accepted without an admin token or broker admin account");
    FUZZ_CHECK(c.dashboard_username.empty() == c.dashboard_password.empty(),
               "a dashboard username without a password (or the reverse) was accepted");
  }
}

// The same input with every secret replaced by as many 'x' (or 'y' if it was all
// 'x'): in the environment and in `--flag=value` arguments. The two-argument form
// is left alone, since masking it could change which argument is a value; the
// value check is the same function either way.
Input with_secrets_masked(Input in) {
  auto mask = [](std::string& secret) {
    const char fill = secret.find_first_not_of('x') == std::string::npos ? 'y' : 'x';
    secret.assign(secret.size(), fill);
  };
  for (const char* name : {"MAESTRA_ADMIN_TOKEN", "MAESTRA_PROVISIONING_KEY"})
    if (auto it = in.env.find(name); it != in.env.end()) mask(it->second);
  for (std::string& arg : in.args)
    for (std::string_view flag : {"--admin-token=", "--provisioning-key="})
      if (arg.size() > flag.size() && arg.compare(0, flag.size(), flag) == 0) {
        std::string value = arg.substr(flag.size());
        mask(value);
        arg = std::string(flag) + value;
      }
  return in;
}

// The URL's password is hidden: in user:password@ (the '@' before the path, as
// libpq reads it) and in the first password=value (a key=value string or a URL query).
void check_redaction(const std::string& url) {
  const std::string shown = core::redact_url(url);
  std::size_t places = 1;  // user:password@, and every password= (each may become ***)
  for (auto k = url.find("password="); k != std::string::npos; k = url.find("password=", k + 1)) ++places;
  FUZZ_CHECK(shown.size() <= url.size() + 3 * places, "redact_url grew more than the *** it inserts");
  const auto scheme = url.find("://");
  const auto at = url.find('@');
  // Credentials end before the path: libpq stops looking for '@' at the first '/'.
  const auto authority_end = scheme == std::string::npos ? std::string::npos : url.find_first_of("/?#", scheme + 3);
  if (scheme != std::string::npos && at != std::string::npos && at > scheme && at < authority_end) {
    const auto colon = url.find(':', scheme + 3);
    if (colon != std::string::npos && colon < at && at > colon + 1 && url.compare(colon + 1, at - colon - 1, "***") != 0)
      FUZZ_CHECK(shown.compare(0, at + 1, url, 0, at + 1) != 0, "redact_url shows the password of user:password@");
  }
  const auto key = url.find("password=");
  if (key == std::string::npos) return;
  const auto start = key + 9;
  const auto end = url.find_first_of(" &", start);
  const std::string value = url.substr(start, end == std::string::npos ? std::string::npos : end - start);
  // Nothing to tell apart when the value is (or starts like) the mask itself.
  if (value.empty() || value.rfind("***", 0) == 0 || std::string("***").rfind(value, 0) == 0) return;
  FUZZ_CHECK(shown.find("password=" + value) == std::string::npos, "redact_url shows a password= value");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return fuzz::guarded([&] {
    const Input in = split_input(fuzz::as_text(data, size));
    const auto parsed = parse(in);
    if (parsed) {
      check_accepted(parsed->config);
      check_redaction(parsed->config.database_url);
      check_redaction(parsed->config.mqtt_url);
    } else {
      // (The field is the offending argument itself for an unknown option, so "" for "".)
      FUZZ_CHECK(!parsed.error().detail.empty(), "a refusal has no line to print");
      if (parsed.error().field == "MAESTRA_ADMIN_TOKEN" || parsed.error().field == "MAESTRA_PROVISIONING_KEY") {
        const auto masked = parse(with_secrets_masked(in));
        FUZZ_CHECK(!masked.ok() && masked.error().detail == parsed.error().detail,
                   "the refusal of a secret depends on the secret's text (it may be printed)");
      }
    }
    for (const auto& arg : in.args) check_redaction(arg);
  });
}
