// The fleet's lifecycle (load, start, stop, the owner's queue) and its queries,
// which read the store and overlay the registry's fresher last_seen.
#include "service/fleet.hpp"

#include <algorithm>

#include "service/log.hpp"

namespace maestra::service {

Fleet::Fleet(store::Store& store, Metrics& metrics, FleetOptions options, Clock clock)
    : store_(store), metrics_(metrics), options_(options), clock_(std::move(clock)), will_gate_(options.will_gate) {}

Fleet::~Fleet() { stop(); }

Result<std::size_t> Fleet::load() {
  std::unique_lock lock(registry_mutex_);
  auto loaded = store_.load_states([&](const std::vector<store::LoadedDevice>& page) {
    for (const auto& d : page) {
      registry_[d.id] = d.state;
      status_docs_[d.id] = d.status;
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
  flusher_ = std::thread([this] {
    while (true) {
      {
        std::unique_lock lock(flush_mutex_);
        flush_cv_.wait_for(lock, options_.flush_interval, [&] { return flusher_stopping_; });
        if (flusher_stopping_) break;
      }
      run_flush_cycle(true);
    }
    run_flush_cycle();  // the last one, after the owner has stopped
    if (!unflushed_seen_.empty())
      log_error("shutdown_flush_incomplete", {{"last_seen_rows_lost", std::to_string(unflushed_seen_.size())}});
  });
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

bool Fleet::connected(const DeviceId& id) const {
  std::shared_lock lock(registry_mutex_);
  const auto it = registry_.find(id);
  return it != registry_.end() && it->second.connected;
}

Result<core::Done> Fleet::list(const store::ListQuery& q,
                               const std::function<bool(const std::vector<core::DeviceRecord>&)>& page) {
  // No index on status (a status change is a heap-only update): for a status few
  // devices have, the registry names the devices that can match.
  store::ListQuery query = q;
  if (const auto status = q.status ? core::parse_status(*q.status) : std::nullopt) {
    constexpr std::int64_t page_size = 1000;  // the store's page
    std::shared_lock lock(registry_mutex_);
    const auto matching = counts_.by_status[static_cast<std::size_t>(*status)];
    const auto wanted = q.offset + std::min(q.limit.value_or(matching), page_size);
    if (core::list_by_candidates(matching, counts_.total(), wanted)) {
      query.among.emplace();
      query.among->reserve(static_cast<std::size_t>(matching));
      for (const auto& [id, state] : registry_)
        if (state.status() == *status) query.among->push_back(id);
    }
  }
  return store_.list(query, [&](const std::vector<core::DeviceRecord>& records) {
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

}  // namespace maestra::service
