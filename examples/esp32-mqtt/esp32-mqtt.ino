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
// Commands: subscribed to maestra/devices/{id}/commands/+ before the birth (the
// birth makes the service send every command not yet delivered, in order). Each
// command is answered on maestra/devices/{id}/replies/{command_id}: "delivered",
// then "succeeded", "failed" or "rejected" (an unknown name). Delivery is at
// least once: a command id already handled gets its last answer again, and is
// never run twice. Supported here: "blink" {"times":N}, "reboot", "set_interval"
// {"seconds":N} (the telemetry interval).
//
// Telemetry: every 10 s a few readings on maestra/devices/{id}/telemetry/metrics
// ({"temperature":..,"rssi":..,"free_heap":..}), and a "boot" event on
// maestra/devices/{id}/telemetry/events once connected after a reset.
//
// Libraries: PubSubClient (Nick O'Leary) >= 2.8, ArduinoJson >= 6.
#include <ArduinoJson.h>
#include <Preferences.h>
#include <PubSubClient.h>
#include <WiFi.h>
#include <esp_system.h>  // esp_reset_reason

const char* WIFI_SSID = "SSID";
const char* WIFI_PASSWORD = "password";
const char* BROKER_HOST = "maestra-host";
const uint16_t BROKER_PORT = 1883;
const char* PREFIX = "maestra";
const unsigned long HEARTBEAT_INTERVAL_MS = 30000;
const int LED_PIN = 2;  // the on-board LED of most ESP32 dev boards

WiFiClient net;
PubSubClient mqtt(net);
Preferences prefs;
String hardwareId;
String deviceId;
uint32_t session = 0;
unsigned long lastHeartbeat = 0;
unsigned long telemetryIntervalMs = 10000;
unsigned long lastTelemetry = 0;
bool bootEventSent = false;
bool rebootRequested = false;

// The last command ids handled and their final answer (at-least-once delivery:
// a command sent again is answered again, never run twice).
const int SEEN = 8;
String seenIds[SEEN];
String seenAnswers[SEEN];
int seenNext = 0;

String topic(const String& kind, const String& id, const String& leaf) {
  return String(PREFIX) + "/" + kind + "/" + id + "/" + leaf;
}

void reply(const String& commandId, const char* state, const char* error = nullptr) {
  StaticJsonDocument<256> doc;
  doc["state"] = state;
  if (error) doc["error"] = error;
  String body;
  serializeJson(doc, body);
  mqtt.publish(topic("devices", deviceId, "replies/" + commandId).c_str(), body.c_str());
}

// Runs a command; returns its final state ("succeeded", "failed", "rejected").
const char* runCommand(const String& name, JsonObjectConst params, String& error) {
  if (name == "blink") {
    int times = params["times"] | 3;
    if (times < 1 || times > 20) { error = "times must be 1-20"; return "failed"; }
    for (int i = 0; i < times; i++) {
      digitalWrite(LED_PIN, HIGH); delay(150);
      digitalWrite(LED_PIN, LOW); delay(150);
    }
    return "succeeded";
  }
  if (name == "set_interval") {
    long seconds = params["seconds"] | 0L;
    if (seconds < 1 || seconds > 3600) { error = "seconds must be 1-3600"; return "failed"; }
    telemetryIntervalMs = seconds * 1000UL;
    return "succeeded";
  }
  if (name == "reboot") {
    rebootRequested = true;  // after the answer is out
    return "succeeded";
  }
  error = "unknown command " + name;
  return "rejected";
}

void onCommand(const String& commandId, byte* payload, unsigned int length) {
  for (int i = 0; i < SEEN; i++) {
    if (seenIds[i] == commandId) {  // sent again: answer again, do not run it twice
      reply(commandId, "delivered");
      reply(commandId, seenAnswers[i].c_str());
      return;
    }
  }
  StaticJsonDocument<1024> command;
  if (deserializeJson(command, payload, length)) return;
  reply(commandId, "delivered");
  String error;
  const char* state = runCommand(command["name"].as<String>(), command["params"].as<JsonObjectConst>(), error);
  seenIds[seenNext] = commandId;
  seenAnswers[seenNext] = state;
  seenNext = (seenNext + 1) % SEEN;
  reply(commandId, state, error.isEmpty() ? nullptr : error.c_str());
}

void onMessage(char* topicName, byte* payload, unsigned int length) {
  const String name(topicName);
  const String commands = topic("devices", deviceId, "commands/");
  if (!deviceId.isEmpty() && name.startsWith(commands)) {
    onCommand(name.substring(commands.length()), payload, length);
    return;
  }
  if (name != topic("hardware", hardwareId, "registration")) return;
  StaticJsonDocument<1024> answer;
  if (deserializeJson(answer, payload, length)) return;
  // A new record has "id"; a conflict reply {"error":"conflict","id":...} too.
  if (answer.containsKey("id")) {
    deviceId = answer["id"].as<String>();
    prefs.putString("device_id", deviceId);  // register only once
    Serial.println("Registered as " + deviceId);
  } else {
    Serial.print("Registration refused: ");
    serializeJson(answer, Serial);
    Serial.println();
  }
}

void publishTelemetry() {
  StaticJsonDocument<256> doc;
  doc["temperature"] = temperatureRead();  // the chip's own sensor, in degrees Celsius
  doc["rssi"] = WiFi.RSSI();
  doc["free_heap"] = ESP.getFreeHeap();
  String body;
  serializeJson(doc, body);
  mqtt.publish(topic("devices", deviceId, "telemetry/metrics").c_str(), body.c_str());
}

void publishBootEvent() {
  StaticJsonDocument<256> doc;
  doc["event_type"] = "boot";
  doc["severity"] = "info";
  doc["message"] = "started, firmware 1.0.0";
  doc.createNestedObject("data")["reset_reason"] = (int)esp_reset_reason();
  String body;
  serializeJson(doc, body);
  mqtt.publish(topic("devices", deviceId, "telemetry/events").c_str(), body.c_str());
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
  // Commands first: the birth makes the service send what is waiting.
  mqtt.subscribe(topic("devices", deviceId, "commands/+").c_str(), 1);
  mqtt.publish(presence.c_str(), birth.c_str(), true);
  if (!bootEventSent) {  // once per reset, not per reconnect
    publishBootEvent();
    bootEventSent = true;
  }
  return true;
}

void setup() {
  Serial.begin(115200);
  pinMode(LED_PIN, OUTPUT);
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  while (WiFi.status() != WL_CONNECTED) delay(500);
  hardwareId = WiFi.macAddress();
  prefs.begin("maestra", false);
  deviceId = prefs.getString("device_id", "");
  session = prefs.getUInt("session", 0);
  mqtt.setServer(BROKER_HOST, BROKER_PORT);
  mqtt.setCallback(onMessage);
  mqtt.setBufferSize(2048);  // command payloads (params up to a few hundred bytes here)
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
  if (millis() - lastTelemetry >= telemetryIntervalMs) {
    publishTelemetry();
    lastTelemetry = millis();
  }
  if (rebootRequested) {
    // A clean goodbye (status offline, reason disconnect), then the birth after the restart.
    String bye = "{\"state\":\"offline\",\"reason\":\"disconnect\",\"session\":" + String(session) + "}";
    mqtt.publish(topic("devices", deviceId, "presence").c_str(), bye.c_str(), true);
    mqtt.loop();
    mqtt.disconnect();
    delay(100);
    ESP.restart();
  }
  delay(10);
}
