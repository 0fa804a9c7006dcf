// The fleet owner: registry, deadlines, batched transitions, coalesced last_seen.
#include "service/fleet.hpp"

#include <algorithm>
#include <chrono>

#include "security/secrets.hpp"
#include "service/log.hpp"

namespace maestra::service {

using core::Error;
using core::ErrorKind;

namespace {
constexpr std::size_t max_expiries_per_cycle = 20000;
constexpr int max_retry_attempts = 120;       // transitions that could not be stored (database down)
constexpr core::Millis retry_delay{1000};
constexpr core::Millis summary_interval{1000};

bool allow_log(std::mutex& m, TimePoint& last, TimePoint now) {
  std::lock_guard lock(m);
  if (last != TimePoint{} && now - last < std::chrono::seconds{60}) return false;
  last = now;
  return true;
}
}  // namespace

struct Fleet::Event {
  enum class Kind { heartbeat, presence, registered, patch, removed, broker_connected, broker_disconnected, refresh } kind;
  DeviceId id{};
  Transport transport = Transport::mqtt;
  bool reports_error = false;
  core::PresenceSignal presence{};
  std::shared_ptr<std::promise<Result<HeartbeatReply>>> heartbeat_reply = {};
  struct PatchJob {
    core::DevicePatch patch;
    std::promise<Result<core::DeviceRecord>> reply;
  };
  std::shared_ptr<PatchJob> patch = {};
  core::DeviceState registered_state{};
  store::StoredStatus registered_status{};
  std::vector<store::StoredStatus> refreshed = {};  // kind refresh: documents with a fresh last_seen
  int attempts = 0;
  TimePoint not_before{};
  bool session_present = true;  // kind broker_connected
  TimePoint at{};               // when it happened: a device message's receipt, a link change
};

struct Fleet::PendingWrite {
  store::StateWrite write;
  core::DeviceState before;
  std::shared_ptr<std::promise<Result<HeartbeatReply>>> reply;
  bool too_frequent = false;
  std::optional<Event> retry;  // MQTT-originated events are retried if the store is down
};

struct Fleet::Batch {
  std::vector<PendingWrite> writes;
  std::unordered_map<DeviceId, std::size_t, core::DeviceIdHash> index;
};

Fleet::Fleet(store::DeviceStore& store, Metrics& metrics, FleetOptions options, Clock clock)
    : store_(store), metrics_(metrics), options_(options), clock_(std::move(clock)) {}

Fleet::~Fleet() { stop(); }

Result<std::size_t> Fleet::load() {
  std::unique_lock lock(registry_mutex_);
  auto loaded = store_.load_states([&](const std::vector<store::LoadedDevice>& page) {
    for (const auto& d : page) {
      registry_[d.id] = d.state;
      ++counts_.by_status[static_cast<std::size_t>(d.state.status())];
      if (d.state.connected) deadlines_.push(core::deadline_of(d.state, options_.deadlines), d.id);
    }
    if (registry_.size() % 200000 < page.size())
      log_info("registry_loading", {{"devices", std::to_string(registry_.size())}});
  });
  for (std::size_t i = 0; i < 4; ++i) metrics_.devices_by_status[i] = counts_.by_status[i];
  return loaded;
}

void Fleet::start() {
  owner_ = std::thread([this] { owner_loop(); });
  flusher_ = std::thread([this] { flusher_loop(); });
}

void Fleet::stop() {
  {
    std::lock_guard lock(queue_mutex_);
    if (stopping_ && !owner_.joinable()) return;
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (owner_.joinable()) owner_.join();
  {
    std::lock_guard lock(flush_mutex_);
    flusher_stopping_ = true;
  }
  flush_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
}

void Fleet::post(Event event) {
  {
    std::lock_guard lock(queue_mutex_);
    queue_.push_back(std::move(event));
  }
  queue_cv_.notify_one();
}

// --- commands -------------------------------------------------------------------

Result<RegisteredDevice> Fleet::register_device(const core::Registration& r, Transport transport) {
  if (auto refused = core::check_provisioning_key(options_.provisioning_key, r.provisioning_key)) {
    metrics_.reject(Rejection::unauthorized);
    return *refused;
  }
  const TimePoint now = clock_();
  std::optional<std::string> password;
  std::optional<store::StoredSecret> secret;
  if (access_) {
    password = security::random_token(32);  // 256 bits
    const auto hashed = security::hash_password(*password);
    secret = store::StoredSecret{hashed.salt, hashed.hash};
  }
  auto record = store_.register_device(r, now, secret);
  if (!record) {
    if (record.error().kind == ErrorKind::conflict) metrics_.reject(Rejection::conflict);
    if (record.error().kind == ErrorKind::forbidden) metrics_.reject(Rejection::unauthorized);
    if (record.error().kind == ErrorKind::unavailable) ++metrics_.database_errors;
    return record.error();
  }
  if (access_) {
    auto granted = access_->grant(record->id, *password);
    if (!granted) {
      // Nothing half-written: a device without a broker account is removed again.
      log_error("broker_account_not_created", {{"device_id", record->id.to_string()}, {"error", granted.error().detail}});
      store_.remove(record->id);
      return Error{ErrorKind::unavailable, "", "the broker could not issue credentials: " + granted.error().detail};
    }
  }
  ++metrics_.registrations[static_cast<std::size_t>(transport)];
  Event e{Event::Kind::registered};
  e.id = record->id;
  e.registered_state = core::register_device(now, r.offline_after).next;
  e.registered_state.heard_over_mqtt = transport == Transport::mqtt;
  e.registered_status.document = core::StatusDocument{record->id,        record->name,     record->device_type,
                                                      record->hardware_id, core::Status::online, now, now,
                                                      core::Reason::registered};
  e.registered_status.seq = 1;
  post(std::move(e));
  return RegisteredDevice{std::move(record.value()), std::move(password)};
}

Result<std::string> Fleet::rotate_credentials(const DeviceId& id) {
  if (!access_) return Error{ErrorKind::not_found, "", "credentials exist only in secure mode (MAESTRA_SECURE)"};
  auto record = store_.get(id);
  if (!record) return record.error();
  std::string password = security::random_token(32);
  if (auto changed = access_->set_password(id, password); !changed) return changed.error();
  const auto hashed = security::hash_password(password);
  if (auto stored = store_.set_credential(id, store::StoredSecret{hashed.salt, hashed.hash}, clock_()); !stored)
    return stored.error();
  std::lock_guard lock(credentials_mutex_);
  credentials_.erase(id);
  return password;
}

Result<DashboardCredential> Fleet::issue_dashboard_credential(std::chrono::seconds ttl) {
  if (!access_) return Error{ErrorKind::not_found, "", "dashboard credentials exist only in secure mode (MAESTRA_SECURE)"};
  DashboardCredential c;
  c.username = "dashboard-" + security::random_token(12);  // 96 bits: never a device's id (a UUID)
  c.client_id = c.username;
  c.password = security::random_token(32);
  c.expires_at = clock_() + std::chrono::duration_cast<core::Millis>(ttl);
  if (auto granted = access_->grant_dashboard(c.username, c.password, c.expires_at); !granted) return granted.error();
  log_info("dashboard_credential_issued", {{"username", c.username}, {"expires_at", core::format_rfc3339(c.expires_at)}});
  return c;
}

Result<bool> Fleet::verify_credential(const DeviceId& id, std::string_view password) {
  std::optional<store::StoredSecret> secret;
  {
    std::lock_guard lock(credentials_mutex_);
    if (auto it = credentials_.find(id); it != credentials_.end()) secret = it->second;
  }
  if (!secret) {
    auto loaded = store_.credential(id);
    if (!loaded) return loaded.error();
    if (!loaded.value()) return false;
    secret = *loaded.value();
    std::lock_guard lock(credentials_mutex_);
    credentials_[id] = *secret;
  }
  return security::verify_password(security::PasswordHash{secret->salt, secret->hash}, password);
}

Result<core::Done> Fleet::block_hardware_id(const std::string& hardware_id, const std::optional<std::string>& reason) {
  return store_.block_hardware_id(hardware_id, reason, clock_());
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
  if (h.updates_attributes()) {
    std::lock_guard lock(flush_mutex_);
    pending_attributes_.emplace_back(id, h);
  }
  HeartbeatReply direct{};
  const TimePoint received = clock_();
  if (heartbeat_in_place(id, h.reports_error, transport, received, &direct)) return direct;
  Event e{Event::Kind::heartbeat};
  e.id = id;
  e.transport = transport;
  e.reports_error = h.reports_error;
  e.at = received;
  e.heartbeat_reply = std::make_shared<std::promise<Result<HeartbeatReply>>>();
  auto reply = e.heartbeat_reply->get_future();
  post(std::move(e));
  if (reply.wait_for(options_.reply_timeout) != std::future_status::ready)
    return Error{ErrorKind::unavailable, "", "the service is overloaded; try again"};
  return reply.get();
}

void Fleet::heartbeat_async(const DeviceId& id, core::HeartbeatRequest h) {
  const bool reports_error = h.reports_error;
  if (h.updates_attributes()) {
    std::lock_guard lock(flush_mutex_);
    pending_attributes_.emplace_back(id, std::move(h));
  }
  const TimePoint received = clock_();
  if (heartbeat_in_place(id, reports_error, Transport::mqtt, received, nullptr)) return;
  Event e{Event::Kind::heartbeat};
  e.id = id;
  e.transport = Transport::mqtt;
  e.reports_error = reports_error;
  e.at = received;
  post(std::move(e));
}

void Fleet::presence_async(const DeviceId& id, core::PresenceSignal signal) {
  {
    std::lock_guard lock(registry_mutex_);
    if (registry_.count(id)) ++queued_for_owner_[id];  // later heartbeats wait for it
  }
  Event e{Event::Kind::presence};
  e.id = id;
  e.presence = signal;
  e.at = clock_();  // history carries when the message arrived, not when the owner got to it
  post(std::move(e));
}

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

Result<core::Done> Fleet::remove(const DeviceId& id) {
  if (access_) {
    // Revoke first: if the broker cannot, nothing is deleted and the caller retries.
    auto exists = store_.get(id);
    if (!exists) return exists.error();
    if (auto revoked = access_->revoke(id); !revoked) return revoked.error();
    std::lock_guard lock(credentials_mutex_);
    credentials_.erase(id);
  }
  auto removed = store_.remove(id);
  if (!removed) return removed.error();
  Event e{Event::Kind::removed};
  e.id = id;
  post(std::move(e));
  return core::Done{};
}

// --- queries --------------------------------------------------------------------

void Fleet::overlay_last_seen(core::DeviceRecord& record) const {
  std::shared_lock lock(registry_mutex_);
  if (auto it = registry_.find(record.id); it != registry_.end() && it->second.last_seen > record.last_seen)
    record.last_seen = it->second.last_seen;
}

Result<core::DeviceRecord> Fleet::get(const DeviceId& id) {
  auto record = store_.get(id);
  if (record) overlay_last_seen(record.value());
  return record;
}

Result<core::Done> Fleet::list(const store::ListQuery& q,
                               const std::function<bool(const std::vector<core::DeviceRecord>&)>& page) {
  return store_.list(q, [&](const std::vector<core::DeviceRecord>& records) {
    std::vector<core::DeviceRecord> fresh = records;
    for (auto& r : fresh) overlay_last_seen(r);
    return page(fresh);
  });
}

Result<DeviceId> Fleet::resolve_hardware_id(const std::string& hardware_id) {
  auto record = store_.get_by_hardware_id(hardware_id);
  if (!record) return record.error();
  return record->id;
}

Result<std::vector<store::HistoryEntry>> Fleet::history(const DeviceId& id, int limit) {
  return store_.history(id, limit);
}

core::FleetCounts Fleet::counts() const {
  std::shared_lock lock(registry_mutex_);
  return counts_;
}

std::size_t Fleet::size() const {
  std::shared_lock lock(registry_mutex_);
  return registry_.size();
}

void Fleet::broker_connected(bool session_present) {
  Event e{Event::Kind::broker_connected};
  e.session_present = session_present;
  e.at = clock_();
  post(std::move(e));
}

void Fleet::broker_disconnected() {
  Event e{Event::Kind::broker_disconnected};
  e.at = clock_();
  post(std::move(e));
}

void Fleet::status_acked(const DeviceId& id, std::int64_t seq) {
  ++metrics_.status_published;
  std::lock_guard lock(flush_mutex_);
  pending_acks_.emplace_back(id, seq);
}

void Fleet::clear_acked(const DeviceId& id) {
  std::lock_guard lock(flush_mutex_);
  pending_clear_acks_.push_back(id);
}

// --- the owner thread -------------------------------------------------------------

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

void Fleet::apply_counts(std::optional<core::Status> from, std::optional<core::Status> to) {
  if (from) --counts_.by_status[static_cast<std::size_t>(*from)];
  if (to) ++counts_.by_status[static_cast<std::size_t>(*to)];
  if (from) metrics_.devices_by_status[static_cast<std::size_t>(*from)] = counts_.by_status[static_cast<std::size_t>(*from)];
  if (to) metrics_.devices_by_status[static_cast<std::size_t>(*to)] = counts_.by_status[static_cast<std::size_t>(*to)];
  counts_dirty_ = true;
}

void Fleet::owner_loop() {
  while (true) {
    std::deque<Event> events;
    {
      std::unique_lock lock(queue_mutex_);
      const TimePoint now = clock_();
      auto wake = now + std::chrono::seconds{1};
      if (auto next = deadlines_.next_deadline()) wake = std::min(wake, *next);
      if (!retries_.empty()) wake = std::min(wake, retries_.front().not_before);
      if (counts_dirty_) wake = std::min(wake, last_summary_ + summary_interval);
      if (queue_.empty() && !stopping_ && wake > now) {
        // A relative wait: a step of the wall clock cannot stall the owner.
        queue_cv_.wait_for(lock, wake - now);
      }
      events.swap(queue_);
      if (stopping_ && events.empty()) break;
    }
    const TimePoint now = clock_();
    while (!retries_.empty() && retries_.front().not_before <= now) {
      events.push_back(std::move(retries_.front()));
      retries_.pop_front();
    }
    Batch batch;
    for (auto& event : events) handle(event, batch, now);
    expire_due(batch, now);
    commit(batch);
    if (const auto held = transition_log_.close_window(now))
      log_info("status_changes_not_logged", {{"count", std::to_string(held)},
                                             {"note", "at most 20 status changes are logged a second"}});
    if (counts_dirty_ && now - last_summary_ >= summary_interval && publisher_) {
      publisher_->publish_summary(counts(), now);
      counts_dirty_ = false;
      last_summary_ = now;
    }
  }
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
        if (publisher_) publisher_->publish_status(event.registered_status);
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
      lock.unlock();
      if (publisher_) publisher_->clear_device(event.id);
      break;
    }
    case Event::Kind::refresh: {
      // Published by the owner, and only if the status is still the one read by
      // the flush: a transition stored meanwhile has been (or will be) published
      // after this and must not be overwritten by an older document.
      std::vector<const store::StoredStatus*> current;
      {
        std::shared_lock lock(registry_mutex_);
        for (const auto& doc : event.refreshed)
          if (auto it = registry_.find(doc.document.device_id);
              it != registry_.end() && it->second.status() == doc.document.status && !batch.index.count(doc.document.device_id))
            current.push_back(&doc);
      }
      if (publisher_)
        for (const auto* doc : current) publisher_->publish_status(*doc);
      break;
    }
    case Event::Kind::broker_connected:
      commit(batch);
      link_changed(true, event.at);
      republish_outbox(!event.session_present);
      counts_dirty_ = true;
      last_summary_ = TimePoint{};
      break;
    case Event::Kind::broker_disconnected:
      link_changed(false, event.at);
      break;
  }
}

void Fleet::add_write(Batch& batch, const DeviceId& id, const core::DeviceState& before, const core::Outcome& outcome,
                      Event* source) {
  PendingWrite w;
  w.write = store::StateWrite{id, outcome.next, outcome.transition};
  w.before = before;
  if (source) {
    w.reply = source->heartbeat_reply;
    if (!source->heartbeat_reply && source->kind != Event::Kind::patch) w.retry = *source;
  }
  batch.index[id] = batch.writes.size();
  batch.writes.push_back(std::move(w));
}

void Fleet::count_heartbeat(const DeviceId& id, Transport transport, const core::HeartbeatOutcome& decided) {
  ++metrics_.heartbeats[static_cast<std::size_t>(transport)];
  if (decided.too_frequent) ++metrics_.frequent_heartbeats;
  if (decided.log_frequency)
    log_warn("heartbeat_too_frequent", {{"device_id", id.to_string()},
                                        {"transport", transport == Transport::mqtt ? "mqtt" : "http"},
                                        {"advice", std::string(core::frequency_warning_text)}});
}

void Fleet::owner_took(const DeviceId& id) {
  std::lock_guard lock(registry_mutex_);
  if (auto it = queued_for_owner_.find(id); it != queued_for_owner_.end() && --it->second <= 0)
    queued_for_owner_.erase(it);
}

bool Fleet::heartbeat_in_place(const DeviceId& id, bool reports_error, Transport transport, TimePoint now,
                               HeartbeatReply* reply, bool from_owner) {
  std::unique_lock lock(registry_mutex_);
  auto it = registry_.find(id);
  if (it == registry_.end()) return false;  // unknown: the owner answers (nothing to order)
  const auto to_owner = [&] {
    if (!from_owner) ++queued_for_owner_[id];
    return false;
  };
  // Keep this device's messages in order: while any wait in the owner's queue,
  // later ones queue behind them. The owner itself handles them in that order,
  // so it may apply one here even when more are queued behind it.
  if (!from_owner && queued_for_owner_.count(id)) return to_owner();
  const core::DeviceState before = it->second;
  now = std::max(now, before.last_seen);  // a heartbeat that arrived earlier never moves last_seen back
  auto decided = core::apply_heartbeat(before, reports_error, now);
  if (decided.outcome.changed || decided.outcome.transition) return to_owner();  // the owner stores it
  decided.outcome.next.heard_over_mqtt = transport == Transport::mqtt;
  const bool refresh = core::status_refresh_due(before.status_refreshed, now);
  if (refresh) decided.outcome.next.status_refreshed = now;
  it->second = decided.outcome.next;
  auto& seen = pending_seen_[id];
  seen.at = std::max(seen.at, now);
  seen.refresh = seen.refresh || refresh;
  lock.unlock();
  count_heartbeat(id, transport, decided);
  if (reply) *reply = HeartbeatReply{id, decided.outcome.next.status(), decided.outcome.next.last_seen, decided.too_frequent};
  return true;
}

void Fleet::handle_heartbeat(Event& event, Batch& batch, TimePoint now) {
  // Counted off only once this event has been applied: until then a later message
  // of the device must queue behind it rather than be applied in place.
  struct Took {
    Fleet* fleet; const DeviceId& id; bool on;
    ~Took() { if (on) fleet->owner_took(id); }
  } took{this, event.id, event.attempts == 0};
  // Not while this cycle holds an uncommitted write for the device: the reply
  // would report a state not yet stored.
  // Decided at the time the heartbeat arrived, not when the owner got to it.
  now = received_time(event, now);
  HeartbeatReply direct{};
  if (!batch.index.count(event.id) &&
      heartbeat_in_place(event.id, event.reports_error, event.transport, now,
                         event.heartbeat_reply ? &direct : nullptr, /*from_owner=*/true)) {
    if (event.heartbeat_reply) event.heartbeat_reply->set_value(direct);
    return;
  }
  // A heartbeat that changes what is stored (or names an unknown device).
  if (batch.index.count(event.id)) commit(batch);  // one write per device per transaction
  std::unique_lock lock(registry_mutex_);
  auto it = registry_.find(event.id);
  if (it == registry_.end()) {
    lock.unlock();
    metrics_.reject(Rejection::unknown_device);
    if (event.heartbeat_reply)
      event.heartbeat_reply->set_value(Error{ErrorKind::not_found, "device_id", "no device with id " + event.id.to_string()});
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
  add_write(batch, event.id, before, decided.outcome, &event);
  batch.writes.back().too_frequent = decided.too_frequent;
}

void Fleet::handle_presence(Event& event, Batch& batch, TimePoint now) {
  // Counted off only once this event has been applied: until then a later message
  // of the device must queue behind it rather than be applied in place.
  struct Took {
    Fleet* fleet; const DeviceId& id; bool on;
    ~Took() { if (on) fleet->owner_took(id); }
  } took{this, event.id, event.attempts == 0};
  if (batch.index.count(event.id)) commit(batch);
  std::unique_lock lock(registry_mutex_);
  auto it = registry_.find(event.id);
  if (it == registry_.end()) {
    lock.unlock();
    metrics_.reject(Rejection::unknown_device);
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
    return;
  }
  it->second = outcome.next;
  lock.unlock();
  if (!before.connected) watch(event.id, outcome.next);
  if (outcome.changed || outcome.transition) {
    add_write(batch, event.id, before, outcome, &event);
  } else if (event.presence.kind == core::PresenceKind::birth) {
    std::unique_lock registry_lock(registry_mutex_);
    auto& seen = pending_seen_[event.id];
    seen.at = now;
    seen.presence_session = std::max(seen.presence_session, outcome.next.presence_session);
  }
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
    if (publisher_) publisher_->publish_status(*stored->second);
  }
  if (outcome.transition) log_transition(event.id, *outcome.transition, now);
  job.reply.set_value(stored->first);
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

void Fleet::commit(Batch& batch) {
  if (batch.writes.empty()) return;
  std::vector<store::StateWrite> writes;
  writes.reserve(batch.writes.size());
  for (const auto& w : batch.writes) writes.push_back(w.write);
  auto stored = store_.write_states(writes);
  const TimePoint now = clock_();
  if (stored) {
    ++metrics_.transition_batches;
    {
      std::unique_lock lock(registry_mutex_);
      for (const auto& w : batch.writes)
        if (w.write.transition && registry_.count(w.write.id))
          apply_counts(w.write.transition->from, w.write.transition->to);
    }
    for (const auto& s : stored.value()) {
      ++metrics_.transitions[static_cast<std::size_t>(s.document.reason)];
      if (publisher_) publisher_->publish_status(s);
    }
    for (const auto& w : batch.writes)
      if (w.write.transition) log_transition(w.write.id, *w.write.transition, now);
    for (auto& w : batch.writes)
      if (w.reply)
        w.reply->set_value(HeartbeatReply{w.write.id, w.write.state.status(), w.write.state.last_seen, w.too_frequent});
  } else {
    ++metrics_.database_errors;
    static std::mutex log_mutex;
    static TimePoint last_log{};
    if (allow_log(log_mutex, last_log, now))
      log_error("transitions_not_stored",
                {{"devices", std::to_string(batch.writes.size())}, {"error", stored.error().detail}});
    std::unique_lock lock(registry_mutex_);
    for (auto& w : batch.writes) {
      if (auto it = registry_.find(w.write.id); it != registry_.end()) {
        it->second.connected = w.before.connected;
        it->second.reported_error = w.before.reported_error;
        it->second.maintenance = w.before.maintenance;
        if (w.before.connected) deadlines_.push(now + retry_delay, w.write.id);
      }
      if (w.reply) w.reply->set_value(Error{ErrorKind::unavailable, "", "the database is unavailable"});
      if (w.retry && w.retry->attempts < max_retry_attempts) {
        Event again = *w.retry;
        ++again.attempts;
        again.not_before = now + retry_delay;
        retries_.push_back(std::move(again));
      }
    }
  }
  batch.writes.clear();
  batch.index.clear();
}

void Fleet::republish_outbox(bool everything) {
  // A broker that lost the service's session (crash before saving, a new
  // broker) lost the retained statuses it had acknowledged too: publish them all.
  auto pending = everything ? store_.all_statuses() : store_.unpublished(200000);
  if (!pending) {
    ++metrics_.database_errors;
    log_error("outbox_read_failed", {{"error", pending.error().detail}});
    return;
  }
  if (everything)
    log_info("status_republish_all", {{"statuses", std::to_string(pending->size())},
                                      {"reason", "the broker held no session for the service"}});
  else if (!pending->empty())
    log_info("outbox_republish", {{"statuses", std::to_string(pending->size())}});
  if (publisher_)
    for (const auto& s : pending.value()) publisher_->publish_status(s);
  auto clears = store_.pending_clears(200000);
  if (!clears) {
    ++metrics_.database_errors;
    log_error("outbox_read_failed", {{"error", clears.error().detail}});
    return;
  }
  if (!clears->empty()) log_info("retained_clears_republish", {{"devices", std::to_string(clears->size())}});
  if (publisher_)
    for (const auto& id : clears.value()) publisher_->clear_device(id);
}

// --- the flusher thread -----------------------------------------------------------

void Fleet::flusher_loop() {
  std::unordered_map<DeviceId, PendingSeen, core::DeviceIdHash> seen;
  std::vector<std::pair<DeviceId, std::int64_t>> acks;
  std::vector<std::pair<DeviceId, core::HeartbeatRequest>> attributes;
  // Taken from the shared buffers by swapping, so heartbeat threads never wait
  // for a merge of thousands of entries.
  std::unordered_map<DeviceId, PendingSeen, core::DeviceIdHash> incoming_seen;
  std::vector<std::pair<DeviceId, std::int64_t>> incoming_acks;
  std::vector<DeviceId> clear_acks;
  std::vector<DeviceId> incoming_clear_acks;
  std::vector<std::pair<DeviceId, core::HeartbeatRequest>> incoming_attributes;
  TimePoint last_error_log{};
  std::mutex log_mutex;
  while (true) {
    bool stopping = false;
    {
      std::unique_lock lock(flush_mutex_);
      flush_cv_.wait_for(lock, options_.flush_interval, [&] { return flusher_stopping_; });
      stopping = flusher_stopping_;
      incoming_acks.swap(pending_acks_);
      incoming_clear_acks.swap(pending_clear_acks_);
      incoming_attributes.swap(pending_attributes_);
    }
    {
      std::unique_lock lock(registry_mutex_);
      incoming_seen.swap(pending_seen_);
    }
    for (auto& [id, update] : incoming_seen) {
      auto& slot = seen[id];
      slot.at = std::max(slot.at, update.at);
      slot.refresh = slot.refresh || update.refresh;
      slot.presence_session = std::max(slot.presence_session, update.presence_session);
    }
    incoming_seen.clear();
    acks.insert(acks.end(), incoming_acks.begin(), incoming_acks.end());
    incoming_acks.clear();
    clear_acks.insert(clear_acks.end(), incoming_clear_acks.begin(), incoming_clear_acks.end());
    incoming_clear_acks.clear();
    attributes.insert(attributes.end(), std::make_move_iterator(incoming_attributes.begin()),
                      std::make_move_iterator(incoming_attributes.end()));
    incoming_attributes.clear();
    const TimePoint now = clock_();
    bool failed = false;
    if (!seen.empty()) {
      std::vector<store::DeviceStore::SeenUpdate> rows;
      rows.reserve(seen.size());
      for (const auto& [id, update] : seen) rows.push_back({id, update.at, update.refresh, update.presence_session});
      const auto started = std::chrono::steady_clock::now();
      auto written = store_.flush_last_seen(rows);
      if (written) {
        if (!written->empty()) {
          Event refresh{Event::Kind::refresh};
          refresh.refreshed = std::move(written.value());
          post(std::move(refresh));
        }
        ++metrics_.flushes;
        metrics_.flushed_rows += rows.size();
        metrics_.last_flush_rows = rows.size();
        metrics_.flush_seconds_micros += static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count());
        seen.clear();
      } else {
        failed = true;
        ++metrics_.database_errors;
        if (allow_log(log_mutex, last_error_log, now))
          log_error("last_seen_flush_failed", {{"devices", std::to_string(rows.size())}, {"error", written.error().detail}});
      }
    }
    while (!failed && !attributes.empty()) {
      const auto& [id, h] = attributes.front();
      if (!store_.update_heartbeat_attributes(id, h, now)) {
        failed = true;
        break;
      }
      attributes.erase(attributes.begin());
    }
    if (!failed && !acks.empty()) {
      if (store_.mark_published(acks))
        acks.clear();
      else
        failed = true;
    }
    if (!failed && !clear_acks.empty()) {
      if (store_.clears_done(clear_acks))
        clear_acks.clear();
      else
        failed = true;
    }
    if (stopping) {
      if (failed) log_error("shutdown_flush_incomplete", {{"last_seen_rows_lost", std::to_string(seen.size())}});
      break;
    }
  }
}

}  // namespace maestra::service
