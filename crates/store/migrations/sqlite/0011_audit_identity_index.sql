-- The audit log's by-identity index, kept off the commit path (version 11, SQLite).
-- An index on audit (identity_id, seq) dirtied one leaf page per identity in every group commit,
-- and SQLite writes whole pages to its WAL: most of a token batch's bytes on disk. The writer now
-- adds runs of records to this table (a few hundred to a few thousand), sorted by identity, in one
-- transaction that also moves `upto`. Readers find an identity's records at or below `upto`
-- here, and scan the short tail above it. PostgreSQL keeps its plain index.

CREATE TABLE audit_identity_index (
    identity TEXT    NOT NULL,
    record   INTEGER NOT NULL,
    PRIMARY KEY (identity, record)
) STRICT, WITHOUT ROWID;

CREATE TABLE audit_identity_indexed (
    id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    upto INTEGER NOT NULL
) STRICT;

INSERT INTO audit_identity_index (identity, record)
    SELECT identity_id, seq FROM audit WHERE identity_id IS NOT NULL ORDER BY identity_id, seq;
INSERT INTO audit_identity_indexed (id, upto) SELECT 1, COALESCE(MAX(seq), 0) FROM audit;
DROP INDEX audit_identity_id_seq_idx;
