-- 0005_signing: metadata waiting for offline signatures, the signatures
-- collected for it, and the online keys a root rotation introduced
-- (signer helper). Portable SQL: runs on SQLite and PostgreSQL 15. Times
-- are BIGINT unix nanoseconds UTC; JSON is stored as TEXT.

-- One row per metadata file waiting for signatures: the targets metadata of
-- a pending release (id "targets/NAME@VERSION") or a new root (id "root").
CREATE TABLE pending_metadata (
	id              TEXT PRIMARY KEY,
	role            TEXT NOT NULL,              -- targets | root
	release_name    TEXT NOT NULL DEFAULT '',
	release_version TEXT NOT NULL DEFAULT '',
	base_version    BIGINT NOT NULL,            -- version of the role's metadata this one replaces
	version         BIGINT NOT NULL,            -- version being signed
	metadata        TEXT NOT NULL,              -- the unsigned metadata, JSON
	extra           TEXT NOT NULL DEFAULT '{}', -- JSON: staged upload (targets) or online key URIs (root)
	created_at      BIGINT NOT NULL,
	created_by      TEXT NOT NULL,
	updated_at      BIGINT NOT NULL
);

CREATE INDEX pending_metadata_role ON pending_metadata (role);

-- Signatures uploaded for pending metadata, one per key.
CREATE TABLE pending_signatures (
	pending_id     TEXT NOT NULL,
	keyid          TEXT NOT NULL,
	sig            TEXT NOT NULL, -- hex
	payload_sha256 TEXT NOT NULL, -- hex SHA-256 of the canonical bytes signed
	signed_by      TEXT NOT NULL,
	created_at     BIGINT NOT NULL,
	PRIMARY KEY (pending_id, keyid)
);

-- Key URIs of online roles (snapshot, timestamp) that a root rotation put
-- in place of the ones named in the repository config.
CREATE TABLE online_keys (
	role       TEXT NOT NULL,
	keyid      TEXT NOT NULL,
	uri        TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (role, keyid)
);
