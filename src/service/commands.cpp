// The command owner (see commands.hpp): creation, the worker's jobs (sends in
// order, broker acks, MQTT replies, devices coming and going, the outbox after
// a lost link), the sweep, replies, cancel, and the waits of ?wait and the
// HTTP long poll.
#include "service/commands.hpp"

#include <cstdio>

#include "service/log.hpp"

namespace maestra::service {

using core::Command;
using core::CommandState;
using core::Error;
using core::ErrorKind;

namespace {
constexpr auto sweep_interval = std::chrono::milliseconds(200);
constexpr int sweep_batch = 1000;
constexpr int outbox_page = 1000;
// A broker ack or a device's reply the database did not take is tried again,
// every half second for a minute, so a short database outage loses neither.
constexpr auto retry_delay = std::chrono::milliseconds(500);
constexpr int max_attempts = 120;
constexpr std::size_t ended_remembered = 65536;

using core::not_behind;

void sample(std::string& out, const char* name, const std::string& labels, std::uint64_t value) {
  out += name;
  if (!labels.empty()) out += "{" + labels + "}";
  out += " " + std::to_string(value) + "\n";
}
void family(std::string& out, const char* name, const char* type, const char* help) {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}
}  // namespace

std::string CommandMetrics::render_prometheus() const {
  std::string out;
  family(out, "maestra_commands_created_total", "counter", "Commands created (stored as queued).");
  sample(out, "maestra_commands_created_total", "", created.load());
  family(out, "maestra_commands_published_total", "counter", "Commands handed to the broker for a device (first sends and resends).");
  sample(out, "maestra_commands_published_total", "", published.load());
  family(out, "maestra_command_transitions_total", "counter", "Command state changes stored, by the state entered.");
  for (int i = 1; i < core::command_state_count; ++i)
    sample(out, "maestra_command_transitions_total",
           "state=\"" + std::string(core::to_string(static_cast<CommandState>(i))) + "\"", transitions[i].load());
  family(out, "maestra_command_replies_total", "counter", "Device replies applied to a command.");
  sample(out, "maestra_command_replies_total", "", replies_applied.load());
  family(out, "maestra_command_replies_ignored_total", "counter", "Device replies ignored (never applied), by reason.");
  for (std::size_t i = 0; i < ignored_reply_names.size(); ++i)
    sample(out, "maestra_command_replies_ignored_total", std::string("reason=\"") + ignored_reply_names[i] + "\"",
           replies_ignored[i].load());
  family(out, "maestra_command_store_errors_total", "counter", "Command operations the database did not take.");
  sample(out, "maestra_command_store_errors_total", "", store_errors.load());
  family(out, "maestra_command_batches_total", "counter",
         "Statements that stored a worker cycle's broker acks and device replies together.");
  sample(out, "maestra_command_batches_total", "", batches.load());
  family(out, "maestra_command_batch_moves_total", "counter", "State changes those statements carried.");
  sample(out, "maestra_command_batch_moves_total", "", batch_moves.load());
  family(out, "maestra_commands_open_cached", "gauge",
         "Commands that are not terminal, as cached by this process (device and state of each).");
  out += "maestra_commands_open_cached " + std::to_string(open_cached.load()) + "\n";
  return out;
}

Commands::Commands(store::CommandStore& store, Fleet& fleet, Clock clock)
    : store_(store), fleet_(fleet), clock_(std::move(clock)) {}

Commands::~Commands() { stop(); }

void Commands::start() {
  for (std::size_t i = 0; i < shard_count; ++i) shards_[i].thread = std::thread([this, i] { worker_loop(i); });
}

void Commands::stop() {
  stopping_ = true;
  for (auto& shard : shards_) {
    {
      std::lock_guard lock(shard.mutex);  // a worker between its check and its wait sees it
    }
    shard.cv.notify_all();
  }
  for (auto& shard : shards_)
    if (shard.thread.joinable()) shard.thread.join();
  stop_waits();
}

void Commands::stop_waits() {
  {
    std::lock_guard lock(watch_mutex_);
    waits_stopping_ = true;
  }
  watch_cv_.notify_all();
}

// --- the administrator ----------------------------------------------------------

Result<store::CreatedCommand> Commands::create(const DeviceId& device, const core::CommandRequest& request,
                                               const std::optional<std::string>& idempotency_key) {
  // Held from the store to the send job: the device's jobs reach the worker in
  // creation order.
  std::lock_guard lock(create_locks_[core::DeviceIdHash{}(device) % create_locks_.size()]);
  auto created = store_.create(device, request, idempotency_key, clock_());
  if (!created) {
    if (created.error().kind == ErrorKind::unavailable || created.error().kind == ErrorKind::internal)
      ++metrics_.store_errors;
    return created;
  }
  if (created->existing) {
    if (created->request_hash != request.fingerprint())
      return Error{ErrorKind::conflict, "Idempotency-Key",
                   "this Idempotency-Key was used for another request to this device",
                   created->command.id.to_string()};
    return created;
  }
  ++metrics_.created;
  ++metrics_.transitions[static_cast<std::size_t>(CommandState::queued)];
  changed(created->command);
  Job job{Job::Kind::send};
  job.device = device;
  job.command = created->command.id;
  job.seq = created->command.seq;
  job.snapshot = created->command;
  job.cancels = cancels_.load();
  post(std::move(job));
  return created;
}

Result<std::vector<store::CreatedCommand>> Commands::fan_out(const core::FanOut& f,
                                                             const std::optional<std::string>& idempotency_key) {
  std::vector<DeviceId> devices = f.device_ids;
  if (devices.empty()) {
    store::ListQuery q;
    if (f.device_type) q.device_type = f.device_type;
    if (f.status) q.status = std::string(core::to_string(*f.status));
    q.limit = static_cast<std::int64_t>(core::max_fan_out_devices) + 1;
    auto listed = fleet_.list(q, [&](const std::vector<core::DeviceRecord>& page) {
      for (const auto& r : page) devices.push_back(r.id);
      return true;
    });
    if (!listed) return listed.error();
    if (devices.size() > core::max_fan_out_devices)
      return Error{ErrorKind::invalid_field, f.device_type ? "device_type" : "status",
                   "more than 10000 devices match; narrow the filter"};
  } else {
    // Every named device must exist before any command is created.
    for (const auto& id : devices) {
      auto record = fleet_.get(id);
      if (!record) {
        if (record.error().kind == ErrorKind::not_found)
          return Error{ErrorKind::not_found, "device_ids", "no device with id " + id.to_string()};
        return record.error();
      }
    }
  }
  std::vector<store::CreatedCommand> out;
  out.reserve(devices.size());
  if (!idempotency_key) {
    // One statement and one commit for the whole fan-out. Every stripe of the
    // creation locks is held (in order) from the store to the send jobs, so
    // each device's jobs still reach its worker in creation order.
    std::array<std::unique_lock<std::mutex>, std::tuple_size_v<decltype(create_locks_)>> locks;
    for (std::size_t i = 0; i < locks.size(); ++i) locks[i] = std::unique_lock(create_locks_[i]);
    auto created = store_.create_many(devices, f.request, clock_());
    if (!created) return created.error();
    metrics_.created += created->size();
    metrics_.transitions[static_cast<std::size_t>(CommandState::queued)] += created->size();
    changed_all(created.value());
    const auto cancels = cancels_.load();
    std::vector<Job> jobs;
    jobs.reserve(created->size());
    for (auto& c : created.value()) {
      Job job{Job::Kind::send};
      job.device = c.device_id;
      job.command = c.id;
      job.seq = c.seq;
      job.snapshot = c;
      job.cancels = cancels;
      jobs.push_back(std::move(job));
      out.push_back(store::CreatedCommand{std::move(c), false, {}});
    }
    post_all(std::move(jobs));
    return out;
  }
  for (const auto& id : devices) {
    auto created = create(id, f.request, idempotency_key);
    if (!created) {
      if (created.error().kind == ErrorKind::not_found) continue;  // deleted meanwhile
      return created.error();
    }
    out.push_back(std::move(created.value()));
  }
  return out;
}

Result<Command> Commands::cancel(const core::CommandId& id) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto current = store_.get(id);
    if (!current) return current.error();
    const Command& c = current->command;
    if (!core::can_transition(c.state, CommandState::canceled))
      return Error{ErrorKind::conflict, "state", "the command is already " + std::string(core::to_string(c.state))};
    ++cancels_;  // before the store: a send job made earlier reads the store
    auto moved = move(c, CommandState::canceled);
    if (!moved) return moved.error();
    if (moved.value()) return *moved.value();
    // Moved on meanwhile (a reply, the sweep): decide again.
  }
  return Error{ErrorKind::unavailable, "", "the command kept changing; try again"};
}

Result<Command> Commands::wait_for_end(const Command& command, core::Seconds wait) {
  if (core::is_terminal(command.state) || wait.count() <= 0) return command;
  const auto deadline = std::chrono::steady_clock::now() + wait;
  {
    std::lock_guard lock(watch_mutex_);
    auto& w = watched_[command.id];
    ++w.first;
    w.second = command;
  }
  // A change stored before the watch began is read back once.
  auto current = store_.get(command.id);
  std::unique_lock lock(watch_mutex_);
  auto& w = watched_[command.id];
  if (current && not_behind(w.second.state, current->command.state)) w.second = current->command;
  watch_cv_.wait_until(lock, deadline, [&] { return waits_stopping_ || core::is_terminal(w.second.state); });
  Command latest = w.second;
  if (--w.first == 0) watched_.erase(command.id);
  return latest;
}

// --- devices ------------------------------------------------------------------------

Result<ReplyOutcome> Commands::reply(const DeviceId& device, const core::CommandId& id,
                                     const core::CommandReply& reply) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    Command c;
    bool from_cache = false;
    if (auto cached = attempt == 0 ? known(id) : std::nullopt) {
      c = std::move(*cached);
      from_cache = true;
    } else {
      auto current = store_.get(id);
      if (!current) {
        if (current.error().kind != ErrorKind::not_found) return current.error();
        count_ignored(IgnoredReply::unknown_command);
        return ReplyOutcome{false, IgnoredReply::unknown_command, {}};
      }
      c = std::move(current->command);
    }
    if (c.device_id != device) {
      count_ignored(IgnoredReply::other_device);
      return ReplyOutcome{false, IgnoredReply::other_device, {}};
    }
    const auto verdict = core::judge_reply(c.state, reply.state);
    if (verdict != core::ReplyVerdict::apply && from_cache) continue;  // decided on the stored command, answered in full
    if (verdict != core::ReplyVerdict::apply) {
      const auto why = verdict == core::ReplyVerdict::terminal    ? IgnoredReply::terminal
                       : verdict == core::ReplyVerdict::duplicate ? IgnoredReply::duplicate
                                                                  : IgnoredReply::backwards;
      count_ignored(why);
      return ReplyOutcome{false, why, c};
    }
    auto moved = move(c, reply.state, reply.result, reply.error);
    if (!moved) return moved.error();
    if (moved.value()) {
      ++metrics_.replies_applied;
      return ReplyOutcome{true, std::nullopt, *moved.value()};
    }
  }
  return Error{ErrorKind::unavailable, "", "the command kept changing; try again"};
}

void Commands::reply_async(const DeviceId& device, const core::CommandId& id, core::CommandReply reply) {
  Job job{Job::Kind::reply};
  job.device = device;
  job.command = id;
  job.reply = std::move(reply);
  post(std::move(job));
}

Result<std::vector<Command>> Commands::pending(const DeviceId& device, core::Seconds wait) {
  auto record = fleet_.get(device);
  if (!record) return record.error();
  const auto deadline = std::chrono::steady_clock::now() + wait;
  {
    std::lock_guard lock(watch_mutex_);
    ++polled_[device].first;
  }
  struct Unpoll {
    Commands& self;
    DeviceId device;
    ~Unpoll() {
      std::lock_guard lock(self.watch_mutex_);
      if (--self.polled_[device].first == 0) self.polled_.erase(device);
    }
  } unpoll{*this, device};
  while (true) {
    std::uint64_t seen = 0;
    {
      std::lock_guard lock(watch_mutex_);
      seen = polled_[device].second;
    }
    auto undelivered = store_.undelivered(device, clock_());
    if (!undelivered) return undelivered.error();
    if (!undelivered->empty()) {
      std::vector<Command> out;
      for (auto& c : undelivered.value()) {
        if (c.state == CommandState::queued) {
          auto moved = move(c, CommandState::sent);
          if (!moved) return moved.error();
          if (moved.value()) c = *moved.value();
        }
        out.push_back(std::move(c));
      }
      return out;
    }
    std::unique_lock lock(watch_mutex_);
    const bool changed = watch_cv_.wait_until(lock, deadline, [&] { return waits_stopping_ || polled_[device].second != seen; });
    if (!changed || waits_stopping_) return std::vector<Command>{};
  }
}

// --- from the fleet and the MQTT adapter -------------------------------------------------

void Commands::device_back(const DeviceId& device) {
  Job job{Job::Kind::device_back};
  job.device = device;
  post(std::move(job));
}

void Commands::device_gone(const DeviceId& device) {
  Job job{Job::Kind::device_gone};
  job.device = device;
  post(std::move(job));
}

void Commands::device_removed(const DeviceId& device) {
  {
    std::lock_guard lock(known_mutex_);
    for (auto it = known_.begin(); it != known_.end();) {
      if (it->second.first == device) {
        it = known_.erase(it);
        --metrics_.open_cached;
      } else {
        ++it;
      }
    }
  }
  device_gone(device);
}

void Commands::broker_connected() {
  for (std::size_t i = 0; i < shard_count; ++i) post_to(i, Job{Job::Kind::broker_connected});
}

void Commands::broker_disconnected() {
  for (std::size_t i = 0; i < shard_count; ++i) post_to(i, Job{Job::Kind::broker_disconnected});
}

void Commands::command_acked(const core::CommandId& id) {
  Job job{Job::Kind::acked};
  job.command = id;
  post(std::move(job));
}

// --- the worker ------------------------------------------------------------------

void Commands::post(Job job) {
  // A device's jobs go to its worker (their order is the device's); a broker
  // ack names only the command, and any worker may store it.
  const std::size_t shard = job.kind == Job::Kind::acked ? shard_of(job.command) : shard_of(job.device);
  post_to(shard, std::move(job));
}

void Commands::post_to(std::size_t index, Job job) {
  Shard& shard = shards_[index];
  {
    std::lock_guard lock(shard.mutex);
    if (stopping_) return;
    shard.jobs.push_back(std::move(job));
  }
  shard.cv.notify_one();
}

void Commands::post_all(std::vector<Job> jobs) {
  std::array<std::vector<Job>, shard_count> by_shard;
  for (auto& job : jobs) {
    const std::size_t shard = job.kind == Job::Kind::acked ? shard_of(job.command) : shard_of(job.device);
    by_shard[shard].push_back(std::move(job));
  }
  for (std::size_t i = 0; i < shard_count; ++i) {
    if (by_shard[i].empty()) continue;
    Shard& shard = shards_[i];
    {
      std::lock_guard lock(shard.mutex);
      if (stopping_) return;
      for (auto& job : by_shard[i]) shard.jobs.push_back(std::move(job));
    }
    shard.cv.notify_one();
  }
}

void Commands::worker_loop(std::size_t index) {
  Shard& shard = shards_[index];
  std::deque<Job> batch;
  while (true) {
    {
      std::unique_lock lock(shard.mutex);
      shard.cv.wait_for(lock, sweep_interval, [&] { return stopping_ || !shard.jobs.empty(); });
      if (stopping_) return;
      batch.swap(shard.jobs);
    }
    const auto due = clock_();
    std::deque<Job> retried;  // before newer jobs, in their order: a device's replies stay in order
    while (!shard.retries.empty() && shard.retries.front().first <= due) {
      retried.push_back(std::move(shard.retries.front().second));
      shard.retries.pop_front();
    }
    batch.insert(batch.begin(), std::make_move_iterator(retried.begin()), std::make_move_iterator(retried.end()));
    // Acks and replies are gathered and stored in one statement per run of
    // them; any other job first stores what was gathered before it.
    Gathered gathered;
    for (auto& job : batch) {
      try {
        if (job.kind == Job::Kind::acked || job.kind == Job::Kind::reply) {
          gather(shard, index, gathered, job);
          continue;
        }
        flush(shard, index, gathered);
        run_one(shard, index, job);
      } catch (const std::exception& e) {
        log_error("command_job_failed", {{"error", e.what()}});
      }
    }
    try {
      flush(shard, index, gathered);
    } catch (const std::exception& e) {
      log_error("command_job_failed", {{"error", e.what()}});
    }
    batch.clear();
    if (index != 0) continue;
    const auto now = clock_();
    if (now - last_sweep_ >= sweep_interval) {
      last_sweep_ = now;
      try {
        sweep();
      } catch (const std::exception& e) {
        log_error("command_sweep_failed", {{"error", e.what()}});
      }
    }
  }
}

void Commands::run_one(Shard& shard, std::size_t index, Job& job) {
  if (!run_job(shard, index, job) && ++job.attempts < max_attempts)
    shard.retries.emplace_back(clock_() + retry_delay, std::move(job));
}

void Commands::gather(Shard& shard, std::size_t index, Gathered& g, Job& job) {
  if (g.ids.count(job.command)) flush(shard, index, g);  // one move per command and statement
  const auto known_now = known(job.command);
  const auto cached = known_now ? std::optional<core::CachedCommand>(core::CachedCommand{known_now->device_id, known_now->state})
                                : std::nullopt;
  if (job.kind == Job::Kind::acked) {
    if (!core::ack_may_move(cached)) return;
    g.moves.push_back(store::CommandMove{job.command, CommandState::queued, CommandState::sent, nullptr, std::nullopt});
  } else {
    const auto from = core::reply_move_from(cached, job.device, job.reply.state);
    if (!from) {
      // Not decided here (unknown to the cache, another device's, or not a
      // step forward): reply() reads the store and counts what it ignores.
      flush(shard, index, g);  // this device's earlier replies first
      run_one(shard, index, job);
      return;
    }
    g.moves.push_back(store::CommandMove{job.command, *from, job.reply.state, job.reply.result, job.reply.error});
  }
  g.ids.insert(job.command);
  g.jobs.push_back(std::move(job));
}

void Commands::flush(Shard& shard, std::size_t index, Gathered& g) {
  if (g.jobs.empty()) return;
  ++metrics_.batches;
  metrics_.batch_moves += g.moves.size();
  auto moved = store_.transition_many(g.moves, clock_());
  if (!moved) {
    log_store_error("command_batch", moved.error());
    if (moved.error().kind == ErrorKind::unavailable)
      for (auto& job : g.jobs)
        if (++job.attempts < max_attempts) shard.retries.emplace_back(clock_() + retry_delay, std::move(job));
    g.clear();
    return;
  }
  std::unordered_set<core::CommandId, core::DeviceIdHash> done;
  done.reserve(moved->size());
  for (const auto& c : moved.value()) {
    ++metrics_.transitions[static_cast<std::size_t>(c.state)];
    done.insert(c.id);
  }
  changed_all(moved.value());
  std::vector<Job> again;
  for (auto& job : g.jobs) {
    if (job.kind != Job::Kind::reply) continue;  // an ack that moved nothing: the command was past queued
    if (done.count(job.command))
      ++metrics_.replies_applied;
    else
      again.push_back(std::move(job));
  }
  g.clear();
  for (auto& job : again) run_one(shard, index, job);  // moved on meanwhile: decided on the stored state
}

bool Commands::run_job(Shard& shard, std::size_t index, Job& job) {
  auto& caught_up_ = shard.caught_up;
  switch (job.kind) {
    case Job::Kind::send: {
      // Sent when the device comes back, or by the outbox when the link does.
      if (!publisher_ || !shard.link_up || !fleet_.connected(job.device)) return true;
      auto it = caught_up_.find(job.device);
      if (it == caught_up_.end()) {
        send_all(shard, job.device);
        return true;
      }
      if (job.seq <= it->second) return true;  // a full send already carried it
      if (!job.snapshot || cancels_.load() != job.cancels) {  // it may have been canceled: read it
        auto current = store_.get(job.command);
        if (!current) {
          if (current.error().kind != ErrorKind::not_found) {
            log_store_error("command_send", current.error());
            caught_up_.erase(it);  // sent with the rest when the device comes back or the link returns
          }
          return true;
        }
        job.snapshot = std::move(current->command);
      }
      const auto now = clock_();
      if (!core::deliverable(*job.snapshot, now)) return true;
      publisher_->publish_command(*job.snapshot, now);
      ++metrics_.published;
      it->second = job.seq;
      return true;
    }
    case Job::Kind::device_back:
      caught_up_.erase(job.device);
      if (publisher_ && shard.link_up) send_all(shard, job.device);
      return true;
    case Job::Kind::device_gone:
      caught_up_.erase(job.device);
      return true;
    case Job::Kind::broker_connected:
      shard.link_up = true;
      caught_up_.clear();
      resend_outbox(shard, index);
      return true;
    case Job::Kind::broker_disconnected:
      shard.link_up = false;
      caught_up_.clear();
      return true;
    case Job::Kind::acked: {
      auto moved = store_.transition(job.command, CommandState::queued, CommandState::sent, clock_(), nullptr,
                                     std::nullopt);
      if (!moved) {
        log_store_error("command_acked", moved.error());
        return moved.error().kind != ErrorKind::unavailable;
      }
      if (moved.value()) {
        ++metrics_.transitions[static_cast<std::size_t>(CommandState::sent)];
        changed(*moved.value());
      }
      return true;
    }
    case Job::Kind::reply: {
      auto outcome = reply(job.device, job.command, job.reply);
      if (!outcome) {
        log_store_error("command_reply", outcome.error());
        return outcome.error().kind != ErrorKind::unavailable;
      }
      return true;
    }
  }
  return true;
}

void Commands::send_all(Shard& shard, const DeviceId& device) {
  const auto now = clock_();
  auto undelivered = store_.undelivered(device, now);
  if (!undelivered) return log_store_error("command_redeliver", undelivered.error());
  std::int64_t last = 0;
  for (const auto& c : undelivered.value()) {
    publisher_->publish_command(c, now);
    ++metrics_.published;
    last = std::max(last, c.seq);
  }
  // Caught up to the newest command that exists now; one created after the
  // query above has a later seq and comes with its own job.
  shard.caught_up[device] = last;
}

void Commands::resend_outbox(Shard& shard, std::size_t index) {
  if (!publisher_) return;
  const auto now = clock_();
  std::int64_t after = 0;
  std::unordered_set<DeviceId, core::DeviceIdHash> away;
  std::size_t sent = 0;
  while (true) {
    auto page = store_.undelivered_all(now, after, outbox_page);
    if (!page) return log_store_error("command_outbox", page.error());
    for (const auto& c : page.value()) {
      after = c.seq;
      if (shard_of(c.device_id) != index || away.count(c.device_id)) continue;
      if (!fleet_.connected(c.device_id)) {
        away.insert(c.device_id);
        continue;
      }
      publisher_->publish_command(c, now);
      ++metrics_.published;
      ++sent;
      shard.caught_up[c.device_id] = c.seq;
    }
    if (page->size() < static_cast<std::size_t>(outbox_page)) break;
  }
  if (sent) log_info("commands_resent", {{"commands", std::to_string(sent)}, {"reason", "broker link up"}});
}

void Commands::sweep() {
  const auto now = clock_();
  auto due = store_.due(now, sweep_batch);
  if (!due) return log_store_error("command_sweep", due.error());
  // Every expiry and result timeout found stored in one statement (an expiry
  // storm of 1,000 commands was 1,000 transactions).
  std::vector<store::CommandMove> moves;
  for (const auto& c : due.value())
    if (const auto decided = core::sweep_decision(c, now))
      moves.push_back(store::CommandMove{c.id, c.state, *decided, nullptr, std::nullopt});
  if (moves.empty()) return;
  auto moved = store_.transition_many(moves, now);
  if (!moved) return log_store_error("command_sweep", moved.error());
  for (const auto& c : moved.value()) ++metrics_.transitions[static_cast<std::size_t>(c.state)];
  changed_all(moved.value());
}

Result<std::optional<Command>> Commands::move(const Command& command, CommandState to, const core::Json& result,
                                              const std::optional<std::string>& error) {
  auto moved = store_.transition(command.id, command.state, to, clock_(), result, error);
  if (!moved) {
    ++metrics_.store_errors;
    return moved.error();
  }
  if (moved.value()) {
    ++metrics_.transitions[static_cast<std::size_t>(to)];
    changed(*moved.value());
  }
  return moved;
}

std::optional<Command> Commands::known(const core::CommandId& id) {
  std::lock_guard lock(known_mutex_);
  const auto it = known_.find(id);
  if (it == known_.end()) return std::nullopt;
  Command c;
  c.id = id;
  c.device_id = it->second.first;
  c.state = it->second.second;
  return c;
}

void Commands::changed_all(std::span<const Command> commands) {
  {
    std::lock_guard lock(known_mutex_);
    for (const Command& command : commands) {
    if (core::is_terminal(command.state)) {
      if (known_.erase(command.id)) --metrics_.open_cached;
      if (ended_.insert(command.id).second) {
        ended_order_.push_back(command.id);
        if (ended_order_.size() > ended_remembered) {
          ended_.erase(ended_order_.front());
          ended_order_.pop_front();
        }
      }
    } else if (!ended_.count(command.id)) {
      auto [it, added] = known_.try_emplace(command.id, command.device_id, command.state);
      if (added) ++metrics_.open_cached;
      if (!added && not_behind(it->second.second, command.state)) it->second.second = command.state;
    }
    }
  }
  if (publisher_)
    for (const Command& command : commands) publisher_->publish_command_state(command);
  bool wake = false;
  {
    std::lock_guard lock(watch_mutex_);
    if (watched_.empty() && polled_.empty()) return;
    for (const Command& command : commands) {
      if (auto it = watched_.find(command.id); it != watched_.end()) {
        if (not_behind(it->second.second.state, command.state)) it->second.second = command;
        wake = true;
      }
      if (auto it = polled_.find(command.device_id); it != polled_.end()) {
        ++it->second.second;
        wake = true;
      }
    }
  }
  if (wake) watch_cv_.notify_all();
}

void Commands::log_store_error(const char* what, const Error& error) {
  ++metrics_.store_errors;
  const std::int64_t now = clock_().time_since_epoch().count();
  auto last = last_error_log_ms_.load();
  if (now - last < 60000 || !last_error_log_ms_.compare_exchange_strong(last, now)) return;  // one line a minute
  log_error("command_store_error", {{"operation", what}, {"error", error.detail}});
}

}  // namespace maestra::service
