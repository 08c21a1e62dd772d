-- Initial schema. Times are INTEGER Unix milliseconds (UTC) and ids are TEXT
-- (UUID v7), so that the PostgreSQL schema differs only in types it names
-- differently, not in meaning.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER
);

-- One row per login: every refresh token descended from it shares the family.
CREATE TABLE session_families (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE INDEX session_families_user_id ON session_families (user_id);

CREATE TABLE refresh_tokens (
    hash       TEXT PRIMARY KEY,
    family_id  TEXT NOT NULL REFERENCES session_families (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    -- Set when the token was exchanged for the next one; presenting it again
    -- is reuse.
    rotated_at INTEGER
);

CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);

CREATE TABLE conversations (
    id         TEXT PRIMARY KEY,
    type       TEXT NOT NULL CHECK (type IN ('direct', 'group')),
    title      TEXT,
    -- For a direct conversation, the two member ids sorted and joined with a
    -- space: one direct conversation per unordered pair. NULL for groups
    -- (NULLs never collide in a UNIQUE column).
    direct_key TEXT UNIQUE,
    last_seq   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE members (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    joined_at       INTEGER NOT NULL,
    delivered_seq   INTEGER NOT NULL DEFAULT 0,
    read_seq        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
);

-- A user's conversations.
CREATE INDEX members_user_id ON members (user_id, conversation_id);
-- A conversation's members in joining order, without a sort.
CREATE INDEX members_joined ON members (conversation_id, joined_at, user_id);

CREATE TABLE messages (
    id                TEXT NOT NULL UNIQUE,
    conversation_id   TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq               INTEGER NOT NULL,
    sender_id         TEXT NOT NULL REFERENCES users (id),
    client_message_id TEXT NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('text', 'image', 'video', 'file', 'system')),
    text              TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq),
    -- Idempotent sends: a repeated client_message_id of a sender in a
    -- conversation is the same message.
    UNIQUE (conversation_id, sender_id, client_message_id)
);

CREATE TABLE device_tokens (
    token       TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    platform    TEXT NOT NULL CHECK (platform IN ('ios', 'web')),
    environment TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
);

CREATE INDEX device_tokens_user_id ON device_tokens (user_id);
