-- Named secrets shared by every node of a deployment (the access-token
-- signing key, the VAPID key), and an index for paging a user's
-- conversations in activity order.

-- A secret is created once, by whichever node asks first, and never changes.
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

-- ConversationsPage picks a page of a user's conversations from their
-- memberships by (updated_at, id): this covering index answers that from
-- the index alone, without reading the conversation rows.
CREATE INDEX conversations_activity ON conversations (id, updated_at);
