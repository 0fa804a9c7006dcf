// fleet-manager: wires the core, the Postgres store, the fleet owner, the HTTP
// shim and the MQTT adapter, and owns start-up and shutdown.
//
// The threading rule: httplib's worker pool and Paho's callback thread are
// foreign threads. They validate input and hand work to the fleet owner (or the
// MQTT registration worker); they never hold a lock across I/O and never wait
// on the broker. Only the owner decides changes that are stored; a heartbeat that
// changes nothing stored is applied in place (Fleet::heartbeat_in_place). Signals are blocked in every
// thread and taken here with sigtimedwait, so SIGTERM/SIGINT shut down cleanly:
// stop taking requests, publish the fleet's offline status, flush last_seen,
// exit 0. One instance per database is active (store/instance_lock); another
// waits as a standby until the lock is free.
#include <malloc.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "core/config.hpp"
#include "http/http_api.hpp"
#include "mqtt/mqtt_link.hpp"
#include "service/commands.hpp"
#include "service/fleet.hpp"
#include "service/log.hpp"
#include "service/telemetry.hpp"
#include "store/command_store.hpp"
#include "store/device_store.hpp"
#include "store/instance_lock.hpp"
#include "store/migrations.hpp"
#include "store/telemetry_store.hpp"

using namespace maestra;

namespace {

core::TimePoint system_now() {
  return std::chrono::time_point_cast<core::Millis>(std::chrono::system_clock::now());
}

// Waits up to `timeout` for SIGTERM/SIGINT (blocked in every thread); returns
// the signal taken, or 0 when the time ran out.
int wait_for_signal(const sigset_t& signals, std::chrono::milliseconds timeout) {
  const timespec wait{static_cast<time_t>(timeout.count() / 1000), static_cast<long>((timeout.count() % 1000) * 1000000)};
  const int taken = sigtimedwait(&signals, nullptr, &wait);
  return taken > 0 ? taken : 0;
}

// Waits for the database and applies migrations; false if asked to stop meanwhile.
bool prepare_database(store::ConnectionPool& pool, const sigset_t& signals) {
  auto delay = std::chrono::milliseconds(500);
  while (true) {
    try {
      auto lease = pool.acquire();
      const auto applied = store::apply_migrations(*lease, store::embedded_migrations());
      for (const auto& name : applied) service::log_info("migration_applied", {{"name", name}});
      return true;
    } catch (const std::exception& e) {
      service::log_warn("database_not_ready", {{"url", core::redact_url(pool.url())},
                                               {"error", e.what()},
                                               {"retry_in_ms", std::to_string(delay.count())}});
    }
    if (wait_for_signal(signals, delay)) return false;
    delay = std::min(delay * 2, std::chrono::milliseconds(10000));
  }
}

// Waits, as a standby, until this process holds the active-instance lock; false
// if asked to stop meanwhile. While it waits, `standby` answers on the HTTP port.
bool become_active(store::InstanceLock& lock, const sigset_t& signals, http::StandbyHttp& standby) {
  auto last_log = std::chrono::steady_clock::time_point{};
  auto last_state = store::InstanceLock::State::held;
  bool standby_tried = false;  // started once; a failure to bind is logged, not retried
  while (true) {
    const auto state = lock.try_acquire();
    if (state == store::InstanceLock::State::held) {
      standby.stop();
      if (last_log != std::chrono::steady_clock::time_point{}) service::log_info("standby_ended", {{"role", "active"}});
      return true;
    }
    if (state == store::InstanceLock::State::taken && !standby_tried) {
      standby_tried = true;
      try {
        standby.start();
      } catch (const std::exception& e) {
        service::log_warn("standby_http_not_served", {{"error", e.what()}});
      }
    }
    const auto now = std::chrono::steady_clock::now();
    if (state != last_state || now - last_log >= std::chrono::seconds(60)) {
      if (state == store::InstanceLock::State::taken)
        service::log_warn("standby", {{"reason", "another fleet-manager instance is active on this database"},
                                      {"note", "taking over when it stops; checked every second; /health answers 503 standby"}});
      else
        service::log_warn("database_not_ready", {{"step", "active-instance lock"}, {"retry_in_ms", "1000"}});
      last_log = now;
      last_state = state;
    }
    if (wait_for_signal(signals, std::chrono::seconds(1))) return false;
  }
}

}  // namespace

int main(int argc, char** argv) {
  // A note on memory: each of the 64 HTTP workers would get a malloc arena of
  // its own and keep that arena's peak (a burst of large requests leaves every
  // worker holding its share). Four arenas, a fixed mmap threshold, and a trim
  // of free pages every 10 s below keep the resident size near what is in use.
  mallopt(M_ARENA_MAX, 4);
  // Blocks of 128 KiB and more (a page of the device list, a large body) are
  // mapped and unmapped on their own instead of growing the heap for good.
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  std::vector<std::string> args(argv + 1, argv + argc);
  auto parsed = core::parse_command_line(
      [](std::string_view name) -> std::optional<std::string> {
        const char* value = std::getenv(std::string(name).c_str());
        return value ? std::optional<std::string>(value) : std::nullopt;
      },
      args);
  if (!parsed) {
    std::cerr << "fleet-manager: " << parsed.error().detail << "\n";
    return 2;
  }
  if (parsed->show_help) {
    std::cout << core::help_text("fleet-manager");
    return 0;
  }
  if (parsed->show_routes) {
    std::cout << http::route_table_text();
    return 0;
  }
  if (parsed->show_version) {
    std::cout << "fleet-manager " << MAESTRA_VERSION << "\n";
    return 0;
  }
  core::Config config = parsed->config;
  if (auto error = core::check_config(config)) {
    std::cerr << "fleet-manager: " << error->detail << "\n";
    return 2;
  }
  if (config.web_root.empty() && std::filesystem::is_directory(MAESTRA_DEFAULT_WEB_ROOT))
    config.web_root = MAESTRA_DEFAULT_WEB_ROOT;
  service::set_log_format_json(config.log_format == "json");

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  setenv("PGCONNECT_TIMEOUT", "5", /*overwrite=*/0);

  service::log_info("starting", {{"version", MAESTRA_VERSION},
                                 {"database", core::redact_url(config.database_url)},
                                 {"mqtt", core::redact_url(config.mqtt_url)},
                                 {"offline_after_s", std::to_string(config.offline_after.count())},
                                 {"topic_prefix", config.topic_prefix},
                                 {"secure", config.secure ? "true" : "false"},
                                 {"provisioning_key", config.provisioning_key.empty() ? "off" : "required"},
                                 {"admin_token", config.admin_token.empty() ? "off" : "required"}});

  store::ConnectionPool pool(config.database_url, static_cast<std::size_t>(config.database_pool) + 2,
                             store::DeviceStore::prepare_statements);
  if (!prepare_database(pool, signals)) return 0;
  store::InstanceLock instance_lock(config.database_url);
  {
    http::StandbyHttp standby(config);
    if (!become_active(instance_lock, signals, standby)) return 0;
  }
  store::DeviceStore store(pool);
  service::Metrics metrics;

  const auto started = system_now();
  service::FleetOptions options;
  options.deadlines = core::DeadlinePolicy{config.offline_after, started};
  options.flush_interval = config.flush_interval;
  options.provisioning_key = config.provisioning_key;
  service::Fleet fleet(store, metrics, options, system_now);

  const auto load_began = std::chrono::steady_clock::now();
  auto loaded = fleet.load();
  if (!loaded) {
    service::log_error("registry_load_failed", {{"error", loaded.error().detail}});
    return 1;
  }
  const auto load_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - load_began).count();
  service::log_info("registry_loaded", {{"devices", std::to_string(loaded.value())},
                                        {"ms", std::to_string(load_ms)},
                                        {"grace_s", std::to_string(config.offline_after.count())}});

  // Telemetry has its own connections and its own writer thread: it never waits
  // behind (or holds up) the heartbeat path.
  store::ConnectionPool telemetry_pool(config.database_url, 6, store::DeviceStore::prepare_statements);
  const auto telemetry_store = store::make_postgres_telemetry_store(telemetry_pool);
  service::TelemetryOptions telemetry_options;
  telemetry_options.limits.metrics_retention_days = config.metrics_retention_days;
  telemetry_options.limits.events_retention_days = config.events_retention_days;
  service::Telemetry telemetry(*telemetry_store, telemetry_options, system_now,
                               [&fleet](const core::DeviceId& id) { return fleet.knows(id); });
  if (auto latest = telemetry.load(); !latest) {
    service::log_error("telemetry_load_failed", {{"error", latest.error().detail}});
    return 1;
  } else {
    service::log_info("telemetry_loaded", {{"latest_values", std::to_string(latest.value())}});
  }
  telemetry.start();

  mqtt_adapter::MqttLink mqtt(config, fleet, metrics);
  mqtt.set_telemetry(&telemetry);
  fleet.set_publisher(&mqtt);
  fleet.set_device_access(mqtt.device_access());
  // Commands to devices: stored, then sent by their own owner (service/commands).
  store::PgCommandStore command_store(pool);
  service::Commands commands(command_store, fleet, system_now);
  commands.set_publisher(&mqtt);
  mqtt.set_commands(&commands);
  fleet.set_connectivity_listener([&commands](const core::DeviceId& id, bool back) {
    if (back)
      commands.device_back(id);
    else
      commands.device_gone(id);
  });
  commands.start();
  fleet.start();

  http::HttpApi api(fleet, metrics, config, http::HealthProbe{[&mqtt] { return mqtt.connected(); }});
  api.set_telemetry(&telemetry);
  api.set_commands(&commands);
  int port = 0;
  try {
    port = api.start();
  } catch (const std::exception& e) {
    std::cerr << "fleet-manager: " << e.what() << "\n";
    commands.stop();
    fleet.stop();
    return 1;
  }
  mqtt.start();
  service::log_info("listening", {{"http", config.http_host + ":" + std::to_string(port)},
                                  {"web_root", config.web_root.empty() ? "(none)" : config.web_root}});

  // Until a signal: every 2 s, check that this process still holds the
  // active-instance lock. If its session was lost and another instance took
  // over meanwhile, stop (exit 1) rather than run the same fleet twice.
  int exit_code = 0;
  auto lock_warned = std::chrono::steady_clock::time_point{};
  for (int tick = 1;; ++tick) {
    if (tick % 5 == 0) malloc_trim(0);
    if (const int signal_number = wait_for_signal(signals, std::chrono::seconds(2))) {
      service::log_info("shutting_down", {{"signal", signal_number == SIGTERM ? "SIGTERM" : "SIGINT"}});
      break;
    }
    const auto state = instance_lock.check();
    if (state == store::InstanceLock::State::taken) {
      service::log_error("active_instance_lock_lost",
                         {{"reason", "its database session ended and another instance is active now"},
                          {"action", "shutting down (exit 1); restart this one to stand by"}});
      exit_code = 1;
      break;
    }
    if (state == store::InstanceLock::State::unreachable &&
        std::chrono::steady_clock::now() - lock_warned >= std::chrono::seconds(60)) {
      service::log_warn("active_instance_lock_unchecked", {{"reason", "the database did not answer"}});
      lock_warned = std::chrono::steady_clock::now();
    }
  }
  fleet.begin_shutdown();
  commands.stop_waits();
  api.stop();
  mqtt.stop();
  telemetry.stop();
  commands.stop();
  fleet.stop();
  service::log_info("stopped");
  return exit_code;
}
