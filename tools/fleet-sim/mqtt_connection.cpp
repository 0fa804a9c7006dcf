// One MQTT client connection (see mqtt_connection.hpp): socket lifecycle,
// buffered non-blocking writes, inbound framing and keepalive.
//
// A note on re-entrancy: owner callbacks run from inside on_ready() and may
// publish, flush or abort this same connection. Queued writes only append to
// out_; an abort releases the socket, and every loop here re-checks the state
// after a callback and stops as soon as the connection is closed.
#include "mqtt_connection.hpp"

#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace fleet_sim {
namespace {

constexpr std::size_t compact_threshold = 64 * 1024;

std::string errno_text(int error_number) { return std::strerror(error_number); }

}  // namespace

std::string_view to_string(CloseReason reason) {
  switch (reason) {
    case CloseReason::connect_failed:
      return "connect failed";
    case CloseReason::refused:
      return "connection refused by broker";
    case CloseReason::protocol_error:
      return "protocol error";
    case CloseReason::peer_closed:
      return "closed by broker";
    case CloseReason::timeout:
      return "timeout";
    case CloseReason::local_abort:
      return "aborted";
    case CloseReason::local_disconnect:
      return "disconnected";
  }
  return "unknown";
}

MqttConnection::MqttConnection(EventLoop& loop, ConnectionEvents& events, std::size_t tag, ConnectionTimeouts timeouts)
    : loop_(loop), events_(events), tag_(tag), timeouts_(timeouts) {}

MqttConnection::~MqttConnection() { release_socket(); }

bool MqttConnection::open(const sockaddr_in& broker, const mqtt::ConnectRequest& request, std::string& error) {
  release_socket();
  in_.clear();
  out_.clear();
  out_sent_ = 0;
  ping_outstanding_ = false;
  keepalive_s_ = request.keepalive_s;

  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    error = "socket: " + errno_text(errno);
    return false;
  }
  const int on = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);

  mqtt::append_connect(out_, request);
  state_since_ = loop_.now();
  last_sent_ = state_since_;

  if (::connect(fd_, reinterpret_cast<const sockaddr*>(&broker), sizeof broker) == 0) {
    state_ = State::awaiting_connack;
  } else if (errno == EINPROGRESS) {
    state_ = State::tcp_connecting;
  } else {
    error = "connect: " + errno_text(errno);
    release_socket();
    return false;
  }
  loop_.watch(fd_, *this);
  if (state_ == State::awaiting_connack) flush();
  return true;
}

std::uint16_t MqttConnection::next_packet_id() {
  ++last_packet_id_;
  if (last_packet_id_ == 0) last_packet_id_ = 1;
  return last_packet_id_;
}

std::uint16_t MqttConnection::publish(std::string_view topic, std::string_view payload, std::uint8_t qos, bool retain) {
  const std::uint16_t packet_id = qos > 0 ? next_packet_id() : 0;
  mqtt::append_publish(out_, topic, payload, qos, retain, packet_id);
  return packet_id;
}

std::uint16_t MqttConnection::subscribe(const std::vector<mqtt::TopicFilter>& filters) {
  const std::uint16_t packet_id = next_packet_id();
  mqtt::append_subscribe(out_, packet_id, filters);
  return packet_id;
}

std::uint16_t MqttConnection::unsubscribe(const std::vector<std::string>& filters) {
  const std::uint16_t packet_id = next_packet_id();
  mqtt::append_unsubscribe(out_, packet_id, filters);
  return packet_id;
}

void MqttConnection::ping() {
  mqtt::append_pingreq(out_);
  ping_outstanding_ = true;
  ping_sent_ = loop_.now();
}

void MqttConnection::flush() {
  if (fd_ < 0 || state_ == State::tcp_connecting) return;
  while (out_sent_ < out_.size()) {
    const ssize_t written = ::send(fd_, out_.data() + out_sent_, out_.size() - out_sent_, MSG_NOSIGNAL);
    if (written > 0) {
      out_sent_ += static_cast<std::size_t>(written);
      last_sent_ = loop_.now();
      continue;
    }
    if (written < 0 && errno == EINTR) continue;
    if (written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      write_blocked_ = true;
      if (out_sent_ >= compact_threshold && out_sent_ * 2 >= out_.size()) {
        out_.erase(0, out_sent_);
        out_sent_ = 0;
      }
      return;
    }
    close_with(CloseReason::peer_closed, "send: " + errno_text(errno));
    return;
  }
  out_.clear();
  out_sent_ = 0;
  write_blocked_ = false;
  if (state_ == State::disconnecting) ::shutdown(fd_, SHUT_WR);
}

void MqttConnection::disconnect() {
  if (state_ == State::connected) {
    mqtt::append_disconnect(out_);
    state_ = State::disconnecting;
    state_since_ = loop_.now();
    flush();
  } else if (state_ == State::tcp_connecting || state_ == State::awaiting_connack) {
    close_with(CloseReason::local_abort, "closed before CONNACK");
  }
}

void MqttConnection::abort() {
  if (state_ != State::closed) close_with(CloseReason::local_abort, "");
}

void MqttConnection::check_timers(TimePoint now) {
  switch (state_) {
    case State::closed:
      return;
    case State::tcp_connecting:
    case State::awaiting_connack:
      if (now - state_since_ > timeouts_.connack) {
        close_with(CloseReason::timeout,
                   state_ == State::tcp_connecting ? "TCP connect timed out" : "no CONNACK in time");
      }
      return;
    case State::disconnecting:
      if (now - state_since_ > timeouts_.disconnect) close_with(CloseReason::local_disconnect, "broker did not close");
      return;
    case State::connected:
      break;
  }
  if (keepalive_s_ == 0) return;
  const std::chrono::seconds keepalive{keepalive_s_};
  if (ping_outstanding_) {
    if (now - ping_sent_ > keepalive) close_with(CloseReason::timeout, "no PINGRESP in time");
    return;
  }
  if (now - last_sent_ >= keepalive / 2) {
    ping();
    flush();
  }
}

void MqttConnection::on_ready(std::uint32_t epoll_events) {
  if (state_ == State::closed) return;  // a stale event for a socket closed earlier in this batch
  if (state_ == State::tcp_connecting) {
    if ((epoll_events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
    finish_tcp_connect();
    if (state_ == State::closed) return;
  }
  if (epoll_events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    read_available();
    if (state_ == State::closed) return;
  }
  if ((epoll_events & EPOLLOUT) && write_blocked_) {
    flush();
    if (state_ != State::closed && !write_blocked_) events_.on_drained(*this);
  }
}

void MqttConnection::finish_tcp_connect() {
  int socket_error = 0;
  socklen_t length = sizeof socket_error;
  if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &socket_error, &length) != 0) socket_error = errno;
  if (socket_error != 0) {
    close_with(CloseReason::connect_failed, "connect: " + errno_text(socket_error));
    return;
  }
  state_ = State::awaiting_connack;
  flush();  // the queued CONNECT
}

void MqttConnection::read_available() {
  static thread_local std::array<char, 64 * 1024> scratch;
  for (;;) {
    const ssize_t received = ::recv(fd_, scratch.data(), scratch.size(), 0);
    if (received == 0) {
      if (state_ == State::disconnecting) {
        close_with(CloseReason::local_disconnect, "");
      } else {
        close_with(CloseReason::peer_closed, "connection closed by broker");
      }
      return;
    }
    if (received < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      close_with(state_ == State::disconnecting ? CloseReason::local_disconnect : CloseReason::peer_closed,
                 "recv: " + errno_text(errno));
      return;
    }
    in_.append(scratch.data(), static_cast<std::size_t>(received));

    std::size_t parsed = 0;
    for (;;) {
      const auto result = mqtt::next_frame(std::string_view(in_).substr(parsed));
      if (result.status == mqtt::FrameStatus::incomplete) break;
      if (result.status == mqtt::FrameStatus::malformed) {
        close_with(CloseReason::protocol_error, "malformed packet from broker");
        return;
      }
      parsed += result.consumed;
      if (!handle_frame(result.frame)) return;
    }
    in_.erase(0, parsed);
  }
  if (pending_bytes() > 0) flush();  // PUBACKs of QoS 1 deliveries, anything callbacks queued
}

bool MqttConnection::handle_frame(const mqtt::Frame& frame) {
  if (state_ == State::awaiting_connack && frame.type != mqtt::PacketType::connack) {
    close_with(CloseReason::protocol_error, "packet before CONNACK");
    return false;
  }
  switch (frame.type) {
    case mqtt::PacketType::connack: {
      const auto connack = mqtt::decode_connack(frame);
      if (!connack || state_ != State::awaiting_connack) {
        close_with(CloseReason::protocol_error, "unexpected CONNACK");
        return false;
      }
      if (connack->return_code != 0) {
        close_with(CloseReason::refused, mqtt::connack_reason(connack->return_code));
        return false;
      }
      state_ = State::connected;
      state_since_ = loop_.now();
      events_.on_connected(*this);
      break;
    }
    case mqtt::PacketType::publish: {
      const auto publish = mqtt::decode_publish(frame);
      if (!publish || publish->qos > 1) {
        close_with(CloseReason::protocol_error,
                   publish ? "QoS 2 delivery (never subscribed above QoS 1)" : "bad PUBLISH");
        return false;
      }
      if (publish->qos == 1) mqtt::append_puback(out_, publish->packet_id);
      events_.on_message(*this, *publish);
      break;
    }
    case mqtt::PacketType::puback: {
      const auto packet_id = mqtt::decode_packet_id(frame);
      if (!packet_id) {
        close_with(CloseReason::protocol_error, "bad PUBACK");
        return false;
      }
      events_.on_puback(*this, *packet_id);
      break;
    }
    case mqtt::PacketType::suback: {
      const auto suback = mqtt::decode_suback(frame);
      if (!suback) {
        close_with(CloseReason::protocol_error, "bad SUBACK");
        return false;
      }
      events_.on_suback(*this, *suback);
      break;
    }
    case mqtt::PacketType::unsuback:
      break;
    case mqtt::PacketType::pingresp:
      ping_outstanding_ = false;
      events_.on_pingresp(*this);
      break;
    default:
      close_with(CloseReason::protocol_error, "unexpected packet type from broker");
      return false;
  }
  return state_ != State::closed;
}

void MqttConnection::close_with(CloseReason reason, std::string_view detail) {
  if (state_ == State::closed) return;
  release_socket();
  events_.on_closed(*this, reason, detail);
}

void MqttConnection::release_socket() {
  if (fd_ >= 0) {
    loop_.unwatch(fd_);
    ::close(fd_);
    fd_ = -1;
  }
  state_ = State::closed;
  out_.clear();
  out_sent_ = 0;
  write_blocked_ = false;
  ping_outstanding_ = false;
}

}  // namespace fleet_sim
