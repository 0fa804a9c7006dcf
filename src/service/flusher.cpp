// The flusher: every flush_interval, the coalesced last_seen refreshes and
// heartbeat attributes in one statement, then the broker's acknowledgements of
// status messages (held while the owner is storing transitions, up to
// FleetOptions::ack_delay_max) and of cleared topics. What a failed write leaves is kept and
// merged with what comes next, so nothing is dropped while the database is down.
#include "service/fleet.hpp"

#include "service/log.hpp"

namespace maestra::service {

void Fleet::run_flush_cycle(bool steady) {
  std::unordered_map<DeviceId, PendingSeen, core::DeviceIdHash> seen;
  {
    std::unique_lock lock(registry_mutex_);  // heartbeats record under the lock they already hold
    seen.swap(pending_seen_);
  }
  {
    std::lock_guard lock(flush_mutex_);
    if (unflushed_acks_.empty() && !pending_acks_.empty()) acks_waiting_since_ = clock_();
    unflushed_acks_.insert(unflushed_acks_.end(), pending_acks_.begin(), pending_acks_.end());
    pending_acks_.clear();
    unflushed_clear_acks_.insert(unflushed_clear_acks_.end(), pending_clear_acks_.begin(), pending_clear_acks_.end());
    pending_clear_acks_.clear();
  }
  if (unflushed_seen_.empty())
    unflushed_seen_.swap(seen);
  else
    for (auto& [id, update] : seen) unflushed_seen_[id].merge(std::move(update));

  const TimePoint now = clock_();
  auto failed = [&](const char* what, const core::Error& error, std::size_t rows) {
    ++metrics_.database_errors;
    if (flush_error_log_.take(now).write) log_error(what, {{"rows", std::to_string(rows)}, {"error", error.detail}});
  };
  if (!unflushed_seen_.empty()) {
    std::vector<store::SeenUpdate> rows;
    rows.reserve(unflushed_seen_.size());
    for (auto& [id, update] : unflushed_seen_)
      rows.push_back({id, update.at, update.presence_session, update.firmware_version, update.ip_address,
                      update.metadata});
    const auto started = std::chrono::steady_clock::now();
    auto written = store_.flush_last_seen(rows);
    if (!written && written.error().kind != core::ErrorKind::unavailable) {
      // Not the database being down but a row it refused (a bug, or data that
      // slipped past validation): the attributes are dropped so the last_seen
      // of every device still lands, rather than the flush failing for ever.
      log_error("heartbeat_attributes_dropped", {{"rows", std::to_string(rows.size())}, {"error", written.error().detail}});
      ++metrics_.internal_errors;
      for (auto& row : rows) {
        row.firmware_version.reset();
        row.ip_address.reset();
        row.metadata.reset();
      }
      written = store_.flush_last_seen(rows);
    }
    if (!written) return failed("last_seen_flush_failed", written.error(), rows.size());
    ++metrics_.flushes;
    metrics_.flushed_rows += rows.size();
    metrics_.last_flush_rows = rows.size();
    metrics_.flush_seconds_micros += static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count());
    unflushed_seen_.clear();
  }
  // While transitions are being stored, their acks wait (bounded): a storm's
  // statements do not share Postgres with the bookkeeping of the ones before.
  const bool acks_wait = steady && now - last_transitions_stored_.load(std::memory_order_relaxed) < options_.ack_quiet &&
                         now - acks_waiting_since_ < options_.ack_delay_max;
  if (!unflushed_acks_.empty() && !acks_wait) {
    if (auto marked = store_.mark_published(unflushed_acks_); !marked)
      return failed("outbox_ack_failed", marked.error(), unflushed_acks_.size());
    unflushed_acks_.clear();
  }
  if (!unflushed_clear_acks_.empty()) {
    if (auto done = store_.clears_done(unflushed_clear_acks_); !done)
      return failed("outbox_ack_failed", done.error(), unflushed_clear_acks_.size());
    unflushed_clear_acks_.clear();
  }
}

}  // namespace maestra::service
