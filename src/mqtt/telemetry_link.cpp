// The telemetry connection (see telemetry_link.hpp): Paho wiring, its
// supervisor (connect, wait for the loss, try again) and its subscriptions.
#include "mqtt/telemetry_link.hpp"
#include "mqtt/connect_options.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "service/log.hpp"

namespace maestra::mqtt_adapter {


class TelemetryLink::SubscribeListener : public mqtt::iaction_listener {
 public:
  explicit SubscribeListener(TelemetryLink& link) : link_(link) {}
  void on_success(const mqtt::token& tok) override {
    // MQTT v5: a SUBACK can refuse the filter (reason code 0x80 and up).
    int code = tok.get_reason_code();
    try {
      const auto response = tok.get_subscribe_response();
      for (const auto c : response.get_reason_codes()) code = std::max(code, static_cast<int>(c));
    } catch (const std::exception&) {
    }
    if (code >= 0x80) return refused(code);
    if (--link_.pending_ == 0) link_.subscribed_ = true;
  }
  void on_failure(const mqtt::token& tok) override {
    // A refusal carries a reason code; without one the connection went first
    // (and the next one subscribes again).
    if (tok.get_reason_code() >= 0x80) refused(tok.get_reason_code());
  }

 private:
  void refused(int code) {
    service::log_error("mqtt_subscribe_refused", {{"client_id", link_.client_id_}, {"reason_code", std::to_string(code)}});
    {
      std::lock_guard lock(link_.mutex_);
      link_.refused_ = true;
    }
    link_.cv_.notify_all();
  }

 private:
  TelemetryLink& link_;
};

TelemetryLink::TelemetryLink(const core::Config& config, std::vector<std::string> filters, Handler handler,
                             std::function<void()> on_dropped)
    : config_(config), filters_(std::move(filters)), handler_(std::move(handler)),
      client_id_(config.mqtt_client_id + "-telemetry"), listener_(std::make_unique<SubscribeListener>(*this)),
      on_dropped_(std::move(on_dropped)) {
  // Paho C's trace level is set once for the process by MqttLink (the main link).
  client_ = std::make_unique<mqtt::async_client>(config_.mqtt_url, client_id_, mqtt::create_options(MQTTVERSION_5));
  client_->set_message_callback([this](mqtt::const_message_ptr msg) {
    // On Paho's receive thread (shared with the main connection): a push, no more.
    bool wake = false;
    {
      std::lock_guard lock(waiting_mutex_);
      if (waiting_.size() < max_waiting) {
        waiting_.push_back(std::move(msg));  // (msg is empty now)
        wake = parser_idle_;
        parser_idle_ = false;
      }
    }
    if (msg) {
      if (on_dropped_) on_dropped_();
      return;
    }
    if (wake) waiting_cv_.notify_one();
  });
  client_->set_connection_lost_handler([this](const std::string& cause) {
    subscribed_ = false;
    if (!stopping_)
      service::log_warn("mqtt_connection_lost",
                        {{"client_id", client_id_}, {"cause", cause.empty() ? "closed by the broker or the network" : cause}});
    {
      std::lock_guard lock(mutex_);
      lost_ = true;
    }
    cv_.notify_all();
  });
}

TelemetryLink::~TelemetryLink() { stop(); }

void TelemetryLink::start() {
  if (supervisor_.joinable() || stopping_) return;
  parser_ = std::thread([this] { parse_loop(); });
  supervisor_ = std::thread([this] { supervise(); });
}

void TelemetryLink::parse_loop() {
  std::vector<mqtt::const_message_ptr> batch;
  while (true) {
    {
      std::unique_lock lock(waiting_mutex_);
      parser_idle_ = true;
      waiting_cv_.wait(lock, [&] { return !waiting_.empty() || parser_stopping_; });
      parser_idle_ = false;
      if (waiting_.empty()) return;  // stopping, and everything received was handed on
      batch.swap(waiting_);
    }
    for (auto& msg : batch) handler_(std::move(msg));
    batch.clear();
  }
}

void TelemetryLink::stop() {
  if (stopping_.exchange(true)) return;
  {
    std::lock_guard lock(mutex_);
  }
  cv_.notify_all();
  if (supervisor_.joinable()) supervisor_.join();
  try {
    if (client_->is_connected()) client_->disconnect(std::chrono::seconds(1))->wait_for(std::chrono::seconds(2));
  } catch (const mqtt::exception&) {
  }
  subscribed_ = false;
  // What was received is handed on before the parser stops (the telemetry
  // writer, stopped after this link, stores it).
  {
    std::lock_guard lock(waiting_mutex_);
    parser_stopping_ = true;
  }
  waiting_cv_.notify_all();
  if (parser_.joinable()) parser_.join();
}

void TelemetryLink::supervise() {
  constexpr auto first_backoff = std::chrono::milliseconds(250);
  constexpr auto max_backoff = std::chrono::milliseconds(1000);
  auto backoff = first_backoff;
  while (!stopping_) {
    if (connect_once()) {
      backoff = first_backoff;
      std::unique_lock lock(mutex_);
      while (true) {
        cv_.wait(lock, [&] { return lost_ || refused_ || stopping_.load(); });
        if (stopping_) return;
        if (lost_) break;
        refused_ = false;  // refused: subscribe again a second later, on the same connection
        if (cv_.wait_for(lock, std::chrono::seconds(1), [&] { return lost_ || stopping_.load(); })) continue;
        lock.unlock();
        subscribe();
        lock.lock();
      }
    }
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, backoff, [&] { return stopping_.load(); });
    backoff = std::min(backoff * 2, max_backoff);
  }
}

bool TelemetryLink::connect_once() {
  mqtt::connect_options_builder builder;
  set_service_connect_options(builder, config_, false);
  {
    std::lock_guard lock(mutex_);
    lost_ = false;
    refused_ = false;
  }
  try {
    auto token = client_->connect(builder.finalize());
    if (!token->wait_for(std::chrono::seconds(4)) || !client_->is_connected()) {
      try {
        client_->disconnect()->wait_for(std::chrono::seconds(1));
      } catch (const mqtt::exception&) {
      }
      return false;
    }
  } catch (const mqtt::exception&) {
    return false;  // the main link logs the broker being away
  }
  subscribe();
  return true;
}

void TelemetryLink::subscribe() {
  subscribed_ = false;
  pending_ = static_cast<int>(filters_.size());
  try {
    // One SUBSCRIBE per filter (see MqttLink::on_connected).
    for (const auto& filter : filters_) client_->subscribe(filter, 1, nullptr, *listener_);
    service::log_info("mqtt_connected", {{"url", core::redact_url(config_.mqtt_url)}, {"client_id", client_id_}});
  } catch (const mqtt::exception& e) {
    service::log_error("mqtt_subscribe_failed", {{"client_id", client_id_}, {"error", e.what()}});
  }
}

}  // namespace maestra::mqtt_adapter
