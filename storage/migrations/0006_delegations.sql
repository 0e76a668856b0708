-- 0006_delegations: which TUF role signs each release: "targets" (the
-- top-level role) or the delegated targets role of its product line, in
-- whose metadata targets_version is then a version. Portable SQL: runs on
-- SQLite and PostgreSQL 15.
ALTER TABLE releases ADD COLUMN role TEXT NOT NULL DEFAULT 'targets';
