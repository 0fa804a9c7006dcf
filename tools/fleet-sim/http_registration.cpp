// HTTP bulk registration (see http_registration.hpp). Worker threads take the
// next device index from a shared counter; each keeps one keep-alive client.
// Transport errors and 5xx answers are retried twice; the main thread reports
// progress once a second on stderr.
#include "http_registration.hpp"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>

#include "device_ids.hpp"
#include "stop_signal.hpp"

namespace fleet_sim {
namespace {

constexpr int attempts_per_device = 3;

RegistrationReply register_one(httplib::Client& client, const std::string& path, const std::string& body) {
  RegistrationReply reply;
  for (int attempt = 1; attempt <= attempts_per_device; ++attempt) {
    const auto response = client.Post(path, body, "application/json");
    if (!response) {
      reply.error = "HTTP request failed: " + httplib::to_string(response.error());
    } else if (response->status >= 500) {
      reply = parse_registration_reply(response->body, response->status);
    } else {
      return parse_registration_reply(response->body, response->status);
    }
    if (stop_requested()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200 * attempt));
  }
  return reply;
}

}  // namespace

RegistrationTally register_over_http(const SimOptions& options, std::size_t devices) {
  const auto endpoint = parse_http_url(options.http_url);  // checked by check_options
  const std::string path = endpoint->base_path + "/devices/register";
  const auto started = std::chrono::steady_clock::now();

  RegistrationTally tally;
  tally.ids.assign(devices, "");
  std::mutex tally_mutex;
  std::atomic<std::size_t> next_index{0};
  std::atomic<std::size_t> done{0};

  auto worker = [&] {
    httplib::Client client(endpoint->host, endpoint->port);
    client.set_keep_alive(true);
    client.set_tcp_nodelay(true);  // headers and body go out in two writes: no 40 ms Nagle/delayed-ACK stall
    client.set_connection_timeout(std::chrono::seconds(5));
    const auto timeout = std::chrono::milliseconds(static_cast<long>(options.register_timeout_s * 1000));
    client.set_read_timeout(timeout);
    client.set_write_timeout(timeout);
    for (;;) {
      if (stop_requested()) return;
      const std::size_t index = next_index.fetch_add(1);
      if (index >= devices) return;
      const auto reply = register_one(
          client, path, registration_body(device_name(index), options.device_type, hardware_id(options.run_id, index)));
      {
        const std::lock_guard lock(tally_mutex);
        tally.record(index, reply);
      }
      done.fetch_add(1);
    }
  };

  const std::size_t thread_count = std::min(options.register_parallel, devices);
  std::vector<std::thread> threads;
  threads.reserve(thread_count);
  for (std::size_t i = 0; i < thread_count; ++i) threads.emplace_back(worker);

  auto last_report = started;
  while (done.load() < devices && !stop_requested()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const auto now = std::chrono::steady_clock::now();
    if (!options.quiet && now - last_report >= std::chrono::seconds(1)) {
      last_report = now;
      std::fprintf(stderr, "registering over http: %zu/%zu\n", done.load(), devices);
    }
  }
  for (auto& thread : threads) thread.join();

  const std::size_t finished = done.load();
  if (finished < devices) {
    const std::lock_guard lock(tally_mutex);
    tally.failed += devices - finished;
    if (tally.first_error.empty()) tally.first_error = "registration interrupted";
  }
  tally.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return tally;
}

}  // namespace fleet_sim
