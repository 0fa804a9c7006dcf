// Who the simulated devices are: their names and hardware ids (sim-RUN-N),
// generated UUIDs for runs without a service, and the ids files that carry
// device ids from one run to the next. Reading and writing files is the only I/O.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace fleet_sim {

// Devices are numbered from 0 in the code and from 1 in names: index 0 is "sim-1".
std::string device_name(std::size_t index);
std::string hardware_id(std::string_view run_id, std::size_t index);

// A stable, random-looking version-4 UUID derived from the run id and index,
// used when --register none and no ids file is given.
std::string generated_device_id(std::string_view run_id, std::size_t index);

// Canonical 8-4-4-4-12 hexadecimal form.
bool looks_like_uuid(std::string_view text);

struct IdsFile {
  std::vector<std::string> ids;
  std::string error;  // empty on success
};
// One id per line; blank lines and lines starting with '#' are skipped.
IdsFile read_ids_file(const std::string& path);
// Returns an error text, empty on success.
std::string write_lines(const std::string& path, const std::vector<std::string>& lines);

}  // namespace fleet_sim
