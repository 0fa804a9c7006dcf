-- 001: the device registry and its status history.
-- status is derived from connected / reported_error / maintenance by the core
-- (src/core/device_state.hpp) and stored alongside them so readers need no logic.
-- status_seq / published_seq form the outbox of retained status messages: a
-- transition bumps status_seq in the same transaction; the MQTT publisher records
-- published_seq once the broker has acknowledged the retained message.
CREATE TABLE devices (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name              text NOT NULL,
    device_type       text NOT NULL,
    hardware_id       text NOT NULL,
    firmware_version  text,
    ip_address        text,
    location          jsonb CHECK (location IS NULL OR jsonb_typeof(location) = 'object'),
    metadata          jsonb CHECK (metadata IS NULL OR jsonb_typeof(metadata) = 'object'),
    status            text NOT NULL CHECK (status IN ('online', 'offline', 'error', 'maintenance')),
    connected         boolean NOT NULL DEFAULT true,
    reported_error    boolean NOT NULL DEFAULT false,
    maintenance       boolean NOT NULL DEFAULT false,
    last_seen         timestamptz NOT NULL,
    status_changed_at timestamptz NOT NULL,
    status_reason     text NOT NULL,
    offline_after     integer CHECK (offline_after BETWEEN 1 AND 604800),
    status_seq        bigint NOT NULL DEFAULT 1,
    published_seq     bigint NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    CONSTRAINT devices_hardware_id_key UNIQUE (hardware_id)
);

-- "Which devices are past their deadline": connected devices by last_seen. The
-- partial index holds only watched devices, so the question stays cheap at a
-- million rows: last_seen <= now() - offline_after is one range scan.
CREATE INDEX devices_watch_idx ON devices (last_seen) WHERE connected;

-- Listing: stable order (created_at, id), optionally filtered by status or type.
CREATE INDEX devices_created_idx ON devices (created_at, id);
CREATE INDEX devices_status_created_idx ON devices (status, created_at, id);
CREATE INDEX devices_type_created_idx ON devices (device_type, created_at, id);

-- Outbox of retained status messages not yet acknowledged by the broker.
CREATE INDEX devices_unpublished_idx ON devices (id) WHERE status_seq <> published_seq;

CREATE TABLE device_status_history (
    id          bigserial PRIMARY KEY,
    device_id   uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    from_status text CHECK (from_status IN ('online', 'offline', 'error', 'maintenance')),
    to_status   text NOT NULL CHECK (to_status IN ('online', 'offline', 'error', 'maintenance')),
    reason      text NOT NULL,
    at          timestamptz NOT NULL
);
CREATE INDEX device_status_history_device_idx ON device_status_history (device_id, at DESC, id DESC);
