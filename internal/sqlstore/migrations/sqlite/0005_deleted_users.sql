-- Account deletion: a deleted user's row stays (their messages stay in
-- others' conversations and name them as sender) with deleted_at set, no
-- password, and "Deleted account" as display name. The username is kept
-- for 30 days, then freed (renamed to "~" and the id) when someone asks
-- for it.
ALTER TABLE users ADD COLUMN deleted_at INTEGER;
