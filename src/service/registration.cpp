// Registration and deletion of devices, and what secure mode adds to them:
// broker accounts, their passwords (cached hashes) and blocked hardware ids.
// A registration is stored by the store in one transaction, then handed to the
// owner (registry, deadline, retained status).
#include "service/fleet.hpp"

#include "security/secrets.hpp"
#include "service/log.hpp"

namespace maestra::service {

using core::Error;
using core::ErrorKind;

Result<RegisteredDevice> Fleet::register_device(const core::Registration& r, Transport transport) {
  if (auto refused = core::check_provisioning_key(options_.provisioning_key, r.provisioning_key)) {
    metrics_.reject(Rejection::unauthorized);
    return *refused;
  }
  const TimePoint now = clock_();
  std::optional<std::string> password;
  std::optional<store::StoredSecret> secret;
  if (access_) {
    password = security::random_token(32);  // 256 bits
    const auto hashed = security::hash_password(*password);
    secret = store::StoredSecret{hashed.salt, hashed.hash};
  }
  auto record = store_.register_device(r, now, secret);
  if (!record) {
    if (record.error().kind == ErrorKind::conflict) metrics_.reject(Rejection::conflict);
    if (record.error().kind == ErrorKind::forbidden) metrics_.reject(Rejection::unauthorized);
    if (record.error().kind == ErrorKind::unavailable) ++metrics_.database_errors;
    return record.error();
  }
  if (access_) {
    auto granted = access_->grant(record->id, *password);
    if (!granted) {
      // Nothing half-written: a device without a broker account is removed again.
      log_error("broker_account_not_created", {{"device_id", record->id.to_string()}, {"error", granted.error().detail}});
      store_.remove(record->id);
      return Error{ErrorKind::unavailable, "", "the broker could not issue credentials: " + granted.error().detail};
    }
  }
  ++metrics_.registrations[static_cast<std::size_t>(transport)];
  Event e{Event::Kind::registered};
  e.id = record->id;
  e.registered_state = core::register_device(now, r.offline_after).next;
  e.registered_state.status_refreshed = now;  // its document (below) carries last_seen = now: no refresh due yet
  e.registered_state.heard_over_mqtt = transport == Transport::mqtt;
  e.registered_status.document = core::StatusDocument{record->id,        record->name,     record->device_type,
                                                      record->hardware_id, core::Status::online, now, now,
                                                      core::Reason::registered};
  e.registered_status.seq = 1;
  post(std::move(e));
  return RegisteredDevice{std::move(record.value()), std::move(password)};
}

Result<std::string> Fleet::rotate_credentials(const DeviceId& id) {
  if (!access_) return Error{ErrorKind::not_found, "", "credentials exist only in secure mode (MAESTRA_SECURE)"};
  auto record = store_.get(id);
  if (!record) return record.error();
  std::string password = security::random_token(32);
  if (auto changed = access_->set_password(id, password); !changed) return changed.error();
  const auto hashed = security::hash_password(password);
  if (auto stored = store_.set_credential(id, store::StoredSecret{hashed.salt, hashed.hash}, clock_()); !stored)
    return stored.error();
  std::lock_guard lock(credentials_mutex_);
  credentials_.erase(id);
  return password;
}

Result<DashboardCredential> Fleet::issue_dashboard_credential(std::chrono::seconds ttl) {
  if (!access_) return Error{ErrorKind::not_found, "", "dashboard credentials exist only in secure mode (MAESTRA_SECURE)"};
  DashboardCredential c;
  c.username = "dashboard-" + security::random_token(12);  // 96 bits: never a device's id (a UUID)
  c.client_id = c.username;
  c.password = security::random_token(32);
  c.expires_at = clock_() + std::chrono::duration_cast<core::Millis>(ttl);
  if (auto granted = access_->grant_dashboard(c.username, c.password, c.expires_at); !granted) return granted.error();
  log_info("dashboard_credential_issued", {{"username", c.username}, {"expires_at", core::format_rfc3339(c.expires_at)}});
  return c;
}

Result<bool> Fleet::verify_credential(const DeviceId& id, std::string_view password) {
  std::optional<store::StoredSecret> secret;
  {
    std::lock_guard lock(credentials_mutex_);
    if (auto it = credentials_.find(id); it != credentials_.end()) secret = it->second;
  }
  if (!secret) {
    auto loaded = store_.credential(id);
    if (!loaded) return loaded.error();
    if (!loaded.value()) return false;
    secret = *loaded.value();
    std::lock_guard lock(credentials_mutex_);
    credentials_[id] = *secret;
  }
  return security::verify_password(security::PasswordHash{secret->salt, secret->hash}, password);
}

Result<core::Done> Fleet::block_hardware_id(const std::string& hardware_id, const std::optional<std::string>& reason) {
  return store_.block_hardware_id(hardware_id, reason, clock_());
}

Result<core::Done> Fleet::remove(const DeviceId& id) {
  if (access_) {
    // Revoke first: if the broker cannot, nothing is deleted and the caller retries.
    auto exists = store_.get(id);
    if (!exists) return exists.error();
    if (auto revoked = access_->revoke(id); !revoked) return revoked.error();
    std::lock_guard lock(credentials_mutex_);
    credentials_.erase(id);
  }
  auto removed = store_.remove(id);
  if (!removed) return removed.error();
  Event e{Event::Kind::removed};
  e.id = id;
  post(std::move(e));
  return core::Done{};
}

}  // namespace maestra::service
