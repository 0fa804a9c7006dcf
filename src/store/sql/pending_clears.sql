-- Deleted devices whose retained topics are not yet confirmed cleared, oldest first. $1 limit.
SELECT device_id::text AS device_id FROM retained_clears ORDER BY deleted_at LIMIT $1
