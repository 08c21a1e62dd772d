// Package push sends notifications to the devices of users who are not
// connected: the alert built from a stored message, the Sender contract
// that each push service (APNs, Web Push) implements, and the errors by
// which a Sender tells the worker what to do next.
package push

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley"
)

// Alert is one notification about one message for one recipient, as the
// contract's Push section describes it.
type Alert struct {
	// Title is the sender's display name, or the group title for a group.
	Title string
	// Subtitle is the sender's display name in a group, else empty.
	Subtitle string
	// Body is the text cut to 200 characters (with … when cut), or what
	// the message is ("Photo", "Video", "File") when it is not text.
	Body string
	// BadgeOnly marks a badge update: no alert, no sound, only Badge.
	BadgeOnly bool
	// Badge is the recipient's total unread count when the message was
	// stored (for a badge update: now), muted conversations left out.
	Badge          int
	ConversationID string
	SenderID       string
	MessageID      string
	Seq            int64
	// Expires is how long the push service keeps the push for a device
	// that is off: APNs's apns-expiration, Web Push's TTL. The zero time
	// leaves it to the Sender.
	Expires time.Time
}

// Sender delivers an alert to one device token of its platform. Send
// returns nil once the push service accepted it, an error wrapping
// ErrTokenGone when the token must be deleted, a *RetryError when the
// attempt should be repeated later, and any other error when the push must
// be dropped. Implementations are safe for concurrent use.
type Sender interface {
	Send(ctx context.Context, t parley.DeviceToken, a Alert) error
}

// ErrTokenGone says that the device token is no longer valid (APNs 410 or
// 400 BadDeviceToken, Web Push 404 or 410): delete it, do not retry.
var ErrTokenGone = errors.New("device token no longer valid")

// RetryError says that an attempt failed for a passing reason (429, 5xx,
// a timeout, a connection error) and should be repeated.
type RetryError struct {
	// After is the delay the push service asked for (Retry-After), or 0
	// to use the worker's own backoff.
	After time.Duration
	Err   error
}

func (e *RetryError) Error() string {
	if e.After > 0 {
		return fmt.Sprintf("retry after %v: %v", e.After, e.Err)
	}
	return fmt.Sprintf("retry: %v", e.Err)
}

func (e *RetryError) Unwrap() error { return e.Err }
