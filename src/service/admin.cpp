// An administrator's PATCH of a device: its attributes and, optionally, its
// status (maintenance, offline, error, online) or its offline_after override.
// Decided by the core on the owner thread, in order with the device's other
// events, and stored in one transaction with its history row.
#include "service/fleet.hpp"

namespace maestra::service {

using core::Error;
using core::ErrorKind;

Result<core::DeviceRecord> Fleet::patch(const DeviceId& id, const core::DevicePatch& patch) {
  Event e{Event::Kind::patch};
  e.id = id;
  e.patch = std::make_shared<Event::PatchJob>();
  e.patch->patch = patch;
  auto reply = e.patch->reply.get_future();
  post(std::move(e));
  if (reply.wait_for(options_.reply_timeout) != std::future_status::ready)
    return Error{ErrorKind::unavailable, "", "the service is overloaded; try again"};
  auto record = reply.get();
  if (record) overlay_last_seen(record.value());
  return record;
}

void Fleet::handle_patch(Event& event, TimePoint now) {
  auto& job = *event.patch;
  std::unique_lock lock(registry_mutex_);
  auto it = registry_.find(event.id);
  if (it == registry_.end()) {
    lock.unlock();
    job.reply.set_value(Error{ErrorKind::not_found, "", "no device with id " + event.id.to_string()});
    return;
  }
  const core::DeviceState before = it->second;
  lock.unlock();
  core::DeviceState next = before;
  if (job.patch.offline_after.present) next.offline_after = job.patch.offline_after.value;
  core::Outcome outcome = core::decide(before, next, core::Reason::admin, now);
  if (job.patch.status) {
    outcome = core::apply_admin_status(next, *job.patch.status, now);
    outcome.changed = outcome.changed || next.offline_after != before.offline_after;
    if (outcome.transition) outcome.transition->from = before.status();
  }
  std::optional<store::StateWrite> write;
  if (outcome.changed || outcome.transition) write = store::StateWrite{event.id, outcome.next, outcome.transition};
  auto stored = store_.apply_patch(event.id, job.patch, write, now);
  if (!stored) {
    if (stored.error().kind == ErrorKind::unavailable) ++metrics_.database_errors;
    job.reply.set_value(stored.error());
    return;
  }
  lock.lock();
  if (auto again = registry_.find(event.id); again != registry_.end()) {
    again->second.connected = outcome.next.connected;
    again->second.reported_error = outcome.next.reported_error;
    again->second.maintenance = outcome.next.maintenance;
    again->second.offline_after = outcome.next.offline_after;
    if (outcome.transition) apply_counts(outcome.transition->from, outcome.transition->to);
  }
  lock.unlock();
  watch(event.id, outcome.next);
  if (stored->second) {
    ++metrics_.transitions[static_cast<std::size_t>(core::Reason::admin)];
    publish(*stored->second);
  } else if (auto doc = status_docs_.find(event.id); doc != status_docs_.end()) {
    doc->second.document.name = stored->first.name;  // the next refresh shows a new name
  }
  if (outcome.transition) log_transition(event.id, *outcome.transition, now);
  job.reply.set_value(stored->first);
}

}  // namespace maestra::service
