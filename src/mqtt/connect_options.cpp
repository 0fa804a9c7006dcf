// The connect options both broker connections share (connect_options.hpp).
#include "mqtt/connect_options.hpp"

#include <chrono>

namespace maestra::mqtt_adapter {

void set_service_connect_options(mqtt::connect_options_builder& builder, const core::Config& config, bool clean_start) {
  builder.mqtt_version(MQTTVERSION_5)
                     .clean_start(clean_start)
                     .properties({{mqtt::property::SESSION_EXPIRY_INTERVAL, session_expiry_seconds}})
                     .keep_alive_interval(std::chrono::seconds(20))
                     .connect_timeout(std::chrono::seconds(3))
                     .automatic_reconnect(false);
  if (!config.mqtt_username.empty()) builder.user_name(config.mqtt_username).password(config.mqtt_password);
  if (config.mqtt_url.rfind("ssl://", 0) == 0 || config.mqtt_url.rfind("mqtts://", 0) == 0) {
    auto ssl = mqtt::ssl_options_builder().enable_server_cert_auth(true).verify(true);
    if (!config.mqtt_ca_file.empty()) ssl.trust_store(config.mqtt_ca_file);
    builder.ssl(ssl.finalize());
  }
}

}  // namespace maestra::mqtt_adapter
