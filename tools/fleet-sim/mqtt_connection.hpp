// One MQTT client connection over a non-blocking TCP socket: the connect and
// CONNECT/CONNACK handshake, buffered writes with backpressure, inbound framing,
// automatic PUBACK of QoS 1 deliveries, keepalive pings and timeouts. What to
// publish and what replies mean belongs to the owner (a device fleet, the
// subscriber, the MQTT registrar), told through ConnectionEvents.
#pragma once
#include <netinet/in.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "event_loop.hpp"
#include "mqtt_codec.hpp"

namespace fleet_sim {

class MqttConnection;

enum class CloseReason {
  connect_failed,    // TCP connect refused or failed
  refused,           // CONNACK with a non-zero return code
  protocol_error,    // malformed or unexpected packet
  peer_closed,       // the broker closed or reset the socket
  timeout,           // no CONNACK, or no PINGRESP, in time
  local_abort,       // we closed without DISCONNECT (the broker sends the will)
  local_disconnect,  // we sent DISCONNECT and closed (the will is discarded)
};
std::string_view to_string(CloseReason reason);

class ConnectionEvents {
 public:
  virtual void on_connected(MqttConnection& connection) = 0;  // CONNACK accepted
  virtual void on_message(MqttConnection&, const mqtt::PublishView&) {}
  virtual void on_puback(MqttConnection&, std::uint16_t /*packet_id*/) {}
  virtual void on_suback(MqttConnection&, const mqtt::Suback&) {}
  virtual void on_drained(MqttConnection&) {}  // a write that had blocked has completed
  virtual void on_pingresp(MqttConnection&) {}
  virtual void on_closed(MqttConnection& connection, CloseReason reason, std::string_view detail) = 0;

 protected:
  ~ConnectionEvents() = default;
};

struct ConnectionTimeouts {
  std::chrono::milliseconds connack{10'000};    // from connect() to CONNACK
  std::chrono::milliseconds disconnect{3'000};  // from DISCONNECT to the broker's close
};

class MqttConnection final : public EventLoop::Handler {
 public:
  enum class State { closed, tcp_connecting, awaiting_connack, connected, disconnecting };

  // `tag` is the owner's index for this connection (a device number).
  MqttConnection(EventLoop& loop, ConnectionEvents& events, std::size_t tag, ConnectionTimeouts timeouts = {});
  ~MqttConnection();
  MqttConnection(const MqttConnection&) = delete;
  MqttConnection& operator=(const MqttConnection&) = delete;

  // Starts a TCP connect and queues CONNECT. False (with `error`) when the
  // socket cannot even be created; later failures arrive through on_closed.
  bool open(const sockaddr_in& broker, const mqtt::ConnectRequest& request, std::string& error);

  // Queue packets; flush() writes them. Both return the packet id used (0 for QoS 0).
  std::uint16_t publish(std::string_view topic, std::string_view payload, std::uint8_t qos, bool retain);
  std::uint16_t subscribe(const std::vector<mqtt::TopicFilter>& filters);
  std::uint16_t unsubscribe(const std::vector<std::string>& filters);
  // Queues a PINGREQ. The broker handles a connection's packets in order, so its
  // PINGRESP proves every packet queued before it has been read and processed.
  void ping();
  // Writes queued bytes until done or the socket would block (then waits for EPOLLOUT).
  void flush();

  // Graceful: DISCONNECT, then close once the broker closes (or after the timeout).
  void disconnect();
  // Abrupt: close the socket now, no DISCONNECT, so the broker publishes the will.
  void abort();

  // Call about once a second: pings when idle for half the keepalive, and
  // closes on a missing CONNACK, PINGRESP or disconnect confirmation.
  void check_timers(TimePoint now);

  State state() const { return state_; }
  bool is_connected() const { return state_ == State::connected; }
  bool is_open() const { return state_ != State::closed; }
  std::size_t tag() const { return tag_; }
  std::size_t pending_bytes() const { return out_.size() - out_sent_; }

 private:
  void on_ready(std::uint32_t epoll_events) override;
  void finish_tcp_connect();
  void read_available();
  bool handle_frame(const mqtt::Frame& frame);  // false once the connection closed
  void close_with(CloseReason reason, std::string_view detail);
  void release_socket();
  std::uint16_t next_packet_id();

  EventLoop& loop_;
  ConnectionEvents& events_;
  std::size_t tag_;
  ConnectionTimeouts timeouts_;
  int fd_ = -1;
  State state_ = State::closed;
  std::string out_;
  std::size_t out_sent_ = 0;  // bytes at the front of out_ already written
  bool write_blocked_ = false;
  std::string in_;
  std::uint16_t last_packet_id_ = 0;
  std::uint16_t keepalive_s_ = 0;
  TimePoint state_since_{};  // when the current state began
  TimePoint last_sent_{};
  TimePoint ping_sent_{};
  bool ping_outstanding_ = false;
};

}  // namespace fleet_sim
