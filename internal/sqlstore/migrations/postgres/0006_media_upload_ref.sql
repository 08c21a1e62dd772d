-- See migrations/sqlite/0008_media_upload_ref.sql.
ALTER TABLE media ADD COLUMN upload_ref TEXT NOT NULL DEFAULT '';
