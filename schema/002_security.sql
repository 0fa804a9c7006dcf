-- 002: device credentials (secure mode) and blocked hardware ids.
-- Only a salted SHA-256 of each device's password is kept: passwords are 256-bit
-- random tokens shown once at registration, so a slow hash adds nothing.
CREATE TABLE device_credentials (
    device_id     uuid PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    salt          text NOT NULL,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL,
    rotated_at    timestamptz
);

CREATE TABLE blocked_hardware_ids (
    hardware_id text PRIMARY KEY,
    reason      text,
    blocked_at  timestamptz NOT NULL
);
