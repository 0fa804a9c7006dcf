// MQTT bulk registration (see mqtt_registration.hpp), on one event loop.
//
// A note on ordering: a reply can only be received by a client that is already
// subscribed, so a batch publishes its register requests only after the SUBACK
// for its reply topics. A batch ends when every device in it has a reply or its
// deadline passes; its subscriptions are then dropped and the next batch starts.
// At a deadline, devices still without a reply are asked again (registering is
// idempotent: a late duplicate gets the conflict reply with the same id), up to
// twice, before they count as failed.
#include "mqtt_registration.hpp"

#include <unistd.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <unordered_map>

#include "device_ids.hpp"
#include "event_loop.hpp"
#include "mqtt_connection.hpp"
#include "stop_signal.hpp"

namespace fleet_sim {
namespace {

constexpr int connect_attempts = 3;
constexpr int request_retries = 2;

class MqttRegistrar final : public ConnectionEvents {
 public:
  MqttRegistrar(const SimOptions& options, const sockaddr_in& broker, std::size_t devices)
      : options_(options), broker_(broker), devices_(devices), answered_(devices, false) {
    tally_.ids.assign(devices, "");
    hardware_ids_.reserve(devices);
    for (std::size_t index = 0; index < devices; ++index) {
      hardware_ids_.push_back(hardware_id(options.run_id, index));
      index_by_hardware_id_.emplace(hardware_ids_.back(), index);
    }
    reply_topic_head_ = options.prefix + "/hardware/";
  }

  RegistrationTally run() {
    const TimePoint started = Clock::now();
    loop_.refresh_now();
    const std::size_t batch_size = options_.register_batch;
    const std::size_t client_count = std::min(options_.register_parallel, (devices_ + batch_size - 1) / batch_size);
    for (std::size_t k = 0; k < client_count; ++k) {
      clients_.push_back(
          Client{std::make_unique<MqttConnection>(loop_, *this, k, timeouts()), std::nullopt, 0, false, {}});
    }
    for (auto& client : clients_) open_client(client);

    TimePoint last_report = loop_.now();
    while (answered_count_ < devices_ && !stop_requested()) {
      loop_.poll(std::chrono::milliseconds(50));
      const TimePoint now = loop_.now();
      bool any_alive = false;
      for (auto& client : clients_) {
        client.connection->check_timers(now);
        if (client.batch && client.batch->published && now > client.batch->deadline) {
          if (client.batch->retries < request_retries) {
            ++client.batch->retries;
            publish_requests(client, /*unanswered_only=*/true);
          } else {
            char why[96];
            std::snprintf(why, sizeof why, "no reply within %g s (asked %d times)", options_.register_timeout_s,
                          request_retries + 1);
            finish_batch(client, why);
            start_next_batch(client);
          }
        } else if (client.batch && now > client.batch->deadline) {
          finish_batch(client, "no SUBACK for the registration reply topics");
          start_next_batch(client);
        }
        if (!client.connection->is_open() && !client.finished && client.attempts < connect_attempts &&
            next_index_ < devices_ && now >= client.retry_at) {
          open_client(client);
        }
        if (client.connection->is_open() || (!client.finished && client.attempts < connect_attempts)) any_alive = true;
      }
      if (!any_alive && !has_open_batch()) break;
      if (!options_.quiet && now - last_report >= std::chrono::seconds(1)) {
        last_report = now;
        std::fprintf(stderr, "registering over mqtt: %zu/%zu\n", answered_count_, devices_);
      }
    }

    for (std::size_t index = 0; index < devices_; ++index) {
      if (!answered_[index])
        record(index, RegistrationReply{"", false,
                                        stop_requested() ? "registration interrupted" : "could not reach the broker"});
    }
    for (auto& client : clients_) {
      client.finished = true;
      client.connection->disconnect();
    }
    const TimePoint give_up = loop_.now() + std::chrono::seconds(2);
    while (loop_.now() < give_up && any_open()) loop_.poll(std::chrono::milliseconds(20));
    tally_.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    return std::move(tally_);
  }

  void on_connected(MqttConnection& connection) override {
    Client& client = clients_[connection.tag()];
    client.attempts = 0;
    start_next_batch(client);
  }

  void on_suback(MqttConnection& connection, const mqtt::Suback& suback) override {
    Client& client = clients_[connection.tag()];
    if (!client.batch || suback.packet_id != client.batch->suback_id) return;
    for (const auto code : suback.return_codes) {
      if (code == mqtt::suback_failure) {
        finish_batch(client, "the broker refused the subscription to the registration reply topic");
        start_next_batch(client);
        return;
      }
    }
    client.batch->published = true;
    publish_requests(client, /*unanswered_only=*/false);
  }

  void on_message(MqttConnection& connection, const mqtt::PublishView& message) override {
    constexpr std::string_view tail = "/registration";
    std::string_view topic = message.topic;
    if (topic.substr(0, reply_topic_head_.size()) != reply_topic_head_ ||
        topic.size() < reply_topic_head_.size() + tail.size() || topic.substr(topic.size() - tail.size()) != tail) {
      return;
    }
    topic.remove_prefix(reply_topic_head_.size());
    topic.remove_suffix(tail.size());
    const auto found = index_by_hardware_id_.find(std::string(topic));
    if (found == index_by_hardware_id_.end() || answered_[found->second]) return;
    const std::size_t index = found->second;
    record(index, parse_registration_reply(message.payload, 0));

    Client& client = clients_[connection.tag()];
    if (client.batch && index >= client.batch->first && index < client.batch->end && --client.batch->unanswered == 0) {
      finish_batch(client, "");
      start_next_batch(client);
    }
  }

  void on_closed(MqttConnection& connection, CloseReason reason, std::string_view detail) override {
    Client& client = clients_[connection.tag()];
    if (client.finished) return;
    std::string why = std::string("registration client: ") + std::string(to_string(reason));
    if (!detail.empty()) why += ": " + std::string(detail);
    if (client.batch) finish_batch(client, why);
    ++client.attempts;
    client.retry_at = loop_.now() + std::chrono::seconds(1);
    if (!options_.quiet) std::fprintf(stderr, "fleet-sim: %s\n", why.c_str());
  }

 private:
  struct Batch {
    std::size_t first = 0;
    std::size_t end = 0;
    std::size_t unanswered = 0;
    std::uint16_t suback_id = 0;
    bool published = false;  // SUBACK seen, requests sent
    int retries = 0;
    TimePoint deadline{};
  };
  struct Client {
    std::unique_ptr<MqttConnection> connection;
    std::optional<Batch> batch;
    int attempts = 0;
    bool finished = false;
    TimePoint retry_at{};
  };

  ConnectionTimeouts timeouts() const {
    ConnectionTimeouts result;
    result.connack = std::chrono::milliseconds(static_cast<long>(options_.connect_timeout_s * 1000));
    return result;
  }
  std::chrono::milliseconds register_timeout() const {
    return std::chrono::milliseconds(static_cast<long>(options_.register_timeout_s * 1000));
  }

  void open_client(Client& client) {
    mqtt::ConnectRequest request;
    request.client_id = options_.client_id_prefix + "fleet-sim-register-" + std::to_string(::getpid()) + "-" +
                        std::to_string(client.connection->tag());
    request.keepalive_s = options_.keepalive_s;
    request.username = mqtt_username(options_, request.client_id);
    request.password = options_.password;
    std::string error;
    if (!client.connection->open(broker_, request, error)) {
      ++client.attempts;
      client.retry_at = loop_.now() + std::chrono::seconds(1);
      if (!options_.quiet) std::fprintf(stderr, "fleet-sim: registration client: %s\n", error.c_str());
    }
  }

  void publish_requests(Client& client, bool unanswered_only) {
    for (std::size_t index = client.batch->first; index < client.batch->end; ++index) {
      if (unanswered_only && answered_[index]) continue;
      const std::string body = registration_body(device_name(index), options_.device_type, hardware_ids_[index]);
      client.connection->publish(reply_topic_head_ + hardware_ids_[index] + "/register", body, 1, false);
    }
    client.batch->deadline = loop_.now() + register_timeout();
    client.connection->flush();
  }

  void start_next_batch(Client& client) {
    if (next_index_ >= devices_) {
      client.finished = true;
      client.connection->disconnect();
      return;
    }
    Batch batch;
    batch.first = next_index_;
    batch.end = std::min(devices_, next_index_ + options_.register_batch);
    batch.unanswered = batch.end - batch.first;
    next_index_ = batch.end;
    std::vector<mqtt::TopicFilter> filters;
    for (std::size_t index = batch.first; index < batch.end; ++index) {
      filters.push_back({reply_topic_head_ + hardware_ids_[index] + "/registration", 1});
    }
    batch.suback_id = client.connection->subscribe(filters);
    batch.deadline = loop_.now() + register_timeout();
    client.batch = batch;
    client.connection->flush();
  }

  // Ends the client's batch: devices without a reply fail with `failure`.
  void finish_batch(Client& client, const std::string& failure) {
    const Batch batch = *client.batch;
    client.batch.reset();
    std::vector<std::string> filters;
    for (std::size_t index = batch.first; index < batch.end; ++index) {
      filters.push_back(reply_topic_head_ + hardware_ids_[index] + "/registration");
      if (!answered_[index]) record(index, RegistrationReply{"", false, failure});
    }
    if (client.connection->is_connected()) {
      client.connection->unsubscribe(filters);
      client.connection->flush();
    }
  }

  void record(std::size_t index, const RegistrationReply& reply) {
    answered_[index] = true;
    ++answered_count_;
    tally_.record(index, reply);
  }

  bool has_open_batch() const {
    for (const auto& client : clients_) {
      if (client.batch) return true;
    }
    return false;
  }
  bool any_open() const {
    for (const auto& client : clients_) {
      if (client.connection->is_open()) return true;
    }
    return false;
  }

  const SimOptions& options_;
  sockaddr_in broker_;
  std::size_t devices_;
  EventLoop loop_;
  std::vector<Client> clients_;
  std::vector<std::string> hardware_ids_;
  std::unordered_map<std::string, std::size_t> index_by_hardware_id_;
  std::string reply_topic_head_;
  std::vector<bool> answered_;
  std::size_t answered_count_ = 0;
  std::size_t next_index_ = 0;
  RegistrationTally tally_;
};

}  // namespace

RegistrationTally register_over_mqtt(const SimOptions& options, const sockaddr_in& broker, std::size_t devices) {
  MqttRegistrar registrar(options, broker, devices);
  return registrar.run();
}

}  // namespace fleet_sim
