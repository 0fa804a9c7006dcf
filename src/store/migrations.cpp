// Applying schema migrations under an advisory lock.
#include "store/migrations.hpp"

#include <set>

namespace maestra::store {

namespace {
// Any fixed 64-bit number shared by all instances; "maestra1" in ASCII.
constexpr long long migration_lock_key = 0x6d61657374726131LL;
}  // namespace

std::vector<std::string> apply_migrations(pqxx::connection& c, const std::vector<Migration>& migrations) {
  pqxx::work tx(c);
  // Transaction-scoped: released at commit or rollback.
  tx.exec_params("SELECT pg_advisory_xact_lock($1)", migration_lock_key);
  tx.exec(
      "CREATE TABLE IF NOT EXISTS schema_migrations ("
      " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())");
  std::set<std::string> applied;
  for (const auto& row : tx.exec("SELECT name FROM schema_migrations")) applied.insert(row[0].as<std::string>());
  std::vector<std::string> done;
  for (const auto& m : migrations) {
    if (applied.count(m.name)) continue;
    tx.exec(m.sql);
    tx.exec_params("INSERT INTO schema_migrations (name) VALUES ($1)", m.name);
    done.push_back(m.name);
  }
  tx.commit();
  return done;
}

}  // namespace maestra::store
