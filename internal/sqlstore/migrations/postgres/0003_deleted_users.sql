-- Account deletion: see migrations/sqlite/0005_deleted_users.sql.
ALTER TABLE users ADD COLUMN deleted_at BIGINT;
