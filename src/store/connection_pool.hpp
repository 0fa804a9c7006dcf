// A small pool of Postgres connections shared by the request threads and the
// fleet owner. It only lends and re-opens connections; it knows no SQL. A
// connection that broke is dropped and re-opened on next use, so the service
// recovers by itself when the database returns.
#pragma once
#include <stdexcept>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <pqxx/pqxx>

namespace maestra::store {

// No connection became free within the wait: the service is overloaded, which
// callers report like a database they cannot reach (503, try again).
struct PoolTimeout : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class ConnectionPool {
 public:
  // `prepare` runs on every newly opened connection (to prepare statements).
  ConnectionPool(std::string url, std::size_t size, std::function<void(pqxx::connection&)> prepare);
  ~ConnectionPool();

  class Lease {
   public:
    Lease(ConnectionPool& pool, std::unique_ptr<pqxx::connection> c) : pool_(&pool), c_(std::move(c)) {}
    Lease(Lease&& other) noexcept : pool_(other.pool_), c_(std::move(other.c_)) {}
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    pqxx::connection& operator*() { return *c_; }
    pqxx::connection* operator->() { return c_.get(); }
    // Call after a broken_connection: the connection is closed, not returned.
    void discard() { c_.reset(); }

   private:
    ConnectionPool* pool_;
    std::unique_ptr<pqxx::connection> c_;
  };

  // Throws pqxx::broken_connection when the database cannot be reached, and
  // std::runtime_error when no connection frees up within `wait`.
  Lease acquire(std::chrono::milliseconds wait = std::chrono::milliseconds{5000});

  const std::string& url() const { return url_; }

 private:
  void release(std::unique_ptr<pqxx::connection> c);
  std::unique_ptr<pqxx::connection> open();

  std::string url_;
  std::size_t size_;
  std::function<void(pqxx::connection&)> prepare_;
  std::mutex mutex_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;
  std::size_t lent_ = 0;
};

}  // namespace maestra::store
