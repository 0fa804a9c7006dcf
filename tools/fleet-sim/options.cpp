// Option table, argv parser, combined check and --help text (see options.hpp).
// Each option appears once, in option_table(): its name, its argument, how it
// sets SimOptions, how its default is shown, and its help line.
#include "options.hpp"

#include <charconv>
#include <cmath>
#include <functional>
#include <sstream>
#include <string_view>

namespace fleet_sim {
namespace {

struct OptionSpec {
  std::string name;                                                   // without the leading "--"
  std::string argument;                                               // empty for a flag
  std::function<std::string(SimOptions&, const std::string&)> apply;  // returns an error or ""
  std::function<std::string(const SimOptions&)> show_default;         // null: no default shown
  std::string help;
  std::string group;
};

template <typename Integer>
std::string parse_integer(const std::string& text, Integer& out, Integer min, Integer max) {
  Integer value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size()) return "expects a whole number, got '" + text + "'";
  if (value < min || value > max) {
    return "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " + text;
  }
  out = value;
  return "";
}

std::string parse_number(const std::string& text, double& out, double min, double max) {
  double value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size() || !std::isfinite(value)) {
    return "expects a number, got '" + text + "'";
  }
  if (value < min || value > max) {
    std::ostringstream message;
    message << "must be between " << min << " and " << max << ", got " << text;
    return message.str();
  }
  out = value;
  return "";
}

std::string show_number(double value) {
  std::ostringstream text;
  text << value;
  return text.str();
}

std::string quoted_or_none(const std::string& text) { return text.empty() ? "(none)" : text; }

const std::vector<OptionSpec>& option_table() {
  static const std::vector<OptionSpec> table = {
      // --- broker and service -------------------------------------------------
      {"host", "ADDR", [](SimOptions& o, const std::string& v) { o.host = v; return std::string(); },
       [](const SimOptions& o) { return o.host; }, "MQTT broker host (IPv4 address or name)", "Broker and service"},
      {"port", "N",
       [](SimOptions& o, const std::string& v) {
         return parse_integer<std::uint16_t>(v, o.port, 1, 65535);
       },
       [](const SimOptions& o) { return std::to_string(o.port); }, "MQTT broker port", ""},
      {"http", "URL", [](SimOptions& o, const std::string& v) { o.http_url = v; return std::string(); },
       [](const SimOptions& o) { return o.http_url; }, "fleet-manager HTTP base URL (for --register http)", ""},
      {"prefix", "TOPIC", [](SimOptions& o, const std::string& v) { o.prefix = v; return std::string(); },
       [](const SimOptions& o) { return o.prefix; }, "MQTT topic prefix", ""},
      {"client-id-prefix", "TEXT",
       [](SimOptions& o, const std::string& v) { o.client_id_prefix = v; return std::string(); },
       [](const SimOptions& o) { return quoted_or_none(o.client_id_prefix); },
       "MQTT client id = TEXT + device id (subscriber: TEXT + \"sub-\" + pid)", ""},
      {"username", "TEXT", [](SimOptions& o, const std::string& v) { o.username = v; return std::string(); },
       nullptr, "MQTT user name; \"{id}\" is replaced by each device's id (other clients: their client id)", ""},
      {"password", "TEXT", [](SimOptions& o, const std::string& v) { o.password = v; return std::string(); },
       nullptr, "MQTT password (needs --username)", ""},
      {"keepalive", "S",
       [](SimOptions& o, const std::string& v) {
         return parse_integer<std::uint16_t>(v, o.keepalive_s, 0, 65535);
       },
       [](const SimOptions& o) { return std::to_string(o.keepalive_s); },
       "MQTT keepalive in seconds (PINGREQ after half of it idle; 0 = off)", ""},

      // --- the fleet and its registration ------------------------------------
      {"devices", "N",
       [](SimOptions& o, const std::string& v) {
         o.devices_given = true;
         return parse_integer<std::size_t>(v, o.devices, 1, 1'000'000);
       },
       [](const SimOptions& o) { return std::to_string(o.devices); },
       "number of simulated devices, each with its own MQTT connection", "Fleet and registration"},
      {"register", "http|mqtt|none",
       [](SimOptions& o, const std::string& v) {
         if (v == "http") o.register_mode = RegisterMode::http;
         else if (v == "mqtt") o.register_mode = RegisterMode::mqtt;
         else if (v == "none") o.register_mode = RegisterMode::none;
         else return "expects http, mqtt or none, got '" + v + "'";
         return std::string();
       },
       [](const SimOptions&) { return std::string("http"); },
       "how devices get their ids: POST {http}/devices/register, the MQTT register topic, or "
       "none (generated UUIDs, for bare-broker benchmarks)",
       ""},
      {"register-parallel", "N",
       [](SimOptions& o, const std::string& v) {
         return parse_integer<std::size_t>(v, o.register_parallel, 1, 256);
       },
       [](const SimOptions& o) { return std::to_string(o.register_parallel); },
       "parallel keep-alive HTTP connections (or MQTT clients) used to register", ""},
      {"register-batch", "N",
       [](SimOptions& o, const std::string& v) {
         return parse_integer<std::size_t>(v, o.register_batch, 1, 1000);
       },
       [](const SimOptions& o) { return std::to_string(o.register_batch); },
       "MQTT registration: devices per batch and client (subscribe to their reply topics, then publish); "
       "at most parallel x batch requests are outstanding",
       ""},
      {"register-timeout", "S",
       [](SimOptions& o, const std::string& v) { return parse_number(v, o.register_timeout_s, 0.1, 3600); },
       [](const SimOptions& o) { return show_number(o.register_timeout_s); },
       "give up on registration replies after S seconds (per MQTT batch / HTTP request)", ""},
      {"run-id", "TEXT", [](SimOptions& o, const std::string& v) { o.run_id = v; return std::string(); },
       [](const SimOptions& o) { return o.run_id; },
       "hardware ids are sim-TEXT-N: the same run id re-uses earlier registrations (409), a new one makes new "
       "devices",
       ""},
      {"device-type", "TEXT", [](SimOptions& o, const std::string& v) { o.device_type = v; return std::string(); },
       [](const SimOptions& o) { return o.device_type; }, "device_type sent at registration", ""},
      {"ids-file", "FILE", [](SimOptions& o, const std::string& v) { o.ids_file = v; return std::string(); },
       nullptr, "read device ids (one UUID per line) and skip registration", ""},
      {"write-ids", "FILE",
       [](SimOptions& o, const std::string& v) { o.write_ids_file = v; return std::string(); }, nullptr,
       "write the device ids used, one per line (re-use them with --ids-file)", ""},

      // --- connecting -----------------------------------------------------------
      {"connect-rate", "N",
       [](SimOptions& o, const std::string& v) { return parse_number(v, o.connect_rate, 1, 1e6); },
       [](const SimOptions& o) { return show_number(o.connect_rate); },
       "new MQTT connections per second (paced so the broker's listen backlog is not overrun)", "Connecting"},
      {"connect-timeout", "S",
       [](SimOptions& o, const std::string& v) { return parse_number(v, o.connect_timeout_s, 0.1, 3600); },
       [](const SimOptions& o) { return show_number(o.connect_timeout_s); },
       "a connection without CONNACK after S seconds is an error (retried twice)", ""},

      // --- heartbeats -------------------------------------------------------------
      {"qos", "0|1",
       [](SimOptions& o, const std::string& v) { return parse_integer<std::uint8_t>(v, o.qos, 0, 1); },
       [](const SimOptions& o) { return std::to_string(o.qos); },
       "QoS of heartbeats (and of the subscription in --subscribe mode)", "Heartbeats"},
      {"interval-ms", "MS",
       [](SimOptions& o, const std::string& v) {
         o.interval_given = true;
         return parse_integer<std::uint32_t>(v, o.interval_ms, 1, 86'400'000);
       },
       [](const SimOptions& o) { return std::to_string(o.interval_ms); },
       "heartbeat interval per device, first beat at a random point of the first interval", ""},
      {"rate", "N",
       [](SimOptions& o, const std::string& v) {
         double value = 0;
         std::string error = parse_number(v, value, 0, 1e8);
         if (error.empty()) o.rate = value;
         return error;
       },
       nullptr,
       "instead of --interval-ms: N heartbeats/s across the fleet, round robin; 0 = as fast as the "
       "in-flight window allows",
       ""},
      {"inflight", "N",
       [](SimOptions& o, const std::string& v) { return parse_integer<std::uint32_t>(v, o.inflight, 1, 65000); },
       [](const SimOptions& o) { return std::to_string(o.inflight); },
       "unacknowledged heartbeats allowed per connection: QoS 1 waits for PUBACKs, QoS 0 for a PINGRESP "
       "after every N (a full window makes an interval beat skip, a --rate device wait)",
       ""},
      {"payload", "TEXT", [](SimOptions& o, const std::string& v) { o.payload = v; return std::string(); },
       [](const SimOptions&) { return std::string("(empty)"); }, "heartbeat payload, e.g. '{}'", ""},
      {"telemetry-metrics", "N",
       [](SimOptions& o, const std::string& v) { return parse_integer<std::uint32_t>(v, o.telemetry_metrics, 0, 100); },
       [](const SimOptions& o) { return std::to_string(o.telemetry_metrics); },
       "instead of heartbeats, publish telemetry messages of N metrics each ({\"m0\":0.5,...}) on "
       "{prefix}/devices/{id}/telemetry/metrics, paced like heartbeats (--rate, --interval-ms); 0 = heartbeats",
       ""},
      {"duration", "S",
       [](SimOptions& o, const std::string& v) { return parse_number(v, o.duration_s, 0.001, 30.0 * 86400); },
       [](const SimOptions& o) { return show_number(o.duration_s); },
       "stop S seconds after connecting starts (subscriber: after subscribing)", ""},
      {"count", "N",
       [](SimOptions& o, const std::string& v) {
         return parse_integer<std::uint64_t>(v, o.count, 1, 1'000'000'000'000ULL);
       },
       nullptr, "stop after N heartbeats in total (subscriber: N messages); whichever of --duration/--count is first",
       ""},
      {"drain", "S", [](SimOptions& o, const std::string& v) { return parse_number(v, o.drain_s, 0, 600); },
       [](const SimOptions& o) { return show_number(o.drain_s); },
       "at the end, wait up to S seconds for outstanding PUBACKs", ""},

      // --- killing and leaving -------------------------------------------------------
      {"kill-fraction", "F",
       [](SimOptions& o, const std::string& v) { return parse_number(v, o.kill_fraction, 0, 1); },
       [](const SimOptions& o) { return show_number(o.kill_fraction); },
       "abruptly close this fraction of the connected devices (no DISCONNECT: the broker sends their wills)",
       "Killing and exit"},
      {"kill-after", "S",
       [](SimOptions& o, const std::string& v) { return parse_number(v, o.kill_after_s, 0, 30.0 * 86400); },
       [](const SimOptions& o) { return show_number(o.kill_after_s); },
       "when to kill: S seconds after the connect phase ends (every device connected or given up)", ""},
      {"killed-file", "FILE",
       [](SimOptions& o, const std::string& v) { o.killed_file = v; return std::string(); }, nullptr,
       "write killed device ids there (one per line) instead of listing them in the kill JSON line", ""},
      {"on-exit", "offline|disconnect|abort",
       [](SimOptions& o, const std::string& v) {
         if (v == "offline") o.exit_mode = ExitMode::offline;
         else if (v == "disconnect") o.exit_mode = ExitMode::disconnect;
         else if (v == "abort") o.exit_mode = ExitMode::abort;
         else return "expects offline, disconnect or abort, got '" + v + "'";
         return std::string();
       },
       [](const SimOptions&) { return std::string("offline"); },
       "at the end: publish a retained clean-disconnect presence then DISCONNECT; or only DISCONNECT (devices "
       "time out later); or close abruptly (wills fire)",
       ""},
      {"seed", "N",
       [](SimOptions& o, const std::string& v) {
         return parse_integer<std::uint64_t>(v, o.seed, 0, UINT64_MAX);
       },
       [](const SimOptions& o) { return std::to_string(o.seed); }, "random seed (jitter, which devices are killed)",
       ""},

      // --- answering commands ------------------------------------------------------------
      {"answer-commands", "",
       [](SimOptions& o, const std::string&) { o.answer_commands = true; return std::string(); }, nullptr,
       "each device subscribes to its commands (before its birth) and answers each one: \"succeeded\" (or "
       "\"failed\", see --answer-fail-rate) on its replies topic, QoS 1",
       "Answering commands"},
      {"answer-delay-ms", "MS",
       [](SimOptions& o, const std::string& v) {
         return parse_integer<std::uint32_t>(v, o.answer_delay_ms, 0, 3'600'000);
       },
       [](const SimOptions& o) { return std::to_string(o.answer_delay_ms); },
       "answer this long after the command arrived (0: at once)", ""},
      {"answer-fail-rate", "F",
       [](SimOptions& o, const std::string& v) { return parse_number(v, o.answer_fail_rate, 0, 1); },
       [](const SimOptions& o) { return show_number(o.answer_fail_rate); },
       "fraction of commands answered \"failed\" (random, --seed)", ""},

      // --- subscriber mode ----------------------------------------------------------------
      {"subscribe", "FILTER",
       [](SimOptions& o, const std::string& v) {
         o.subscribe_filters.push_back(v);
         return std::string();
       },
       nullptr, "subscriber mode: one client subscribes to FILTER (repeatable) and counts messages",
       "Subscriber mode"},
      {"print-arrivals", "", [](SimOptions& o, const std::string&) { o.print_arrivals = true; return std::string(); },
       nullptr, "print 'epoch_ms topic payload' per message (progress lines then go to stderr)", ""},
      {"skip-retained", "", [](SimOptions& o, const std::string&) { o.skip_retained = true; return std::string(); },
       nullptr, "ignore retained messages replayed on subscribe", ""},

      // --- output -------------------------------------------------------------------------------
      {"quiet", "", [](SimOptions& o, const std::string&) { o.quiet = true; return std::string(); }, nullptr,
       "no per-second progress lines", "Output"},
      {"help", "", [](SimOptions& o, const std::string&) { o.help = true; return std::string(); }, nullptr,
       "this text", ""},
  };
  return table;
}

const OptionSpec* find_option(std::string_view name) {
  for (const auto& spec : option_table()) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

bool is_valid_topic_prefix(std::string_view prefix) {
  if (prefix.empty() || prefix.front() == '$' || prefix.front() == '/' || prefix.back() == '/') return false;
  return prefix.find_first_of("+#") == std::string_view::npos && prefix.find('\0') == std::string_view::npos;
}

// Greedy word wrap of `text` to `width` columns, continuation lines indented to `indent`.
std::string wrapped(const std::string& text, std::size_t indent, std::size_t width) {
  std::string out;
  std::size_t column = indent;
  std::istringstream words(text);
  std::string word;
  bool first = true;
  while (words >> word) {
    if (!first && column + 1 + word.size() > width) {
      out += "\n" + std::string(indent, ' ');
      column = indent;
    } else if (!first) {
      out += ' ';
      ++column;
    }
    out += word;
    column += word.size();
    first = false;
  }
  return out;
}

}  // namespace

ParsedOptions parse_options(const std::vector<std::string>& arguments) {
  ParsedOptions parsed;
  for (std::size_t i = 0; i < arguments.size(); ++i) {
    const std::string& argument = arguments[i];
    if (argument.rfind("--", 0) != 0) {
      parsed.error = "unexpected argument '" + argument + "' (options start with --; see --help)";
      return parsed;
    }
    std::string name = argument.substr(2);
    std::optional<std::string> inline_value;
    if (const auto equals = name.find('='); equals != std::string::npos) {
      inline_value = name.substr(equals + 1);
      name.resize(equals);
    }
    const OptionSpec* spec = find_option(name);
    if (spec == nullptr) {
      parsed.error = "unknown option --" + name + " (see --help)";
      return parsed;
    }
    std::string value;
    if (!spec->argument.empty()) {
      if (inline_value) {
        value = *inline_value;
      } else if (i + 1 < arguments.size()) {
        value = arguments[++i];
      } else {
        parsed.error = "--" + name + " needs a value (" + spec->argument + ")";
        return parsed;
      }
    } else if (inline_value) {
      parsed.error = "--" + name + " takes no value";
      return parsed;
    }
    if (std::string error = spec->apply(parsed.options, value); !error.empty()) {
      parsed.error = "--" + name + " " + error;
      return parsed;
    }
  }
  if (!parsed.options.help) parsed.error = check_options(parsed.options);
  return parsed;
}

std::string check_options(const SimOptions& options) {
  if (options.host.empty()) return "--host must not be empty";
  if (!is_valid_topic_prefix(options.prefix)) {
    return "--prefix must be one or more topic levels without wildcards, a leading '$' or an outer '/'";
  }
  if (options.password && !options.username) return "--password needs --username";
  if (options.subscriber_mode()) {
    for (const auto& filter : options.subscribe_filters) {
      if (filter.empty()) return "--subscribe needs a non-empty topic filter";
    }
    return "";
  }
  if (options.rate && options.interval_given) return "choose either --interval-ms or --rate, not both";
  if (options.run_id.empty() || options.run_id.find_first_of("/+#") != std::string::npos) {
    return "--run-id must be non-empty and contain no '/', '+' or '#' (it is part of a topic level)";
  }
  if (options.register_mode == RegisterMode::http && options.ids_file.empty() && !parse_http_url(options.http_url)) {
    return "--http must look like http://HOST[:PORT][/PATH], got '" + options.http_url + "'";
  }
  if (options.payload.size() > 1'000'000) return "--payload is limited to 1 MB";
  if (options.telemetry_metrics > 0 && !options.payload.empty())
    return "choose either --payload or --telemetry-metrics, not both";
  if (options.kill_fraction > 0 && options.kill_after_s >= options.duration_s) {
    return "--kill-after must be shorter than --duration, or the kill never happens";
  }
  return "";
}

std::optional<std::string> mqtt_username(const SimOptions& options, std::string_view id) {
  if (!options.username) return std::nullopt;
  constexpr std::string_view placeholder = "{id}";
  std::string name = *options.username;
  for (auto at = name.find(placeholder); at != std::string::npos; at = name.find(placeholder, at + id.size())) {
    name.replace(at, placeholder.size(), id);
  }
  return name;
}

std::optional<HttpEndpoint> parse_http_url(std::string_view url) {
  constexpr std::string_view scheme = "http://";
  if (url.substr(0, scheme.size()) != scheme) return std::nullopt;
  url.remove_prefix(scheme.size());
  HttpEndpoint endpoint;
  const auto path_start = url.find('/');
  std::string_view authority = url.substr(0, path_start);
  if (path_start != std::string_view::npos) {
    endpoint.base_path = std::string(url.substr(path_start));
    while (!endpoint.base_path.empty() && endpoint.base_path.back() == '/') endpoint.base_path.pop_back();
  }
  if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    const std::string port_text(authority.substr(colon + 1));
    int port = 0;
    if (!parse_integer<int>(port_text, port, 1, 65535).empty()) return std::nullopt;
    endpoint.port = port;
    authority = authority.substr(0, colon);
  }
  if (authority.empty() || authority.find('@') != std::string_view::npos) return std::nullopt;
  endpoint.host = std::string(authority);
  return endpoint;
}

std::string help_text() {
  std::ostringstream text;
  text << "fleet-sim: simulates a fleet of Maestra devices over MQTT (one TCP connection each),\n"
          "or with --subscribe, counts what a subscriber receives.\n\n"
          "Usage:\n"
          "  fleet-sim [--devices N] [--register http|mqtt|none] [--interval-ms MS | --rate N] [options]\n"
          "  fleet-sim --subscribe FILTER [--qos 0|1] [--duration S] [--print-arrivals]\n";
  const SimOptions defaults;
  for (const auto& spec : option_table()) {
    if (!spec.group.empty()) text << "\n" << spec.group << ":\n";
    std::string left = "  --" + spec.name;
    if (!spec.argument.empty()) left += " " + spec.argument;
    text << left;
    const std::size_t column = 34;
    if (left.size() + 2 > column) {
      text << "\n" << std::string(column, ' ');
    } else {
      text << std::string(column - left.size(), ' ');
    }
    std::string help = spec.help;
    if (spec.show_default) help += " [default: " + spec.show_default(defaults) + "]";
    text << wrapped(help, column, 100) << "\n";
  }
  text << "\nLines printed: one progress line per second on stdout (unless --quiet), one JSON line per event\n"
          "(kill) and a final JSON summary line. Exit status 0 on success, 1 on errors, 2 on bad options.\n";
  return text.str();
}

std::string telemetry_payload(std::uint32_t metrics) {
  std::string payload = "{";
  for (std::uint32_t i = 0; i < metrics; ++i)
    payload += (i ? ",\"m" : "\"m") + std::to_string(i) + "\":" + std::to_string(i) + ".5";
  return payload + "}";
}

}  // namespace fleet_sim
