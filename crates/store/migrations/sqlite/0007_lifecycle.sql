-- Lifecycle controls (version 7, SQLite): access-review campaigns and their items, just-in-time
-- elevation grants, exception requests awaiting a second person, and credentials flagged for
-- rotation (owner departure). Approved exceptions stay in `exceptions` (migration 3).

CREATE TABLE review_campaigns (
    id             TEXT    NOT NULL PRIMARY KEY,
    name           TEXT    NOT NULL,
    description    TEXT    NOT NULL,
    selection      TEXT    NOT NULL,
    default_action TEXT    NOT NULL CHECK (default_action IN ('keep', 'suspend', 'retire')),
    deadline       INTEGER NOT NULL,
    status         TEXT    NOT NULL CHECK (status IN ('open', 'closed')),
    created_by     TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    closed_at      INTEGER,
    version        INTEGER NOT NULL
) STRICT;
CREATE INDEX review_campaigns_status_deadline_idx ON review_campaigns (status, deadline);

-- One item per identity and campaign; the snapshot is what the reviewer was shown.
CREATE TABLE review_items (
    id             TEXT    NOT NULL PRIMARY KEY,
    campaign_id    TEXT    NOT NULL REFERENCES review_campaigns (id),
    identity_id    TEXT    NOT NULL REFERENCES identities (id),
    owner_id       TEXT    NOT NULL,
    reviewer       TEXT,
    snapshot       TEXT    NOT NULL,
    decision       TEXT    CHECK (decision IN ('keep', 'reduce', 'revoke')),
    reduced_scopes TEXT    NOT NULL,
    revoke_mode    TEXT    CHECK (revoke_mode IN ('suspend', 'retire')),
    outcome        TEXT,
    justification  TEXT,
    decided_by     TEXT,
    decided_at     INTEGER,
    by_default     INTEGER NOT NULL CHECK (by_default IN (0, 1)),
    created_at     INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    CHECK (decision IS NULL OR (justification IS NOT NULL AND decided_by IS NOT NULL))
) STRICT;
CREATE UNIQUE INDEX review_items_campaign_identity_key ON review_items (campaign_id, identity_id);
CREATE INDEX review_items_campaign_idx ON review_items (campaign_id, id);
CREATE INDEX review_items_identity_id_idx ON review_items (identity_id);

-- Extra scopes for a bounded window; an approval is never the requester's (schema-enforced too).
CREATE TABLE jit_grants (
    id              TEXT    NOT NULL PRIMARY KEY,
    identity_id     TEXT    NOT NULL REFERENCES identities (id),
    scopes          TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    requested_by    TEXT    NOT NULL,
    duration_secs   INTEGER NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'revoked')),
    decided_by      TEXT,
    decided_at      INTEGER,
    decision_reason TEXT,
    starts_at       INTEGER,
    expires_at      INTEGER,
    created_at      INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    CHECK (status <> 'approved' OR (decided_by IS NOT NULL AND decided_by <> requested_by
                                    AND expires_at IS NOT NULL))
) STRICT;
CREATE INDEX jit_grants_identity_id_idx ON jit_grants (identity_id, id);
CREATE INDEX jit_grants_status_expires_idx ON jit_grants (status, expires_at);

-- Exception requests; on approval the exception is recorded in `exceptions` with the same id.
CREATE TABLE exception_requests (
    id           TEXT    NOT NULL PRIMARY KEY,
    identity_id  TEXT    NOT NULL REFERENCES identities (id),
    target       TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    requested_by TEXT    NOT NULL,
    expires_at   INTEGER NOT NULL,
    status       TEXT    NOT NULL CHECK (status IN ('pending', 'approved', 'denied')),
    decided_by   TEXT,
    decided_at   INTEGER,
    created_at   INTEGER NOT NULL,
    version      INTEGER NOT NULL,
    CHECK (status <> 'approved' OR (decided_by IS NOT NULL AND decided_by <> requested_by))
) STRICT;
CREATE INDEX exception_requests_status_idx ON exception_requests (status, id);
CREATE INDEX exception_requests_identity_id_idx ON exception_requests (identity_id, id);

-- Credentials to rotate because someone who could have seen them left (the first flag stays).
CREATE TABLE credential_rotation_flags (
    credential_id TEXT    NOT NULL PRIMARY KEY REFERENCES credentials (id),
    identity_id   TEXT    NOT NULL REFERENCES identities (id),
    owner_id      TEXT,
    reason        TEXT    NOT NULL,
    flagged_by    TEXT    NOT NULL,
    flagged_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX credential_rotation_flags_identity_id_idx ON credential_rotation_flags (identity_id);
