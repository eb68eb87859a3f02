-- Web console (version 8, PostgreSQL): operator sessions shared by every node, and an index for
-- the inventory's name-prefix search.
-- A session is stored under the keyed hash of its id only; the id itself lives in the operator's
-- cookie. Expired sessions are deleted when the next operator signs in.

CREATE TABLE console_sessions (
    id_hash         BYTEA  NOT NULL,
    identity_id     UUID   NOT NULL,
    credential_id   UUID   NOT NULL,
    created_at      BIGINT NOT NULL,
    last_seen_at    BIGINT NOT NULL,
    idle_expires_at BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    source          TEXT,
    CONSTRAINT console_sessions_pkey PRIMARY KEY (id_hash),
    CONSTRAINT console_sessions_identity_id_fkey FOREIGN KEY (identity_id) REFERENCES identities (id)
);
CREATE INDEX console_sessions_identity_id_idx ON console_sessions (identity_id);

-- Name-prefix search (`name COLLATE "C" >= prefix AND name COLLATE "C" < successor`): byte
-- order, whatever the database's default collation.
CREATE INDEX identities_name_c_idx ON identities (name COLLATE "C");
