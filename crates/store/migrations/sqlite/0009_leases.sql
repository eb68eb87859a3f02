-- Leases (version 9, SQLite): named, time-bounded ownership of single-node duties (signing-key
-- rotation, CA rollover, checkpoints, purges, findings). `epoch` grows by one at every change of
-- holder and is the fence that writes of the duty carry; a released lease keeps its row (with
-- expires_at in the past) so that epochs never repeat.

CREATE TABLE leases (
    name        TEXT    NOT NULL PRIMARY KEY,
    holder      TEXT    NOT NULL,
    epoch       INTEGER NOT NULL CHECK (epoch > 0),
    acquired_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;
