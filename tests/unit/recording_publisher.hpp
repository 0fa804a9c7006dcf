// A StatusPublisher for the fleet's unit tests: records what the fleet
// publishes (statuses, cleared devices, a count of summaries), no broker.
#pragma once
#include <vector>

#include "service/fleet.hpp"

namespace maestra::unit {

class RecordingPublisher final : public service::StatusPublisher {
 public:
  std::vector<store::StoredStatus> statuses;
  std::vector<core::DeviceId> cleared;
  int summaries = 0;
  void publish_status(const store::StoredStatus& s) override { statuses.push_back(s); }
  void clear_device(const core::DeviceId& id) override { cleared.push_back(id); }
  void publish_summary(const core::FleetCounts&, core::TimePoint) override { ++summaries; }
  std::vector<store::StoredStatus> of(const core::DeviceId& id) const {
    std::vector<store::StoredStatus> out;
    for (const auto& s : statuses)
      if (s.document.device_id == id) out.push_back(s);
    return out;
  }
};

}  // namespace maestra::unit
