package parley

// PushJob is one queued push notification: one stored message for one
// device of one recipient, or a badge update for one device (BadgeOnly). A store queues jobs in the same write that stores
// the message (an outbox), so that a crash loses none, and the push worker
// claims, sends and finishes them.
type PushJob struct {
	// ID identifies the job in its store.
	ID int64
	// Device is the destination, with its user (the recipient).
	Device DeviceToken
	// BadgeOnly marks a badge update: the user read on some device and
	// this device was last pushed a higher badge. Message, SenderName,
	// ConversationType and Title are then zero, and Badge is the badge now.
	BadgeOnly bool
	// Message is the stored message the push is about.
	Message Message
	// SenderName is the display name of the message's sender.
	SenderName string
	// ConversationType and Title describe the conversation: Title is the
	// group's title, nil for a direct conversation.
	ConversationType ConversationType
	Title            *string
	// Badge is the recipient's total unread count, muted conversations
	// left out, computed when the message was stored.
	Badge int
	// Attempts is the number of failed attempts so far.
	Attempts int
	// Held says that the push was held back once because its device had a
	// connection in the foreground; it is due again because the device has
	// not confirmed the message since, and is sent whatever the device's
	// connection looks like.
	Held bool
	// Confirmed says that the device confirmed the message: a delivered
	// (or read) receipt of its own covers it.
	Confirmed bool
	// QueuedAt is when the message was stored and the job queued.
	QueuedAt Time
}
