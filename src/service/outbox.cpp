// The status outbox: every stored transition is published retained, and the
// broker's acknowledgement recorded (status_seq / published_seq); what the broker
// has not acknowledged is published again when the link is back, everything when
// the broker lost the service's session. Also the 30-second refresh of a live
// device's document (its last_seen), served from the documents kept in memory.
#include "service/fleet.hpp"

#include "service/log.hpp"

namespace maestra::service {

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

void Fleet::publish(const store::StoredStatus& status) {
  status_docs_[status.document.device_id] = status;
  if (publisher_) publisher_->publish_status(status);
}

void Fleet::publish_refreshes(const Batch& batch) {
  // Most cycles have none: no registry lock for them (in-place heartbeats hold it).
  if (!refresh_pending_.exchange(false, std::memory_order_relaxed)) return;
  std::unordered_set<DeviceId, core::DeviceIdHash> due;
  std::vector<store::StoredStatus> fresh;
  {
    std::unique_lock lock(registry_mutex_);
    due.swap(refresh_due_);
    fresh.reserve(due.size());
    for (const auto& id : due) {
      auto state = registry_.find(id);
      auto doc = status_docs_.find(id);
      // Only a document that still shows the device's status: a transition not
      // yet stored (held for a retry) is published with its own last_seen.
      if (state == registry_.end() || doc == status_docs_.end() || batch.index.count(id) ||
          doc->second.document.status != state->second.status())
        continue;
      store::StoredStatus refreshed = doc->second;
      refreshed.document.last_seen = std::max(refreshed.document.last_seen, state->second.last_seen);
      fresh.push_back(std::move(refreshed));
    }
  }
  for (const auto& s : fresh) publish(s);
}

void Fleet::republish_outbox(const char* everything) {
  // A broker that lost the service's session (crash before saving, a new
  // broker) lost the retained statuses it had acknowledged too; one that came
  // back from a crash restored an older save, session included, without the
  // statuses acknowledged since: in both cases publish them all.
  auto pending = everything ? store_.all_statuses() : store_.unpublished(200000);
  if (!pending) {
    ++metrics_.database_errors;
    log_error("outbox_read_failed", {{"error", pending.error().detail}});
    return;
  }
  if (everything)
    log_info("status_republish_all", {{"statuses", std::to_string(pending->size())},
                                      {"reason", everything}});
  else if (!pending->empty())
    log_info("outbox_republish", {{"statuses", std::to_string(pending->size())}});
  for (const auto& s : pending.value()) publish(s);
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

}  // namespace maestra::service
