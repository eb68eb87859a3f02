-- Federation (version 5, PostgreSQL): trust policies for external token issuers, and the actors
-- an identity lets act for it in token exchange (RFC 8693 delegation).
-- A policy's document is the whole validated JSON; name, issuer and identity are copied into
-- columns for uniqueness, the token path's lookup by issuer, and the foreign key.

CREATE TABLE trust_policies (
    id          UUID   NOT NULL,
    name        TEXT   NOT NULL,
    issuer      TEXT   NOT NULL,
    identity_id UUID   NOT NULL,
    document    TEXT   NOT NULL,
    created_by  TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    CONSTRAINT trust_policies_pkey PRIMARY KEY (id),
    CONSTRAINT trust_policies_name_key UNIQUE (name),
    CONSTRAINT trust_policies_identity_id_fkey FOREIGN KEY (identity_id) REFERENCES identities (id)
);
CREATE INDEX trust_policies_issuer_idx ON trust_policies (issuer, id);
CREATE INDEX trust_policies_identity_idx ON trust_policies (identity_id, id);

ALTER TABLE identities ADD COLUMN may_act TEXT NOT NULL DEFAULT '[]';
