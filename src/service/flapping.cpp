// Flapping devices (core/flap.hpp): from the 4th status change of a device
// within a minute on, its changes are held out of the batch. The registry and
// the device's deadline follow it at once; the store, the history and the
// retained status get the status once it has held for the settle time (10 s):
// one row with the last change's reason and time, or nothing when the device
// came back to the stored status. Logged when a device starts flapping and when
// it settles (with its flaps and last reason); counted in
// maestra_flap_changes_held_total.
#include "service/fleet.hpp"

#include "service/log.hpp"

namespace maestra::service {

namespace {
bool damped(core::Reason reason) { return reason != core::Reason::admin && reason != core::Reason::registered; }
constexpr core::Millis settle_retry{1000};
}  // namespace

bool Fleet::damp(const DeviceId& id, const core::Outcome& outcome, Event* source, bool too_frequent) {
  auto existing = flaps_.find(id);
  const bool holding = existing != flaps_.end() && existing->second.holding();
  if (outcome.transition && damped(outcome.transition->reason)) {
    auto& damper = existing != flaps_.end() ? existing->second : flaps_[id];
    const bool first_in_window = damper.idle(outcome.transition->at, options_.flaps);
    if (!damper.on_change(outcome.transition->at, outcome.transition->reason, options_.flaps)) {
      // Not (yet) flapping: stored as usual; the damper is forgotten once its window is empty.
      if (first_in_window) flap_checks_.emplace(outcome.transition->at + options_.flaps.window, id);
      return false;
    }
    ++metrics_.flap_changes_held;
    if (!holding)
      log_warn("device_flapping", {{"device_id", id.to_string()},
                                   {"changes", std::to_string(options_.flaps.changes)},
                                   {"window_s", std::to_string(options_.flaps.window.count())},
                                   {"note", "its status is stored and published once it holds for " +
                                                std::to_string(options_.flaps.settle.count()) + " s"}});
    flap_checks_.emplace(damper.settle_due(options_.flaps), id);
  } else if (!holding) {
    return false;
  }
  // Held: whatever else the device changed waits with its status (the stored
  // row must not show a status its history and retained topic do not).
  if (source) {
    if (source->heartbeat_reply)
      source->heartbeat_reply->set_value(
          HeartbeatReply{id, outcome.next.status(), outcome.next.last_seen, too_frequent});
    release(*source);
  }
  return true;
}

void Fleet::settle_flaps(Batch& batch, TimePoint now) {
  while (!flap_checks_.empty() && flap_checks_.top().first <= now) {
    const DeviceId id = flap_checks_.top().second;
    flap_checks_.pop();
    auto it = flaps_.find(id);
    if (it == flaps_.end()) continue;
    auto& damper = it->second;
    if (!damper.holding()) {
      if (damper.idle(now, options_.flaps)) flaps_.erase(it);
      continue;
    }
    if (now < damper.settle_due(options_.flaps)) continue;  // changed again since: a later check is queued
    if (batch.index.count(id)) commit(batch);
    core::DeviceState state;
    {
      std::shared_lock lock(registry_mutex_);
      auto found = registry_.find(id);
      if (found == registry_.end()) {
        flaps_.erase(it);
        continue;
      }
      state = found->second;
    }
    // The stored status is the one last published (the owner publishes what it stored).
    auto doc = status_docs_.find(id);
    core::Outcome outcome;
    outcome.next = state;
    outcome.changed = true;
    if (doc == status_docs_.end() || doc->second.document.status != state.status()) {
      outcome.transition = core::Transition{std::nullopt, state.status(), damper.last_reason(), damper.last_change()};
      if (doc != status_docs_.end()) outcome.transition->from = doc->second.document.status;
    }
    damper.settled();
    log_info("device_settled", {{"device_id", id.to_string()},
                                {"status", std::string(core::to_string(state.status()))},
                                {"flaps", std::to_string(damper.flaps())},
                                {"last_reason", std::string(core::to_string(damper.last_reason()))}});
    PendingWrite w;
    w.write = store::StateWrite{id, outcome.next, outcome.transition};
    w.before = state;
    w.settles_flaps = true;
    append(batch, std::move(w));  // not add_write: that would count the settling as another change
    flap_checks_.emplace(damper.last_change() + options_.flaps.window, id);  // forget it when quiet
  }
}

void Fleet::unsettle(const DeviceId& id, TimePoint now) {
  auto it = flaps_.find(id);
  if (it == flaps_.end()) return;
  it->second.hold_again();
  flap_checks_.emplace(now + settle_retry, id);
}

}  // namespace maestra::service
