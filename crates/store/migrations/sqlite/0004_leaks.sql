-- Findings (version 4, SQLite): risks raised on identities, starting with leaked secrets
-- (OWASP NHI2:2025). Governance checks add their own types to the same table.
-- At most one finding per dedup_key is open at a time.

CREATE TABLE findings (
    id          TEXT    NOT NULL PRIMARY KEY,
    identity_id TEXT    REFERENCES identities (id),
    type        TEXT    NOT NULL,
    severity    TEXT    NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    status      TEXT    NOT NULL CHECK (status IN ('open', 'resolved', 'accepted')),
    owasp_nhi   TEXT    NOT NULL,
    nist_csf    TEXT    NOT NULL,
    evidence    TEXT    NOT NULL,
    dedup_key   TEXT    NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    resolved_at INTEGER,
    version     INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX findings_open_dedup_key ON findings (dedup_key) WHERE status = 'open';
CREATE INDEX findings_identity_id_idx ON findings (identity_id, id);
CREATE INDEX findings_status_idx ON findings (status, id);
