-- Cluster-wide locks with a lease (TryLock): a holder renews its lease while
-- it works; a lock whose lease ran out (its node died) is free.
CREATE TABLE locks (
    key        TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
