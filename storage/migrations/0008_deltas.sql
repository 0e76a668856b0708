-- 0009_deltas: binary deltas between published releases of one product
-- (signer/delta.go). One row per (name, base, result) the server has
-- considered: published (a signed TUF target of its own), too_large (not
-- offered: over the share of the full image) or failed (message says why),
-- so that the background worker considers each pair once. Portable SQL:
-- runs on SQLite and PostgreSQL 15.
CREATE TABLE deltas (
	name         TEXT NOT NULL,
	base_version TEXT NOT NULL,
	version      TEXT NOT NULL,
	state        TEXT NOT NULL,
	target_path  TEXT NOT NULL DEFAULT '',
	length       BIGINT NOT NULL DEFAULT 0,
	sha256       TEXT NOT NULL DEFAULT '',
	full_length  BIGINT NOT NULL,
	message      TEXT NOT NULL DEFAULT '',
	create_ms    BIGINT NOT NULL DEFAULT 0,
	created_at   BIGINT NOT NULL,
	PRIMARY KEY (name, base_version, version)
);
