// Maestra device over MQTT on an ESP32 (Arduino core + PubSubClient + ArduinoJson).
//
// Demonstrates the MQTT-first flow: register over MQTT (reply on
// maestra/hardware/{mac}/registration, a conflict reply carries the existing id),
// connect with a last will ({"state":"offline","session":N} retained on
// maestra/devices/{id}/presence), publish the birth right after connecting,
// heartbeat every 30 s, and reconnect (with a new session number) when the link
// drops. Unplug the board and the broker publishes the will: the fleet manager
// marks it offline within a second.
//
// Libraries: PubSubClient (Nick O'Leary) >= 2.8, ArduinoJson >= 6.
#include <ArduinoJson.h>
#include <Preferences.h>
#include <PubSubClient.h>
#include <WiFi.h>

const char* WIFI_SSID = "SSID";
const char* WIFI_PASSWORD = "password";
const char* BROKER_HOST = "maestra-host";
const uint16_t BROKER_PORT = 1883;
const char* PREFIX = "maestra";
const unsigned long HEARTBEAT_INTERVAL_MS = 30000;

WiFiClient net;
PubSubClient mqtt(net);
Preferences prefs;
String hardwareId;
String deviceId;
uint32_t session = 0;
unsigned long lastHeartbeat = 0;

String topic(const String& kind, const String& id, const String& leaf) {
  return String(PREFIX) + "/" + kind + "/" + id + "/" + leaf;
}

void onMessage(char* topicName, byte* payload, unsigned int length) {
  if (String(topicName) != topic("hardware", hardwareId, "registration")) return;
  StaticJsonDocument<1024> reply;
  if (deserializeJson(reply, payload, length)) return;
  // A new record has "id"; a conflict reply {"error":"conflict","id":...} too.
  if (reply.containsKey("id")) {
    deviceId = reply["id"].as<String>();
    prefs.putString("device_id", deviceId);  // register only once
    Serial.println("Registered as " + deviceId);
  } else {
    Serial.print("Registration refused: ");
    serializeJson(reply, Serial);
    Serial.println();
  }
}

void registerOverMqtt() {
  mqtt.connect(("register-" + hardwareId).c_str());
  mqtt.subscribe(topic("hardware", hardwareId, "registration").c_str(), 1);
  StaticJsonDocument<512> doc;
  doc["name"] = "ESP32 Sensor";
  doc["device_type"] = "esp32";
  doc["hardware_id"] = hardwareId;
  doc["firmware_version"] = "1.0.0";
  doc["ip_address"] = WiFi.localIP().toString();
  doc.createNestedObject("location")["room"] = "Workshop";
  String body;
  serializeJson(doc, body);
  mqtt.publish(topic("hardware", hardwareId, "register").c_str(), body.c_str());
  for (unsigned long start = millis(); deviceId.isEmpty() && millis() - start < 10000;) {
    mqtt.loop();
    delay(10);
  }
  mqtt.disconnect();
}

bool connectAsDevice() {
  session++;
  prefs.putUInt("session", session);  // increases across reboots too
  String presence = topic("devices", deviceId, "presence");
  String will = "{\"state\":\"offline\",\"session\":" + String(session) + "}";
  String birth = "{\"state\":\"online\",\"session\":" + String(session) + "}";
  // connect(id, willTopic, willQos, willRetain, willMessage)
  if (!mqtt.connect(("device-" + deviceId).c_str(), presence.c_str(), 1, true, will.c_str())) return false;
  mqtt.publish(presence.c_str(), birth.c_str(), true);
  return true;
}

void setup() {
  Serial.begin(115200);
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  while (WiFi.status() != WL_CONNECTED) delay(500);
  hardwareId = WiFi.macAddress();
  prefs.begin("maestra", false);
  deviceId = prefs.getString("device_id", "");
  session = prefs.getUInt("session", 0);
  mqtt.setServer(BROKER_HOST, BROKER_PORT);
  mqtt.setCallback(onMessage);
  mqtt.setBufferSize(1024);
  while (deviceId.isEmpty()) {
    registerOverMqtt();
    if (deviceId.isEmpty()) delay(5000);
  }
}

void loop() {
  if (!mqtt.connected()) {
    static unsigned long backoff = 1000;
    if (!connectAsDevice()) {
      delay(backoff);
      backoff = min(backoff * 2, 30000UL);
      return;
    }
    backoff = 1000;
  }
  mqtt.loop();
  if (millis() - lastHeartbeat >= HEARTBEAT_INTERVAL_MS) {
    // Empty payload is a plain heartbeat; {"status":"error"} reports an error.
    mqtt.publish(topic("devices", deviceId, "heartbeat").c_str(), "");
    lastHeartbeat = millis();
  }
  delay(10);
}
