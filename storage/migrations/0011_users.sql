-- 0011_users: people are users, and every person's API token belongs to
-- one (tokens.owner). A user has an identity (issuer + subject; issuer
-- "local" for users tufota itself keeps) and roles (user_roles); a token
-- carries at most its owner's roles. Disabling a user (disabled_at) revokes
-- all of their tokens. Device tokens belong to their device, not to a user
-- (owner NULL).
--
-- Existing tokens keep working: each distinct name of a person's token
-- becomes a local user of that name, holding the roles of its live tokens,
-- and owns those tokens. Token names used as actors before (rollouts'
-- created_by, approvals) are thereby the names of their users. Portable
-- SQL: runs on SQLite and PostgreSQL 15.
CREATE TABLE users (
	id          TEXT PRIMARY KEY,
	name        TEXT NOT NULL UNIQUE,
	issuer      TEXT NOT NULL,
	subject     TEXT NOT NULL,
	created_at  BIGINT NOT NULL,
	created_by  TEXT NOT NULL,
	disabled_at BIGINT NULL,
	disabled_by TEXT NULL,
	UNIQUE (issuer, subject)
);
CREATE TABLE user_roles (
	user_id TEXT NOT NULL,
	role    TEXT NOT NULL,
	PRIMARY KEY (user_id, role)
);
ALTER TABLE tokens ADD COLUMN owner TEXT NULL;
CREATE INDEX tokens_owner ON tokens (owner);
INSERT INTO users (id, name, issuer, subject, created_at, created_by)
	SELECT 'local-' || name, name, 'local', name, MIN(created_at), 'migration 0011'
	FROM tokens WHERE role <> 'device' GROUP BY name;
INSERT INTO user_roles (user_id, role)
	SELECT DISTINCT 'local-' || name, role FROM tokens WHERE role <> 'device' AND revoked_at IS NULL;
UPDATE tokens SET owner = 'local-' || name WHERE role <> 'device';
