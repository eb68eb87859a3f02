-- Lifecycle controls (version 7, PostgreSQL): access-review campaigns and their items,
-- just-in-time elevation grants, exception requests awaiting a second person, and credentials
-- flagged for rotation (owner departure). Approved exceptions stay in `exceptions` (migration 3).

CREATE TABLE review_campaigns (
    id             UUID    NOT NULL,
    name           TEXT    NOT NULL,
    description    TEXT    NOT NULL,
    selection      TEXT    NOT NULL,
    default_action TEXT    NOT NULL,
    deadline       BIGINT  NOT NULL,
    status         TEXT    NOT NULL,
    created_by     TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    closed_at      BIGINT,
    version        BIGINT  NOT NULL,
    CONSTRAINT review_campaigns_pkey PRIMARY KEY (id),
    CONSTRAINT review_campaigns_default_action_check CHECK (default_action IN ('keep', 'suspend', 'retire')),
    CONSTRAINT review_campaigns_status_check CHECK (status IN ('open', 'closed'))
);
CREATE INDEX review_campaigns_status_deadline_idx ON review_campaigns (status, deadline);

-- One item per identity and campaign; the snapshot is what the reviewer was shown.
CREATE TABLE review_items (
    id             UUID    NOT NULL,
    campaign_id    UUID    NOT NULL,
    identity_id    UUID    NOT NULL,
    owner_id       UUID    NOT NULL,
    reviewer       TEXT,
    snapshot       TEXT    NOT NULL,
    decision       TEXT,
    reduced_scopes TEXT    NOT NULL,
    revoke_mode    TEXT,
    outcome        TEXT,
    justification  TEXT,
    decided_by     TEXT,
    decided_at     BIGINT,
    by_default     BOOLEAN NOT NULL,
    created_at     BIGINT  NOT NULL,
    version        BIGINT  NOT NULL,
    CONSTRAINT review_items_pkey PRIMARY KEY (id),
    CONSTRAINT review_items_campaign_id_fkey FOREIGN KEY (campaign_id) REFERENCES review_campaigns (id),
    CONSTRAINT review_items_identity_id_fkey FOREIGN KEY (identity_id) REFERENCES identities (id),
    CONSTRAINT review_items_decision_check CHECK (decision IN ('keep', 'reduce', 'revoke')),
    CONSTRAINT review_items_revoke_mode_check CHECK (revoke_mode IN ('suspend', 'retire')),
    CONSTRAINT review_items_decided_check
        CHECK (decision IS NULL OR (justification IS NOT NULL AND decided_by IS NOT NULL))
);
CREATE UNIQUE INDEX review_items_campaign_identity_key ON review_items (campaign_id, identity_id);
CREATE INDEX review_items_campaign_idx ON review_items (campaign_id, id);
CREATE INDEX review_items_identity_id_idx ON review_items (identity_id);

-- Extra scopes for a bounded window; an approval is never the requester's (schema-enforced too).
CREATE TABLE jit_grants (
    id              UUID   NOT NULL,
    identity_id     UUID   NOT NULL,
    scopes          TEXT   NOT NULL,
    reason          TEXT   NOT NULL,
    requested_by    TEXT   NOT NULL,
    duration_secs   BIGINT NOT NULL,
    status          TEXT   NOT NULL,
    decided_by      TEXT,
    decided_at      BIGINT,
    decision_reason TEXT,
    starts_at       BIGINT,
    expires_at      BIGINT,
    created_at      BIGINT NOT NULL,
    version         BIGINT NOT NULL,
    CONSTRAINT jit_grants_pkey PRIMARY KEY (id),
    CONSTRAINT jit_grants_identity_id_fkey FOREIGN KEY (identity_id) REFERENCES identities (id),
    CONSTRAINT jit_grants_status_check CHECK (status IN ('pending', 'approved', 'denied', 'revoked')),
    CONSTRAINT jit_grants_distinct_approver
        CHECK (status <> 'approved' OR (decided_by IS NOT NULL AND decided_by <> requested_by
                                        AND expires_at IS NOT NULL))
);
CREATE INDEX jit_grants_identity_id_idx ON jit_grants (identity_id, id);
CREATE INDEX jit_grants_status_expires_idx ON jit_grants (status, expires_at);

-- Exception requests; on approval the exception is recorded in `exceptions` with the same id.
CREATE TABLE exception_requests (
    id           UUID   NOT NULL,
    identity_id  UUID   NOT NULL,
    target       TEXT   NOT NULL,
    reason       TEXT   NOT NULL,
    requested_by TEXT   NOT NULL,
    expires_at   BIGINT NOT NULL,
    status       TEXT   NOT NULL,
    decided_by   TEXT,
    decided_at   BIGINT,
    created_at   BIGINT NOT NULL,
    version      BIGINT NOT NULL,
    CONSTRAINT exception_requests_pkey PRIMARY KEY (id),
    CONSTRAINT exception_requests_identity_id_fkey FOREIGN KEY (identity_id) REFERENCES identities (id),
    CONSTRAINT exception_requests_status_check CHECK (status IN ('pending', 'approved', 'denied')),
    CONSTRAINT exception_requests_distinct_approver
        CHECK (status <> 'approved' OR (decided_by IS NOT NULL AND decided_by <> requested_by))
);
CREATE INDEX exception_requests_status_idx ON exception_requests (status, id);
CREATE INDEX exception_requests_identity_id_idx ON exception_requests (identity_id, id);

-- Credentials to rotate because someone who could have seen them left (the first flag stays).
CREATE TABLE credential_rotation_flags (
    credential_id UUID   NOT NULL,
    identity_id   UUID   NOT NULL,
    owner_id      UUID,
    reason        TEXT   NOT NULL,
    flagged_by    TEXT   NOT NULL,
    flagged_at    BIGINT NOT NULL,
    CONSTRAINT credential_rotation_flags_pkey PRIMARY KEY (credential_id),
    CONSTRAINT credential_rotation_flags_credential_id_fkey FOREIGN KEY (credential_id) REFERENCES credentials (id),
    CONSTRAINT credential_rotation_flags_identity_id_fkey FOREIGN KEY (identity_id) REFERENCES identities (id)
);
CREATE INDEX credential_rotation_flags_identity_id_idx ON credential_rotation_flags (identity_id);
