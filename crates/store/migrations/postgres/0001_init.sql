-- Steward schema, version 1 (PostgreSQL).
-- Timestamps are BIGINT microseconds since the Unix epoch; list-valued fields are JSON text.

CREATE TABLE owners (
    id          UUID   NOT NULL,
    name        TEXT   NOT NULL,
    kind        TEXT   NOT NULL,
    contact     TEXT   NOT NULL,
    status      TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    departed_at BIGINT,
    version     BIGINT NOT NULL,
    CONSTRAINT owners_pkey PRIMARY KEY (id),
    CONSTRAINT owners_name_key UNIQUE (name)
);

CREATE TABLE identities (
    id                    UUID    NOT NULL,
    name                  TEXT    NOT NULL,
    kind                  TEXT    NOT NULL,
    owner_id              UUID    NOT NULL,
    purpose               TEXT    NOT NULL,
    environment           TEXT    NOT NULL,
    expires_at            BIGINT  NOT NULL,
    scopes                TEXT    NOT NULL,
    default_scopes        TEXT    NOT NULL,
    audiences             TEXT    NOT NULL,
    labels                TEXT    NOT NULL,
    vendor                TEXT,
    status                TEXT    NOT NULL,
    status_reason         TEXT,
    token_lifetime_secs   BIGINT,
    require_dpop          BOOLEAN NOT NULL,
    tokens_revoked_before BIGINT,
    created_by            TEXT    NOT NULL,
    approved_by           TEXT,
    approved_at           BIGINT,
    created_at            BIGINT  NOT NULL,
    updated_at            BIGINT  NOT NULL,
    version               BIGINT  NOT NULL,
    CONSTRAINT identities_pkey PRIMARY KEY (id),
    CONSTRAINT identities_environment_name_key UNIQUE (environment, name),
    CONSTRAINT identities_owner_id_fkey FOREIGN KEY (owner_id) REFERENCES owners (id)
);
CREATE INDEX identities_owner_id_idx ON identities (owner_id);
CREATE INDEX identities_kind_idx ON identities (kind);

CREATE TABLE credentials (
    id            UUID   NOT NULL,
    identity_id   UUID   NOT NULL,
    kind          TEXT   NOT NULL,
    secret_hash   BYTEA,
    jwk           TEXT,
    fingerprint   TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    revoked_at    BIGINT,
    revoke_reason TEXT,
    rotated_from  UUID,
    created_by    TEXT   NOT NULL,
    version       BIGINT NOT NULL,
    CONSTRAINT credentials_pkey PRIMARY KEY (id),
    CONSTRAINT credentials_secret_hash_key UNIQUE (secret_hash),
    CONSTRAINT credentials_identity_id_fkey FOREIGN KEY (identity_id) REFERENCES identities (id)
);
CREATE INDEX credentials_identity_id_idx ON credentials (identity_id);

CREATE TABLE revoked_tokens (
    jti         TEXT   NOT NULL,
    identity_id UUID,
    expires_at  BIGINT NOT NULL,
    CONSTRAINT revoked_tokens_pkey PRIMARY KEY (jti)
);
CREATE INDEX revoked_tokens_expires_at_idx ON revoked_tokens (expires_at);

-- One-time values (replay protection) are keyed by SHA-256(value): fixed-size keys whatever the input.
CREATE TABLE once_values (
    namespace  TEXT   NOT NULL,
    value_hash BYTEA  NOT NULL,
    expires_at BIGINT NOT NULL,
    CONSTRAINT once_values_pkey PRIMARY KEY (namespace, value_hash)
);
CREATE INDEX once_values_expires_at_idx ON once_values (expires_at);

CREATE TABLE signing_keys (
    kid                TEXT   NOT NULL,
    alg                TEXT   NOT NULL,
    sealed_private_key BYTEA  NOT NULL,
    public_jwk         TEXT   NOT NULL,
    created_at         BIGINT NOT NULL,
    activates_at       BIGINT NOT NULL,
    deactivates_at     BIGINT NOT NULL,
    publish_until      BIGINT NOT NULL,
    CONSTRAINT signing_keys_pkey PRIMARY KEY (kid)
);

CREATE TABLE settings (
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    CONSTRAINT settings_pkey PRIMARY KEY (key)
);

CREATE TABLE checkpoints (
    size       BIGINT NOT NULL,
    root_hash  BYTEA  NOT NULL,
    note       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT checkpoints_pkey PRIMARY KEY (size)
);

-- `action` uses the C collation so that prefix filters are byte-wise range scans on the index.
CREATE TABLE audit (
    seq         BIGINT NOT NULL,
    time_us     BIGINT NOT NULL,
    actor       TEXT   NOT NULL,
    action      TEXT   COLLATE "C" NOT NULL,
    target      TEXT,
    identity_id UUID,
    outcome     TEXT   NOT NULL,
    reason      TEXT,
    request_id  TEXT,
    source      TEXT,
    details     TEXT   NOT NULL,
    leaf_hash   BYTEA  NOT NULL,
    chain_hash  BYTEA  NOT NULL,
    CONSTRAINT audit_pkey PRIMARY KEY (seq)
);
CREATE INDEX audit_identity_id_seq_idx ON audit (identity_id, seq);
CREATE INDEX audit_action_seq_idx ON audit (action, seq);
CREATE INDEX audit_time_us_idx ON audit (time_us);

-- The head of the audit log: exactly one row, locked (FOR UPDATE) by every appending transaction,
-- which serializes appends from all nodes into one contiguous, chained sequence.
CREATE TABLE audit_head (
    id         INTEGER NOT NULL,
    size       BIGINT  NOT NULL,
    chain_hash BYTEA   NOT NULL,
    CONSTRAINT audit_head_pkey PRIMARY KEY (id),
    CONSTRAINT audit_head_single_row CHECK (id = 1)
);
INSERT INTO audit_head (id, size, chain_hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));
