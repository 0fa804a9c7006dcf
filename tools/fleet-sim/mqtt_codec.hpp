// MQTT 3.1.1 wire format for the fleet simulator: encoders that append CONNECT,
// PUBLISH, PUBACK, SUBSCRIBE, UNSUBSCRIBE, PINGREQ and DISCONNECT to a byte
// buffer, and the framer/decoders for what a broker sends back. Pure: no
// sockets, no clock, no state; every function is unit-tested in tests/.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fleet_sim::mqtt {

enum class PacketType : std::uint8_t {
  connect = 1,
  connack = 2,
  publish = 3,
  puback = 4,
  pubrec = 5,
  pubrel = 6,
  pubcomp = 7,
  subscribe = 8,
  suback = 9,
  unsubscribe = 10,
  unsuback = 11,
  pingreq = 12,
  pingresp = 13,
  disconnect = 14,
};

// The largest "remaining length" the protocol can express (four length bytes).
inline constexpr std::size_t max_remaining_length = 268'435'455;
inline constexpr std::uint8_t suback_failure = 0x80;

struct Will {
  std::string topic;
  std::string payload;
  std::uint8_t qos = 1;
  bool retain = true;
};

struct ConnectRequest {
  std::string client_id;
  std::uint16_t keepalive_s = 60;
  bool clean_session = true;
  std::optional<Will> will;
  std::optional<std::string> username;
  std::optional<std::string> password;  // sent only with a username (3.1.1 rule)
};

struct TopicFilter {
  std::string filter;
  std::uint8_t qos = 0;
};

// Encoders append one complete packet to `out`. Strings longer than 65535 bytes
// and packets longer than max_remaining_length throw std::length_error: those
// are caller bugs (options are checked long before).
void append_connect(std::string& out, const ConnectRequest& request);
// packet_id is ignored (not written) for QoS 0.
void append_publish(std::string& out, std::string_view topic, std::string_view payload, std::uint8_t qos, bool retain,
                    std::uint16_t packet_id);
void append_puback(std::string& out, std::uint16_t packet_id);
void append_subscribe(std::string& out, std::uint16_t packet_id, const std::vector<TopicFilter>& filters);
void append_unsubscribe(std::string& out, std::uint16_t packet_id, const std::vector<std::string>& filters);
void append_pingreq(std::string& out);
void append_disconnect(std::string& out);

// --- framing: split a byte stream into packets -------------------------------
enum class FrameStatus { complete, incomplete, malformed };

struct Frame {
  PacketType type = PacketType::connect;
  std::uint8_t flags = 0;  // low nibble of the fixed header
  std::string_view body;   // variable header + payload, a view into the buffer
};

struct FrameResult {
  FrameStatus status = FrameStatus::incomplete;
  Frame frame;
  std::size_t consumed = 0;  // bytes of the buffer this frame occupies
};

// Looks at the front of `buffer`. `complete` when a whole packet is there;
// `incomplete` when more bytes are needed; `malformed` for a bad packet type, a
// length encoding over four bytes, or a packet larger than max_packet_size.
FrameResult next_frame(std::string_view buffer, std::size_t max_packet_size = 16u << 20);

// --- decoders of packets a client receives ----------------------------------
struct Connack {
  bool session_present = false;
  std::uint8_t return_code = 0;  // 0 accepted, 1..5 refused (see connack_reason)
};
std::optional<Connack> decode_connack(const Frame& frame);

struct PublishView {
  std::string_view topic;
  std::string_view payload;
  std::uint8_t qos = 0;
  bool retain = false;
  bool dup = false;
  std::uint16_t packet_id = 0;  // 0 for QoS 0
};
std::optional<PublishView> decode_publish(const Frame& frame);

// PUBACK and UNSUBACK carry only a packet id.
std::optional<std::uint16_t> decode_packet_id(const Frame& frame);

struct Suback {
  std::uint16_t packet_id = 0;
  std::vector<std::uint8_t> return_codes;  // granted QoS per filter, or suback_failure
};
std::optional<Suback> decode_suback(const Frame& frame);

// Human text for a CONNACK return code.
std::string_view connack_reason(std::uint8_t return_code);

}  // namespace fleet_sim::mqtt
