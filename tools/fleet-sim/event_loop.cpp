// The epoll loop declared in event_loop.hpp. Handlers are found through the
// pointer stored with each descriptor, so a handler that closes its own socket
// mid-batch is still safe to call: it sees itself closed and ignores the event.
#include "event_loop.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <system_error>

namespace fleet_sim {

EventLoop::EventLoop() : epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)) {
  if (epoll_fd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
}

EventLoop::~EventLoop() {
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

void EventLoop::watch(int fd, Handler& handler) {
  epoll_event event{};
  event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  event.data.ptr = &handler;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
    throw std::system_error(errno, std::generic_category(), "epoll_ctl(ADD)");
  }
}

void EventLoop::unwatch(int fd) { ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr); }

int EventLoop::poll(std::chrono::milliseconds timeout) {
  std::array<epoll_event, 1024> events{};
  const int wait_ms = timeout.count() < 0 ? 0 : static_cast<int>(timeout.count());
  const int ready = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), wait_ms);
  now_ = Clock::now();
  if (ready < 0) {
    if (errno == EINTR) return 0;
    throw std::system_error(errno, std::generic_category(), "epoll_wait");
  }
  for (int i = 0; i < ready; ++i) {
    static_cast<Handler*>(events[static_cast<std::size_t>(i)].data.ptr)
        ->on_ready(events[static_cast<std::size_t>(i)].events);
  }
  return ready;
}

std::int64_t epoch_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace fleet_sim
