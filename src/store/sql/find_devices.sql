-- Devices in list order, each filter applied when not NULL (list, get, by hardware_id): $1 id, $2 status,
-- $3 device_type, $4 hardware_id, $5/$6 keyset (the previous page's last page_cursor and id), $7 limit,
-- $8 offset, $9 among uuid[] (NULL: any device; else only these ids: the fleet passes the devices its
-- registry shows with a status few devices have, as there is no index on status). page_cursor is created_at
-- exactly as stored (microseconds). Planned per execution (force_custom_plan), so an absent filter folds
-- away and the matching index serves the order.
SELECT id::text AS id, name, device_type, hardware_id, firmware_version, ip_address, location::text AS location,
       metadata::text AS metadata, status, (extract(epoch from last_seen) * 1000)::bigint AS last_seen_ms,
       (extract(epoch from status_changed_at) * 1000)::bigint AS status_changed_ms,
       (extract(epoch from created_at) * 1000)::bigint AS created_ms,
       (extract(epoch from updated_at) * 1000)::bigint AS updated_ms, offline_after,
       created_at::text AS page_cursor
FROM devices
WHERE ($1::uuid IS NULL OR id = $1::uuid)
  AND ($2::text IS NULL OR status = $2::text)
  AND ($3::text IS NULL OR device_type = $3::text)
  AND ($4::text IS NULL OR hardware_id = $4::text)
  AND ($9::uuid[] IS NULL OR id = ANY($9::uuid[]))
  AND ($5::timestamptz IS NULL OR (created_at, id) > ($5::timestamptz, $6::uuid))
ORDER BY devices.created_at, devices.id  -- the table's id (uuid), not the text column of the same name
LIMIT $7::bigint OFFSET $8::bigint
