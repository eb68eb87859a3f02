-- Steward schema, version 1 (SQLite).
-- Timestamps are INTEGER microseconds since the Unix epoch; UUIDs are lowercase hyphenated TEXT,
-- so ordering by id is creation order for UUIDv7; list-valued fields are JSON text.

CREATE TABLE owners (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    contact     TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    departed_at INTEGER,
    version     INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX owners_name_key ON owners (name);

CREATE TABLE identities (
    id                    TEXT    NOT NULL PRIMARY KEY,
    name                  TEXT    NOT NULL,
    kind                  TEXT    NOT NULL,
    owner_id              TEXT    NOT NULL REFERENCES owners (id),
    purpose               TEXT    NOT NULL,
    environment           TEXT    NOT NULL,
    expires_at            INTEGER NOT NULL,
    scopes                TEXT    NOT NULL,
    default_scopes        TEXT    NOT NULL,
    audiences             TEXT    NOT NULL,
    labels                TEXT    NOT NULL,
    vendor                TEXT,
    status                TEXT    NOT NULL,
    status_reason         TEXT,
    token_lifetime_secs   INTEGER,
    require_dpop          INTEGER NOT NULL CHECK (require_dpop IN (0, 1)),
    tokens_revoked_before INTEGER,
    created_by            TEXT    NOT NULL,
    approved_by           TEXT,
    approved_at           INTEGER,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    version               INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX identities_environment_name_key ON identities (environment, name);
CREATE INDEX identities_owner_id_idx ON identities (owner_id);
CREATE INDEX identities_kind_idx ON identities (kind);

CREATE TABLE credentials (
    id            TEXT    NOT NULL PRIMARY KEY,
    identity_id   TEXT    NOT NULL REFERENCES identities (id),
    kind          TEXT    NOT NULL,
    secret_hash   BLOB,
    jwk           TEXT,
    fingerprint   TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    revoked_at    INTEGER,
    revoke_reason TEXT,
    rotated_from  TEXT,
    created_by    TEXT    NOT NULL,
    version       INTEGER NOT NULL
) STRICT;
CREATE INDEX credentials_identity_id_idx ON credentials (identity_id);
CREATE UNIQUE INDEX credentials_secret_hash_key ON credentials (secret_hash);

CREATE TABLE revoked_tokens (
    jti         TEXT    NOT NULL PRIMARY KEY,
    identity_id TEXT,
    expires_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX revoked_tokens_expires_at_idx ON revoked_tokens (expires_at);

-- One-time values (replay protection) are keyed by SHA-256(value): fixed-size keys whatever the input.
CREATE TABLE once_values (
    namespace  TEXT    NOT NULL,
    value_hash BLOB    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, value_hash)
) STRICT, WITHOUT ROWID;
CREATE INDEX once_values_expires_at_idx ON once_values (expires_at);

CREATE TABLE signing_keys (
    kid                TEXT    NOT NULL PRIMARY KEY,
    alg                TEXT    NOT NULL,
    sealed_private_key BLOB    NOT NULL,
    public_jwk         TEXT    NOT NULL,
    created_at         INTEGER NOT NULL,
    activates_at       INTEGER NOT NULL,
    deactivates_at     INTEGER NOT NULL,
    publish_until      INTEGER NOT NULL
) STRICT;

CREATE TABLE settings (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE checkpoints (
    size       INTEGER NOT NULL PRIMARY KEY,
    root_hash  BLOB    NOT NULL,
    note       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE audit (
    seq         INTEGER NOT NULL PRIMARY KEY,
    time_us     INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    target      TEXT,
    identity_id TEXT,
    outcome     TEXT    NOT NULL,
    reason      TEXT,
    request_id  TEXT,
    source      TEXT,
    details     TEXT    NOT NULL,
    leaf_hash   BLOB    NOT NULL,
    chain_hash  BLOB    NOT NULL
) STRICT;
CREATE INDEX audit_identity_id_seq_idx ON audit (identity_id, seq);
CREATE INDEX audit_action_seq_idx ON audit (action, seq);
CREATE INDEX audit_time_us_idx ON audit (time_us);

-- The head of the audit log: exactly one row, updated in the same transaction as every append.
CREATE TABLE audit_head (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    size       INTEGER NOT NULL,
    chain_hash BLOB    NOT NULL
) STRICT;
INSERT INTO audit_head (id, size, chain_hash) VALUES (1, 0, zeroblob(32));
