-- 005: deleted devices whose retained topics the broker has not yet confirmed
-- cleared. A DELETE writes the row in the same transaction as the delete; the
-- broker's acknowledgement of the clear removes it; after a broker reconnect or
-- a restart the service clears every device still listed. So a device deleted
-- while the broker is away, even if the service then crashes, leaves no ghost
-- status retained for dashboards.
CREATE TABLE retained_clears (
    device_id  uuid PRIMARY KEY,
    deleted_at timestamptz NOT NULL
);
