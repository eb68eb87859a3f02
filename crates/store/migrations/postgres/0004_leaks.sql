-- Findings (version 4, PostgreSQL): risks raised on identities, starting with leaked secrets
-- (OWASP NHI2:2025). Governance checks add their own types to the same table.
-- At most one finding per dedup_key is open at a time.

CREATE TABLE findings (
    id          UUID   NOT NULL,
    identity_id UUID,
    type        TEXT   NOT NULL,
    severity    TEXT   NOT NULL,
    status      TEXT   NOT NULL,
    owasp_nhi   TEXT   NOT NULL,
    nist_csf    TEXT   NOT NULL,
    evidence    TEXT   NOT NULL,
    dedup_key   TEXT   NOT NULL,
    first_seen  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL,
    resolved_at BIGINT,
    version     BIGINT NOT NULL,
    CONSTRAINT findings_pkey PRIMARY KEY (id),
    CONSTRAINT findings_identity_id_fkey FOREIGN KEY (identity_id) REFERENCES identities (id),
    CONSTRAINT findings_severity_check CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    CONSTRAINT findings_status_check CHECK (status IN ('open', 'resolved', 'accepted'))
);
CREATE UNIQUE INDEX findings_open_dedup_key ON findings (dedup_key) WHERE status = 'open';
CREATE INDEX findings_identity_id_idx ON findings (identity_id, id);
CREATE INDEX findings_status_idx ON findings (status, id);
