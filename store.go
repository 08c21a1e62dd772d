package parley

import (
	"context"
	"time"
)

// Store is the durable state of Parley. Implementations (SQLite now,
// PostgreSQL next) check membership themselves: a conversation the caller is
// not a member of is not_found. Every write that clients must hear about is
// published to the Publisher given to the implementation after it commits,
// in commit order, so that message.new for a conversation is published in
// increasing seq. Methods are safe for concurrent use.
type Store interface {
	// Ping reports whether the storage is reachable.
	Ping(ctx context.Context) error
	// Close stops accepting writes, finishes the ones under way, and closes.
	Close() error

	// CreateUser stores a new user; a taken username is conflict.
	CreateUser(ctx context.Context, u User, passwordHash string) error
	// UserByUsername returns a user and its password hash; not_found if none.
	UserByUsername(ctx context.Context, username string) (User, string, error)
	// UserByID returns a user; not_found if none.
	UserByID(ctx context.Context, id string) (User, error)
	// SearchUsers returns at most limit users whose username starts with
	// prefix, in username order.
	SearchUsers(ctx context.Context, prefix string, limit int) ([]User, error)

	// CreateSession starts a refresh-token family with its first token.
	CreateSession(ctx context.Context, first RefreshToken) error
	// RotateRefreshToken replaces the active token whose hash is oldHash by
	// next (which carries no family or user: they are taken from the old
	// token). A token that was already rotated revokes its whole family and
	// publishes EventSessionRevoked, unless it is the one rotated last and
	// was rotated less than grace ago (a lost answer): then next is issued
	// again as another child of it. A reused, unknown, expired or revoked
	// token answers unauthenticated.
	RotateRefreshToken(ctx context.Context, oldHash string, next RefreshToken, grace time.Duration) (RefreshToken, error)
	// RevokeSession revokes the family of the token whose hash is given and
	// publishes EventSessionRevoked. An unknown token changes nothing.
	RevokeSession(ctx context.Context, tokenHash string) error
	// SessionActive reports whether a family exists and is not revoked.
	SessionActive(ctx context.Context, familyID string) (bool, error)

	// CreateConversation creates a direct conversation or a group and
	// publishes conversation.updated to its members. For a direct
	// conversation that already exists between the pair it returns that one
	// with created false. Unknown member ids are invalid_argument.
	CreateConversation(ctx context.Context, p NewConversation) (c Conversation, created bool, err error)
	// Conversation returns a conversation as callerID sees it.
	Conversation(ctx context.Context, id, callerID string) (Conversation, error)
	// Conversations returns callerID's conversations, latest updated_at first.
	Conversations(ctx context.Context, callerID string) ([]Conversation, error)
	// MemberIDs returns the members of a conversation callerID belongs to.
	MemberIDs(ctx context.Context, conversationID, callerID string) ([]string, error)
	// AddMember adds userID to a group; only admins may (forbidden), direct
	// conversations cannot change (forbidden). Adding a member is a no-op.
	AddMember(ctx context.Context, conversationID, actorID, userID string) (Conversation, error)
	// RemoveMember removes userID from a group: an admin may remove anyone,
	// anyone may remove themselves. When the last admin leaves, the
	// longest-standing member becomes admin.
	RemoveMember(ctx context.Context, conversationID, actorID, userID string) error

	// SendMessage stores a message, assigning its id, seq and time, and
	// publishes message.new. A repeated (sender, conversation,
	// client_message_id) returns the original with created false and
	// publishes nothing. It returns only after the write is durable.
	SendMessage(ctx context.Context, p NewMessage) (m Message, created bool, err error)
	// Messages pages through a conversation's history, ascending by seq.
	Messages(ctx context.Context, conversationID, callerID string, q HistoryQuery) (msgs []Message, hasMore bool, err error)
	// MarkReceipt moves callerID's watermark forward (clamped to last_seq;
	// read moves delivered too) and, when it moved, publishes a receipt.
	// deviceID is the login the receipt came from ("" if none): what that
	// device confirmed is recorded for its push notifications.
	MarkReceipt(ctx context.Context, callerID, conversationID string, kind ReceiptKind, seq int64, deviceID string) (moved bool, err error)

	// SetMute mutes a conversation for callerID until the given time, or
	// for ever when until is nil: a muted conversation sends callerID no
	// push and does not count in their badge. not_found if not a member.
	SetMute(ctx context.Context, conversationID, callerID string, until *Time) error
	// ClearMute unmutes a conversation for callerID (a conversation that
	// is not muted stays so). not_found if not a member.
	ClearMute(ctx context.Context, conversationID, callerID string) error
	// MuteOf returns callerID's mute of a conversation: not muted when
	// there is none or it has ended. not_found if not a member.
	MuteOf(ctx context.Context, conversationID, callerID string) (Mute, error)

	// PutDeviceToken registers a token to its user, moving it from another
	// user if needed; created is false when the caller already had it.
	PutDeviceToken(ctx context.Context, t DeviceToken) (created bool, err error)
	// DeleteDeviceToken deletes the caller's token; unknown or foreign tokens
	// change nothing.
	DeleteDeviceToken(ctx context.Context, userID, token string) error

	// SetLastSeen records when a user was last connected.
	SetLastSeen(ctx context.Context, userID string, at Time) error
	// LastSeen returns the last-seen times it knows for the given users.
	LastSeen(ctx context.Context, userIDs []string) (map[string]Time, error)
}

// Mute says whether a member has muted a conversation, and until when: nil
// Until while muted is for ever.
type Mute struct {
	Muted bool
	Until *Time
}

// RefreshToken is a stored refresh token. Only the hash of the secret is kept.
type RefreshToken struct {
	Hash      string
	FamilyID  string
	UserID    string
	ExpiresAt Time
}

// NewConversation is the input of Store.CreateConversation. MemberIDs are
// the others; the creator is always a member (admin of a group).
type NewConversation struct {
	Type      ConversationType
	Title     *string
	CreatorID string
	MemberIDs []string
}

// NewMessage is the input of Store.SendMessage.
type NewMessage struct {
	ConversationID  string
	SenderID        string
	ClientMessageID string
	Kind            MessageKind
	Text            string
	// MediaID is the upload to attach (image, video and file kinds): the
	// sender's own, ready, and not attached yet.
	MediaID string
	// Origin is the session that sent it, passed through to the event.
	Origin string
}

// HistoryQuery selects a page of history. AfterSeq is a bound only when
// HasAfter is set (after_seq=0 means from the start); a zero BeforeSeq is no
// bound. Limit is already validated and clamped by the caller.
type HistoryQuery struct {
	AfterSeq  int64
	HasAfter  bool
	BeforeSeq int64
	Limit     int
}

// Publisher receives events after the write that caused them committed.
// Publish may block for backpressure but must not fail for a full queue. A
// store calls it from its writer, so Publish must never wait for a write of
// that same store.
type Publisher interface {
	Publish(ctx context.Context, ev *Event) error
}

// Bus carries events from the writers to the subscribers (the gateway, the
// push sender) of every node. Handlers run on the bus's own goroutine, in
// publish order, and must not block.
type Bus interface {
	Publisher
	Subscribe(handler func(*Event)) (unsubscribe func())
}
