package parley

import (
	"encoding/json"
	"regexp"
	"strings"
	"unicode/utf8"
)

// User is an account as clients see it.
type User struct {
	ID          string `json:"id"`
	Username    string `json:"username"`
	DisplayName string `json:"display_name"`
	CreatedAt   Time   `json:"created_at"`
	// Deleted marks an account its owner deleted: it encodes as
	// {"id","username":null,"display_name":"Deleted account","deleted":true}.
	Deleted bool `json:"deleted,omitempty"`
}

// DeletedDisplayName is the display name of a deleted account.
const DeletedDisplayName = "Deleted account"

// MarshalJSON encodes u as the contract's User, or a deleted account as
// {"id","username":null,"display_name":"Deleted account","deleted":true}.
func (u User) MarshalJSON() ([]byte, error) {
	if u.Deleted {
		return json.Marshal(struct {
			ID          string  `json:"id"`
			Username    *string `json:"username"`
			DisplayName string  `json:"display_name"`
			Deleted     bool    `json:"deleted"`
		}{u.ID, nil, DeletedDisplayName, true})
	}
	type plain User // without this method
	return json.Marshal(plain(u))
}

// Role is a member's role in a conversation.
type Role string

// Member roles. Direct conversations have only members; a group's creator
// starts as its admin.
const (
	RoleAdmin  Role = "admin"
	RoleMember Role = "member"
)

// Member is one user's membership of a conversation with their receipt
// watermarks.
type Member struct {
	UserID       string `json:"user_id"`
	Role         Role   `json:"role"`
	JoinedAt     Time   `json:"joined_at"`
	DeliveredSeq int64  `json:"delivered_seq"`
	ReadSeq      int64  `json:"read_seq"`
}

// ConversationType says whether a conversation is between two users or a group.
type ConversationType string

// Conversation types.
const (
	Direct ConversationType = "direct"
	Group  ConversationType = "group"
)

// Conversation is a direct chat or a group as one member sees it: ReadSeq and
// UnreadCount are that member's own.
type Conversation struct {
	ID          string           `json:"id"`
	Type        ConversationType `json:"type"`
	Title       *string          `json:"title"`
	Members     []Member         `json:"members"`
	LastSeq     int64            `json:"last_seq"`
	LastMessage *Message         `json:"last_message"`
	ReadSeq     int64            `json:"read_seq"`
	UnreadCount int64            `json:"unread_count"`
	// MutedUntil is the caller's mute of the conversation (an extension,
	// docs/protocol.md "Muting a conversation"): nil when not muted, its
	// end when muted until a time, MutedForever when muted for ever. A
	// client treats the conversation as muted while MutedUntil is later
	// than now.
	MutedUntil *Time `json:"muted_until"`
	CreatedAt  Time  `json:"created_at"`
	UpdatedAt  Time  `json:"updated_at"`
}

// Member returns the membership of userID and whether there is one.
func (c *Conversation) Member(userID string) (Member, bool) {
	for _, m := range c.Members {
		if m.UserID == userID {
			return m, true
		}
	}
	return Member{}, false
}

// MemberIDs returns the user ids of all members.
func (c *Conversation) MemberIDs() []string {
	ids := make([]string, len(c.Members))
	for i, m := range c.Members {
		ids[i] = m.UserID
	}
	return ids
}

// MessageKind says what a message carries.
type MessageKind string

// Message kinds. A client may not send KindSystem.
const (
	KindText   MessageKind = "text"
	KindImage  MessageKind = "image"
	KindVideo  MessageKind = "video"
	KindFile   MessageKind = "file"
	KindSystem MessageKind = "system"
)

// Message is one stored message. Seq is its place in the conversation.
type Message struct {
	ID              string      `json:"id"`
	ConversationID  string      `json:"conversation_id"`
	Seq             int64       `json:"seq"`
	SenderID        string      `json:"sender_id"`
	ClientMessageID string      `json:"client_message_id"`
	Kind            MessageKind `json:"kind"`
	Text            string      `json:"text"`
	CreatedAt       Time        `json:"created_at"`
	// Media is the attached file of an image, video or file message (an
	// extension), nil for text.
	Media *Media `json:"media,omitempty"`
}

// ReceiptKind is the watermark a receipt moves.
type ReceiptKind string

// Receipt kinds. Read implies delivered.
const (
	Delivered ReceiptKind = "delivered"
	Read      ReceiptKind = "read"
)

// Platform is the kind of a device token.
type Platform string

// Device token platforms.
const (
	PlatformIOS Platform = "ios"
	PlatformWeb Platform = "web"
)

// DeviceToken is a push destination registered by a user's device.
type DeviceToken struct {
	UserID string `json:"user_id"`
	// DeviceID is the login (refresh-token family) whose access token
	// registered the token: the device. Empty for a token registered before
	// devices were told apart, which follows its user.
	DeviceID    string   `json:"device_id,omitempty"`
	Platform    Platform `json:"platform"`
	Token       string   `json:"token"`
	Environment string   `json:"environment,omitempty"`
	CreatedAt   Time     `json:"created_at"`
}

var usernamePattern = regexp.MustCompile(`^[a-z0-9_.]{3,32}$`)

// NormalizeUsername lower-cases name and checks it against the contract's
// pattern, returning invalid_argument when it does not match.
func NormalizeUsername(name string) (string, error) {
	n := strings.ToLower(name)
	if !usernamePattern.MatchString(n) {
		return "", Errorf(CodeInvalidArgument, "username must be 3 to 32 of a-z, 0-9, _ and .")
	}
	return n, nil
}

// ValidatePassword checks the contract's length rule: 8 to 1024 bytes.
func ValidatePassword(pw string) error {
	if len(pw) < 8 || len(pw) > 1024 {
		return Errorf(CodeInvalidArgument, "password must be 8 to 1024 bytes")
	}
	return nil
}

// ValidateDisplayName checks a display name: valid UTF-8, at most 64 characters.
func ValidateDisplayName(name string) error {
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > 64 {
		return Errorf(CodeInvalidArgument, "display_name must be at most 64 characters")
	}
	return nil
}

// ValidateTitle checks a group title: 1 to 128 characters after trimming.
func ValidateTitle(title string) error {
	t := strings.TrimSpace(title)
	if t == "" || !utf8.ValidString(t) || utf8.RuneCountInString(t) > 128 {
		return Errorf(CodeInvalidArgument, "title must be 1 to 128 characters")
	}
	return nil
}
