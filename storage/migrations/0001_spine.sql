-- 0001_spine: API tokens, releases and settings (storage helper).
-- Portable SQL: runs on SQLite and PostgreSQL 15. Times are BIGINT unix
-- nanoseconds UTC; JSON is stored as TEXT; IDs are assigned in Go.

CREATE TABLE tokens (
	id           TEXT PRIMARY KEY,
	name         TEXT NOT NULL,
	role         TEXT NOT NULL,
	hash         TEXT NOT NULL UNIQUE,
	created_at   BIGINT NOT NULL,
	created_by   TEXT NOT NULL,
	expires_at   BIGINT NULL,
	revoked_at   BIGINT NULL,
	last_used_at BIGINT NULL,
	device_id    TEXT NULL
);

CREATE INDEX tokens_device_id ON tokens (device_id);

CREATE TABLE releases (
	name            TEXT NOT NULL,
	version         TEXT NOT NULL,
	target_path     TEXT NOT NULL UNIQUE,
	length          BIGINT NOT NULL,
	sha256          TEXT NOT NULL,
	sha512          TEXT NOT NULL,
	hardware        TEXT NOT NULL, -- JSON array of hardware IDs
	notes           TEXT NOT NULL DEFAULT '',
	custom          TEXT NOT NULL, -- JSON: the target's custom metadata
	state           TEXT NOT NULL, -- pending | published
	targets_version BIGINT NOT NULL DEFAULT 0,
	created_at      BIGINT NOT NULL,
	created_by      TEXT NOT NULL,
	published_at    BIGINT NULL,
	PRIMARY KEY (name, version)
);

CREATE INDEX releases_state ON releases (state);

CREATE TABLE settings (
	key        TEXT PRIMARY KEY,
	value      TEXT NOT NULL,
	updated_at BIGINT NOT NULL
);

-- Leader leases (DB.TryLease): one holder per name until expires_at.
CREATE TABLE leases (
	name       TEXT PRIMARY KEY,
	holder     TEXT NOT NULL,
	expires_at BIGINT NOT NULL
);
