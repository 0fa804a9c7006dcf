// Subscriber mode (see subscriber.hpp). Arrival lines are stamped when their
// packet is parsed and buffered, then written once per loop turn, so printing
// never delays the stamps of the messages behind it.
#include "subscriber.hpp"

#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "event_loop.hpp"
#include "mqtt_connection.hpp"
#include "progress.hpp"
#include "stop_signal.hpp"

namespace fleet_sim {
namespace {

void append_escaped(std::string& out, std::string_view text) {
  for (const char c : text) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else {
      out += c;
    }
  }
}

class Subscriber final : public ConnectionEvents {
 public:
  explicit Subscriber(const SimOptions& options) : options_(options) {
    ConnectionTimeouts timeouts;
    timeouts.connack = std::chrono::milliseconds(static_cast<long>(options.connect_timeout_s * 1000));
    connection_ = std::make_unique<MqttConnection>(loop_, *this, 0, timeouts);
  }

  int run(const sockaddr_in& broker) {
    loop_.refresh_now();
    mqtt::ConnectRequest request;
    request.client_id = options_.client_id_prefix + "sub-" + std::to_string(::getpid());
    request.keepalive_s = options_.keepalive_s;
    request.username = mqtt_username(options_, request.client_id);
    request.password = options_.password;
    std::string error;
    if (!connection_->open(broker, request, error)) {
      std::fprintf(stderr, "fleet-sim: subscriber: %s\n", error.c_str());
      return 1;
    }
    std::FILE* progress_stream = options_.print_arrivals ? stderr : stdout;
    const TimePoint connect_deadline =
        loop_.now() + std::chrono::milliseconds(static_cast<long>(options_.connect_timeout_s * 1000) + 1000);

    while (!failed_ && !stop_requested()) {
      const TimePoint now = loop_.now();
      if (!subscribed_) {
        if (now > connect_deadline) fail("no SUBACK in time");
      } else {
        if (now >= end_) break;
        if (options_.count > 0 && summary_.received >= options_.count) break;
        if (now >= next_tick_) {
          connection_->check_timers(now);
          if (!options_.quiet) {
            std::fprintf(progress_stream, "%s\n",
                         subscriber_progress_line(seconds_since_subscribed(now), summary_.received, received_at_tick_,
                                                  std::chrono::duration<double>(now - last_tick_).count())
                             .c_str());
            std::fflush(progress_stream);
          }
          received_at_tick_ = summary_.received;
          last_tick_ = now;
          next_tick_ += std::chrono::seconds(1);
        }
      }
      loop_.poll(std::chrono::milliseconds(50));
      write_arrivals();
    }

    const TimePoint finished = loop_.now();
    connection_->disconnect();
    const TimePoint give_up = loop_.now() + std::chrono::seconds(3);
    while (connection_->is_open() && loop_.now() < give_up) loop_.poll(std::chrono::milliseconds(20));
    connection_->abort();
    write_arrivals();

    if (!subscribed_) return 1;
    summary_.duration_s = seconds_since_subscribed(finished);
    std::printf("%s\n", subscriber_summary_json(summary_).c_str());
    std::fflush(stdout);
    return failed_ ? 1 : 0;
  }

  void on_connected(MqttConnection& connection) override {
    std::vector<mqtt::TopicFilter> filters;
    for (const auto& filter : options_.subscribe_filters) filters.push_back({filter, options_.qos});
    suback_id_ = connection.subscribe(filters);
    connection.flush();
  }

  void on_suback(MqttConnection&, const mqtt::Suback& suback) override {
    if (suback.packet_id != suback_id_) return;
    for (std::size_t i = 0; i < suback.return_codes.size(); ++i) {
      if (suback.return_codes[i] == mqtt::suback_failure) {
        fail("the broker refused the subscription to '" +
             (i < options_.subscribe_filters.size() ? options_.subscribe_filters[i] : std::string("?")) + "'");
        return;
      }
    }
    subscribed_ = true;
    subscribed_at_ = loop_.now();
    end_ = subscribed_at_ + std::chrono::milliseconds(static_cast<std::int64_t>(options_.duration_s * 1000));
    last_tick_ = subscribed_at_;
    next_tick_ = subscribed_at_ + std::chrono::seconds(1);
  }

  void on_message(MqttConnection&, const mqtt::PublishView& message) override {
    if (options_.skip_retained && message.retain) {
      ++summary_.retained_skipped;
      return;
    }
    const std::int64_t arrived = epoch_ms();
    if (summary_.received == 0) summary_.first_epoch_ms = arrived;
    summary_.last_epoch_ms = arrived;
    ++summary_.received;
    if (options_.print_arrivals) {
      arrivals_ += std::to_string(arrived);
      arrivals_ += ' ';
      arrivals_.append(message.topic);
      if (!message.payload.empty()) {
        arrivals_ += ' ';
        append_escaped(arrivals_, message.payload);
      }
      arrivals_ += '\n';
    }
  }

  void on_closed(MqttConnection&, CloseReason reason, std::string_view detail) override {
    if (reason == CloseReason::local_abort || reason == CloseReason::local_disconnect) return;
    fail(std::string(to_string(reason)) + (detail.empty() ? "" : ": " + std::string(detail)));
  }

 private:
  void fail(const std::string& why) {
    if (failed_) return;
    failed_ = true;
    std::fprintf(stderr, "fleet-sim: subscriber: %s\n", why.c_str());
  }

  double seconds_since_subscribed(TimePoint now) const {
    return std::chrono::duration<double>(now - subscribed_at_).count();
  }

  void write_arrivals() {
    if (arrivals_.empty()) return;
    std::fwrite(arrivals_.data(), 1, arrivals_.size(), stdout);
    std::fflush(stdout);
    arrivals_.clear();
  }

  const SimOptions& options_;
  EventLoop loop_;
  std::unique_ptr<MqttConnection> connection_;
  std::uint16_t suback_id_ = 0;
  bool subscribed_ = false;
  bool failed_ = false;
  TimePoint subscribed_at_{};
  TimePoint end_{};
  TimePoint last_tick_{};
  TimePoint next_tick_{};
  std::uint64_t received_at_tick_ = 0;
  SubscriberSummary summary_;
  std::string arrivals_;
};

}  // namespace

int run_subscriber(const SimOptions& options, const sockaddr_in& broker) {
  Subscriber subscriber(options);
  return subscriber.run(broker);
}

}  // namespace fleet_sim
