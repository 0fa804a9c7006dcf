-- 003: the highest presence session seen in a birth, kept across restarts so a
-- late will of an older connection is still recognised after the service restarts.
ALTER TABLE devices ADD COLUMN presence_session bigint NOT NULL DEFAULT -1;
