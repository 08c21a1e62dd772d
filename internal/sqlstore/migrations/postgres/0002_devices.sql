-- Devices, not users: see migrations/sqlite/0004_devices.sql, which this
-- mirrors.

ALTER TABLE device_tokens ADD COLUMN family_id TEXT COLLATE "C" REFERENCES session_families (id) ON DELETE CASCADE;
ALTER TABLE device_tokens ADD COLUMN badge INTEGER NOT NULL DEFAULT 0;
ALTER TABLE device_tokens ADD COLUMN badge_at BIGINT NOT NULL DEFAULT 0;

CREATE INDEX device_tokens_family_id ON device_tokens (family_id);

CREATE TABLE device_receipts (
    family_id       TEXT COLLATE "C" NOT NULL REFERENCES session_families (id) ON DELETE CASCADE,
    conversation_id TEXT COLLATE "C" NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    delivered_seq   BIGINT NOT NULL,
    PRIMARY KEY (family_id, conversation_id)
);

ALTER TABLE refresh_tokens ADD COLUMN parent_hash TEXT COLLATE "C";
CREATE INDEX refresh_tokens_parent_hash ON refresh_tokens (parent_hash);

ALTER TABLE push_jobs ALTER COLUMN message_id DROP NOT NULL;
ALTER TABLE push_jobs ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
ALTER TABLE push_jobs ADD COLUMN dirty INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX push_jobs_badge ON push_jobs (token) WHERE message_id IS NULL;
