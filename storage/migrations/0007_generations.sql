-- 0007_generations: change counters that let every server replica keep
-- hot-path caches (tokens, devices, active rollouts) in memory and learn
-- about a change another replica made. A writer bumps the counter of what
-- it changed in the same transaction as the change (storage.DB.Bump); each
-- replica polls the counters and drops what changed. devices.change_gen is
-- the devices counter at the row's last change, so a replica re-reads only
-- the devices changed since the generation it has seen. A counter's row
-- appears at its first bump (a missing row reads as 0), so that a fresh
-- database holds no rows and a backup restores into it. Portable SQL: runs
-- on SQLite and PostgreSQL 15.
CREATE TABLE generations (
	name TEXT PRIMARY KEY,
	gen  BIGINT NOT NULL
);
ALTER TABLE devices ADD COLUMN change_gen BIGINT NOT NULL DEFAULT 0;
CREATE INDEX devices_change_gen ON devices (change_gen);
