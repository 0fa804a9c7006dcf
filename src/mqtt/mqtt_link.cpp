// Paho wiring, topic dispatch, registration replies and status publishing.
//
// A note on flow control: Paho C 1.3.12 (Debian 12) lets at most the broker's
// Receive Maximum of QoS 1 messages wait for a PUBACK (Mosquitto's default is 20),
// queues the rest, and does not wake its send thread when a PUBACK frees a slot:
// the queued messages wait up to a second (fixed upstream in 1.4, paho.mqtt.c
// #1457). Its command queue also refuses more than max_buffered_messages. So this
// adapter keeps its own queue and its own sender thread, which hands Paho no more
// than the Receive Maximum at a time and is woken when a PUBACK frees a slot.
// A publish costs the caller a queue push: Paho's publish call takes the lock its
// network threads hold while they write (about 40 us per message here), which
// the fleet owner would otherwise pay for every status it stores.
//
// A note on Nagle: Paho C 1.3 leaves TCP_NODELAY off on its socket, so a
// publish written while an earlier one is unacknowledged at the TCP level
// waits for that ACK, which the broker's side may delay (Linux: 40 ms). A
// command's PUBACK took p50 12 ms, p99 40 ms that way at 100 commands/s; the
// status messages waited the same. After every connect the adapter turns
// Nagle off on this process's TCP connections to the broker's port
// (disable_nagle_towards). A single will's offline status took 43 ms the same
// way (bench/single_wills.py).
//
// A note on reconnecting: the adapter, not Paho, reconnects (Paho's automatic
// reconnect is off), so every connection's CONNACK is read: its Receive Maximum,
// and whether the broker still held the service's session. Without it (a broker
// that crashed before saving, a new broker, an expired session) every device's
// status is published again, not only the outbox. Every reconnect uses a new
// Paho client: Paho C 1.3.12 frees the payload of a publish whose write failed
// as the socket died, keeps it among the messages it retries, and retried those
// freed bytes on the restored session, which Mosquitto 2.0.11 closed as a
// malformed packet on every reconnect. The broker keeps the session; the
// outbox republishes what it had not acknowledged. As a second line, a broker
// that still refuses the service right after connecting is logged with its
// reason code, and after two connections in a row that each came up at the
// first try and died within 3 s, or one restored session that died within a
// second, the next one starts clean, dropping the broker's session too.
// Nothing is handed to Paho while the link is down: the queue waits, and the
// outbox covers what it held.
#include "mqtt/mqtt_link.hpp"
#include "mqtt/connect_options.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include <chrono>
#include <vector>

#include "core/commands.hpp"
#include "core/documents.hpp"
#include "core/presence.hpp"
#include "core/requests.hpp"
#include "service/log.hpp"

namespace maestra::mqtt_adapter {

using service::Rejection;

namespace {
constexpr std::size_t max_pending_registrations = 10000;
// A connection that dies sooner than this after it came up counts as a quick
// drop; after this many in a row the next connection starts clean.
constexpr auto quick_drop = std::chrono::seconds(3);
constexpr int quick_drops_before_clean_start = 2;

std::chrono::milliseconds elapsed_ms(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - since);
}

// The user context of a publish the fleet wants to hear acknowledged: a status
// document (id, seq), or the last of a deleted device's cleared topics.
struct PublishedStatus {
  core::DeviceId id;
  std::int64_t seq;
  bool clear = false;
  bool command = false;  // id is a command's
};
}  // namespace

// Reports broker acknowledgements of retained status messages to the fleet's
// outbox; the user context of each publish carries (id, seq).
class MqttLink::AckListener : public mqtt::iaction_listener {
 public:
  AckListener(MqttLink& link, service::Fleet& fleet) : link_(link), fleet_(fleet) {}
  void on_success(const mqtt::token& tok) override {
    std::unique_ptr<PublishedStatus> status(static_cast<PublishedStatus*>(tok.get_user_context()));
    if (status && status->command) {
      if (link_.commands_) link_.commands_->command_acked(status->id);
    } else if (status && status->clear)
      fleet_.clear_acked(status->id);
    else if (status)
      fleet_.status_acked(status->id, status->seq);
    link_.acknowledged();
  }
  void on_failure(const mqtt::token& tok) override {
    // Left unacknowledged: the outbox republishes it after the next connect.
    delete static_cast<PublishedStatus*>(tok.get_user_context());
    link_.acknowledged();
  }

 private:
  MqttLink& link_;
  service::Fleet& fleet_;
};

// Marks the link ready once the broker has confirmed every subscription.
class MqttLink::SubscribeListener : public mqtt::iaction_listener {
 public:
  explicit SubscribeListener(MqttLink& link) : link_(link) {}
  void on_success(const mqtt::token&) override {
    if (--link_.pending_subscriptions_ == 0) {
      link_.subscribed_ = true;
      link_.metrics_.mqtt_connected = 1;
    }
  }
  void on_failure(const mqtt::token& tok) override {
    // A refusal carries a reason code (0x80 and up); no code means the
    // connection went before the SUBACK, and the next connection subscribes again.
    if (tok.get_reason_code() >= 0x80)
      service::log_error("mqtt_subscribe_refused", {{"reason_code", std::to_string(tok.get_reason_code())}});
  }

 private:
  MqttLink& link_;
};

MqttLink::MqttLink(const core::Config& config, service::Fleet& fleet, service::Metrics& metrics)
    : config_(config), fleet_(fleet), metrics_(metrics), topics_(config.topic_prefix),
      acks_(std::make_unique<AckListener>(*this, fleet)),
      subscribed_listener_(std::make_unique<SubscribeListener>(*this)) {
  // Paho C records, by default, a trace entry for every function it enters at
  // its "minimum" level and formats one (vsnprintf) for every packet at its
  // "protocol" level, into an in-memory ring nobody reads here (no trace
  // callback, no MQTT_C_CLIENT_TRACE), each under a global mutex: in a profile
  // of the receive thread at ~20,000 messages/s, about 7 % of its samples were
  // that formatting and its locking. From "error" up only, for the whole process
  // (this link and the telemetry link). MQTT_C_CLIENT_TRACE_LEVEL, when set, wins.
  if (std::getenv("MQTT_C_CLIENT_TRACE_LEVEL") == nullptr) MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_ERROR);
  make_client();
  if (config_.secure) dynamic_security_ = std::make_unique<DynamicSecurity>([this] { return client(); }, topics_);
}

void MqttLink::make_client() {
  auto fresh = std::make_shared<mqtt::async_client>(config_.mqtt_url, config_.mqtt_client_id,
                                                    mqtt::create_options(MQTTVERSION_5, 1000000));
  const auto generation = ++generation_;
  fresh->set_message_callback([this](mqtt::const_message_ptr msg) { on_message(std::move(msg)); });
  fresh->set_connection_lost_handler([this, generation](const std::string& cause) {
    if (generation == generation_) on_connection_lost(cause);
  });
  // MQTT v5: the broker says why it closes the connection (DISCONNECT with a
  // reason code) before it does; Paho reports the loss itself separately.
  fresh->set_disconnected_handler([this, generation](const mqtt::properties& props, mqtt::ReasonCode code) {
    if (generation != generation_) return;
    broker_gave_reason_ = true;
    std::string reason;
    try {
      if (props.contains(mqtt::property::REASON_STRING))
        reason = mqtt::get<std::string>(props, mqtt::property::REASON_STRING);
    } catch (const std::exception&) {
    }
    service::log_warn("mqtt_disconnected_by_broker",
                      {{"reason_code", std::to_string(static_cast<int>(code))},
                       {"reason", mqtt::exception::reason_code_str(static_cast<int>(code))},
                       {"broker_says", reason}});
  });
  std::shared_ptr<mqtt::async_client> old;
  {
    std::lock_guard lock(client_mutex_);
    old.swap(client_);
    client_ = std::move(fresh);
  }
  // `old` (if any) is destroyed here or when the sender lets go of it; its
  // unfinished publishes fail into the AckListener and stay in the outbox.
}

MqttLink::~MqttLink() {
  stop();
  // The sender has stopped, so nothing queued is sent any more; the client goes
  // before the listeners: while it is destroyed Paho may still complete pending
  // tokens into them.
  {
    std::lock_guard lock(out_mutex_);
    out_queue_.clear();
  }
  std::lock_guard lock(client_mutex_);
  client_.reset();
}

void MqttLink::start() {
  // The telemetry connection starts once this one is up (on_connected).
  if (telemetry_ && !telemetry_link_)
    telemetry_link_ = std::make_unique<TelemetryLink>(
        config_, core::telemetry_subscriptions(topics_.prefix()),
        [this](mqtt::const_message_ptr msg) { on_message(std::move(msg)); },
        [this] { telemetry_->dropped_queue_full(); });
  sender_ = std::thread([this] { sender_loop(); });
  registrar_ = std::thread([this] { registration_loop(); });
  connector_ = std::thread([this] { supervise(); });
}

void MqttLink::pause(std::chrono::milliseconds how_long) {
  std::unique_lock lock(link_mutex_);
  link_cv_.wait_for(lock, how_long, [&] { return stopping_.load(); });
}

void MqttLink::supervise() {
  // A connection attempt to a broker that is down costs a refused TCP connect:
  // try every second at most, so the service hears its devices again within a
  // second of the broker's return.
  constexpr auto first_backoff = std::chrono::milliseconds(250);
  constexpr auto max_backoff = std::chrono::milliseconds(1000);
  auto backoff = first_backoff;
  int quick_drops = 0;
  int attempts = 0;  // connection attempts since the last connection was lost
  while (!stopping_) {
    const bool clean_start = quick_drops >= quick_drops_before_clean_start;
    ++attempts;
    if (clean_start)
      service::log_warn("mqtt_clean_start", {{"reason", std::to_string(quick_drops) +
                                                            " connections in a row lost within 3 s of connecting"},
                                             {"effect", "the broker's session for the service and Paho's unacknowledged "
                                                        "publishes are dropped; every status is published again"}});
    broker_gave_reason_ = false;
    if (!connect_once(clean_start)) {
      pause(backoff);
      backoff = std::min(backoff * 2, max_backoff);
      continue;
    }
    if (backoff == first_backoff && closed_silently_) {
      // The broker closed the last connection without a word and took this one at
      // once: what Mosquitto does when another client connects with our id.
      const auto now = std::chrono::steady_clock::now();
      const bool again = now - last_silent_close_ < std::chrono::seconds(60);
      last_silent_close_ = now;
      (again ? service::log_error : service::log_warn)(
          again ? "mqtt_client_id_conflict" : "mqtt_connection_closed_by_broker",
          {{"client_id", config_.mqtt_client_id},
           {"note", "the broker closed the connection without a reason and accepted a new one at once; the usual "
                    "cause is another client connecting with this client id, which takes the connection over (two "
                    "fleet-managers with the same MAESTRA_MQTT_CLIENT_ID knock each other off)"}});
    }
    // A broker that was up all along took this connection at the first try; one
    // that was restarting refused some tries first.
    const bool broker_was_up = attempts == 1;
    attempts = 0;
    backoff = first_backoff;
    const auto up_since = std::chrono::steady_clock::now();
    {
      std::unique_lock lock(link_mutex_);
      link_cv_.wait(lock, [&] { return link_lost_ || stopping_; });
      if (stopping_) return;
    }
    const auto lasted = elapsed_ms(up_since);
    // (A connection closed within 200 ms is a refusal of what it sent, not a
    // takeover by another client: see the clean start below.)
    closed_silently_ = !broker_gave_reason_ && !stopping_ && lasted >= std::chrono::milliseconds(200);
    // A quick drop counts only when the broker had been up: a broker restarting
    // again and again is an outage, not a refusal of what the session holds.
    quick_drops = lasted < quick_drop && broker_was_up ? quick_drops + 1 : 0;
    // A restored session refused within a second of connecting (what Mosquitto
    // 2.0.11 does when it calls a packet of it malformed) goes clean at once.
    if (broker_was_up && session_was_present_ && lasted < std::chrono::seconds(1))
      quick_drops = quick_drops_before_clean_start;
    if (clean_start) quick_drops = 0;  // clean state did not help either: start counting again
    service::log_info("mqtt_reconnecting", {{"connection_lasted_ms", std::to_string(lasted.count())},
                                            {"retry_in_ms", std::to_string(backoff.count())}});
    // A new Paho client, so that nothing of the lost connection is retried on
    // the next one: Paho C 1.3.12 frees the payload of a publish whose write
    // failed as the socket died but keeps it among the messages to retry, and
    // retried that garbage on the restored session (Mosquitto: "malformed
    // packet", a loop). The broker keeps the session; the outbox republishes
    // what was not acknowledged.
    make_client();
    pause(backoff);
  }
}

bool MqttLink::connect_once(bool clean_start) {
  auto will = mqtt::message(topics_.fleet_status(), core::fleet_status_json(false, std::nullopt), 1, true);
  mqtt::connect_options_builder builder;
  set_service_connect_options(builder, config_, clean_start);
  builder.max_inflight(65535).will(std::move(will));
  {
    std::lock_guard lock(link_mutex_);
    link_lost_ = false;
  }
  bool session_present = false;
  const auto client = this->client();
  try {
    auto token = client->connect(builder.finalize());
    if (!token->wait_for(std::chrono::seconds(4)) || !client->is_connected()) {
      log_connect_failed("no CONNACK within 4 s");
      try {
        client->disconnect()->wait_for(std::chrono::seconds(1));
      } catch (const mqtt::exception&) {
      }
      return false;
    }
    const auto& response = token->get_connect_response();
    session_present = response.is_session_present();
    session_was_present_ = session_present;
    const auto& props = response.get_properties();
    std::lock_guard lock(out_mutex_);
    inflight_limit_ = props.contains(mqtt::property::RECEIVE_MAXIMUM)
                          ? std::max(1, mqtt::get<int>(props, mqtt::property::RECEIVE_MAXIMUM))
                          : 65535;
  } catch (const mqtt::exception& e) {
    log_connect_failed(e.what());
    return false;
  }
  if (dynamic_security_) {
    // The plugin's answers arrive here; subscribed on every connection (a clean
    // start drops the subscription).
    bool ready = false;
    try {
      client->subscribe(DynamicSecurity::response_topic, 1)->wait_for(std::chrono::seconds(5));
      ready = secure_ready_ || prepare_secure_mode();
    } catch (const mqtt::exception& e) {
      service::log_warn("secure_mode_setup", {{"error", e.what()}});
    }
    if (!ready) {
      // Granting the service its role makes the broker drop the connection so
      // the role applies (wait for that, bounded); either way the next
      // connection checks again.
      bool dropped = false;
      {
        std::unique_lock lock(link_mutex_);
        dropped = link_cv_.wait_for(lock, std::chrono::seconds(3), [&] { return link_lost_ || stopping_.load(); });
      }
      if (!dropped) {
        try {
          client->disconnect()->wait_for(std::chrono::seconds(2));
        } catch (const mqtt::exception&) {
        }
      }
      return false;
    }
  }
  on_connected(session_present);
  return true;
}

void MqttLink::log_connect_failed(const std::string& error) {
  const auto now = std::chrono::time_point_cast<core::Millis>(std::chrono::system_clock::now());
  const auto budget = connect_failed_log_.take(now);
  if (budget.held_back)
    service::log_warn("mqtt_connect_failures_not_logged",
                      {{"count", std::to_string(budget.held_back)}, {"note", "at most 5 failed attempts are logged a minute"}});
  if (budget.write)
    service::log_warn("mqtt_connect_failed", {{"url", core::redact_url(config_.mqtt_url)}, {"error", error}});
}

bool MqttLink::prepare_secure_mode() {
  // Runs on the supervisor thread (it waits for the broker's answers). The first
  // time, the service grants itself its publishing role; the broker then
  // disconnects it so the role applies, and the next connection checks again.
  auto ready = dynamic_security_->ensure_service_roles(config_.mqtt_username, config_.dashboard_username,
                                                       config_.dashboard_password);
  if (!ready) {
    service::log_warn("secure_mode_setup", {{"state", ready.error().detail}});
    return false;
  }
  secure_ready_ = true;
  service::log_info("secure_mode_ready", {{"service_role", "maestra-service"},
                                          {"dashboard_account", config_.dashboard_username.empty() ? "(none)" : config_.dashboard_username}});
  return true;
}

void MqttLink::on_connection_lost(const std::string& cause) {
  // On Paho's thread: note it and wake the supervisor, which reconnects.
  connected_ = false;
  subscribed_ = false;
  metrics_.mqtt_connected = 0;
  {
    std::lock_guard lock(out_mutex_);
    link_up_ = false;
  }
  service::log_warn("mqtt_connection_lost", {{"cause", cause.empty() ? "closed by the broker or the network" : cause}});
  fleet_.broker_disconnected();
  if (commands_) commands_->broker_disconnected();
  {
    std::lock_guard lock(link_mutex_);
    link_lost_ = true;
  }
  link_cv_.notify_all();
}

namespace {

// The port of a broker URL ("tcp://host:1883", "ssl://[::1]:8883"), or -1.
int url_port(const std::string& url) {
  const auto colon = url.rfind(':');
  if (colon == std::string::npos || colon + 1 >= url.size()) return -1;
  int port = 0;
  for (std::size_t i = colon + 1; i < url.size(); ++i) {
    if (url[i] < '0' || url[i] > '9' || port > 65535) return -1;
    port = port * 10 + (url[i] - '0');
  }
  return port <= 65535 ? port : -1;
}

// Paho C 1.3.12 leaves Nagle's algorithm on for its socket. A status published
// right after the PUBACK of the will it answers then waits for the broker's
// delayed ACK of that PUBACK: 40 ms on Linux, every time (measured with
// bench/single_wills.py: will -> offline p50 43 ms with Nagle, see BENCHMARKS.md).
// Paho offers no socket option, so this finds the process's TCP sockets whose
// peer is the broker's port and turns Nagle off on them (harmless on any other).
int disable_nagle_towards(int port) {
  if (port <= 0) return 0;
  int changed = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    int fd = -1;
    try {
      fd = std::stoi(entry.path().filename().string());
    } catch (const std::exception&) {
      continue;
    }
    int type = 0;
    socklen_t type_len = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len) != 0 || type != SOCK_STREAM) continue;
    sockaddr_storage peer{};
    socklen_t peer_len = sizeof(peer);
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) continue;
    int peer_port = -1;
    if (peer.ss_family == AF_INET) peer_port = ntohs(reinterpret_cast<const sockaddr_in&>(peer).sin_port);
    if (peer.ss_family == AF_INET6) peer_port = ntohs(reinterpret_cast<const sockaddr_in6&>(peer).sin6_port);
    if (peer_port != port) continue;
    int on = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) == 0) ++changed;
  }
  return changed;
}

}  // namespace

void MqttLink::on_connected(bool session_present) {
  // On the supervisor thread, after every successful connect.
  disable_nagle_towards(url_port(config_.mqtt_url));
  connected_ = true;
  subscribed_ = false;
  if (connections_++ > 0) ++metrics_.mqtt_reconnects;
  service::log_info("mqtt_connected", {{"url", core::redact_url(config_.mqtt_url)},
                                       {"client_id", config_.mqtt_client_id},
                                       {"session_present", session_present ? "true" : "false"},
                                       {"receive_maximum", std::to_string(inflight_limit_)}});
  try {
    // One SUBSCRIBE per filter: Paho C++ 1.2.0's many-filter subscribe with
    // per-filter v5 options crashes in MQTTAsync_subscribeMany.
    // The first connection of the process asks for the retained presence
    // messages even when its session (and subscription) survived: a will that
    // reached a service killed before it stored it is still there, retained.
    const bool first = connections_ == 1;
    const mqtt::subscribe_options on_new(false, false, mqtt::subscribe_options::SEND_RETAINED_ON_NEW);
    const mqtt::subscribe_options always(false, false, mqtt::subscribe_options::SEND_RETAINED_ON_SUBSCRIBE);
    auto filters = topics_.subscriptions();
    // Telemetry has its own connection (telemetry_link_). A session kept from a
    // version that subscribed it here drops those subscriptions, or each
    // message would come twice.
    if (telemetry_link_ && session_present)
      for (const auto& filter : core::telemetry_subscriptions(topics_.prefix())) this->client()->unsubscribe(filter);
    if (telemetry_link_) telemetry_link_->start();
    if (commands_) filters.push_back(core::command_reply_filter(topics_.prefix()));
    pending_subscriptions_ = static_cast<int>(filters.size());
    const auto client = this->client();
    for (const auto& filter : filters) {
      const bool presence = topics_.parse(filter).kind == core::Topics::Kind::presence;
      client->subscribe(filter, 1, nullptr, *subscribed_listener_, first && presence ? always : on_new);
    }
  } catch (const mqtt::exception& e) {
    service::log_error("mqtt_subscribe_failed", {{"error", e.what()}});
  }
  {
    std::lock_guard lock(out_mutex_);
    inflight_ = 0;  // what was in flight was resent by Paho's session or failed
    link_up_ = true;
  }
  out_cv_.notify_one();
  const auto now = std::chrono::time_point_cast<core::Millis>(std::chrono::system_clock::now());
  publish(topics_.fleet_status(), core::fleet_status_json(true, now), true);
  fleet_.broker_connected(session_present);
  if (commands_) commands_->broker_connected();
}

void MqttLink::stop() {
  if (stopping_.exchange(true)) return;
  if (telemetry_link_) telemetry_link_->stop();
  registrations_cv_.notify_all();
  {
    std::lock_guard lock(link_mutex_);
  }
  link_cv_.notify_all();
  if (connector_.joinable()) connector_.join();
  if (registrar_.joinable()) registrar_.join();
  // Give the sender up to 2 s to hand over what is queued (statuses it cannot
  // send stay in the outbox and are published after the next start).
  for (int waited = 0; waited < 200 && connected_; ++waited) {
    {
      std::lock_guard lock(out_mutex_);
      if (out_queue_.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  {
    std::lock_guard lock(out_mutex_);
    sender_stopping_ = true;
  }
  out_cv_.notify_all();
  if (sender_.joinable()) sender_.join();
  try {
    const auto client = this->client();
    if (client && client->is_connected()) {
      const auto now = std::chrono::time_point_cast<core::Millis>(std::chrono::system_clock::now());
      client->publish(mqtt::make_message(topics_.fleet_status(), core::fleet_status_json(false, now), 1, true))
          ->wait_for(std::chrono::seconds(2));
      client->disconnect(std::chrono::seconds(2))->wait_for(std::chrono::seconds(3));
    }
  } catch (const mqtt::exception& e) {
    service::log_warn("mqtt_disconnect_failed", {{"error", e.what()}});
  }
  connected_ = false;
  metrics_.mqtt_connected = 0;
}

void MqttLink::reject(Rejection why, std::string_view topic, std::string_view detail) {
  metrics_.reject(why);
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(log_mutex_);
    auto& last = last_rejection_log_[static_cast<std::size_t>(why)];
    if (last != std::chrono::steady_clock::time_point{} && now - last < std::chrono::seconds(60)) return;
    last = now;
  }
  std::string shown_topic(topic.substr(0, 200));
  service::log_warn("mqtt_message_dropped", {{"reason", service::rejection_names[static_cast<std::size_t>(why)]},
                                             {"topic", shown_topic},
                                             {"detail", std::string(detail)},
                                             {"note", "logged at most once a minute per reason"}});
}

void MqttLink::on_message(mqtt::const_message_ptr msg) {
  // Untrusted input on a foreign thread: never throw, never block.
  try {
    ++metrics_.mqtt_messages;
    const std::string& topic = msg->get_topic();
    if (dynamic_security_ && topic == DynamicSecurity::response_topic)
      return dynamic_security_->on_response(msg->get_payload_str());
    const std::string& payload = msg->get_payload_str();
    const auto parsed = topics_.parse(topic);
    // Replies and telemetry are looked for only among the topics the registry
    // does not handle, so heartbeats and presence pay nothing for them.
    if (parsed.kind == core::Topics::Kind::other) {
      if (commands_)
        if (const auto reply = core::parse_reply_topic(topics_.prefix(), topic)) return handle_reply(*reply, payload);
      if (telemetry_)
        if (const auto telemetry = core::parse_telemetry_topic(topics_.prefix(), topic);
            telemetry.kind != core::TelemetryKind::none)
          return handle_telemetry(telemetry, payload);
    }
    // Registrations get an error reply for an oversized payload too (registration_loop).
    if (payload.size() > core::max_body_bytes && parsed.kind != core::Topics::Kind::register_request)
      return reject(Rejection::too_large, topic, "payload over 65536 bytes");
    switch (parsed.kind) {
      case core::Topics::Kind::heartbeat: return handle_heartbeat(parsed.level, payload);
      case core::Topics::Kind::presence: return handle_presence(parsed.level, payload, msg->is_retained());
      case core::Topics::Kind::register_request: return handle_register(parsed.level, msg);
      case core::Topics::Kind::other: return reject(Rejection::bad_topic, topic, "not a topic the service handles");
    }
  } catch (const std::exception& e) {
    reject(Rejection::malformed, msg ? msg->get_topic() : "", e.what());
  }
}

void MqttLink::handle_heartbeat(std::string_view level, const std::string& payload) {
  const auto id = core::parse_device_id(level);
  if (!id) return reject(Rejection::bad_topic, level, "device id in the topic is not a UUID");
  core::Json body = core::Json::object();
  if (!payload.empty()) {
    auto parsed = core::parse_json_object(payload);
    if (!parsed) return reject(Rejection::malformed, level, parsed.error().detail);
    body = std::move(parsed.value());
  }
  auto heartbeat = core::parse_heartbeat(body, *id);
  if (!heartbeat) return reject(Rejection::invalid_field, level, heartbeat.error().detail);
  fleet_.heartbeat_async(*id, std::move(heartbeat.value()));
}

void MqttLink::handle_telemetry(const core::TelemetryTopic& topic, const std::string& payload) {
  const auto id = core::parse_device_id(topic.level);
  if (!id) {
    telemetry_->rejected(service::Transport::mqtt);
    return reject(Rejection::bad_topic, topic.level, "device id in the topic is not a UUID");
  }
  const auto now = telemetry_->now();
  if (topic.kind == core::TelemetryKind::metrics) {
    auto points = core::parse_mqtt_metrics(*id, payload, now, telemetry_->limits());
    if (!points) {
      telemetry_->rejected(service::Transport::mqtt);
      return reject(points.error().kind == core::ErrorKind::malformed ? Rejection::malformed : Rejection::invalid_field,
                    topic.level, points.error().detail);
    }
    return telemetry_->offer_metrics(*id, std::move(points.value()));
  }
  auto event = core::parse_mqtt_event(*id, payload, now, telemetry_->limits());
  if (!event) {
    telemetry_->rejected(service::Transport::mqtt);
    return reject(event.error().kind == core::ErrorKind::malformed ? Rejection::malformed : Rejection::invalid_field,
                  topic.level, event.error().detail);
  }
  telemetry_->offer_event(*id, std::move(event.value()));
}

void MqttLink::handle_presence(std::string_view level, const std::string& payload, bool retained) {
  if (payload.empty()) return;  // a cleared retained topic (our own, after a delete)
  const auto id = core::parse_device_id(level);
  if (!id) return reject(Rejection::bad_topic, level, "device id in the topic is not a UUID");
  const auto signal = core::parse_presence(payload);
  if (!signal) return reject(Rejection::malformed, level, "presence must be online, offline or {\"state\":...}");
  // A retained birth (sent because the service subscribed) is an old message: it
  // says nothing about now. A retained will or goodbye is a device that left
  // while the service was not listening and has not come back since (a will
  // the service had not stored when it was killed is still there): applied.
  if (retained && signal->kind == core::PresenceKind::birth) return;
  fleet_.presence_async(*id, *signal, retained);
}

void MqttLink::handle_register(std::string_view level, const mqtt::const_message_ptr& msg) {
  RegistrationJob job;
  job.hardware_id = std::string(level);
  job.payload = msg->get_payload_str();
  job.reply_topic = topics_.registration_reply(level);
  const auto& props = msg->get_properties();
  try {
    if (props.contains(mqtt::property::RESPONSE_TOPIC))
      job.reply_topic = mqtt::get<std::string>(props, mqtt::property::RESPONSE_TOPIC);
    if (props.contains(mqtt::property::CORRELATION_DATA)) {
      job.correlation = mqtt::get<std::string>(props, mqtt::property::CORRELATION_DATA);
      job.has_correlation = true;
    }
  } catch (const std::exception&) {
    // Unreadable properties: answer on the default topic.
  }
  {
    std::lock_guard lock(registrations_mutex_);
    if (registrations_.size() >= max_pending_registrations) {
      reject(Rejection::too_large, level, "too many registrations waiting; dropped");
      return;
    }
    registrations_.push_back(std::move(job));
  }
  registrations_cv_.notify_one();
}

void MqttLink::registration_loop() {
  while (true) {
    RegistrationJob job;
    {
      std::unique_lock lock(registrations_mutex_);
      registrations_cv_.wait(lock, [&] { return stopping_ || !registrations_.empty(); });
      if (stopping_) return;
      job = std::move(registrations_.front());
      registrations_.pop_front();
    }
    auto answer = [&](const core::Error& error, Rejection why) {
      reject(why, job.hardware_id, error.detail);
      reply(job, core::error_json(error).dump(-1, ' ', false, core::Json::error_handler_t::replace));
    };
    auto body = core::parse_json_object(job.payload);
    if (!body) {
      answer(body.error(), body.error().kind == core::ErrorKind::too_large ? Rejection::too_large : Rejection::malformed);
      continue;
    }
    auto registration = core::parse_registration(body.value(), job.hardware_id);
    if (!registration) {
      answer(registration.error(), Rejection::invalid_field);
      continue;
    }
    auto record = fleet_.register_device(registration.value(), service::Transport::mqtt);
    log_registration(job.hardware_id, record);
    if (!record) {
      core::Error shown = record.error();
      if (shown.kind == core::ErrorKind::unavailable) shown.detail = "the database is unavailable; try again";
      if (shown.kind == core::ErrorKind::internal) {
        ++metrics_.internal_errors;
        service::log_error("mqtt_registration_failed", {{"hardware_id", job.hardware_id.substr(0, 128)},
                                                        {"error", shown.detail}});
        shown.detail = "internal error";
      }
      reply(job, core::error_json(shown).dump(-1, ' ', false, core::Json::error_handler_t::replace));
      continue;
    }
    auto answer_doc = core::device_record_json(record->record);
    if (record->mqtt_password)
      answer_doc["mqtt"] = core::mqtt_credentials_json(record->record.id, *record->mqtt_password, topics_);
    reply(job, answer_doc.dump(-1, ' ', false, core::Json::error_handler_t::replace));
  }
}

void MqttLink::log_registration(const std::string& hardware_id, const core::Result<service::RegisteredDevice>& record) {
  // Registration worker thread only. HTTP registrations are in the access log.
  const auto now = std::chrono::time_point_cast<core::Millis>(std::chrono::system_clock::now());
  const auto budget = registration_log_.take(now);
  if (budget.held_back)
    service::log_info("mqtt_registrations_not_logged", {{"count", std::to_string(budget.held_back)},
                                                        {"note", "at most 20 registrations are logged a second"}});
  if (!budget.write) return;
  if (record)
    service::log_info("mqtt_registration", {{"hardware_id", hardware_id.substr(0, 128)},
                                            {"device", record->record.id.to_string()},
                                            {"result", "registered"}});
  else
    service::log_info("mqtt_registration", {{"hardware_id", hardware_id.substr(0, 128)},
                                            {"result", std::string(core::error_code(record.error().kind))},
                                            {"existing", record.error().existing_id}});
}

void MqttLink::reply(const RegistrationJob& job, const std::string& payload) {
  try {
    mqtt::properties props;
    if (job.has_correlation) props.add({mqtt::property::CORRELATION_DATA, job.correlation});
    auto msg = mqtt::message_ptr_builder().topic(job.reply_topic).payload(payload).qos(1).retained(false)
                   .properties(std::move(props)).finalize();
    send({msg, std::nullopt, std::nullopt});
  } catch (const mqtt::exception& e) {
    service::log_warn("mqtt_reply_failed", {{"topic", job.reply_topic}, {"error", e.what()}});
  }
}

void MqttLink::send(Outgoing out) {
  bool wake = false;
  {
    std::lock_guard lock(out_mutex_);
    out_queue_.push_back(std::move(out));
    wake = sender_waiting_ && link_up_ && inflight_ < inflight_limit_;
  }
  if (wake) out_cv_.notify_one();
}

void MqttLink::sender_loop() {
  std::vector<Outgoing> batch;
  while (true) {
    {
      std::unique_lock lock(out_mutex_);
      sender_waiting_ = true;
      out_cv_.wait(lock, [&] {
        return sender_stopping_ || (link_up_ && !out_queue_.empty() && inflight_ < inflight_limit_);
      });
      sender_waiting_ = false;
      if (sender_stopping_) return;
      while (!out_queue_.empty() && inflight_ < inflight_limit_ && batch.size() < 1024) {
        batch.push_back(std::move(out_queue_.front()));
        out_queue_.pop_front();
        ++inflight_;
      }
    }
    const auto client = this->client();  // kept alive for the batch even if replaced meanwhile
    for (auto& out : batch) transmit(out, *client);
    batch.clear();
  }
}

void MqttLink::transmit(Outgoing& out, mqtt::async_client& client) {
  std::unique_ptr<PublishedStatus> context;
  try {
    if (out.status) {
      out.msg = mqtt::make_message(topics_.status(out.status->document.device_id),
                                   core::status_document_json(out.status->document), 1, true);
      context = std::make_unique<PublishedStatus>(PublishedStatus{out.status->document.device_id, out.status->seq});
    } else if (out.cleared) {
      context = std::make_unique<PublishedStatus>(PublishedStatus{*out.cleared, 0, true});
    } else if (out.command) {
      context = std::make_unique<PublishedStatus>(PublishedStatus{*out.command, 0, false, true});
    }
    client.publish(out.msg, context.get(), *acks_);
    context.release();  // owned by the token now: the AckListener deletes it
  } catch (const std::exception&) {
    // Not connected: statuses stay in the outbox and are republished after the
    // next connect; summaries and fleet status are republished on connect too.
    std::lock_guard lock(out_mutex_);
    --inflight_;
  }
}

void MqttLink::acknowledged() {
  // On Paho's callback thread: a slot is free; wake the sender if it waits for one.
  bool wake = false;
  {
    std::lock_guard lock(out_mutex_);
    if (inflight_ > 0) --inflight_;
    wake = sender_waiting_ && link_up_ && !out_queue_.empty();
  }
  if (wake) out_cv_.notify_one();
}

void MqttLink::publish(const std::string& topic, const std::string& payload, bool retained) {
  send({mqtt::make_message(topic, payload, 1, retained), std::nullopt, std::nullopt});
}

void MqttLink::publish_status(const store::StoredStatus& status) {
  send({nullptr, status, std::nullopt});
}

void MqttLink::clear_device(const core::DeviceId& id) {
  // Sent in order on one connection: the acknowledgement of the second tells the
  // fleet both are done (and its record of the pending clear can go).
  publish(topics_.status(id), "", true);
  send({mqtt::make_message(topics_.presence(id), "", 1, true), std::nullopt, id});
}

void MqttLink::handle_reply(const core::ReplyTopic& topic, const std::string& payload) {
  // A reply is applied only to a command of the device whose topic it came on
  // (in secure mode the broker lets a device publish only under its own id).
  const auto device = core::parse_device_id(topic.device);
  const auto command = core::parse_device_id(topic.command);
  if (!device || !command) {
    commands_->reply_malformed();
    return reject(Rejection::bad_topic, topic.device, "device or command id in a reply topic is not a UUID");
  }
  auto reply = core::parse_command_reply_text(payload);
  if (!reply) {
    commands_->reply_malformed();
    return reject(reply.error().kind == core::ErrorKind::malformed ? Rejection::malformed : Rejection::invalid_field,
                  topic.device, reply.error().detail);
  }
  commands_->reply_async(*device, *command, std::move(reply.value()));
}

void MqttLink::publish_command(const core::Command& command, core::TimePoint now) {
  // MQTT v5 devices also get the time left as Message Expiry (the broker drops
  // it after that), where to reply and the id as Correlation Data; v3.1.1
  // devices read the ids in the topic.
  try {
    mqtt::properties props;
    props.add({mqtt::property::MESSAGE_EXPIRY_INTERVAL, static_cast<std::int32_t>(core::message_expiry_seconds(command, now))});
    props.add({mqtt::property::RESPONSE_TOPIC,
               core::command_reply_topic(topics_.prefix(), command.device_id, command.id)});
    props.add({mqtt::property::CORRELATION_DATA, command.id.to_string()});
    const auto payload = core::command_delivery_json(command).dump(-1, ' ', false, core::Json::error_handler_t::replace);
    auto msg = mqtt::message_ptr_builder()
                   .topic(core::command_topic(topics_.prefix(), command.device_id, command.id))
                   .payload(payload).qos(1).retained(false).properties(std::move(props)).finalize();
    send(Outgoing{msg, std::nullopt, std::nullopt, command.id});
  } catch (const mqtt::exception& e) {
    service::log_warn("mqtt_command_not_sent", {{"command", command.id.to_string()}, {"error", e.what()}});
  }
}

void MqttLink::publish_command_state(const core::Command& command) {
  publish(core::command_state_topic(topics_.prefix(), command.device_id, command.id),
          core::command_json(command).dump(-1, ' ', false, core::Json::error_handler_t::replace), false);
}

void MqttLink::publish_summary(const core::FleetCounts& counts, core::TimePoint now) {
  publish(topics_.fleet_summary(), core::fleet_summary_json(counts, now), true);
}

}  // namespace maestra::mqtt_adapter
