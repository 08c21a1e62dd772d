-- Media (photos, videos, files): one row per upload, from its creation to
-- its attachment to a message. The bytes live in the blob store, not here.
CREATE TABLE media (
    id              TEXT PRIMARY KEY,
    uploader_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    state           TEXT NOT NULL CHECK (state IN ('uploading', 'processing', 'ready', 'failed')),
    -- The file name shown to members: the uploader's, cleaned.
    name            TEXT NOT NULL,
    -- What the uploader said it is (kept, never trusted) and what the
    -- content is.
    claimed_type    TEXT NOT NULL DEFAULT '',
    mime_type       TEXT NOT NULL DEFAULT '',
    kind            TEXT NOT NULL DEFAULT 'file' CHECK (kind IN ('image', 'video', 'file')),
    size            INTEGER NOT NULL,
    width           INTEGER,
    height          INTEGER,
    duration_ms     INTEGER,
    has_thumbnail   INTEGER NOT NULL DEFAULT 0,
    error           TEXT NOT NULL DEFAULT '',
    -- Set once, when a message carries it; members of that conversation
    -- may then read it.
    conversation_id TEXT REFERENCES conversations (id) ON DELETE CASCADE,
    created_at      INTEGER NOT NULL,
    attached_at     INTEGER
);

-- The uploads never attached, oldest first, for the janitor.
CREATE INDEX media_unattached ON media (created_at) WHERE conversation_id IS NULL;
CREATE INDEX media_uploader ON media (uploader_id);

-- A message's media, as it was when sent (JSON of the Media without
-- URLs, which are signed when shown), and the id for lookups.
ALTER TABLE messages ADD COLUMN media TEXT;
ALTER TABLE messages ADD COLUMN media_id TEXT REFERENCES media (id);
