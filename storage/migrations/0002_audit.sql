-- Audit log (package audit): an append-only RFC 6962 Merkle-tree log.
-- tufota never updates or deletes rows in these tables. On PostgreSQL, give
-- the server's role only SELECT and INSERT on them (see docs/compliance.md).

-- One row per audit entry. seq is the tlog record index (0, 1, 2, ...),
-- time is Unix nanoseconds UTC, details is a JSON object of strings, leaf is
-- the hex RFC 6962 leaf hash of the entry's canonical JSON.
CREATE TABLE audit_entries (
    seq     BIGINT PRIMARY KEY,
    time    BIGINT NOT NULL,
    actor   TEXT   NOT NULL,
    role    TEXT   NOT NULL,
    source  TEXT   NOT NULL,
    action  TEXT   NOT NULL,
    object  TEXT   NOT NULL,
    outcome TEXT   NOT NULL,
    details TEXT   NOT NULL,
    leaf    TEXT   NOT NULL
);

CREATE INDEX audit_entries_time ON audit_entries (time);
CREATE INDEX audit_entries_actor ON audit_entries (actor, seq);
CREATE INDEX audit_entries_action ON audit_entries (action, seq);
CREATE INDEX audit_entries_object ON audit_entries (object, seq);

-- The tree's stored hashes (golang.org/x/mod/sumdb/tlog StoredHashes) by
-- stored-hash index, hex. Proofs and roots read O(log n) of them.
CREATE TABLE audit_hashes (
    idx  BIGINT PRIMARY KEY,
    hash TEXT   NOT NULL
);

-- Signed checkpoints (C2SP tlog-checkpoint in a signed note), one per tree
-- size. created_at is Unix nanoseconds UTC.
CREATE TABLE audit_checkpoints (
    size       BIGINT PRIMARY KEY,
    note       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
