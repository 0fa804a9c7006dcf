// Timeouts: which devices are watched, when each expires (core/deadlines), and
// how outages of the broker link move the deadlines of devices heard over MQTT.
#include "service/fleet.hpp"

#include "service/log.hpp"

namespace maestra::service {

namespace {
// Expiries stored per owner cycle (one write_states each). A storm of 100,000
// (bench.sh timeouts) in cycles of 5,000 has its first statuses on the wire
// sooner and overlaps storing with publishing better than in cycles of 20,000:
// 8,700-12,200 of them offline within the deadline + 1 s against 3,300-5,800
// (four runs each; the last one lands about as late either way, the machine's
// two cores are the limit). A will or heartbeat arriving meanwhile waits
// behind one 5,000-row statement (0.3-0.5 s) rather than a 20,000-row one.
constexpr std::size_t max_expiries_per_cycle = 5000;
}  // namespace

void Fleet::watch(const DeviceId& id, const core::DeviceState& state) {
  if (!state.connected) return;
  const auto deadline = core::deadline_of(state, options_.deadlines);
  // No deadline while the broker link is down: re-armed when it is back.
  if (deadline != TimePoint::max()) deadlines_.push(deadline, id);
}

void Fleet::link_changed(bool up, TimePoint at) {
  if (!up) {
    options_.deadlines.link_down(at);
    return;
  }
  if (!options_.deadlines.mqtt_link_down_since) return;
  options_.deadlines.link_up(at);
  // Devices heard over MQTT had no deadline while the link was down: give
  // each its deadline again, extended by the outage.
  std::vector<std::pair<DeviceId, core::DeviceState>> heard;
  {
    std::shared_lock lock(registry_mutex_);
    for (const auto& [id, state] : registry_)
      if (state.connected && state.heard_over_mqtt) heard.emplace_back(id, state);
  }
  for (const auto& [id, state] : heard) watch(id, state);
  log_info("mqtt_deadlines_extended", {{"devices", std::to_string(heard.size())},
                                       {"outage_ms", std::to_string((options_.deadlines.mqtt_outages.back().to -
                                                                     options_.deadlines.mqtt_outages.back().from).count())}});
}

void Fleet::expire_due(Batch& batch, TimePoint now) {
  if (shutting_down_) return;
  for (const auto& id : deadlines_.pop_due(now, max_expiries_per_cycle)) {
    if (batch.index.count(id)) commit(batch);
    std::unique_lock lock(registry_mutex_);
    auto it = registry_.find(id);
    if (it == registry_.end()) continue;
    const core::DeviceState before = it->second;
    const auto outcome = core::mark_offline_if_expired(before, options_.deadlines, now);
    if (outcome.ignored) {
      lock.unlock();
      watch(id, before);  // heard from since: re-arm with the current deadline
      continue;
    }
    it->second = outcome.next;
    lock.unlock();
    add_write(batch, id, before, outcome, nullptr);
  }
}

}  // namespace maestra::service
