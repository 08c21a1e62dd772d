-- Media: see migrations/sqlite/0006_media.sql, which this mirrors.
CREATE TABLE media (
    id              TEXT COLLATE "C" PRIMARY KEY,
    uploader_id     TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    state           TEXT NOT NULL CHECK (state IN ('uploading', 'processing', 'ready', 'failed')),
    name            TEXT NOT NULL,
    claimed_type    TEXT NOT NULL DEFAULT '',
    mime_type       TEXT NOT NULL DEFAULT '',
    kind            TEXT NOT NULL DEFAULT 'file' CHECK (kind IN ('image', 'video', 'file')),
    size            BIGINT NOT NULL,
    width           INTEGER,
    height          INTEGER,
    duration_ms     BIGINT,
    has_thumbnail   INTEGER NOT NULL DEFAULT 0,
    error           TEXT NOT NULL DEFAULT '',
    conversation_id TEXT COLLATE "C" REFERENCES conversations (id) ON DELETE CASCADE,
    created_at      BIGINT NOT NULL,
    attached_at     BIGINT
);

CREATE INDEX media_unattached ON media (created_at) WHERE conversation_id IS NULL;
CREATE INDEX media_uploader ON media (uploader_id);

ALTER TABLE messages ADD COLUMN media TEXT;
ALTER TABLE messages ADD COLUMN media_id TEXT COLLATE "C" REFERENCES media (id);
