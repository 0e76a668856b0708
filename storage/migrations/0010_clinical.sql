-- 0010_clinical: rollouts that respect clinical reality (issue 15).
--
-- Deferral: a device that says "not now" (therapy in progress, on battery)
-- is deferred in its rollout from deferred_since (its first deferral of
-- this run) until deferred_until (what it asked for). While deferred the
-- device timeout does not run, up to the rollout plan's max deferral.
-- status_reports keeps the until of each deferral report for the history.
--
-- Pins: hospital IT keeps a cohort or one device on a validated firmware
-- line (a version pattern such as 1.4.*): no rollout offers it anything
-- outside the line. kind is 'cohort' or 'device'; name is the cohort name
-- or the device ID. Portable SQL: runs on SQLite and PostgreSQL 15.
ALTER TABLE device_status ADD COLUMN deferred_since BIGINT NULL;
ALTER TABLE device_status ADD COLUMN deferred_until BIGINT NULL;
ALTER TABLE status_reports ADD COLUMN deferred_until BIGINT NULL;

CREATE TABLE pins (
	kind       TEXT NOT NULL,
	name       TEXT NOT NULL,
	version    TEXT NOT NULL,
	reason     TEXT NOT NULL,
	created_by TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (kind, name)
);
