// A device's heartbeats and presence messages (births, wills, goodbyes), from
// either transport. A heartbeat that changes nothing stored is applied in place
// on the caller's thread and coalesced for the flusher; anything else goes to
// the owner, in the device's order, and is decided there by the core.
#include "service/fleet.hpp"

#include <algorithm>

#include "service/log.hpp"

namespace maestra::service {

using core::Error;
using core::ErrorKind;

void detail::PendingSeen::merge(PendingSeen&& later) {
  at = std::max(at, later.at);
  presence_session = std::max(presence_session, later.presence_session);
  if (later.firmware_version) firmware_version = std::move(later.firmware_version);
  if (later.ip_address) ip_address = std::move(later.ip_address);
  if (later.metadata) metadata = std::move(later.metadata);
}

Fleet::Event Fleet::heartbeat_event(const DeviceId& id, bool reports_error, Transport transport, TimePoint received,
                                    InPlace in_place) {
  Event e{Event::Kind::heartbeat};
  e.id = id;
  e.transport = transport;
  e.reports_error = reports_error;
  e.at = received;
  e.counted = in_place == InPlace::queued;  // counted by heartbeat_in_place: the device's later messages wait for it
  return e;
}

Result<HeartbeatReply> Fleet::heartbeat(const core::HeartbeatRequest& h, Transport transport) {
  DeviceId id{};
  if (h.device_id) {
    id = *h.device_id;
  } else {
    auto record = store_.get_by_hardware_id(*h.hardware_id);
    if (!record) return record.error();
    id = record->id;
  }
  HeartbeatReply direct{};
  const TimePoint received = clock_();
  const auto in_place = heartbeat_in_place(id, &h, h.reports_error, transport, received, &direct);
  if (in_place == InPlace::applied) return direct;
  Event e = heartbeat_event(id, h.reports_error, transport, received, in_place);
  e.heartbeat_reply = std::make_shared<std::promise<Result<HeartbeatReply>>>();
  auto reply = e.heartbeat_reply->get_future();
  post(std::move(e));
  if (reply.wait_for(options_.reply_timeout) != std::future_status::ready)
    return Error{ErrorKind::unavailable, "", "the service is overloaded; try again"};
  return reply.get();
}

void Fleet::heartbeat_async(const DeviceId& id, core::HeartbeatRequest h) {
  const TimePoint received = clock_();
  const auto in_place = heartbeat_in_place(id, &h, h.reports_error, Transport::mqtt, received, nullptr);
  if (in_place == InPlace::applied) return;
  post(heartbeat_event(id, h.reports_error, Transport::mqtt, received, in_place));
}

void Fleet::presence_async(const DeviceId& id, core::PresenceSignal signal, bool retained) {
  Event e{Event::Kind::presence};
  e.id = id;
  e.presence = signal;
  e.gate_passed = retained;  // the broker's current state of the device, not a will in flight
  e.at = clock_();  // history carries when the message arrived, not when the owner got to it
  {
    std::lock_guard lock(registry_mutex_);
    if (registry_.count(id)) {
      ++queued_for_owner_[id];  // later heartbeats wait for it
      e.counted = true;
    }
  }
  post(std::move(e));
}

Fleet::InPlace Fleet::heartbeat_in_place(const DeviceId& id, const core::HeartbeatRequest* h, bool reports_error,
                                         Transport transport, TimePoint now, HeartbeatReply* reply, bool from_owner) {
  std::unique_lock lock(registry_mutex_);
  auto it = registry_.find(id);
  if (it == registry_.end()) return InPlace::unknown;  // the owner answers (nothing to order)
  if (h && h->updates_attributes()) {
    // Attributes are coalesced whatever the heartbeat decides: they are not
    // part of the status, and the latest of each wins.
    PendingSeen attributes;
    attributes.firmware_version = h->firmware_version;
    attributes.ip_address = h->ip_address;
    if (!h->metadata.is_null()) attributes.metadata = h->metadata;
    pending_seen_[id].merge(std::move(attributes));
  }
  const auto to_owner = [&] {
    if (!from_owner) ++queued_for_owner_[id];
    return InPlace::queued;
  };
  // Keep this device's messages in order: while any are in the owner's hands,
  // later ones queue behind them. The owner itself handles them in that order,
  // so it may apply one here even when more are queued behind it.
  if (!from_owner && queued_for_owner_.count(id)) return to_owner();
  const core::DeviceState before = it->second;
  now = std::max(now, before.last_seen);  // a heartbeat that arrived earlier never moves last_seen back
  auto decided = core::apply_heartbeat(before, reports_error, now);
  if (decided.outcome.changed || decided.outcome.transition) return to_owner();  // the owner stores it
  decided.outcome.next.heard_over_mqtt = transport == Transport::mqtt;
  if (core::status_refresh_due(before.status_refreshed, now)) {
    decided.outcome.next.status_refreshed = now;
    refresh_due_.insert(id);
    refresh_pending_.store(true, std::memory_order_relaxed);
  }
  it->second = decided.outcome.next;
  auto& seen = pending_seen_[id];
  seen.at = std::max(seen.at, now);
  lock.unlock();
  count_heartbeat(id, transport, decided);
  if (reply) *reply = HeartbeatReply{id, decided.outcome.next.status(), decided.outcome.next.last_seen, decided.too_frequent};
  return InPlace::applied;
}

void Fleet::count_heartbeat(const DeviceId& id, Transport transport, const core::HeartbeatOutcome& decided) {
  ++metrics_.heartbeats[static_cast<std::size_t>(transport)];
  if (decided.too_frequent) ++metrics_.frequent_heartbeats;
  if (decided.log_frequency)
    log_warn("heartbeat_too_frequent", {{"device_id", id.to_string()},
                                        {"transport", transport == Transport::mqtt ? "mqtt" : "http"},
                                        {"advice", std::string(core::frequency_warning_text)}});
}

void Fleet::handle_heartbeat(Event& event, Batch& batch, TimePoint now) {
  if (wait_behind_retry(event)) return;
  // Decided at the time the heartbeat arrived, not when the owner got to it.
  now = received_time(event, now);
  // Not while this cycle holds an uncommitted write for the device: the reply
  // would report a state not yet stored.
  HeartbeatReply direct{};
  if (!batch.index.count(event.id) &&
      heartbeat_in_place(event.id, nullptr, event.reports_error, event.transport, now,
                         event.heartbeat_reply ? &direct : nullptr, /*from_owner=*/true) == InPlace::applied) {
    if (event.heartbeat_reply) event.heartbeat_reply->set_value(direct);
    release(event);
    return;
  }
  // A heartbeat that changes what is stored (or names an unknown device).
  if (batch.index.count(event.id)) {
    commit(batch);  // one write per device per transaction
    if (wait_behind_retry(event)) return;
  }
  std::unique_lock lock(registry_mutex_);
  auto it = registry_.find(event.id);
  if (it == registry_.end()) {
    lock.unlock();
    metrics_.reject(Rejection::unknown_device);
    if (event.heartbeat_reply)
      event.heartbeat_reply->set_value(Error{ErrorKind::not_found, "device_id", "no device with id " + event.id.to_string()});
    release(event);
    return;
  }
  const core::DeviceState before = it->second;
  now = std::max(now, before.last_seen);  // never behind what the device already showed
  auto decided = core::apply_heartbeat(before, event.reports_error, now);
  decided.outcome.next.status_refreshed = now;  // the stored change is published with this last_seen
  decided.outcome.next.heard_over_mqtt = event.transport == Transport::mqtt;
  it->second = decided.outcome.next;
  lock.unlock();
  count_heartbeat(event.id, event.transport, decided);
  if (!before.connected) watch(event.id, decided.outcome.next);
  if (!before.connected && connectivity_) connectivity_(event.id, true);  // its commands are sent again
  add_write(batch, event.id, before, decided.outcome, &event, decided.too_frequent);
}

void Fleet::handle_presence(Event& event, Batch& batch, TimePoint now) {
  if (wait_behind_retry(event)) return;
  if (batch.index.count(event.id)) {
    commit(batch);
    if (wait_behind_retry(event)) return;
  }
  if (event.presence.kind == core::PresenceKind::will && !event.gate_passed) {
    // A will in a burst, or right after a reconnect, may be the broker going away.
    if (auto hold = will_gate_.on_will(received_time(event, now))) return hold_will(std::move(event), *hold);
    event.gate_passed = true;  // a retry does not ask again
  }
  std::unique_lock lock(registry_mutex_);
  auto it = registry_.find(event.id);
  if (it == registry_.end()) {
    lock.unlock();
    metrics_.reject(Rejection::unknown_device);
    release(event);
    return;
  }
  const core::DeviceState before = it->second;
  // Decided at the time the message arrived (a backlog must not move history),
  // never behind what the device already showed.
  now = std::max(received_time(event, now), before.last_seen);
  auto outcome = core::apply_presence(before, event.presence, now);
  outcome.next.heard_over_mqtt = true;  // births and wills come over MQTT only
  if (outcome.ignored) {
    lock.unlock();
    metrics_.reject(Rejection::stale_will);
    release(event);
    return;
  }
  it->second = outcome.next;
  if (!(outcome.changed || outcome.transition) && event.presence.kind == core::PresenceKind::birth) {
    auto& seen = pending_seen_[event.id];
    seen.at = std::max(seen.at, now);
    seen.presence_session = std::max(seen.presence_session, outcome.next.presence_session);
  }
  lock.unlock();
  if (!before.connected) watch(event.id, outcome.next);
  if (event.presence.kind == core::PresenceKind::birth && connectivity_) connectivity_(event.id, true);
  if (outcome.changed || outcome.transition)
    add_write(batch, event.id, before, outcome, &event);
  else
    release(event);
}

}  // namespace maestra::service
