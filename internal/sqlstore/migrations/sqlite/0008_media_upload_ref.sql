-- The tus store's own id of an upload in progress: the media id, or in
-- object storage the media id, "+" and the multipart upload's id. Clients
-- only ever see the media id.
ALTER TABLE media ADD COLUMN upload_ref TEXT NOT NULL DEFAULT '';
