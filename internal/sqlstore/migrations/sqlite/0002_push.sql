-- Push notifications: a maintained unread counter per member (for the badge
-- and the conversation views), mutes, and the push outbox.

-- The messages after read_seq that others sent, kept current by every write
-- that changes it (a new message, a read receipt, joining), so that a badge
-- is a sum over a user's memberships rather than a count of messages.
ALTER TABLE members ADD COLUMN unread_count INTEGER NOT NULL DEFAULT 0;

UPDATE members SET unread_count = (
    SELECT COUNT(*) FROM messages x
    WHERE x.conversation_id = members.conversation_id
      AND x.seq > members.read_seq
      AND x.sender_id <> members.user_id);

-- A member's muted conversation: no push, and no part of the badge, while
-- until (Unix ms) is in the future or NULL (for ever). Leaving the
-- conversation drops it.
CREATE TABLE mutes (
    user_id         TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    until           INTEGER,
    PRIMARY KEY (user_id, conversation_id),
    FOREIGN KEY (conversation_id, user_id) REFERENCES members (conversation_id, user_id) ON DELETE CASCADE
);

-- The push outbox: one row per (message, device token) of a recipient,
-- written in the transaction that stores the message. due_at is when the
-- job may next be claimed: the next attempt, or the end of the lease of a
-- worker that claimed it (so that a crash mid-send sends it again).
CREATE TABLE push_jobs (
    id         INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    token      TEXT NOT NULL REFERENCES device_tokens (token) ON DELETE CASCADE,
    -- The recipient, who owned the token when the job was queued.
    user_id    TEXT NOT NULL,
    badge      INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    due_at     INTEGER NOT NULL,
    queued_at  INTEGER NOT NULL,
    UNIQUE (message_id, token)
);

CREATE INDEX push_jobs_due ON push_jobs (due_at, id);
-- Deleting a token deletes its jobs (the cascade looks them up here).
CREATE INDEX push_jobs_token ON push_jobs (token);
