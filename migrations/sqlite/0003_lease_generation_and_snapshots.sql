-- Leases carry a generation, bumped on every change of holder: the fencing token of the holder's
-- writes. A released lease is expired in place (not deleted), so generations only grow.
ALTER TABLE leases ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;

-- What the lease holder saw, for every replica to serve: one row per source, replaced whole.
CREATE TABLE snapshots (
    name       TEXT PRIMARY KEY,
    version    BIGINT NOT NULL,
    body       TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
