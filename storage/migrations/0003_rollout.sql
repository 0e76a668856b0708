-- 0003_rollout: devices, cohorts, rollouts, their events and device status
-- (package rollout). Portable SQL for SQLite and PostgreSQL 15: times are
-- BIGINT unix nanoseconds UTC, JSON is TEXT, IDs are assigned in Go.

-- Registered devices. attrs is a JSON object of string attributes (site,
-- region, ...) plus "tags": [..]. target_* is a release assigned to this one
-- device (tufota device assign, or a rollout's rollback): target_release is
-- NAME@VERSION, target_rollout the rolled-back rollout or ''.
CREATE TABLE devices (
	id              TEXT PRIMARY KEY,
	hardware        TEXT NOT NULL,
	current_version TEXT NOT NULL DEFAULT '',
	current_release TEXT NOT NULL DEFAULT '',
	attrs           TEXT NOT NULL DEFAULT '{}',
	last_seen       BIGINT NULL,
	target_release  TEXT NOT NULL DEFAULT '',
	target_path     TEXT NOT NULL DEFAULT '',
	target_rollout  TEXT NOT NULL DEFAULT '',
	target_by       TEXT NOT NULL DEFAULT '',
	target_at       BIGINT NULL,
	created_at      BIGINT NOT NULL,
	created_by      TEXT NOT NULL,
	updated_at      BIGINT NOT NULL
);

CREATE INDEX devices_hardware ON devices (hardware);

-- Saved device selectors.
CREATE TABLE cohorts (
	name       TEXT PRIMARY KEY,
	selector   TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	created_by TEXT NOT NULL
);

-- Rollouts. plan is the JSON rollout.Plan; waves is a JSON list of the
-- started waves ({started_at, size, cutoff}); wave is the index of the latest
-- started wave (-1 before the start); baseline is the JSON health accepted at
-- the last resume; revision guards every update (optimistic concurrency).
CREATE TABLE rollouts (
	id                   TEXT PRIMARY KEY,
	release_name         TEXT NOT NULL,
	release_version      TEXT NOT NULL,
	target_path          TEXT NOT NULL,
	hardware             TEXT NOT NULL,
	release_published_at BIGINT NULL,
	cohort               TEXT NOT NULL DEFAULT '',
	selector             TEXT NOT NULL,
	plan                 TEXT NOT NULL,
	state                TEXT NOT NULL,
	wave                 BIGINT NOT NULL,
	wave_started_at      BIGINT NULL,
	waves                TEXT NOT NULL DEFAULT '[]',
	start_at             BIGINT NULL,
	started_at           BIGINT NULL,
	finished_at          BIGINT NULL,
	approved_by          TEXT NOT NULL DEFAULT '',
	approved_at          BIGINT NULL,
	baseline             TEXT NOT NULL DEFAULT '{}',
	reason               TEXT NOT NULL DEFAULT '',
	rollback_release     TEXT NOT NULL DEFAULT '',
	created_by           TEXT NOT NULL,
	created_at           BIGINT NOT NULL,
	updated_at           BIGINT NOT NULL,
	revision             BIGINT NOT NULL
);

CREATE INDEX rollouts_state ON rollouts (state);

-- Every transition of a rollout, with who and why. details is a JSON object
-- of strings.
CREATE TABLE rollout_events (
	rollout_id TEXT NOT NULL,
	seq        BIGINT NOT NULL,
	time       BIGINT NOT NULL,
	actor      TEXT NOT NULL,
	kind       TEXT NOT NULL,
	reason     TEXT NOT NULL DEFAULT '',
	details    TEXT NOT NULL DEFAULT '{}',
	PRIMARY KEY (rollout_id, seq)
);

-- Each device's progress in a rollout: one row from the moment it is offered
-- the release. wave is the index of the wave it joined in; previous_* is what
-- it ran before (for rollbacks).
CREATE TABLE device_status (
	rollout_id       TEXT NOT NULL,
	device_id        TEXT NOT NULL,
	state            TEXT NOT NULL,
	error_code       TEXT NOT NULL DEFAULT '',
	message          TEXT NOT NULL DEFAULT '',
	wave             BIGINT NOT NULL,
	offered_at       BIGINT NOT NULL,
	updated_at       BIGINT NOT NULL,
	installed_at     BIGINT NULL,
	previous_release TEXT NOT NULL DEFAULT '',
	previous_version TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (rollout_id, device_id)
);

CREATE INDEX device_status_device ON device_status (device_id);

-- Every status report a device sent, as sent (rollout_id as resolved).
CREATE TABLE status_reports (
	id         TEXT PRIMARY KEY,
	device_id  TEXT NOT NULL,
	rollout_id TEXT NOT NULL DEFAULT '',
	target     TEXT NOT NULL DEFAULT '',
	version    TEXT NOT NULL DEFAULT '',
	state      TEXT NOT NULL,
	error_code TEXT NOT NULL DEFAULT '',
	message    TEXT NOT NULL DEFAULT '',
	time       BIGINT NOT NULL
);

CREATE INDEX status_reports_device ON status_reports (device_id, time);
CREATE INDEX status_reports_rollout ON status_reports (rollout_id, time);
