-- The whole schema for PostgreSQL: the meaning of the SQLite migrations
-- 0001 to 0003 in one, plus the event outbox of the cluster mode.
--
-- Times are BIGINT Unix milliseconds (UTC) and ids TEXT (UUID v7), as in
-- SQLite. Text keys use the "C" collation: byte order, as SQLite and Go's
-- string comparison sort, whatever the database's default collation. The
-- username range search (prefix to prefix-end) and the activity order of
-- conversations (updated_at, then id) depend on it.

CREATE TABLE users (
    id            TEXT COLLATE "C" PRIMARY KEY,
    username      TEXT COLLATE "C" NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT
);

-- One row per login: every refresh token descended from it shares the family.
CREATE TABLE session_families (
    id         TEXT COLLATE "C" PRIMARY KEY,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE INDEX session_families_user_id ON session_families (user_id);

CREATE TABLE refresh_tokens (
    hash       TEXT COLLATE "C" PRIMARY KEY,
    family_id  TEXT COLLATE "C" NOT NULL REFERENCES session_families (id) ON DELETE CASCADE,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    -- Set when the token was exchanged for the next one; presenting it again
    -- is reuse.
    rotated_at BIGINT
);

CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);

CREATE TABLE conversations (
    id         TEXT COLLATE "C" PRIMARY KEY,
    type       TEXT NOT NULL CHECK (type IN ('direct', 'group')),
    title      TEXT,
    -- For a direct conversation, the two member ids sorted and joined with a
    -- space: one direct conversation per unordered pair. NULL for groups
    -- (NULLs never collide in a UNIQUE column).
    direct_key TEXT COLLATE "C" UNIQUE,
    last_seq   BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- ConversationsPage picks a page of a user's conversations from their
-- memberships by (updated_at, id): an index-only scan of this index.
CREATE INDEX conversations_activity ON conversations (id, updated_at);

CREATE TABLE members (
    conversation_id TEXT COLLATE "C" NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    joined_at       BIGINT NOT NULL,
    delivered_seq   BIGINT NOT NULL DEFAULT 0,
    read_seq        BIGINT NOT NULL DEFAULT 0,
    -- The messages after read_seq that others sent, kept current by every
    -- write that changes it (a new message, a read receipt, joining).
    unread_count    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
);

-- A user's conversations.
CREATE INDEX members_user_id ON members (user_id, conversation_id);
-- A conversation's members in joining order, without a sort.
CREATE INDEX members_joined ON members (conversation_id, joined_at, user_id);

CREATE TABLE messages (
    id                TEXT COLLATE "C" NOT NULL UNIQUE,
    conversation_id   TEXT COLLATE "C" NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq               BIGINT NOT NULL,
    sender_id         TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    client_message_id TEXT COLLATE "C" NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('text', 'image', 'video', 'file', 'system')),
    text              TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq),
    -- Idempotent sends: a repeated client_message_id of a sender in a
    -- conversation is the same message.
    UNIQUE (conversation_id, sender_id, client_message_id)
);

CREATE TABLE device_tokens (
    token       TEXT COLLATE "C" PRIMARY KEY,
    user_id     TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    platform    TEXT NOT NULL CHECK (platform IN ('ios', 'web')),
    environment TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL
);

CREATE INDEX device_tokens_user_id ON device_tokens (user_id);

-- A member's muted conversation: no push, and no part of the badge, while
-- until (Unix ms) is in the future or NULL (for ever). Leaving the
-- conversation drops it.
CREATE TABLE mutes (
    user_id         TEXT COLLATE "C" NOT NULL,
    conversation_id TEXT COLLATE "C" NOT NULL,
    until           BIGINT,
    PRIMARY KEY (user_id, conversation_id),
    FOREIGN KEY (conversation_id, user_id) REFERENCES members (conversation_id, user_id) ON DELETE CASCADE
);

-- The push outbox: one row per (message, device token) of a recipient,
-- written in the transaction that stores the message. due_at is when the
-- job may next be claimed: the next attempt, or the end of the lease of a
-- worker that claimed it (so that a crash mid-send sends it again).
CREATE TABLE push_jobs (
    id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    message_id TEXT COLLATE "C" NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    token      TEXT COLLATE "C" NOT NULL REFERENCES device_tokens (token) ON DELETE CASCADE,
    -- The recipient, who owned the token when the job was queued.
    user_id    TEXT COLLATE "C" NOT NULL,
    badge      INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    due_at     BIGINT NOT NULL,
    queued_at  BIGINT NOT NULL,
    UNIQUE (message_id, token)
);

CREATE INDEX push_jobs_due ON push_jobs (due_at, id);
-- Deleting a token deletes its jobs (the cascade looks them up here).
CREATE INDEX push_jobs_token ON push_jobs (token);

-- Named secrets shared by every node (the access-token signing key, the
-- VAPID key): created once, by whichever node asks first.
CREATE TABLE secrets (
    name       TEXT COLLATE "C" PRIMARY KEY,
    value      BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

-- The event outbox (Options.Outbox): the events of each committed write,
-- inserted in its transaction and deleted once published. A row that stays
-- longer than the relay delay belonged to a node that died between commit
-- and publication (or failed to publish) and is published by another node.
-- created_at is the database's clock, so that the nodes' clocks need not
-- agree.
CREATE TABLE outbox (
    id         BIGSERIAL PRIMARY KEY,
    event      JSON NOT NULL,
    created_at BIGINT NOT NULL
        DEFAULT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)
);
