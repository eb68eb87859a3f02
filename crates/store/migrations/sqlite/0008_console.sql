-- Web console (version 8, SQLite): operator sessions shared by every node, and an index for the
-- inventory's name-prefix search.
-- A session is stored under the keyed hash of its id only; the id itself lives in the operator's
-- cookie. Expired sessions are deleted when the next operator signs in.

CREATE TABLE console_sessions (
    id_hash         BLOB    NOT NULL PRIMARY KEY,
    identity_id     TEXT    NOT NULL REFERENCES identities (id),
    credential_id   TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    last_seen_at    INTEGER NOT NULL,
    idle_expires_at INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    source          TEXT
) STRICT, WITHOUT ROWID;
CREATE INDEX console_sessions_identity_id_idx ON console_sessions (identity_id);

-- Name-prefix search (`name >= prefix AND name < successor`), in byte order (BINARY collation).
CREATE INDEX identities_name_idx ON identities (name);
