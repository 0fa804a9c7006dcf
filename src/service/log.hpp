// Logging: one line per event with a level, an event name and key=value fields,
// or one JSON object per line with MAESTRA_LOG_FORMAT=json. Thread-safe. Callers
// never pass secrets; `redact_url` (core/config.hpp) exists for URLs.
#pragma once
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace maestra::service {

enum class LogLevel { debug, info, warn, error };

using LogField = std::pair<std::string_view, std::string>;

void set_log_format_json(bool json);
void log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields = {});

inline void log_info(std::string_view event, std::initializer_list<LogField> fields = {}) {
  log(LogLevel::info, event, fields);
}
inline void log_warn(std::string_view event, std::initializer_list<LogField> fields = {}) {
  log(LogLevel::warn, event, fields);
}
inline void log_error(std::string_view event, std::initializer_list<LogField> fields = {}) {
  log(LogLevel::error, event, fields);
}

}  // namespace maestra::service
