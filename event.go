package parley

// EventType names a domain event. The values that clients see are the
// server-to-client frame types of the wire contract.
type EventType string

// Event types.
const (
	EventMessageNew          EventType = "message.new"
	EventReceipt             EventType = "receipt"
	EventTyping              EventType = "typing"
	EventPresence            EventType = "presence"
	EventConversationUpdated EventType = "conversation.updated"
	// EventSessionRevoked is internal: a refresh-token family was revoked
	// (logout or reuse), and the connections it authenticated must close.
	EventSessionRevoked EventType = "session.revoked"
	// EventAccountClosed is internal: a user deleted their account (Session
	// names the user, FamilyID empty), and every connection of theirs must
	// close with 4003.
	EventAccountClosed EventType = "account.closed"
)

// Event is what a committed write (or a typing or presence change) tells the
// rest of the system. Exactly one of the payload fields is set, matching
// Type. Events are shared between subscribers and must not be modified after
// they are published.
type Event struct {
	Type EventType `json:"type"`
	// Recipients are the users whose connections receive the event: the
	// members of the conversation, and for conversation.updated also a user
	// just removed. Typing and presence are further limited by the gateway to
	// connections that joined a room.
	Recipients []string `json:"recipients,omitempty"`
	// Origin is the session (connection) that caused the event, if any; it
	// gets a direct reply instead (message.ack), so fan-out skips it.
	Origin string `json:"origin,omitempty"`

	Message      *Message            `json:"message,omitempty"`
	Receipt      *Receipt            `json:"receipt,omitempty"`
	Typing       *Typing             `json:"typing,omitempty"`
	Presence     *Presence           `json:"presence,omitempty"`
	Conversation *ConversationChange `json:"conversation,omitempty"`
	Session      *SessionRevoked     `json:"session,omitempty"`
}

// Receipt is a moved watermark, as broadcast to members.
type Receipt struct {
	ConversationID string      `json:"conversation_id"`
	UserID         string      `json:"user_id"`
	Kind           ReceiptKind `json:"kind"`
	Seq            int64       `json:"seq"`
}

// TypingState is started or stopped.
type TypingState string

// Typing states.
const (
	TypingStarted TypingState = "started"
	TypingStopped TypingState = "stopped"
)

// Typing says that a user started or stopped typing in a conversation.
type Typing struct {
	ConversationID string      `json:"conversation_id"`
	UserID         string      `json:"user_id"`
	State          TypingState `json:"state"`
}

// PresenceStatus is online or offline.
type PresenceStatus string

// Presence statuses.
const (
	Online  PresenceStatus = "online"
	Offline PresenceStatus = "offline"
)

// Presence is a user's connection status. LastSeenAt is now while online.
type Presence struct {
	UserID     string         `json:"user_id"`
	Status     PresenceStatus `json:"status"`
	LastSeenAt Time           `json:"last_seen_at"`
}

// ConversationChange is a conversation after a creation, membership or
// title change. Conversation carries no caller-specific fields; Views holds
// each recipient's own read_seq and unread_count.
type ConversationChange struct {
	Conversation Conversation          `json:"conversation"`
	Views        map[string]MemberView `json:"views"`
}

// For returns the conversation as userID sees it.
func (c *ConversationChange) For(userID string) Conversation {
	conv := c.Conversation
	if v, ok := c.Views[userID]; ok {
		conv.ReadSeq, conv.UnreadCount, conv.MutedUntil = v.ReadSeq, v.UnreadCount, v.MutedUntil
	}
	return conv
}

// MemberView is the caller-specific part of a Conversation.
type MemberView struct {
	ReadSeq     int64 `json:"read_seq"`
	UnreadCount int64 `json:"unread_count"`
	// MutedUntil is the member's mute (see Conversation.MutedUntil).
	MutedUntil *Time `json:"muted_until,omitempty"`
}

// SessionRevoked names a revoked refresh-token family.
type SessionRevoked struct {
	UserID   string `json:"user_id"`
	FamilyID string `json:"family_id"`
}
