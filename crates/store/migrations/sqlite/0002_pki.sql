-- Steward schema, version 2 (SQLite): certificates and mutual TLS.
-- The DNS names an identity may put in its certificates (JSON list), and the PKI records: CA
-- certificates with sealed keys, device CAs, device mapping rules and the certificate serial
-- deny-list, as JSON bodies keyed by (kind, id). Deny-list entries expire with their certificate.

ALTER TABLE identities ADD COLUMN allowed_dns_names TEXT NOT NULL DEFAULT '[]';

CREATE TABLE pki_objects (
    kind       TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (kind, id)
) STRICT, WITHOUT ROWID;
CREATE INDEX pki_objects_expires_at_idx ON pki_objects (expires_at);
