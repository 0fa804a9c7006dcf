// MQTT 3.1.1 wire format: packet encoders and the framer/decoders declared in
// mqtt_codec.hpp. Byte-level only; it knows nothing of sockets or devices.
#include "mqtt_codec.hpp"

#include <stdexcept>

namespace fleet_sim::mqtt {
namespace {

std::uint8_t byte_of(unsigned value) { return static_cast<std::uint8_t>(value & 0xFFu); }

void put_byte(std::string& out, unsigned value) { out.push_back(static_cast<char>(byte_of(value))); }

void put_u16(std::string& out, std::uint16_t value) {
  put_byte(out, static_cast<unsigned>(value) >> 8);
  put_byte(out, value);
}

void put_string(std::string& out, std::string_view text) {
  if (text.size() > 0xFFFF) throw std::length_error("MQTT string longer than 65535 bytes");
  put_u16(out, static_cast<std::uint16_t>(text.size()));
  out.append(text);
}

std::size_t encoded_string_size(std::string_view text) { return 2 + text.size(); }

// The fixed header: packet type and flags, then the remaining length in 1-4
// bytes of 7 bits each, least significant first, high bit meaning "more".
void put_fixed_header(std::string& out, PacketType type, unsigned flags, std::size_t remaining_length) {
  if (remaining_length > max_remaining_length) throw std::length_error("MQTT packet too large");
  put_byte(out, (static_cast<unsigned>(type) << 4) | (flags & 0x0Fu));
  do {
    unsigned digit = static_cast<unsigned>(remaining_length % 128);
    remaining_length /= 128;
    if (remaining_length > 0) digit |= 0x80u;
    put_byte(out, digit);
  } while (remaining_length > 0);
}

std::uint16_t read_u16(std::string_view bytes, std::size_t at) {
  return static_cast<std::uint16_t>((static_cast<unsigned>(static_cast<unsigned char>(bytes[at])) << 8) |
                                    static_cast<unsigned>(static_cast<unsigned char>(bytes[at + 1])));
}

}  // namespace

void append_connect(std::string& out, const ConnectRequest& request) {
  constexpr std::string_view protocol_name = "MQTT";
  constexpr unsigned protocol_level = 4;  // 3.1.1

  unsigned connect_flags = 0;
  if (request.clean_session) connect_flags |= 0x02u;
  std::size_t length = encoded_string_size(protocol_name) + 1 + 1 + 2 + encoded_string_size(request.client_id);
  if (request.will) {
    connect_flags |= 0x04u | (static_cast<unsigned>(request.will->qos & 0x03u) << 3);
    if (request.will->retain) connect_flags |= 0x20u;
    length += encoded_string_size(request.will->topic) + encoded_string_size(request.will->payload);
  }
  if (request.username) {
    connect_flags |= 0x80u;
    length += encoded_string_size(*request.username);
    if (request.password) {
      connect_flags |= 0x40u;
      length += encoded_string_size(*request.password);
    }
  }

  put_fixed_header(out, PacketType::connect, 0, length);
  put_string(out, protocol_name);
  put_byte(out, protocol_level);
  put_byte(out, connect_flags);
  put_u16(out, request.keepalive_s);
  put_string(out, request.client_id);
  if (request.will) {
    put_string(out, request.will->topic);
    put_string(out, request.will->payload);
  }
  if (request.username) {
    put_string(out, *request.username);
    if (request.password) put_string(out, *request.password);
  }
}

void append_publish(std::string& out, std::string_view topic, std::string_view payload, std::uint8_t qos, bool retain,
                    std::uint16_t packet_id) {
  const unsigned flags = (static_cast<unsigned>(qos & 0x03u) << 1) | (retain ? 0x01u : 0x00u);
  const std::size_t length = encoded_string_size(topic) + (qos > 0 ? 2 : 0) + payload.size();
  put_fixed_header(out, PacketType::publish, flags, length);
  put_string(out, topic);
  if (qos > 0) put_u16(out, packet_id);
  out.append(payload);
}

void append_puback(std::string& out, std::uint16_t packet_id) {
  put_fixed_header(out, PacketType::puback, 0, 2);
  put_u16(out, packet_id);
}

void append_subscribe(std::string& out, std::uint16_t packet_id, const std::vector<TopicFilter>& filters) {
  std::size_t length = 2;
  for (const auto& filter : filters) length += encoded_string_size(filter.filter) + 1;
  put_fixed_header(out, PacketType::subscribe, 0x02, length);  // SUBSCRIBE's flags are fixed at 0010
  put_u16(out, packet_id);
  for (const auto& filter : filters) {
    put_string(out, filter.filter);
    put_byte(out, filter.qos & 0x03u);
  }
}

void append_unsubscribe(std::string& out, std::uint16_t packet_id, const std::vector<std::string>& filters) {
  std::size_t length = 2;
  for (const auto& filter : filters) length += encoded_string_size(filter);
  put_fixed_header(out, PacketType::unsubscribe, 0x02, length);
  put_u16(out, packet_id);
  for (const auto& filter : filters) put_string(out, filter);
}

void append_pingreq(std::string& out) { put_fixed_header(out, PacketType::pingreq, 0, 0); }

void append_disconnect(std::string& out) { put_fixed_header(out, PacketType::disconnect, 0, 0); }

FrameResult next_frame(std::string_view buffer, std::size_t max_packet_size) {
  FrameResult result;
  if (buffer.empty()) return result;

  const auto first = static_cast<unsigned char>(buffer[0]);
  const unsigned type = first >> 4;
  if (type < static_cast<unsigned>(PacketType::connect) || type > static_cast<unsigned>(PacketType::disconnect)) {
    result.status = FrameStatus::malformed;
    return result;
  }

  std::size_t remaining_length = 0;
  std::size_t multiplier = 1;
  std::size_t header_size = 1;
  for (;;) {
    if (header_size >= buffer.size()) return result;  // length bytes not all here yet
    const auto digit = static_cast<unsigned char>(buffer[header_size]);
    ++header_size;
    remaining_length += (digit & 0x7Fu) * multiplier;
    if ((digit & 0x80u) == 0) break;
    if (header_size == 5) {  // a fifth length byte would be needed
      result.status = FrameStatus::malformed;
      return result;
    }
    multiplier *= 128;
  }
  if (remaining_length > max_packet_size) {
    result.status = FrameStatus::malformed;
    return result;
  }
  if (buffer.size() - header_size < remaining_length) return result;

  result.status = FrameStatus::complete;
  result.frame.type = static_cast<PacketType>(type);
  result.frame.flags = static_cast<std::uint8_t>(first & 0x0Fu);
  result.frame.body = buffer.substr(header_size, remaining_length);
  result.consumed = header_size + remaining_length;
  return result;
}

std::optional<Connack> decode_connack(const Frame& frame) {
  if (frame.type != PacketType::connack || frame.body.size() != 2) return std::nullopt;
  Connack connack;
  connack.session_present = (static_cast<unsigned char>(frame.body[0]) & 0x01u) != 0;
  connack.return_code = static_cast<std::uint8_t>(frame.body[1]);
  return connack;
}

std::optional<PublishView> decode_publish(const Frame& frame) {
  if (frame.type != PacketType::publish) return std::nullopt;
  PublishView publish;
  publish.retain = (frame.flags & 0x01u) != 0;
  publish.qos = static_cast<std::uint8_t>((frame.flags >> 1) & 0x03u);
  publish.dup = (frame.flags & 0x08u) != 0;
  if (publish.qos > 2) return std::nullopt;

  const std::string_view body = frame.body;
  if (body.size() < 2) return std::nullopt;
  const std::size_t topic_length = read_u16(body, 0);
  std::size_t at = 2 + topic_length;
  if (body.size() < at) return std::nullopt;
  publish.topic = body.substr(2, topic_length);
  if (publish.qos > 0) {
    if (body.size() < at + 2) return std::nullopt;
    publish.packet_id = read_u16(body, at);
    if (publish.packet_id == 0) return std::nullopt;
    at += 2;
  }
  publish.payload = body.substr(at);
  return publish;
}

std::optional<std::uint16_t> decode_packet_id(const Frame& frame) {
  if (frame.body.size() != 2) return std::nullopt;
  return read_u16(frame.body, 0);
}

std::optional<Suback> decode_suback(const Frame& frame) {
  if (frame.type != PacketType::suback || frame.body.size() < 3) return std::nullopt;
  Suback suback;
  suback.packet_id = read_u16(frame.body, 0);
  for (std::size_t at = 2; at < frame.body.size(); ++at) {
    suback.return_codes.push_back(static_cast<std::uint8_t>(frame.body[at]));
  }
  return suback;
}

std::string_view connack_reason(std::uint8_t return_code) {
  switch (return_code) {
    case 0:
      return "accepted";
    case 1:
      return "unacceptable protocol version";
    case 2:
      return "client identifier rejected";
    case 3:
      return "server unavailable";
    case 4:
      return "bad user name or password";
    case 5:
      return "not authorized";
    default:
      return "unknown return code";
  }
}

}  // namespace fleet_sim::mqtt
