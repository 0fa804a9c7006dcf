// Holding the active-instance advisory lock on a dedicated connection.
#include "store/instance_lock.hpp"

namespace maestra::store {

namespace {
// Any fixed 64-bit number shared by all instances, distinct from the migration
// lock's; "maestraA" in ASCII.
constexpr long long instance_lock_key = 0x6d61657374726141LL;
}  // namespace

InstanceLock::State InstanceLock::try_acquire() {
  if (held_) return check();
  try {
    if (!connection_ || !connection_->is_open()) connection_ = std::make_unique<pqxx::connection>(url_);
    pqxx::nontransaction tx(*connection_);
    held_ = tx.exec_params1("SELECT pg_try_advisory_lock($1)", instance_lock_key)[0].as<bool>();
    return held_ ? State::held : State::taken;
  } catch (const std::exception&) {
    connection_.reset();
    return State::unreachable;
  }
}

InstanceLock::State InstanceLock::check() {
  if (!held_) return try_acquire();
  try {
    // The lock lives as long as the session: a live connection still holds it.
    pqxx::nontransaction tx(*connection_);
    tx.exec("SELECT 1");
    return State::held;
  } catch (const std::exception&) {
    // The session is gone and the lock with it; another instance may have it now.
    connection_.reset();
    held_ = false;
    return try_acquire();
  }
}

}  // namespace maestra::store
