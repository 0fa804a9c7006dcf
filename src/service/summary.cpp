// Fleet counts by status (kept with every stored transition) and the summary
// topic, published at most once a second when the counts changed.
#include "service/fleet.hpp"

namespace maestra::service {

namespace {
constexpr core::Millis summary_interval{1000};
}  // namespace

core::FleetCounts Fleet::counts() const {
  std::shared_lock lock(registry_mutex_);
  return counts_;
}

std::size_t Fleet::size() const {
  std::shared_lock lock(registry_mutex_);
  return registry_.size();
}

bool Fleet::knows(const DeviceId& id) const {
  std::shared_lock lock(registry_mutex_);
  return registry_.count(id) > 0;
}

void Fleet::apply_counts(std::optional<core::Status> from, std::optional<core::Status> to) {
  if (from) --counts_.by_status[static_cast<std::size_t>(*from)];
  if (to) ++counts_.by_status[static_cast<std::size_t>(*to)];
  if (from) metrics_.devices_by_status[static_cast<std::size_t>(*from)] = counts_.by_status[static_cast<std::size_t>(*from)];
  if (to) metrics_.devices_by_status[static_cast<std::size_t>(*to)] = counts_.by_status[static_cast<std::size_t>(*to)];
  counts_dirty_ = true;
}

TimePoint Fleet::summary_due() const {
  return counts_dirty_ ? last_summary_ + summary_interval : TimePoint::max();
}

void Fleet::publish_summary_if_due(TimePoint now) {
  if (!counts_dirty_ || now - last_summary_ < summary_interval || !publisher_) return;
  publisher_->publish_summary(counts(), now);
  counts_dirty_ = false;
  last_summary_ = now;
}

}  // namespace maestra::service
