-- Devices, not users (docs/push.md): a login (session family) is a device.
-- A push token belongs to the login that registered it; a device confirms
-- what it received with delivered receipts of its own; each token remembers
-- the badge it was last pushed, so that reading elsewhere can lower it. And
-- a refresh token remembers its parent, for the refresh grace period.

-- The login whose access token registered the token; NULL for tokens
-- registered before devices existed (they follow the user, as before, until
-- the app registers them again).
ALTER TABLE device_tokens ADD COLUMN family_id TEXT REFERENCES session_families (id) ON DELETE CASCADE;
-- The badge the device was last pushed, and when its last badge-only push
-- went (Unix ms, 0 if never): badge updates are coalesced to one per device
-- every 10 s.
ALTER TABLE device_tokens ADD COLUMN badge INTEGER NOT NULL DEFAULT 0;
ALTER TABLE device_tokens ADD COLUMN badge_at INTEGER NOT NULL DEFAULT 0;

CREATE INDEX device_tokens_family_id ON device_tokens (family_id);

-- What each device (with a push token) has confirmed having received, per
-- conversation: its own delivered watermark. A push held back because the
-- device looked connected is sent unless this covers the message.
CREATE TABLE device_receipts (
    family_id       TEXT NOT NULL REFERENCES session_families (id) ON DELETE CASCADE,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    delivered_seq   INTEGER NOT NULL,
    PRIMARY KEY (family_id, conversation_id)
);

-- The token this one replaced (NULL for a login's first): the token rotated
-- last may be presented again within the grace period while none of its
-- children has been used.
ALTER TABLE refresh_tokens ADD COLUMN parent_hash TEXT;
CREATE INDEX refresh_tokens_parent_hash ON refresh_tokens (parent_hash);

-- The push outbox gains badge updates: a job without a message is a
-- badge-only push to its token (at most one pending per token), whose badge
-- is computed when it is sent. SQLite cannot drop a NOT NULL, so the table
-- is rebuilt.
CREATE TABLE push_jobs_v4 (
    id         INTEGER PRIMARY KEY,
    -- NULL for a badge update.
    message_id TEXT REFERENCES messages (id) ON DELETE CASCADE,
    token      TEXT NOT NULL REFERENCES device_tokens (token) ON DELETE CASCADE,
    -- The recipient, who owned the token when the job was queued.
    user_id    TEXT NOT NULL,
    badge      INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    due_at     INTEGER NOT NULL,
    queued_at  INTEGER NOT NULL,
    -- 1 once the push was held back because its device had a foreground
    -- connection: when it is due again it is sent unless the device
    -- confirmed the message meanwhile.
    held       INTEGER NOT NULL DEFAULT 0,
    -- For a badge update: the badge changed again after the job was
    -- claimed, so sending it does not end it.
    dirty      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (message_id, token)
);

INSERT INTO push_jobs_v4 (id, message_id, token, user_id, badge, attempts, due_at, queued_at)
    SELECT id, message_id, token, user_id, badge, attempts, due_at, queued_at FROM push_jobs;
DROP TABLE push_jobs;
ALTER TABLE push_jobs_v4 RENAME TO push_jobs;

CREATE INDEX push_jobs_due ON push_jobs (due_at, id);
CREATE INDEX push_jobs_token ON push_jobs (token);
-- One pending badge update per token.
CREATE UNIQUE INDEX push_jobs_badge ON push_jobs (token) WHERE message_id IS NULL;
