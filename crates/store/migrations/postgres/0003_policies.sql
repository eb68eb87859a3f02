-- Authorization (PostgreSQL): versioned Cedar policies, the policy-state head, guard-rail exceptions.
-- A policy change never updates a row: it appends version N+1 (a deletion is a version with deleted = TRUE).

CREATE TABLE policies (
    policy_id   TEXT    NOT NULL,
    version     BIGINT  NOT NULL,
    source      TEXT    NOT NULL,
    description TEXT    NOT NULL,
    deleted     BOOLEAN NOT NULL,
    created_at  BIGINT  NOT NULL,
    created_by  TEXT    NOT NULL,
    CONSTRAINT policies_pkey PRIMARY KEY (policy_id, version)
);

-- Version of the whole authorization state (policies and exceptions): bumped in the same
-- transaction as every change (the row lock orders concurrent changes across nodes).
CREATE TABLE policy_head (
    id      INTEGER NOT NULL,
    version BIGINT  NOT NULL,
    CONSTRAINT policy_head_pkey PRIMARY KEY (id),
    CONSTRAINT policy_head_single_row CHECK (id = 1)
);
INSERT INTO policy_head (id, version) VALUES (1, 0);

-- Approved, time-bound exceptions to a built-in guard rail for one identity.
CREATE TABLE exceptions (
    id           UUID   NOT NULL,
    identity_id  UUID   NOT NULL,
    guard_rail   TEXT   NOT NULL,
    requested_by TEXT   NOT NULL,
    approved_by  TEXT   NOT NULL,
    reason       TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    CONSTRAINT exceptions_pkey PRIMARY KEY (id),
    CONSTRAINT exceptions_identity_id_fkey FOREIGN KEY (identity_id) REFERENCES identities (id),
    CONSTRAINT exceptions_distinct_approver CHECK (requested_by <> approved_by)
);
CREATE INDEX exceptions_identity_id_idx ON exceptions (identity_id);
CREATE INDEX exceptions_expires_at_idx ON exceptions (expires_at);
