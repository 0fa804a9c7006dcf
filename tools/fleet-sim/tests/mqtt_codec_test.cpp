// Unit tests of the MQTT 3.1.1 wire format: exact bytes of what the simulator
// sends, and framing/decoding of what a broker sends back, byte by byte.
#include "mqtt_codec.hpp"

#include <doctest/doctest.h>

using namespace fleet_sim::mqtt;

namespace {
std::string bytes(std::initializer_list<int> values) {
  std::string out;
  for (int value : values) out.push_back(static_cast<char>(value));
  return out;
}
}  // namespace

TEST_CASE("CONNECT with a retained QoS 1 will, user name and password") {
  ConnectRequest request;
  request.client_id = "c";
  request.keepalive_s = 60;
  request.will = Will{"t", "off", 1, true};
  request.username = "u";
  request.password = "p";
  std::string out;
  append_connect(out, request);
  const std::string expected =
      bytes({0x10, 27,  0,   4, 'M', 'Q', 'T', 'T', 4,  0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02,
             0,    60,  0,   1, 'c', 0,   1,   't', 0,  3,
             'o',  'f', 'f', 0, 1,   'u', 0,   1,   'p'});
  CHECK(out == expected);
}

TEST_CASE("CONNECT without will: clean session only, password ignored without user name") {
  ConnectRequest request;
  request.client_id = "id";
  request.keepalive_s = 0;
  request.password = "ignored";
  std::string out;
  append_connect(out, request);
  CHECK(out == bytes({0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0, 0, 2, 'i', 'd'}));
}

TEST_CASE("PUBLISH QoS 0 has no packet id, QoS 1 retained has one") {
  std::string out;
  append_publish(out, "a/b", "", 0, false, 99);
  CHECK(out == bytes({0x30, 5, 0, 3, 'a', '/', 'b'}));
  out.clear();
  append_publish(out, "a", "{}", 1, true, 0x0102);
  CHECK(out == bytes({0x33, 7, 0, 1, 'a', 1, 2, '{', '}'}));
}

TEST_CASE("remaining length uses several bytes past 127") {
  std::string out;
  append_publish(out, "t", std::string(200, 'x'), 0, false, 0);
  // 2 + 1 + 200 = 203 = 0xCB -> 0xCB 0x01
  CHECK(static_cast<unsigned char>(out[1]) == 0xCB);
  CHECK(static_cast<unsigned char>(out[2]) == 0x01);
  CHECK(out.size() == 3 + 203);
  const auto frame = next_frame(out);
  CHECK(frame.status == FrameStatus::complete);
  CHECK(frame.consumed == out.size());
  CHECK(frame.frame.body.size() == 203);
}

TEST_CASE("SUBSCRIBE, UNSUBSCRIBE, PUBACK, PINGREQ, DISCONNECT bytes") {
  std::string out;
  append_subscribe(out, 10, {{"a/#", 1}, {"b", 0}});
  CHECK(out == bytes({0x82, 12, 0, 10, 0, 3, 'a', '/', '#', 1, 0, 1, 'b', 0}));
  out.clear();
  append_unsubscribe(out, 11, {"a/#"});
  CHECK(out == bytes({0xA2, 7, 0, 11, 0, 3, 'a', '/', '#'}));
  out.clear();
  append_puback(out, 0xABCD);
  CHECK(out == bytes({0x40, 2, 0xAB, 0xCD}));
  out.clear();
  append_pingreq(out);
  append_disconnect(out);
  CHECK(out == bytes({0xC0, 0, 0xE0, 0}));
}

TEST_CASE("framing: incomplete until the whole packet is there, then complete") {
  const std::string connack = bytes({0x20, 2, 0, 0});
  for (std::size_t size = 0; size < connack.size(); ++size) {
    CHECK(next_frame(std::string_view(connack).substr(0, size)).status == FrameStatus::incomplete);
  }
  const std::string two = connack + bytes({0xD0, 0});
  const auto first = next_frame(two);
  REQUIRE(first.status == FrameStatus::complete);
  CHECK(first.frame.type == PacketType::connack);
  CHECK(first.consumed == 4);
  const auto second = next_frame(std::string_view(two).substr(first.consumed));
  REQUIRE(second.status == FrameStatus::complete);
  CHECK(second.frame.type == PacketType::pingresp);
}

TEST_CASE("framing: malformed type, over-long length, oversized packet") {
  CHECK(next_frame(bytes({0x00, 0})).status == FrameStatus::malformed);
  CHECK(next_frame(bytes({0xF0, 0})).status == FrameStatus::malformed);
  CHECK(next_frame(bytes({0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01})).status == FrameStatus::malformed);
  CHECK(next_frame(bytes({0x30, 0x80, 0x80, 0x01}), 1000).status == FrameStatus::malformed);  // 16384 > 1000
}

TEST_CASE("CONNACK decoding") {
  const std::string accepted = bytes({0x20, 2, 1, 0});
  const auto connack = decode_connack(next_frame(accepted).frame);
  REQUIRE(connack);
  CHECK(connack->session_present);
  CHECK(connack->return_code == 0);
  const std::string refused = bytes({0x20, 2, 0, 5});
  CHECK(decode_connack(next_frame(refused).frame)->return_code == 5);
  CHECK(connack_reason(5) == "not authorized");
  const std::string short_body = bytes({0x20, 1, 0});
  CHECK_FALSE(decode_connack(next_frame(short_body).frame));
}

TEST_CASE("PUBLISH decoding round-trips what the encoder wrote") {
  std::string out;
  append_publish(out, "maestra/devices/x/status", "{\"status\":\"online\"}", 1, true, 7);
  const auto frame = next_frame(out);
  REQUIRE(frame.status == FrameStatus::complete);
  const auto publish = decode_publish(frame.frame);
  REQUIRE(publish);
  CHECK(publish->topic == "maestra/devices/x/status");
  CHECK(publish->payload == "{\"status\":\"online\"}");
  CHECK(publish->qos == 1);
  CHECK(publish->retain);
  CHECK(publish->packet_id == 7);
}

TEST_CASE("PUBLISH decoding rejects truncated topics and packet id 0") {
  const std::string truncated = bytes({0x30, 3, 0, 5, 'a'});
  CHECK_FALSE(decode_publish(next_frame(truncated).frame));
  const std::string zero_id = bytes({0x32, 5, 0, 1, 'a', 0, 0});
  CHECK_FALSE(decode_publish(next_frame(zero_id).frame));
}

TEST_CASE("SUBACK and PUBACK decoding") {
  const std::string suback = bytes({0x90, 4, 0, 9, 1, 0x80});
  const auto decoded = decode_suback(next_frame(suback).frame);
  REQUIRE(decoded);
  CHECK(decoded->packet_id == 9);
  CHECK(decoded->return_codes == std::vector<std::uint8_t>{1, suback_failure});
  const std::string puback = bytes({0x40, 2, 1, 0});
  CHECK(decode_packet_id(next_frame(puback).frame) == 256);
}
