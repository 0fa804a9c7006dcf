// The owner thread: its cycle, each device's ordered mailbox (retries included),
// and the batch of state changes it stores in one transaction per cycle before
// anything of it is published or answered.
#include "service/fleet.hpp"

#include <algorithm>
#include <utility>

#include "service/log.hpp"

namespace maestra::service {

using core::Error;
using core::ErrorKind;

namespace {
constexpr int max_retry_attempts = 120;  // stores of one event that failed (database down): two minutes
constexpr core::Millis retry_delay{1000};
}  // namespace

void Fleet::owner_loop() {
  while (true) {
    {
      std::unique_lock lock(queue_mutex_);
      const TimePoint now = clock_();
      const TimePoint wake = next_wake(now);
      // A relative wait: a step of the wall clock cannot stall the owner.
      if (queue_.empty() && !stopping_ && wake > now) queue_cv_.wait_for(lock, wake - now);
      if (stopping_ && queue_.empty()) break;
    }
    run_owner_cycle();
  }
}

TimePoint Fleet::next_wake(TimePoint now) const {
  auto wake = now + std::chrono::seconds{1};
  if (auto next = deadlines_.next_deadline()) wake = std::min(wake, *next);
  if (!held_due_.empty()) wake = std::min(wake, held_due_.top().first);
  if (!flap_checks_.empty()) wake = std::min(wake, flap_checks_.top().first);
  return std::min(wake, summary_due());
}

void Fleet::run_owner_cycle() {
  const TimePoint now = clock_();
  std::deque<Event> events;
  // Mailboxes whose wait is over come first: their events are older than
  // anything queued since.
  std::vector<DeviceId> discarded;
  while (!held_due_.empty() && held_due_.top().first <= now) {
    const DeviceId id = held_due_.top().second;
    held_due_.pop();
    auto it = held_.find(id);
    if (it == held_.end() || it->second.not_before > now) continue;  // gone, or waiting again since
    auto& mailbox = it->second.events;
    if (it->second.will_held && !mailbox.empty()) {
      Event& will = mailbox.front();
      if (will_gate_.discard_after_hold(will.at)) {
        discarded.push_back(id);
        release(will);
        mailbox.pop_front();
      } else if (auto again = will_gate_.hold_again(will.at, now)) {
        // The first will of a burst that began while it was held: held with the burst.
        ++metrics_.wills_held;
        it->second.not_before = *again;
        held_due_.emplace(*again, id);
        continue;
      } else {
        will.gate_passed = true;
      }
    }
    for (auto& e : mailbox) events.push_back(std::move(e));
    held_.erase(it);
  }
  if (!discarded.empty()) wills_discarded(std::move(discarded), "replayed_after_reconnect");
  {
    std::lock_guard lock(queue_mutex_);
    for (auto& e : queue_) events.push_back(std::move(e));
    queue_.clear();
  }
  Batch batch;
  for (auto& event : events) handle(event, batch, now);
  expire_due(batch, now);
  settle_flaps(batch, now);
  commit(batch);
  publish_refreshes(batch);
  if (const auto held = transition_log_.close_window(now))
    log_info("status_changes_not_logged", {{"count", std::to_string(held)},
                                           {"note", "at most 20 status changes are logged a second"}});
  publish_summary_if_due(now);
}

void Fleet::handle(Event& event, Batch& batch, TimePoint now) {
  switch (event.kind) {
    case Event::Kind::heartbeat:
      handle_heartbeat(event, batch, now);
      break;
    case Event::Kind::presence:
      handle_presence(event, batch, now);
      break;
    case Event::Kind::patch:
      commit(batch);  // keep order: everything before the patch is stored first
      handle_patch(event, now);
      break;
    case Event::Kind::registered: {
      std::unique_lock lock(registry_mutex_);
      auto [it, inserted] = registry_.try_emplace(event.id, event.registered_state);
      if (inserted) apply_counts(std::nullopt, core::Status::online);
      lock.unlock();
      if (inserted) {
        watch(event.id, event.registered_state);
        ++metrics_.transitions[static_cast<std::size_t>(core::Reason::registered)];
        publish(event.registered_status);
      }
      break;
    }
    case Event::Kind::removed: {
      commit(batch);
      std::unique_lock lock(registry_mutex_);
      if (auto it = registry_.find(event.id); it != registry_.end()) {
        apply_counts(it->second.status(), std::nullopt);
        registry_.erase(it);
      }
      queued_for_owner_.erase(event.id);
      pending_seen_.erase(event.id);
      refresh_due_.erase(event.id);
      lock.unlock();
      status_docs_.erase(event.id);
      if (auto held = held_.find(event.id); held != held_.end()) {
        for (auto& e : held->second.events)
          if (e.heartbeat_reply)
            e.heartbeat_reply->set_value(Error{ErrorKind::not_found, "device_id", "no device with id " + event.id.to_string()});
        held_.erase(held);
      }
      if (publisher_) publisher_->clear_device(event.id);
      break;
    }
    case Event::Kind::broker_connected: {
      commit(batch);
      const bool after_loss = link_was_up_ && !link_up_;
      will_gate_.link_up(event.at, after_loss || event.session_present);
      link_was_up_ = true;
      link_up_ = true;
      link_up_at_ = event.at;
      grant_grace(std::exchange(awaiting_return_, {}), event.at);
      link_changed(true, event.at);
      republish_outbox(!event.session_present ? "the broker held no session for the service"
                       : after_loss         ? "reconnected after a lost connection: a broker back from a crash "
                                              "restores an older save, without the statuses acknowledged since"
                                            : nullptr);
      counts_dirty_ = true;
      last_summary_ = TimePoint{};
      break;
    }
    case Event::Kind::broker_disconnected: {
      // Wills held in a burst when the link drops: the broker is going away.
      commit(batch);
      will_gate_.link_lost(event.at);
      link_up_ = false;
      std::vector<DeviceId> discarded;
      for (auto& [id, held] : held_) {
        if (!held.will_held || held.events.empty()) continue;
        discarded.push_back(id);
        release(held.events.front());
        held.events.pop_front();
        held.will_held = false;
        held.not_before = event.at;  // what waited behind it goes on next cycle
        held_due_.emplace(event.at, id);
      }
      if (!discarded.empty()) wills_discarded(std::move(discarded), "broker_going_away");
      link_changed(false, event.at);
      break;
    }
  }
}

bool Fleet::wait_behind_retry(Event& event) {
  auto it = held_.find(event.id);
  if (it == held_.end()) return false;
  it->second.events.push_back(std::move(event));
  return true;
}

void Fleet::release(Event& event) {
  if (!event.counted) return;
  std::lock_guard lock(registry_mutex_);
  release_locked(event);
}

void Fleet::release_locked(Event& event) {
  if (!event.counted) return;
  event.counted = false;
  if (auto it = queued_for_owner_.find(event.id); it != queued_for_owner_.end() && --it->second <= 0)
    queued_for_owner_.erase(it);
}

void Fleet::retry_later(Event event, TimePoint now) {
  ++event.attempts;
  auto& held = held_[event.id];
  held.not_before = now + retry_delay;
  held.will_held = false;
  held_due_.emplace(held.not_before, event.id);
  held.events.push_front(std::move(event));  // older than anything that waits behind it
}

void Fleet::hold_will(Event event, core::WillHold hold) {
  if (hold.suspect) ++metrics_.wills_held;
  auto& held = held_[event.id];  // empty: the device had nothing waiting (wait_behind_retry)
  held.not_before = hold.until;
  held.will_held = true;
  held_due_.emplace(hold.until, event.id);
  held.events.push_front(std::move(event));
}

void Fleet::wills_discarded(std::vector<DeviceId> ids, const char* why) {
  metrics_.wills_discarded += ids.size();
  log_info("wills_discarded", {{"count", std::to_string(ids.size())},
                               {"why", why},
                               {"note", "the broker sends every client's will when it shuts down: not device deaths"}});
  // Their window starts when the broker is back (now, if it is).
  if (link_up_)
    grant_grace(std::move(ids), link_up_at_);
  else
    awaiting_return_.insert(awaiting_return_.end(), ids.begin(), ids.end());
}

void Fleet::grant_grace(std::vector<DeviceId> ids, TimePoint from) {
  std::vector<std::pair<DeviceId, core::DeviceState>> granted;
  {
    std::unique_lock lock(registry_mutex_);
    for (const auto& id : ids)
      if (auto it = registry_.find(id); it != registry_.end()) {
        it->second.grace_from = std::max(it->second.grace_from, from);
        granted.emplace_back(id, it->second);
      }
  }
  for (const auto& [id, state] : granted) watch(id, state);
}

void Fleet::add_write(Batch& batch, const DeviceId& id, const core::DeviceState& before, const core::Outcome& outcome,
                      Event* source, bool too_frequent) {
  if (damp(id, outcome, source, too_frequent)) return;
  PendingWrite w;
  w.too_frequent = too_frequent;
  w.write = store::StateWrite{id, outcome.next, outcome.transition};
  w.before = before;
  if (source) w.source = std::move(*source);
  append(batch, std::move(w));
}

void Fleet::append(Batch& batch, PendingWrite write) {
  batch.index[write.write.id] = batch.writes.size();
  batch.writes.push_back(std::move(write));
}

void Fleet::commit(Batch& batch) {
  if (batch.writes.empty()) return;
  std::vector<store::StateWrite> writes;
  writes.reserve(batch.writes.size());
  for (const auto& w : batch.writes) writes.push_back(w.write);
  auto stored = store_.write_states(writes);
  const TimePoint now = clock_();
  if (stored) {
    ++metrics_.transition_batches;
    if (!stored->empty()) last_transitions_stored_.store(now, std::memory_order_relaxed);
    {
      std::unique_lock lock(registry_mutex_);
      for (auto& w : batch.writes) {
        if (w.write.transition && registry_.count(w.write.id))
          apply_counts(w.write.transition->from, w.write.transition->to);
        if (w.source) release_locked(*w.source);
      }
    }
    for (const auto& s : stored.value()) {
      ++metrics_.transitions[static_cast<std::size_t>(s.document.reason)];
      publish(s);
    }
    for (const auto& w : batch.writes)
      if (w.write.transition) log_transition(w.write.id, *w.write.transition, now);
    if (connectivity_)
      for (const auto& w : batch.writes)
        if (w.before.connected && !w.write.state.connected) connectivity_(w.write.id, false);
    for (auto& w : batch.writes)
      if (w.source && w.source->heartbeat_reply)
        w.source->heartbeat_reply->set_value(
            HeartbeatReply{w.write.id, w.write.state.status(), w.write.state.last_seen, w.too_frequent});
  } else {
    ++metrics_.database_errors;
    if (store_error_log_.take(now).write)
      log_error("transitions_not_stored",
                {{"devices", std::to_string(batch.writes.size())}, {"error", stored.error().detail}});
    {
      // The registry goes back to what is stored.
      std::unique_lock lock(registry_mutex_);
      for (auto& w : batch.writes) {
        if (auto it = registry_.find(w.write.id); it != registry_.end()) {
          it->second.connected = w.before.connected;
          it->second.reported_error = w.before.reported_error;
          it->second.maintenance = w.before.maintenance;
          if (w.before.connected) deadlines_.push(now + retry_delay, w.write.id);
        }
      }
    }
    for (auto& w : batch.writes) {
      if (w.settles_flaps) unsettle(w.write.id, now);
      if (!w.source) continue;  // a timeout: its deadline comes round again
      Event& source = *w.source;
      if (source.heartbeat_reply) {
        // HTTP: the caller is told, and may send it again.
        source.heartbeat_reply->set_value(Error{ErrorKind::unavailable, "", "the database is unavailable"});
        release(source);
      } else if (source.attempts + 1 < max_retry_attempts) {
        retry_later(std::move(source), now);
      } else {
        log_error("device_event_dropped", {{"device_id", w.write.id.to_string()},
                                           {"attempts", std::to_string(source.attempts + 1)},
                                           {"error", stored.error().detail}});
        release(source);
      }
    }
  }
  batch.writes.clear();
  batch.index.clear();
}

TimePoint Fleet::received_time(const Event& event, TimePoint now) {
  return event.at != TimePoint{} && event.at < now ? event.at : now;
}

void Fleet::log_transition(const DeviceId& id, const core::Transition& t, TimePoint now) {
  // Owner thread only. "Why did this device go offline" is answered by grep.
  const auto budget = transition_log_.take(now);
  if (budget.held_back)
    log_info("status_changes_not_logged", {{"count", std::to_string(budget.held_back)},
                                           {"note", "at most 20 status changes are logged a second"}});
  if (!budget.write) return;
  log_info("status_changed", {{"device", id.to_string()},
                              {"from", t.from ? std::string(core::to_string(*t.from)) : std::string("none")},
                              {"to", std::string(core::to_string(t.to))},
                              {"reason", std::string(core::to_string(t.reason))}});
}

}  // namespace maestra::service
