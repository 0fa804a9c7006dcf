// SIGINT/SIGTERM handlers that set an atomic flag (see stop_signal.hpp). The
// handlers are async-signal-safe: they store to a lock-free atomic and return.
#include "stop_signal.hpp"

#include <atomic>
#include <csignal>

namespace fleet_sim {
namespace {

std::atomic<bool> stop_flag{false};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void on_stop_signal(int) { stop_flag.store(true, std::memory_order_relaxed); }

}  // namespace

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

bool stop_requested() { return stop_flag.load(std::memory_order_relaxed); }

}  // namespace fleet_sim
