-- A covering index for the audit log's leaf hashes (version 10, SQLite): checkpoints and proofs
-- read `seq, leaf_hash` ranges, and without it each read walked the table itself, every column of
-- every record (about 500 bytes each), through the readers' page caches. This index holds about
-- 40 bytes a record and grows only at its right edge, as the log does. PostgreSQL keeps its plan.

CREATE INDEX audit_seq_leaf_idx ON audit (seq, leaf_hash);
