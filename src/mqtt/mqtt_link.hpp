// The MQTT adapter (Eclipse Paho C++, MQTT v5): subscribes to device topics,
// translates messages into Fleet calls, and publishes retained status documents,
// the fleet summary and the service's own birth/will. It decides nothing: topics
// come from core/topics, payload rules from core/requests and core/presence.
//
// Threading: Paho calls on_message on its own thread. That callback never blocks
// and never touches the database: heartbeats and presence go to the fleet
// owner's queue, registrations to this adapter's registration worker. Publishing
// never blocks either: messages queue for this adapter's sender thread, so the
// fleet owner stores the next batch of transitions while the last one is sent.
#pragma once
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include <mqtt/async_client.h>

#include "core/config.hpp"
#include "core/log_budget.hpp"
#include "core/topics.hpp"
#include "mqtt/dynamic_security.hpp"
#include "mqtt/telemetry_link.hpp"
#include "service/commands.hpp"
#include "service/fleet.hpp"
#include "service/metrics.hpp"
#include "service/telemetry.hpp"

namespace maestra::mqtt_adapter {

class MqttLink : public service::StatusPublisher, public service::CommandPublisher {
 public:
  MqttLink(const core::Config& config, service::Fleet& fleet, service::Metrics& metrics);
  ~MqttLink() override;

  // Starts the connection supervisor: connects, and reconnects after every loss,
  // with backoff (see "A note on reconnecting" in mqtt_link.cpp).
  void start();
  // Publishes the fleet's offline status and disconnects cleanly.
  void stop();
  // Connected and subscribed (the broker confirmed every subscription), and so
  // is the telemetry connection if there is one.
  bool connected() const { return connected_ && subscribed_ && (!telemetry_link_ || telemetry_link_->subscribed()); }
  // Telemetry topics are subscribed, on a second connection of their own
  // (TelemetryLink), and handed to `telemetry` once this is set (before start()).
  void set_telemetry(service::Telemetry* telemetry) { telemetry_ = telemetry; }
  // Secure mode: per-device broker accounts (null in open mode).
  service::DeviceAccess* device_access() { return dynamic_security_.get(); }

  void publish_status(const store::StoredStatus& status) override;
  void clear_device(const core::DeviceId& id) override;
  void publish_summary(const core::FleetCounts& counts, core::TimePoint now) override;

  // Commands to devices (service/commands): replies go to `commands`, and so
  // do the broker's acks of commands and every new connection.
  void set_commands(service::Commands* commands) { commands_ = commands; }
  void publish_command(const core::Command& command, core::TimePoint now) override;
  void publish_command_state(const core::Command& command) override;

 private:
  struct RegistrationJob {
    std::string hardware_id;
    std::string payload;
    std::string reply_topic;
    std::string correlation;
    bool has_correlation = false;
  };
  class AckListener;
  class SubscribeListener;

  std::shared_ptr<mqtt::async_client> client() const {
    std::lock_guard lock(client_mutex_);
    return client_;
  }
  // Replaces the Paho client with a fresh one (no state of earlier connections).
  void make_client();
  void supervise();
  bool connect_once(bool clean_start);
  void on_connected(bool session_present);
  void on_connection_lost(const std::string& cause);
  bool prepare_secure_mode();
  // Sleeps up to `how_long`, waking early when stopping.
  void pause(std::chrono::milliseconds how_long);
  void on_message(mqtt::const_message_ptr msg);
  void handle_heartbeat(std::string_view level, const std::string& payload);
  void handle_presence(std::string_view level, const std::string& payload, bool retained);
  void handle_register(std::string_view level, const mqtt::const_message_ptr& msg);
  // Parses a telemetry message and queues it for the telemetry writer (never waits).
  void handle_telemetry(const core::TelemetryTopic& topic, const std::string& payload);
  void handle_reply(const core::ReplyTopic& topic, const std::string& payload);
  void registration_loop();
  void log_registration(const std::string& hardware_id, const core::Result<service::RegisteredDevice>& record);
  void reply(const RegistrationJob& job, const std::string& payload);
  void reject(service::Rejection why, std::string_view topic, std::string_view detail);
  void publish(const std::string& topic, const std::string& payload, bool retained);
  // A message to publish: ready, or a status document the sender formats.
  struct Outgoing {
    Outgoing(mqtt::const_message_ptr m, std::optional<store::StoredStatus> s, std::optional<core::DeviceId> c,
             std::optional<core::CommandId> cmd = std::nullopt)
        : msg(std::move(m)), status(std::move(s)), cleared(c), command(cmd) {}
    mqtt::const_message_ptr msg;
    std::optional<store::StoredStatus> status;
    std::optional<core::DeviceId> cleared;  // the last clear of a deleted device's topics
    std::optional<core::CommandId> command;  // a command to a device: its PUBACK moves it to sent
  };
  // Every QoS 1 publish goes through here: queued in order for the sender
  // thread, which keeps at most `inflight_limit_` waiting for their PUBACK (see
  // "A note on flow control"). Never blocks the caller.
  void send(Outgoing out);
  void sender_loop();
  void transmit(Outgoing& out, mqtt::async_client& client);
  void acknowledged();

  const core::Config& config_;
  service::Fleet& fleet_;
  service::Metrics& metrics_;
  service::Commands* commands_ = nullptr;
  core::Topics topics_;
  service::Telemetry* telemetry_ = nullptr;
  // The telemetry connection (made by start() when telemetry_ is set, started by
  // on_connected): its messages come to on_message on its own parser thread; on
  // Paho's receive thread a telemetry message costs a queue push.
  std::unique_ptr<TelemetryLink> telemetry_link_;
  // The Paho client: a new one for every connection after a lost one (see "A
  // note on reconnecting"); swapped under client_mutex_, used through client().
  std::shared_ptr<mqtt::async_client> client_;
  mutable std::mutex client_mutex_;
  std::atomic<std::uint64_t> generation_{0};  // of client_: callbacks of an older client are ignored
  std::unique_ptr<AckListener> acks_;
  std::unique_ptr<DynamicSecurity> dynamic_security_;
  std::atomic<bool> connected_{false};
  std::atomic<bool> subscribed_{false};
  std::atomic<int> pending_subscriptions_{0};
  std::unique_ptr<SubscribeListener> subscribed_listener_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::thread connector_;
  // The supervisor waits here for a lost connection (or stop).
  std::mutex link_mutex_;
  std::condition_variable link_cv_;
  bool link_lost_ = false;
  bool secure_ready_ = false;  // secure mode: the service's broker role is in place
  std::atomic<bool> broker_gave_reason_{false};  // the broker sent DISCONNECT with a reason code
  bool closed_silently_ = false;                  // supervisor only
  bool session_was_present_ = false;              // supervisor only: the last CONNACK's flag
  std::chrono::steady_clock::time_point last_silent_close_{};

  std::mutex registrations_mutex_;
  std::condition_variable registrations_cv_;
  std::deque<RegistrationJob> registrations_;
  std::thread registrar_;
  core::LogBudget registration_log_{20, std::chrono::seconds{1}};  // registration worker only
  // A broker down for an hour is retried every second: a few lines a minute.
  core::LogBudget connect_failed_log_{5, std::chrono::seconds{60}};  // supervisor thread only
  void log_connect_failed(const std::string& error);

  std::mutex out_mutex_;
  std::condition_variable out_cv_;
  std::deque<Outgoing> out_queue_;
  int inflight_ = 0;
  int inflight_limit_ = 65535;
  bool link_up_ = false;  // connected: the sender hands messages to Paho only then
  bool sender_waiting_ = false;
  bool sender_stopping_ = false;
  std::thread sender_;

  std::mutex log_mutex_;
  std::array<std::chrono::steady_clock::time_point, service::rejection_names.size()> last_rejection_log_{};
};

}  // namespace maestra::mqtt_adapter
