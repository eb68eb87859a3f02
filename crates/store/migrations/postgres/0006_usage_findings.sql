-- Usage and governance findings (version 6, PostgreSQL).
-- Observed use of identities (per scope and audience, per day and all-time), the sources each
-- credential was used from (at most 16 values per kind, then an overflow row with value ''),
-- acceptance of findings until a date, per-identity risk scores, and two identity fields the
-- findings judge by: allowed source ranges and the review date.
-- The usage tables are bookkeeping written only for identities that just received a token, so
-- they carry no foreign keys: one bad row must never block a whole batch of usage.

ALTER TABLE identities ADD COLUMN allowed_source_cidrs TEXT NOT NULL DEFAULT '[]';
ALTER TABLE identities ADD COLUMN review_due_at BIGINT;

ALTER TABLE findings ADD COLUMN accepted_until BIGINT;
ALTER TABLE findings ADD COLUMN accepted_reason TEXT;
ALTER TABLE findings ADD COLUMN accepted_by TEXT;
CREATE INDEX findings_type_status_idx ON findings (type, status, id);

CREATE TABLE usage_daily (
    identity_id UUID   NOT NULL,
    scope       TEXT   NOT NULL,
    audience    TEXT   NOT NULL,
    day         BIGINT NOT NULL,
    uses        BIGINT NOT NULL,
    last_used   BIGINT NOT NULL,
    CONSTRAINT usage_daily_pkey PRIMARY KEY (identity_id, scope, audience, day)
);
CREATE INDEX usage_daily_day_idx ON usage_daily (day);

CREATE TABLE usage_summary (
    identity_id UUID   NOT NULL,
    scope       TEXT   NOT NULL,
    audience    TEXT   NOT NULL,
    uses        BIGINT NOT NULL,
    first_used  BIGINT NOT NULL,
    last_used   BIGINT NOT NULL,
    CONSTRAINT usage_summary_pkey PRIMARY KEY (identity_id, scope, audience)
);
CREATE INDEX usage_summary_last_used_idx ON usage_summary (last_used);

CREATE TABLE credential_sources (
    identity_id   UUID   NOT NULL,
    credential_id UUID   NOT NULL,
    kind          TEXT   NOT NULL,
    value         TEXT   NOT NULL,
    uses          BIGINT NOT NULL,
    first_seen    BIGINT NOT NULL,
    last_seen     BIGINT NOT NULL,
    CONSTRAINT credential_sources_pkey PRIMARY KEY (identity_id, credential_id, kind, value),
    CONSTRAINT credential_sources_kind_check CHECK (kind IN ('address', 'user_agent', 'environment'))
);
CREATE INDEX credential_sources_last_seen_idx ON credential_sources (last_seen);

CREATE TABLE identity_risk (
    identity_id UUID     NOT NULL,
    score       BIGINT   NOT NULL,
    factors     TEXT     NOT NULL,
    computed_at BIGINT   NOT NULL,
    CONSTRAINT identity_risk_pkey PRIMARY KEY (identity_id),
    CONSTRAINT identity_risk_score_check CHECK (score BETWEEN 0 AND 100)
);
CREATE INDEX identity_risk_score_idx ON identity_risk (score DESC, identity_id);
