// The simulated fleet (see fleet.hpp): connect pacing, births, heartbeat
// scheduling, the kill, the exit, and the per-second progress line.
//
// A note on the two heartbeat modes. With --interval-ms every device has its
// own beat, kept in a min-heap of due times; a beat that finds the in-flight
// window full is skipped (counted), not queued. With --rate the fleet shares
// one token bucket and devices take turns from a ready queue: a device is in
// the queue while it may send (connected, socket not blocked, window not full)
// and re-enters it from on_puback/on_drained, so nothing scans 10,000 devices
// per turn. --rate 0 means no bucket: each turn fills every ready window.
//
// A note on QoS 0 flow control. QoS 0 has no acknowledgement, and loopback
// socket buffers would swallow hundreds of megabytes the broker has not read.
// So the in-flight window applies to QoS 0 too: after `inflight` messages the
// device sends a PINGREQ and waits for its PINGRESP, which the broker can only
// send once it has processed everything before it.
//
// A note on sessions: each connection's session is the wall-clock millisecond
// it started (and always above the device's previous one), so sessions keep
// increasing across simulator runs, as the service's stale-will check needs.
#include "fleet.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <string>

#include "device_ids.hpp"
#include "event_loop.hpp"
#include "mqtt_connection.hpp"
#include "rate_budget.hpp"
#include "stop_signal.hpp"

namespace fleet_sim {
namespace {

constexpr std::uint64_t max_sends_per_turn = 20'000;
constexpr int connect_attempts = 3;
constexpr int error_lines_shown = 10;
constexpr std::chrono::seconds tick{1};

std::string presence_payload(std::string_view state, std::int64_t session, bool clean_disconnect) {
  std::string payload = "{\"state\":\"" + std::string(state) + "\",\"session\":" + std::to_string(session);
  if (clean_disconnect) payload += ",\"reason\":\"disconnect\"";
  payload += "}";
  return payload;
}

double seconds_between(TimePoint from, TimePoint to) { return std::chrono::duration<double>(to - from).count(); }

struct Device {
  std::string id;
  std::string heartbeat_topic;
  std::string presence_topic;
  std::vector<std::uint16_t> reply_ids;  // --answer-commands: replies awaiting PUBACK
  std::unique_ptr<MqttConnection> connection;
  std::int64_t session = 0;
  std::uint32_t inflight = 0;            // QoS 1 heartbeats awaiting PUBACK
  std::uint32_t unconfirmed = 0;         // QoS 0 heartbeats sent since the last PINGRESP
  bool awaiting_pingresp = false;        // QoS 0: window full, PINGREQ sent
  std::uint16_t presence_packet_id = 0;  // birth / goodbye awaiting PUBACK (0: none)
  std::uint32_t generation = 0;          // bumped per connection; stale scheduled beats are dropped
  int attempts = 0;                      // connect attempts since the last success
  bool handshaking = false;
  bool connected = false;
  bool killed = false;
  bool in_ready_queue = false;
};

struct ScheduledBeat {
  TimePoint due;
  std::uint32_t index;
  std::uint32_t generation;
  bool operator>(const ScheduledBeat& other) const { return due > other.due; }
};

// --answer-commands with a delay: a reply due later.
struct ScheduledReply {
  TimePoint due;
  std::uint32_t index;
  std::uint32_t generation;
  std::string command_id;
  bool operator>(const ScheduledReply& other) const { return due > other.due; }
};

struct PendingConnect {
  std::uint32_t index;
  TimePoint not_before;
};

class Fleet final : public ConnectionEvents {
 public:
  Fleet(const SimOptions& options, const sockaddr_in& broker, const std::vector<std::string>& ids)
      : options_(options),
        payload_(options.telemetry_metrics > 0 ? telemetry_payload(options.telemetry_metrics) : options.payload),
        broker_(broker),
        connect_budget_(options.connect_rate, options.connect_rate * 0.02),
        heartbeat_budget_(options.rate.value_or(0), options.rate.value_or(0) * 0.1),
        random_(options.seed),
        rate_mode_(options.rate.has_value()),
        unthrottled_(options.rate.has_value() && *options.rate == 0),
        max_handshaking_(static_cast<std::size_t>(std::max(100.0, options.connect_rate))) {
    ConnectionTimeouts timeouts;
    timeouts.connack = std::chrono::milliseconds(static_cast<long>(options.connect_timeout_s * 1000));
    devices_.resize(ids.size());
    for (std::size_t index = 0; index < ids.size(); ++index) {
      Device& device = devices_[index];
      device.id = ids[index];
      device.heartbeat_topic = options.prefix + "/devices/" + device.id +
                               (options.telemetry_metrics > 0 ? "/telemetry/metrics" : "/heartbeat");
      device.presence_topic = options.prefix + "/devices/" + device.id + "/presence";
      device.connection = std::make_unique<MqttConnection>(loop_, *this, index, timeouts);
    }
  }

  FleetSummary run() {
    loop_.refresh_now();
    started_ = loop_.now();
    run_end_ = started_ + to_duration(options_.duration_s);
    next_tick_ = started_ + tick;
    connect_budget_.start(started_);
    heartbeat_budget_.start(started_);
    for (std::uint32_t index = 0; index < devices_.size(); ++index) connect_queue_.push_back({index, started_});

    while (!should_stop()) {
      const TimePoint now = loop_.now();
      start_due_connects(now);
      note_connect_phase_end(now);
      kill_if_due(now);
      answer_due(now);
      const bool capped = send_heartbeats(now);
      if (now >= next_tick_) on_tick(now);
      loop_.poll(capped ? std::chrono::milliseconds(0) : poll_timeout(now));
    }
    leave();
    if (options_.answer_commands) {
      std::printf("{\"event\":\"commands\",\"received\":%llu,\"succeeded\":%llu,\"failed\":%llu}\n",
                  static_cast<unsigned long long>(commands_received_),
                  static_cast<unsigned long long>(commands_succeeded_),
                  static_cast<unsigned long long>(commands_failed_));
      std::fflush(stdout);
    }
    return summary();
  }

  // --- connection events ------------------------------------------------------
  void on_connected(MqttConnection& connection) override {
    Device& device = devices_[connection.tag()];
    if (device.handshaking) {
      device.handshaking = false;
      --handshaking_;
    }
    device.connected = true;
    device.attempts = 0;
    ++device.generation;
    ++counters_.connected;
    counters_.connected_max = std::max(counters_.connected_max, counters_.connected);

    if (options_.answer_commands)  // before the birth: commands sent on its return follow it
      connection.subscribe({{options_.prefix + "/devices/" + device.id + "/commands/+", 1}});
    device.presence_packet_id =
        connection.publish(device.presence_topic, presence_payload("online", device.session, false), 1, true);
    connection.flush();
    if (!device.connected) return;  // the birth's write failed and closed it

    const TimePoint now = loop_.now();
    if (rate_mode_) {
      make_ready(connection.tag());
    } else {
      std::uniform_int_distribution<std::uint32_t> jitter(0, options_.interval_ms - 1);
      schedule_.push({now + std::chrono::milliseconds(jitter(random_)), static_cast<std::uint32_t>(connection.tag()),
                      device.generation});
    }
  }

  void on_puback(MqttConnection& connection, std::uint16_t packet_id) override {
    Device& device = devices_[connection.tag()];
    if (packet_id == device.presence_packet_id) {
      device.presence_packet_id = 0;
      return;
    }
    if (const auto reply = std::find(device.reply_ids.begin(), device.reply_ids.end(), packet_id);
        reply != device.reply_ids.end()) {
      device.reply_ids.erase(reply);
      return;
    }
    if (device.inflight == 0) return;
    --device.inflight;
    --total_inflight_;
    ++counters_.acked;
    last_ack_ = loop_.now();
    if (rate_mode_) make_ready(connection.tag());
  }

  // --answer-commands: a command on {prefix}/devices/{id}/commands/{command_id}.
  void on_message(MqttConnection& connection, const mqtt::PublishView& message) override {
    if (!options_.answer_commands) return;
    const auto slash = message.topic.rfind('/');
    if (slash == std::string_view::npos || slash + 1 >= message.topic.size()) return;
    ++commands_received_;
    std::string command_id(message.topic.substr(slash + 1));
    Device& device = devices_[connection.tag()];
    if (options_.answer_delay_ms == 0) return answer(device, command_id);
    replies_due_.push({loop_.now() + std::chrono::milliseconds(options_.answer_delay_ms),
                       static_cast<std::uint32_t>(connection.tag()), device.generation, std::move(command_id)});
  }

  void answer(Device& device, const std::string& command_id) {
    if (!device.connected) return;
    std::uniform_real_distribution<double> draw(0.0, 1.0);
    const bool fail = options_.answer_fail_rate > 0 && draw(random_) < options_.answer_fail_rate;
    const std::string payload = fail ? R"({"state":"failed","error":"fleet-sim --answer-fail-rate"})"
                                     : R"({"state":"succeeded"})";
    device.reply_ids.push_back(device.connection->publish(
        options_.prefix + "/devices/" + device.id + "/replies/" + command_id, payload, 1, false));
    device.connection->flush();
    ++(fail ? commands_failed_ : commands_succeeded_);
  }

  void answer_due(TimePoint now) {
    while (!replies_due_.empty() && replies_due_.top().due <= now) {
      const ScheduledReply reply = replies_due_.top();
      replies_due_.pop();
      Device& device = devices_[reply.index];
      if (reply.generation == device.generation) answer(device, reply.command_id);
    }
  }

  void on_drained(MqttConnection& connection) override {
    if (rate_mode_) make_ready(connection.tag());
  }

  void on_pingresp(MqttConnection& connection) override {
    Device& device = devices_[connection.tag()];
    if (!device.awaiting_pingresp) return;
    device.awaiting_pingresp = false;
    device.unconfirmed = 0;
    if (rate_mode_) make_ready(connection.tag());
  }

  void on_closed(MqttConnection& connection, CloseReason reason, std::string_view detail) override {
    const std::size_t index = connection.tag();
    Device& device = devices_[index];
    const bool was_connected = device.connected;
    if (device.connected) {
      device.connected = false;
      --counters_.connected;
      total_inflight_ -= device.inflight;
      device.inflight = 0;
      device.reply_ids.clear();
      device.unconfirmed = 0;
      device.awaiting_pingresp = false;
    }
    if (device.handshaking) {
      device.handshaking = false;
      --handshaking_;
    }
    if (reason == CloseReason::local_abort || reason == CloseReason::local_disconnect) return;

    ++counters_.errors;
    report_error(index, std::string(to_string(reason)) + (detail.empty() ? "" : ": " + std::string(detail)));
    if (phase_ != Phase::running || device.killed) return;
    if (was_connected) {
      ++counters_.reconnects;
      retry_connect(index, std::chrono::seconds(1));
    } else if (device.attempts < connect_attempts) {
      retry_connect(index, std::chrono::seconds(device.attempts));
    }
  }

 private:
  enum class Phase { running, draining, leaving };

  static std::chrono::milliseconds to_duration(double seconds) {
    return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
  }

  bool should_stop() const {
    if (stop_requested()) return true;
    if (loop_.now() >= run_end_) return true;
    if (options_.count > 0 && counters_.sent >= options_.count) return true;
    // Nobody left to simulate: everyone killed or given up.
    return connect_phase_ended_ && counters_.connected == 0 && handshaking_ == 0 && connect_queue_.empty();
  }

  // --- connecting -----------------------------------------------------------------
  void start_due_connects(TimePoint now) {
    if (phase_ != Phase::running) return;
    std::uint64_t tokens = connect_budget_.available(now);
    while (tokens > 0 && !connect_queue_.empty() && handshaking_ < max_handshaking_) {
      const PendingConnect next = connect_queue_.front();
      if (next.not_before > now) break;
      connect_queue_.pop_front();
      --tokens;
      connect_budget_.spend(1);
      start_connect(next.index);
    }
  }

  void start_connect(std::uint32_t index) {
    Device& device = devices_[index];
    device.session = std::max(device.session + 1, epoch_ms());
    ++device.attempts;

    mqtt::ConnectRequest request;
    request.client_id = options_.client_id_prefix + device.id;
    request.keepalive_s = options_.keepalive_s;
    request.will = mqtt::Will{device.presence_topic, presence_payload("offline", device.session, false), 1, true};
    request.username = mqtt_username(options_, device.id);
    request.password = options_.password;

    std::string error;
    if (device.connection->open(broker_, request, error)) {
      device.handshaking = true;
      ++handshaking_;
      return;
    }
    ++counters_.errors;
    report_error(index, error);
    if (device.attempts < connect_attempts) retry_connect(index, std::chrono::seconds(device.attempts));
  }

  void retry_connect(std::size_t index, std::chrono::seconds delay) {
    connect_queue_.push_back({static_cast<std::uint32_t>(index), loop_.now() + delay});
  }

  void note_connect_phase_end(TimePoint now) {
    if (connect_phase_ended_ || !connect_queue_.empty() || handshaking_ > 0) return;
    connect_phase_ended_ = true;
    connect_phase_end_ = now;
    kill_at_ = now + to_duration(options_.kill_after_s);
  }

  // --- heartbeats ---------------------------------------------------------------------
  bool can_send(const Device& device) const {
    return device.connected && device.connection->pending_bytes() == 0 &&
           (options_.qos == 0 ? !device.awaiting_pingresp : device.inflight < options_.inflight);
  }

  void make_ready(std::size_t index) {
    Device& device = devices_[index];
    if (device.in_ready_queue || !can_send(device)) return;
    device.in_ready_queue = true;
    ready_.push_back(static_cast<std::uint32_t>(index));
  }

  // Sends what is due this turn. True when it stopped at the per-turn cap, so
  // the loop should come straight back.
  bool send_heartbeats(TimePoint now) {
    if (phase_ != Phase::running) return false;
    std::uint64_t allowance = max_sends_per_turn;
    if (options_.count > 0) allowance = std::min(allowance, options_.count - std::min(options_.count, counters_.sent));
    const bool budgeted = rate_mode_ && !unthrottled_;
    if (budgeted) allowance = std::min(allowance, heartbeat_budget_.available(now));
    const std::uint64_t sent_before = counters_.sent;

    if (!rate_mode_) {
      const auto interval = std::chrono::milliseconds(options_.interval_ms);
      while (allowance > 0 && !schedule_.empty() && schedule_.top().due <= now) {
        const ScheduledBeat beat = schedule_.top();
        schedule_.pop();
        Device& device = devices_[beat.index];
        if (beat.generation != device.generation || !device.connected) continue;  // a beat of an older connection
        if (can_send(device)) {
          send_heartbeats_from(device, 1);
          --allowance;
        } else {
          ++counters_.skipped;
        }
        schedule_.push({beat.due + interval, beat.index, beat.generation});
      }
    } else {
      while (allowance > 0 && !ready_.empty()) {
        const std::uint32_t index = ready_.front();
        ready_.pop_front();
        Device& device = devices_[index];
        device.in_ready_queue = false;
        if (!can_send(device)) continue;
        std::uint64_t burst = 1;
        if (unthrottled_) burst = options_.inflight - (options_.qos == 0 ? device.unconfirmed : device.inflight);
        burst = std::min(burst, allowance);
        send_heartbeats_from(device, burst);
        allowance -= burst;
        make_ready(index);
      }
    }
    const std::uint64_t sent_now = counters_.sent - sent_before;
    if (budgeted) heartbeat_budget_.spend(sent_now);
    return sent_now >= max_sends_per_turn;
  }

  void send_heartbeats_from(Device& device, std::uint64_t count) {
    if (counters_.sent == 0) first_heartbeat_ = loop_.now();
    for (std::uint64_t i = 0; i < count; ++i) {
      device.connection->publish(device.heartbeat_topic, payload_, options_.qos, false);
      if (options_.qos > 0) {
        ++device.inflight;
        ++total_inflight_;
      } else {
        ++device.unconfirmed;
      }
      ++counters_.sent;
    }
    if (options_.qos == 0 && device.unconfirmed >= options_.inflight) {
      device.connection->ping();
      device.awaiting_pingresp = true;
    }
    last_send_ = loop_.now();
    device.connection->flush();
  }

  // --- killing ---------------------------------------------------------------------------
  void kill_if_due(TimePoint now) {
    if (options_.kill_fraction <= 0 || kill_done_ || !connect_phase_ended_ || now < kill_at_) return;
    kill_done_ = true;
    std::vector<std::uint32_t> candidates;
    for (std::uint32_t index = 0; index < devices_.size(); ++index) {
      if (devices_[index].connected) candidates.push_back(index);
    }
    std::shuffle(candidates.begin(), candidates.end(), random_);
    const auto victims =
        static_cast<std::size_t>(std::llround(options_.kill_fraction * static_cast<double>(candidates.size())));
    candidates.resize(std::min(victims, candidates.size()));

    std::vector<std::string> killed_ids;
    killed_ids.reserve(candidates.size());
    for (const auto index : candidates) killed_ids.push_back(devices_[index].id);

    const std::int64_t kill_epoch_ms = epoch_ms();
    const TimePoint closing = Clock::now();
    for (const auto index : candidates) {
      devices_[index].killed = true;
      devices_[index].connection->abort();
    }
    const double close_ms = std::chrono::duration<double, std::milli>(Clock::now() - closing).count();
    counters_.killed += candidates.size();

    if (!options_.killed_file.empty()) {
      if (const std::string error = write_lines(options_.killed_file, killed_ids); !error.empty()) {
        std::fprintf(stderr, "fleet-sim: %s\n", error.c_str());
      }
    }
    std::printf("%s\n", kill_event_json(kill_epoch_ms, killed_ids, options_.killed_file, close_ms).c_str());
    std::fflush(stdout);
  }

  // --- once a second ------------------------------------------------------------------------
  void on_tick(TimePoint now) {
    for (auto& device : devices_) device.connection->check_timers(now);
    const double window = seconds_between(last_tick_time_.value_or(started_), now);
    if (!options_.quiet) {
      std::printf("%s\n",
                  progress_line(seconds_between(started_, now), counters_, counters_at_last_tick_, window).c_str());
      std::fflush(stdout);
    }
    counters_at_last_tick_ = counters_;
    last_tick_time_ = now;
    while (next_tick_ <= now) next_tick_ += tick;
  }

  std::chrono::milliseconds poll_timeout(TimePoint now) const {
    TimePoint until = std::min(next_tick_, run_end_);
    const auto soon = [&](TimePoint candidate) { until = std::min(until, candidate); };
    if (phase_ == Phase::running) {
      if (options_.kill_fraction > 0 && !kill_done_ && connect_phase_ended_) soon(kill_at_);
      if (!connect_queue_.empty()) {
        soon(std::max(connect_queue_.front().not_before, now + std::chrono::milliseconds(1)));
      }
      if (!rate_mode_ && !schedule_.empty()) soon(schedule_.top().due);
      if (!replies_due_.empty()) soon(replies_due_.top().due);
      if (rate_mode_ && !ready_.empty()) {
        if (unthrottled_) return std::chrono::milliseconds(0);
        soon(now + heartbeat_budget_.time_to_next_token());
      }
    }
    if (until <= now) return std::chrono::milliseconds(0);
    const auto wait = std::chrono::ceil<std::chrono::milliseconds>(until - now);
    return std::min(wait, std::chrono::milliseconds(100));
  }

  // --- the end ---------------------------------------------------------------------------------
  void leave() {
    phase_ = Phase::draining;
    heartbeats_stopped_ = loop_.now();
    connect_queue_.clear();
    for (auto& device : devices_) {
      if (device.handshaking) device.connection->abort();  // never announced: nothing to say goodbye to
    }

    const TimePoint drain_until = loop_.now() + to_duration(options_.drain_s);
    while (total_inflight_ > 0 && loop_.now() < drain_until) {
      loop_.poll(std::chrono::milliseconds(10));
      if (loop_.now() >= next_tick_) on_tick(loop_.now());
    }

    phase_ = Phase::leaving;
    for (auto& device : devices_) {
      if (!device.connected) continue;
      switch (options_.exit_mode) {
        case ExitMode::offline:
          device.connection->publish(device.presence_topic, presence_payload("offline", device.session, true), 1, true);
          device.connection->disconnect();
          break;
        case ExitMode::disconnect:
          device.connection->disconnect();
          break;
        case ExitMode::abort:
          device.connection->abort();
          break;
      }
    }
    const TimePoint give_up = loop_.now() + std::chrono::seconds(5);
    while (any_open() && loop_.now() < give_up) {
      loop_.poll(std::chrono::milliseconds(10));
      if (loop_.now() >= next_tick_) on_tick(loop_.now());
    }
    for (auto& device : devices_) device.connection->abort();
    finished_ = loop_.now();
  }

  bool any_open() const {
    return std::any_of(devices_.begin(), devices_.end(),
                       [](const Device& device) { return device.connection->is_open(); });
  }

  FleetSummary summary() const {
    FleetSummary result;
    result.counters = counters_;
    result.counters.connected = 0;
    result.devices = devices_.size();
    if (counters_.sent > 0) {
      const TimePoint end = std::max(heartbeats_stopped_, last_ack_);
      result.duration_s = seconds_between(first_heartbeat_, end);
    }
    result.connect_s = seconds_between(started_, connect_phase_ended_ ? connect_phase_end_ : heartbeats_stopped_);
    result.run_s = seconds_between(started_, finished_);
    return result;
  }

  void report_error(std::size_t index, const std::string& what) {
    if (errors_shown_ >= error_lines_shown) return;
    ++errors_shown_;
    std::fprintf(stderr, "fleet-sim: device %s (%s): %s%s\n", device_name(index).c_str(), devices_[index].id.c_str(),
                 what.c_str(), errors_shown_ == error_lines_shown ? " (further errors are only counted)" : "");
  }

  const SimOptions& options_;
  const std::string payload_;  // of every heartbeat (or telemetry message)
  sockaddr_in broker_;
  EventLoop loop_;
  std::vector<Device> devices_;
  std::deque<PendingConnect> connect_queue_;
  std::priority_queue<ScheduledBeat, std::vector<ScheduledBeat>, std::greater<>> schedule_;
  std::priority_queue<ScheduledReply, std::vector<ScheduledReply>, std::greater<>> replies_due_;
  std::uint64_t commands_received_ = 0;
  std::uint64_t commands_succeeded_ = 0;
  std::uint64_t commands_failed_ = 0;
  std::deque<std::uint32_t> ready_;
  RateBudget connect_budget_;
  RateBudget heartbeat_budget_;
  std::mt19937_64 random_;
  const bool rate_mode_;
  const bool unthrottled_;
  const std::size_t max_handshaking_;

  Phase phase_ = Phase::running;
  std::size_t handshaking_ = 0;
  std::uint64_t total_inflight_ = 0;
  FleetCounters counters_;
  FleetCounters counters_at_last_tick_;
  int errors_shown_ = 0;

  TimePoint started_{};
  TimePoint run_end_{};
  TimePoint next_tick_{};
  std::optional<TimePoint> last_tick_time_;
  bool connect_phase_ended_ = false;
  TimePoint connect_phase_end_{};
  bool kill_done_ = false;
  TimePoint kill_at_{};
  TimePoint first_heartbeat_{};
  TimePoint last_send_{};
  TimePoint last_ack_{};
  TimePoint heartbeats_stopped_{};
  TimePoint finished_{};
};

}  // namespace

FleetSummary run_fleet(const SimOptions& options, const sockaddr_in& broker,
                       const std::vector<std::string>& device_ids) {
  Fleet fleet(options, broker, device_ids);
  return fleet.run();
}

}  // namespace fleet_sim
