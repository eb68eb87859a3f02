-- Leases (version 9, PostgreSQL): named, time-bounded ownership of single-node duties (signing-key
-- rotation, CA rollover, checkpoints, purges, findings) shared by every node of a cluster. `epoch`
-- grows by one at every change of holder and is the fence that writes of the duty carry; a
-- released lease keeps its row (with expires_at in the past) so that epochs never repeat.

CREATE TABLE leases (
    name        TEXT   NOT NULL,
    holder      TEXT   NOT NULL,
    epoch       BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    CONSTRAINT leases_pkey PRIMARY KEY (name),
    CONSTRAINT leases_epoch_check CHECK (epoch > 0)
);
