// Lending, returning and re-opening Postgres connections.
#include "store/connection_pool.hpp"

#include <stdexcept>

namespace maestra::store {

ConnectionPool::ConnectionPool(std::string url, std::size_t size, std::function<void(pqxx::connection&)> prepare)
    : url_(std::move(url)), size_(size), prepare_(std::move(prepare)) {}

ConnectionPool::~ConnectionPool() = default;

ConnectionPool::Lease::~Lease() {
  if (pool_) pool_->release(std::move(c_));
}

std::unique_ptr<pqxx::connection> ConnectionPool::open() {
  auto c = std::make_unique<pqxx::connection>(url_);
  if (prepare_) prepare_(*c);
  return c;
}

ConnectionPool::Lease ConnectionPool::acquire(std::chrono::milliseconds wait) {
  std::unique_ptr<pqxx::connection> c;
  {
    std::unique_lock lock(mutex_);
    if (!available_.wait_for(lock, wait, [&] { return !idle_.empty() || lent_ < size_; }))
      throw PoolTimeout("no database connection became free in time");
    ++lent_;
    if (!idle_.empty()) {
      c = std::move(idle_.back());
      idle_.pop_back();
    }
  }
  try {
    if (!c || !c->is_open()) c = open();
  } catch (...) {
    std::lock_guard lock(mutex_);
    --lent_;
    available_.notify_one();
    throw;
  }
  return Lease(*this, std::move(c));
}

void ConnectionPool::release(std::unique_ptr<pqxx::connection> c) {
  std::lock_guard lock(mutex_);
  --lent_;
  if (c && c->is_open()) idle_.push_back(std::move(c));
  available_.notify_one();
}

}  // namespace maestra::store
