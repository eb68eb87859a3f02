-- Federation (version 5, SQLite): trust policies for external token issuers, and the actors
-- an identity lets act for it in token exchange (RFC 8693 delegation).
-- A policy's document is the whole validated JSON; name, issuer and identity are copied into
-- columns for uniqueness, the token path's lookup by issuer, and the foreign key.

CREATE TABLE trust_policies (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    issuer      TEXT    NOT NULL,
    identity_id TEXT    NOT NULL REFERENCES identities (id),
    document    TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    version     INTEGER NOT NULL
) STRICT;
CREATE INDEX trust_policies_issuer_idx ON trust_policies (issuer, id);
CREATE INDEX trust_policies_identity_idx ON trust_policies (identity_id, id);

ALTER TABLE identities ADD COLUMN may_act TEXT NOT NULL DEFAULT '[]';
