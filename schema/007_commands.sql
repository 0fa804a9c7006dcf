-- 007: commands to devices (docs/protocol.md "Commands") and their history.
-- A command is stored (state 'queued') before it is sent. The outbox of
-- commands is the state itself: every command still 'queued' or 'sent' and not
-- expired is sent again when its device comes back, when the broker link
-- returns and when the service starts (commands_undelivered_idx).
-- seq is the creation order (per device: ORDER BY seq). timeout_at is set when
-- the device first says it has the command (delivered_at + timeout_s), so the
-- sweep finds results that are late through an index.
CREATE TABLE commands (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    device_id        uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    seq              bigserial NOT NULL,
    name             text NOT NULL,
    params           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(params) = 'object'),
    state            text NOT NULL CHECK (state IN ('queued', 'sent', 'delivered', 'in_progress', 'succeeded',
                                                    'failed', 'rejected', 'timed_out', 'expired', 'canceled')),
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    timeout_s        integer NOT NULL CHECK (timeout_s BETWEEN 1 AND 3600),
    delivered_at     timestamptz,
    timeout_at       timestamptz,
    updated_at       timestamptz NOT NULL,
    result           jsonb CHECK (result IS NULL OR jsonb_typeof(result) = 'object'),
    error            text,
    idempotency_key  text,
    request_hash     text,
    CONSTRAINT commands_idempotency_key UNIQUE (device_id, idempotency_key)
);
-- The undelivered commands of a device, in creation order (redelivery, long poll).
CREATE INDEX commands_undelivered_idx ON commands (device_id, seq) WHERE state IN ('queued', 'sent');
-- The sweep: commands that may expire, and delivered ones that may time out.
CREATE INDEX commands_expiry_idx ON commands (expires_at) WHERE state IN ('queued', 'sent');
CREATE INDEX commands_timeout_idx ON commands (timeout_at) WHERE state IN ('delivered', 'in_progress');
-- GET /devices/{id}/commands, newest first.
CREATE INDEX commands_device_idx ON commands (device_id, seq DESC);

CREATE TABLE command_history (
    id          bigserial PRIMARY KEY,
    command_id  uuid NOT NULL REFERENCES commands (id) ON DELETE CASCADE,
    from_state  text,
    to_state    text NOT NULL,
    at          timestamptz NOT NULL
);
CREATE INDEX command_history_command_idx ON command_history (command_id, id);
