// The service's second MQTT connection, for telemetry only (issue 14): it
// subscribes maestra/devices/+/telemetry/{metrics,events} at QoS 1 and hands
// every message to a callback (MqttLink::on_message, which parses and queues it
// for the telemetry writer). It publishes nothing and has no will.
//
// Why a connection of its own: on one connection a heartbeat waited behind every
// telemetry message the broker had queued for the service before it, in one TCP
// stream. On two, the broker queues them apart, and Paho's receive thread (one
// per process, for both connections) takes whichever socket is ready in turn.
// What that thread does with a telemetry message is a queue push: the parse and
// the hand-off to the telemetry writer run on this link's own thread (parser_),
// so a heartbeat waits behind no telemetry parse either. Past max_waiting
// messages waiting for that thread (it fell that far behind), new ones are
// dropped and counted (on_dropped: maestra_telemetry_dropped_total{reason="queue_full"}). Its client id is the service's with "-telemetry" appended; in secure
// mode it logs in with the service's account (its role already grants the
// telemetry topics). Its session persists like the main one's (24 h), so
// telemetry sent while the service restarts waits in the broker.
//
// Reconnecting: its own supervisor thread, as the main link's: tries every
// 250 ms to 1 s while the broker is away, on the same Paho client (the main link
// needs a fresh one for each connection because of a retried publish whose
// payload Paho had freed; this one never publishes). The filters are subscribed
// again after every connect (harmless when the session kept them), and a second
// after a refusal (secure mode, before the service's role is in place).
#pragma once
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <mqtt/async_client.h>

#include "core/config.hpp"

namespace maestra::mqtt_adapter {

class TelemetryLink {
 public:
  using Handler = std::function<void(mqtt::const_message_ptr)>;
  static constexpr std::size_t max_waiting = 100000;  // messages
  // `handler` runs on this link's parser thread, one message at a time;
  // `on_dropped` on Paho's thread, for a message dropped because max_waiting wait.
  TelemetryLink(const core::Config& config, std::vector<std::string> filters, Handler handler,
                std::function<void()> on_dropped);
  ~TelemetryLink();
  TelemetryLink(const TelemetryLink&) = delete;
  TelemetryLink& operator=(const TelemetryLink&) = delete;

  // Connects in the background (and again after every loss). Called by the main
  // link once it is connected (in secure mode: once the service's role is in
  // place, so these subscriptions are not refused); later calls do nothing.
  void start();
  void stop();
  // Connected, and the broker confirmed every subscription.
  bool subscribed() const { return subscribed_; }
  const std::string& client_id() const { return client_id_; }

 private:
  class SubscribeListener;
  void supervise();
  bool connect_once();
  void subscribe();
  void parse_loop();

  const core::Config& config_;
  std::vector<std::string> filters_;
  Handler handler_;
  std::string client_id_;
  std::unique_ptr<SubscribeListener> listener_;
  std::unique_ptr<mqtt::async_client> client_;
  std::atomic<bool> subscribed_{false};
  std::atomic<int> pending_{0};
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::condition_variable cv_;
  bool lost_ = false;
  bool refused_ = false;  // a subscription was refused: tried again a second later
  std::thread supervisor_;

  std::function<void()> on_dropped_;
  std::mutex waiting_mutex_;
  std::condition_variable waiting_cv_;
  std::vector<mqtt::const_message_ptr> waiting_;  // received, for the parser thread
  bool parser_idle_ = false;
  bool parser_stopping_ = false;
  std::thread parser_;
};

}  // namespace maestra::mqtt_adapter
