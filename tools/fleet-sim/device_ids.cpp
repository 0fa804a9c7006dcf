// Device names, hardware ids, generated UUIDs and ids files (see device_ids.hpp).
#include "device_ids.hpp"

#include <cstdint>
#include <cstdio>
#include <fstream>

namespace fleet_sim {
namespace {

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

std::uint64_t fnv1a(std::string_view text) {
  std::uint64_t hash = 0xCBF29CE484222325ULL;
  for (const char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001B3ULL;
  }
  return hash;
}

bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

std::string_view trimmed(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) text.remove_suffix(1);
  return text;
}

}  // namespace

std::string device_name(std::size_t index) { return "sim-" + std::to_string(index + 1); }

std::string hardware_id(std::string_view run_id, std::size_t index) {
  return "sim-" + std::string(run_id) + "-" + std::to_string(index + 1);
}

std::string generated_device_id(std::string_view run_id, std::size_t index) {
  std::uint64_t state = fnv1a(run_id) ^ (static_cast<std::uint64_t>(index) * 0xD1B54A32D192ED03ULL);
  const std::uint64_t high = splitmix64(state);
  const std::uint64_t low = splitmix64(state);
  unsigned char bytes[16];
  for (int i = 0; i < 8; ++i) {
    bytes[i] = static_cast<unsigned char>(high >> (56 - 8 * i));
    bytes[8 + i] = static_cast<unsigned char>(low >> (56 - 8 * i));
  }
  bytes[6] = static_cast<unsigned char>((bytes[6] & 0x0F) | 0x40);  // version 4
  bytes[8] = static_cast<unsigned char>((bytes[8] & 0x3F) | 0x80);  // RFC 4122 variant
  char text[37];
  std::snprintf(text, sizeof text, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", bytes[0],
                bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9], bytes[10],
                bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]);
  return text;
}

bool looks_like_uuid(std::string_view text) {
  if (text.size() != 36) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const bool dash_position = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash_position ? text[i] != '-' : !is_hex(text[i])) return false;
  }
  return true;
}

IdsFile read_ids_file(const std::string& path) {
  IdsFile result;
  std::ifstream in(path);
  if (!in) {
    result.error = "cannot read ids file " + path;
    return result;
  }
  std::string line;
  std::size_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    const std::string_view text = trimmed(line);
    if (text.empty() || text.front() == '#') continue;
    if (!looks_like_uuid(text)) {
      result.error = path + ":" + std::to_string(line_number) + ": not a device id (UUID): '" + std::string(text) + "'";
      result.ids.clear();
      return result;
    }
    result.ids.emplace_back(text);
  }
  if (result.ids.empty()) result.error = "ids file " + path + " holds no device ids";
  return result;
}

std::string write_lines(const std::string& path, const std::vector<std::string>& lines) {
  std::ofstream out(path, std::ios::trunc);
  if (!out) return "cannot write " + path;
  for (const auto& line : lines) out << line << '\n';
  out.flush();
  if (!out) return "error writing " + path;
  return "";
}

}  // namespace fleet_sim
