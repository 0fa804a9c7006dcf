// Log line formatting (text or JSON) and the single locked write to stderr.
#include "service/log.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>

#include <nlohmann/json.hpp>

#include "core/clock.hpp"

namespace maestra::service {

namespace {
std::atomic<bool> json_format{false};
std::mutex write_mutex;

std::string_view level_name(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warn";
    case LogLevel::error: return "error";
  }
  return "info";
}

bool needs_quotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v)
    if (c == ' ' || c == '"' || c == '=' || static_cast<unsigned char>(c) < 0x20) return true;
  return false;
}
}  // namespace

void set_log_format_json(bool json) { json_format = json; }

void log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
  const auto now = std::chrono::time_point_cast<core::Millis>(std::chrono::system_clock::now());
  std::string line;
  if (json_format) {
    nlohmann::ordered_json doc{{"ts", core::format_rfc3339(now)}, {"level", level_name(level)}, {"event", event}};
    for (const auto& [key, value] : fields) doc[std::string(key)] = value;
    line = doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    line = core::format_rfc3339(now) + " " + std::string(level_name(level)) + " " + std::string(event);
    for (const auto& [key, value] : fields) {
      line += " " + std::string(key) + "=";
      line += needs_quotes(value) ? nlohmann::json(value).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                                  : value;
    }
  }
  line += '\n';
  std::lock_guard lock(write_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace maestra::service
