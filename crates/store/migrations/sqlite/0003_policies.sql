-- Authorization (SQLite): versioned Cedar policies, the policy-state head, guard-rail exceptions.
-- A policy change never updates a row: it appends version N+1 (a deletion is a version with deleted = 1).

CREATE TABLE policies (
    policy_id   TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    source      TEXT    NOT NULL,
    description TEXT    NOT NULL,
    deleted     INTEGER NOT NULL CHECK (deleted IN (0, 1)),
    created_at  INTEGER NOT NULL,
    created_by  TEXT    NOT NULL,
    PRIMARY KEY (policy_id, version)
) STRICT;

-- Version of the whole authorization state (policies and exceptions): bumped in the same
-- transaction as every change, so a node can tell with one read whether its compiled set is current.
CREATE TABLE policy_head (
    id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
) STRICT;
INSERT INTO policy_head (id, version) VALUES (1, 0);

-- Approved, time-bound exceptions to a built-in guard rail for one identity.
CREATE TABLE exceptions (
    id           TEXT    NOT NULL PRIMARY KEY,
    identity_id  TEXT    NOT NULL REFERENCES identities (id),
    guard_rail   TEXT    NOT NULL,
    requested_by TEXT    NOT NULL,
    approved_by  TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    CHECK (requested_by <> approved_by)
) STRICT;
CREATE INDEX exceptions_identity_id_idx ON exceptions (identity_id);
CREATE INDEX exceptions_expires_at_idx ON exceptions (expires_at);
