// The active-instance lock: one fleet-manager at a time runs a database's fleet.
// Each instance keeps the registry and the deadlines in memory, so two running
// on one database would both expire devices and publish from stale state. The
// first to start holds a session-level Postgres advisory lock on a connection of
// its own; a second instance waits as a standby and takes over when the lock is
// released (a clean stop, a crash, or a dropped connection).
#pragma once
#include <memory>
#include <string>

#include <pqxx/pqxx>

namespace maestra::store {

class InstanceLock {
 public:
  enum class State {
    held,        // this process holds the lock
    taken,       // another session holds it
    unreachable  // the database did not answer
  };

  explicit InstanceLock(std::string url) : url_(std::move(url)) {}

  // Takes the lock if it is free; never waits for it.
  State try_acquire();
  // While held: checks that the session holding the lock is alive. If it was
  // lost (its connection broke), connects again and tries to take it back.
  State check();

 private:
  std::string url_;
  std::unique_ptr<pqxx::connection> connection_;
  bool held_ = false;
};

}  // namespace maestra::store
