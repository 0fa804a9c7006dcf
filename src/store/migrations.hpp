// Schema migrations: the numbered files of schema/ (compiled into the binary),
// applied at start inside one transaction under a Postgres advisory lock, so two
// instances starting together never race, and recorded in schema_migrations.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include <pqxx/pqxx>

namespace maestra::store {

struct Migration {
  std::string name;
  std::string sql;
};

const std::vector<Migration>& embedded_migrations();

// Applies what is missing; returns the names applied now. Throws on failure
// (nothing is applied then: the transaction rolls back).
std::vector<std::string> apply_migrations(pqxx::connection& c, const std::vector<Migration>& migrations);

}  // namespace maestra::store
