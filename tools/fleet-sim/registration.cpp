// Registration body and reply parsing, shared by the HTTP and MQTT transports
// (see registration.hpp). A reply is untrusted input: anything unexpected is an
// error text, never an exception.
#include "registration.hpp"

#include <nlohmann/json.hpp>

namespace fleet_sim {
namespace {

std::string snippet(std::string_view body) {
  constexpr std::size_t limit = 200;
  std::string text(body.substr(0, limit));
  if (body.size() > limit) text += "...";
  return text;
}

}  // namespace

std::string registration_body(std::string_view name, std::string_view device_type, std::string_view hardware_id) {
  const nlohmann::json body = {{"name", name}, {"device_type", device_type}, {"hardware_id", hardware_id}};
  return body.dump();
}

RegistrationReply parse_registration_reply(std::string_view body, int http_status) {
  RegistrationReply reply;
  const std::string status_text = http_status > 0 ? "HTTP " + std::to_string(http_status) + ": " : "";
  const auto document = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!document.is_object()) {
    reply.error = status_text + "reply is not a JSON object: " + snippet(body);
    return reply;
  }
  const auto id = document.find("id");
  const bool has_id = id != document.end() && id->is_string() && !id->get_ref<const std::string&>().empty();
  const auto error = document.find("error");
  if (error != document.end()) {
    const std::string code = error->is_string() ? error->get<std::string>() : error->dump();
    if (code == "conflict" && has_id && (http_status == 0 || http_status == 409)) {
      reply.id = id->get<std::string>();
      reply.existing = true;
      return reply;
    }
    reply.error = status_text + code;
    if (const auto detail = document.find("detail"); detail != document.end() && detail->is_string()) {
      reply.error += " (" + detail->get<std::string>() + ")";
    }
    return reply;
  }
  if (http_status != 0 && (http_status < 200 || http_status >= 300)) {
    reply.error = status_text + snippet(body);
    return reply;
  }
  if (!has_id) {
    reply.error = status_text + "reply has no \"id\": " + snippet(body);
    return reply;
  }
  reply.id = id->get<std::string>();
  return reply;
}

void RegistrationTally::record(std::size_t index, const RegistrationReply& reply) {
  if (!reply.id.empty()) {
    ids[index] = reply.id;
    if (reply.existing) {
      ++existing;
    } else {
      ++created;
    }
    return;
  }
  ++failed;
  if (first_error.empty()) first_error = reply.error;
}

}  // namespace fleet_sim
