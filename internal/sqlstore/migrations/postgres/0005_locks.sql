-- Cluster-wide locks with a lease: see migrations/sqlite/0007_locks.sql.
CREATE TABLE locks (
    key        TEXT COLLATE "C" PRIMARY KEY,
    holder     TEXT COLLATE "C" NOT NULL,
    expires_at BIGINT NOT NULL
);
