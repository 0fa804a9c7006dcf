// Where commands to devices are kept: the interface the command owner
// (service/commands) works against, and its Postgres implementation on the
// statements src/store/sql/command_*.sql. It stores what the core decided and
// decides nothing: a transition is applied only if the command is still in the
// state the decision was made on, so two deciders never overwrite each other.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "core/commands.hpp"

namespace maestra::store {

class ConnectionPool;

// A command as created: new, or the one an idempotency key already named.
struct CreatedCommand {
  core::Command command;
  bool existing = false;
  std::string request_hash;  // of the existing one
};

// One move of a batch (transition_many): from -> to, with the device's result and error (null: kept).
struct CommandMove {
  core::CommandId id;
  core::CommandState from = core::CommandState::queued;
  core::CommandState to = core::CommandState::sent;
  core::Json result;
  std::optional<std::string> error;
};

struct CommandWithHistory {
  core::Command command;
  std::vector<core::CommandHistoryEntry> history;
};

class CommandStore {
 public:
  virtual ~CommandStore() = default;
  // Stores a queued command and its first history row in one transaction.
  // not_found when the device does not exist. With a key that the device
  // already used: that command (existing = true), whatever its request.
  virtual core::Result<CreatedCommand> create(const core::DeviceId& device, const core::CommandRequest& request,
                                              const std::optional<std::string>& idempotency_key,
                                              core::TimePoint now) = 0;
  // One queued command per existing device, in the order given, with their
  // history rows, in one transaction (a fan-out without an idempotency key).
  // Devices that do not exist are skipped.
  virtual core::Result<std::vector<core::Command>> create_many(const std::vector<core::DeviceId>& devices,
                                                               const core::CommandRequest& request,
                                                               core::TimePoint now) = 0;
  virtual core::Result<CommandWithHistory> get(const core::CommandId& id) = 0;
  // not_found when the device does not exist.
  virtual core::Result<std::vector<core::Command>> list(const core::DeviceId& device,
                                                        const core::CommandListQuery& q) = 0;
  // from -> to with a history row; nullopt when the command is no longer in `from`.
  virtual core::Result<std::optional<core::Command>> transition(const core::CommandId& id, core::CommandState from,
                                                                core::CommandState to, core::TimePoint now,
                                                                const core::Json& result,
                                                                const std::optional<std::string>& error) = 0;
  // Many moves in one statement and one commit, each with its history row; the
  // moved commands (a command no longer in its `from` is not among them). At
  // most one move per command id.
  virtual core::Result<std::vector<core::Command>> transition_many(const std::vector<CommandMove>& moves,
                                                                   core::TimePoint now) = 0;
  // Not delivered, not expired, in creation order.
  virtual core::Result<std::vector<core::Command>> undelivered(const core::DeviceId& device, core::TimePoint now) = 0;
  virtual core::Result<std::vector<core::Command>> undelivered_all(core::TimePoint now, std::int64_t after_seq,
                                                                   int limit) = 0;
  // Commands past expires_at (undelivered) or their result deadline (delivered).
  virtual core::Result<std::vector<core::Command>> due(core::TimePoint now, int limit) = 0;
};

class PgCommandStore final : public CommandStore {
 public:
  explicit PgCommandStore(ConnectionPool& pool) : pool_(pool) {}
  core::Result<CreatedCommand> create(const core::DeviceId& device, const core::CommandRequest& request,
                                      const std::optional<std::string>& idempotency_key, core::TimePoint now) override;
  core::Result<std::vector<core::Command>> create_many(const std::vector<core::DeviceId>& devices,
                                                       const core::CommandRequest& request,
                                                       core::TimePoint now) override;
  core::Result<CommandWithHistory> get(const core::CommandId& id) override;
  core::Result<std::vector<core::Command>> list(const core::DeviceId& device, const core::CommandListQuery& q) override;
  core::Result<std::optional<core::Command>> transition(const core::CommandId& id, core::CommandState from,
                                                        core::CommandState to, core::TimePoint now,
                                                        const core::Json& result,
                                                        const std::optional<std::string>& error) override;
  core::Result<std::vector<core::Command>> transition_many(const std::vector<CommandMove>& moves,
                                                           core::TimePoint now) override;
  core::Result<std::vector<core::Command>> undelivered(const core::DeviceId& device, core::TimePoint now) override;
  core::Result<std::vector<core::Command>> undelivered_all(core::TimePoint now, std::int64_t after_seq,
                                                           int limit) override;
  core::Result<std::vector<core::Command>> due(core::TimePoint now, int limit) override;

 private:
  ConnectionPool& pool_;
};

}  // namespace maestra::store
