// One database operation on a leased connection, with the one rule for what a
// failure means: `unavailable` when the database cannot be reached (a lost or
// refused connection, SQLSTATE class 08, admin/crash shutdown, too many
// connections, no free connection in the pool) — callers retry or answer 503 —
// and `internal` for anything else (a bug or bad data, logged by the caller).
// A connection that broke is discarded, not returned to the pool. Used by every
// store (devices, commands, telemetry).
#pragma once
#include <string>
#include <utility>

#include <pqxx/pqxx>

#include "core/errors.hpp"
#include "store/connection_pool.hpp"

namespace maestra::store {

template <class Fn>
auto guarded(ConnectionPool& pool, const char* what, Fn&& fn) -> decltype(fn(std::declval<pqxx::connection&>())) {
  using core::Error;
  using core::ErrorKind;
  try {
    auto lease = pool.acquire();
    try {
      return fn(*lease);
    } catch (const pqxx::broken_connection&) {
      lease.discard();
      throw;
    } catch (const pqxx::in_doubt_error&) {
      lease.discard();
      throw;
    }
  } catch (const pqxx::broken_connection& e) {
    return Error{ErrorKind::unavailable, "", std::string(what) + ": database connection lost: " + e.what()};
  } catch (const pqxx::in_doubt_error& e) {
    return Error{ErrorKind::unavailable, "", std::string(what) + ": database connection lost mid-commit: " + e.what()};
  } catch (const pqxx::sql_error& e) {
    const std::string state = e.sqlstate();
    const bool down = state.rfind("08", 0) == 0 || state == "57P01" || state == "57P02" || state == "57P03" ||
                      state == "53300";
    return Error{down ? ErrorKind::unavailable : ErrorKind::internal, "",
                 std::string(what) + ": database error " + state + ": " + e.what()};
  } catch (const PoolTimeout& e) {
    return Error{ErrorKind::unavailable, "", std::string(what) + ": " + e.what()};
  } catch (const std::exception& e) {
    return Error{ErrorKind::internal, "", std::string(what) + ": " + e.what()};
  }
}

}  // namespace maestra::store
