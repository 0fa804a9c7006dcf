-- PATCH /devices/{id}, its attributes: each is set when its flag is true (a NULL value clears it),
-- else kept; updated_at is set. $1 id, $2/$3 name, $4/$5 firmware_version, $6/$7 ip_address, $8/$9
-- location (JSON text), $10/$11 metadata (JSON text), $12/$13 offline_after (seconds), each a bool
-- flag and a value; $14 now (epoch ms). Returns the id (no row: no such device). The state change goes
-- through write_states, in the same transaction.
UPDATE devices
SET name = CASE WHEN $2::bool THEN $3::text ELSE name END,
    firmware_version = CASE WHEN $4::bool THEN $5::text ELSE firmware_version END,
    ip_address = CASE WHEN $6::bool THEN $7::text ELSE ip_address END,
    location = CASE WHEN $8::bool THEN $9::jsonb ELSE location END,
    metadata = CASE WHEN $10::bool THEN $11::jsonb ELSE metadata END,
    offline_after = CASE WHEN $12::bool THEN $13::int ELSE offline_after END,
    updated_at = to_timestamp($14::bigint / 1000.0)
WHERE id = $1::uuid
RETURNING id::text AS id
