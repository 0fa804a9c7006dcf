// Topic parsing and topic-level checks.
#include "core/topics.hpp"

namespace maestra::core {

Topics::Parsed Topics::parse(std::string_view topic) const {
  if (topic.size() <= prefix_.size() + 1 || topic.substr(0, prefix_.size()) != prefix_ ||
      topic[prefix_.size()] != '/')
    return {};
  std::string_view rest = topic.substr(prefix_.size() + 1);
  const auto first = rest.find('/');
  if (first == std::string_view::npos) return {};
  const std::string_view family = rest.substr(0, first);
  rest.remove_prefix(first + 1);
  const auto second = rest.find('/');
  if (second == std::string_view::npos) return {};
  const std::string_view level = rest.substr(0, second);
  const std::string_view leaf = rest.substr(second + 1);
  if (family == "devices" && leaf == "heartbeat") return {Kind::heartbeat, level};
  if (family == "devices" && leaf == "presence") return {Kind::presence, level};
  if (family == "hardware" && leaf == "register") return {Kind::register_request, level};
  return {};
}

bool is_topic_level(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text)
    if (c == '/' || c == '+' || c == '#' || c == '\0') return false;
  return true;
}

bool is_valid_topic_prefix(std::string_view prefix) {
  if (prefix.empty() || prefix.front() == '/' || prefix.back() == '/' || prefix.front() == '$') return false;
  if (prefix.find("//") != std::string_view::npos) return false;
  for (char c : prefix)
    if (c == '+' || c == '#' || c == '\0') return false;
  return true;
}

}  // namespace maestra::core
