package client

import (
	"context"
	"math"
	"time"

	"github.com/parley-chat/parley"
)

// Status is where a message is on its way.
type Status string

// Message statuses. The user's own messages go pending → sent → delivered
// → read (or pending → failed); messages of others are received.
const (
	// StatusPending: queued in the outbox, not acknowledged yet.
	StatusPending Status = "pending"
	// StatusFailed: the server refused it for good (Message.Error says
	// why); Retry or Discard it.
	StatusFailed Status = "failed"
	// StatusSent: stored by the server (it has an ID and a Seq).
	StatusSent Status = "sent"
	// StatusDelivered: every other member's delivered watermark reached
	// its seq.
	StatusDelivered Status = "delivered"
	// StatusRead: every other member's read watermark reached its seq.
	StatusRead Status = "read"
	// StatusReceived: a message of another member.
	StatusReceived Status = "received"
)

// Message is a message as the local store has it. While it is pending or
// failed, ID is empty and Seq is 0, SenderID is the user and CreatedAt is
// the local time of Send; ClientMessageID identifies it throughout.
//
// Media is set on image, video and file messages. Its URLs are the ones
// the server sent with the message and expire (an hour by default):
// Download fetches fresh ones. On a message still in the outbox, Media
// has no ID and no URLs until its upload is complete, and MIMEType is the
// type guessed on this device (the server decides from the content).
type Message struct {
	parley.Message
	Status Status `json:"status"`
	// Error is why a failed message was refused.
	Error string `json:"error,omitempty"`
	// Upload is how far the file of a pending image, video or file
	// message is uploaded; nil once the upload is complete, and on every
	// other message.
	Upload *Upload `json:"upload,omitempty"`
}

// Upload is the progress of a file's upload: Sent of Total bytes are on
// the server.
type Upload struct {
	Sent  int64 `json:"sent"`
	Total int64 `json:"total"`
}

// Conversation is a conversation as the local store has it: the server's
// object, with LastSeq, LastMessage, ReadSeq and UnreadCount brought up to
// date by what arrived since and by MarkRead.
type Conversation struct {
	parley.Conversation
	// Removed says the user is no longer a member.
	Removed bool `json:"removed,omitempty"`
}

// Muted reports whether the user has muted the conversation at time now:
// its MutedUntil (from the server's object; nil when not muted,
// parley.MutedForever for ever) is later than now. A muted conversation
// sends the user no push notifications and does not count in TotalUnread;
// its messages still arrive, and its own UnreadCount is unchanged.
func (c Conversation) Muted(now time.Time) bool {
	return c.MutedUntil != nil && c.MutedUntil.After(now)
}

// statusOf derives the status of a stored message from the watermarks of
// the other members: delivered and read once every one of them reached
// its seq. In a conversation with no one else, sent is as far as it goes.
func statusOf(m parley.Message, conv parley.Conversation, me string) Status {
	if m.SenderID != me {
		return StatusReceived
	}
	minDelivered, minRead := int64(math.MaxInt64), int64(math.MaxInt64)
	others := 0
	for _, mem := range conv.Members {
		if mem.UserID == me {
			continue
		}
		others++
		minDelivered = min(minDelivered, mem.DeliveredSeq)
		minRead = min(minRead, mem.ReadSeq)
	}
	switch {
	case others == 0:
		return StatusSent
	case m.Seq <= minRead:
		return StatusRead
	case m.Seq <= minDelivered:
		return StatusDelivered
	}
	return StatusSent
}

// outboxMessage is the Message of an outbox item.
func outboxMessage(it outboxItem, me string) Message {
	st := StatusPending
	if it.State == outboxFailed {
		st = StatusFailed
	}
	m := Message{
		Message: parley.Message{
			ConversationID:  it.ConversationID,
			SenderID:        me,
			ClientMessageID: it.ClientMessageID,
			Kind:            it.Kind,
			Text:            it.Text,
			CreatedAt:       it.CreatedAt,
		},
		Status: st,
		Error:  it.Error,
	}
	if f := it.File; f != nil {
		if f.Media != nil {
			media := *f.Media
			m.Media = &media
		} else {
			m.Media = &parley.Media{MIMEType: f.Type, Size: f.Size, Name: f.Name}
			if st == StatusPending {
				m.Upload = &Upload{Sent: f.Offset, Total: f.Size}
			}
		}
	}
	return m
}

// view builds the application's Conversation from a row.
func (c *Client) view(ctx context.Context, row convRow, me string) (Conversation, error) {
	conv := row.Data
	conv.ID = row.ID
	conv.LastSeq = row.LastSeq
	readSeq := max(row.ReadWant, row.SrvRead, row.BaseRead)
	conv.ReadSeq = readSeq
	var err error
	switch {
	case row.HaveSeq > 0 && row.FloorSeq <= readSeq+1:
		// The local run reaches back to the read watermark: count.
		conv.UnreadCount, err = c.store.countUnread(ctx, row.ID, me, readSeq)
	case readSeq <= row.BaseRead:
		// The server counted up to its last object; count what came since.
		var n int64
		n, err = c.store.countUnread(ctx, row.ID, me, row.BaseSeq)
		conv.UnreadCount = row.BaseUnread + n
	default:
		// Read beyond the server's count but before the local run: the
		// local count is the best estimate.
		conv.UnreadCount, err = c.store.countUnread(ctx, row.ID, me, readSeq)
	}
	if err != nil {
		return Conversation{}, err
	}
	last, err := c.store.messages(ctx, row.ID, 0, 1)
	if err != nil {
		return Conversation{}, err
	}
	if len(last) == 1 && (conv.LastMessage == nil || last[0].Seq >= conv.LastMessage.Seq) {
		conv.LastMessage = &last[0]
	}
	if conv.Members == nil {
		conv.Members = []parley.Member{}
	}
	return Conversation{Conversation: conv, Removed: row.Removed}, nil
}

// Conversations returns the user's conversations from the local store,
// most recent activity first, with unread counts. It does no network I/O.
func (c *Client) Conversations(ctx context.Context) ([]Conversation, error) {
	rows, err := c.store.convs(ctx)
	if err != nil {
		return nil, err
	}
	me := c.me()
	out := make([]Conversation, 0, len(rows))
	for _, row := range rows {
		if row.Removed || row.Stub {
			continue
		}
		v, err := c.view(ctx, row, me)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// TotalUnread returns the sum of the unread counts of the conversations
// that are not muted now: what the server's push notifications put on the
// app's badge, computed from the local store. It does no network I/O.
func (c *Client) TotalUnread(ctx context.Context) (int64, error) {
	convs, err := c.Conversations(ctx)
	if err != nil {
		return 0, err
	}
	now := time.Now()
	var n int64
	for _, v := range convs {
		if !v.Muted(now) {
			n += v.UnreadCount
		}
	}
	return n, nil
}

// Conversation returns one conversation from the local store; not_found
// if the store does not have it.
func (c *Client) Conversation(ctx context.Context, id string) (Conversation, error) {
	row, err := c.store.conv(ctx, id)
	if err != nil {
		return Conversation{}, err
	}
	if !row.exists || row.Stub {
		return Conversation{}, parley.Errorf(parley.CodeNotFound, "conversation %s is not in the local store", id)
	}
	return c.view(ctx, row, c.me())
}

// MessageQuery selects messages from the local store.
type MessageQuery struct {
	// BeforeSeq, if not 0, returns the messages below it (an older page);
	// the outbox is then left out.
	BeforeSeq int64
	// Limit is the number of stored messages (default 50).
	Limit int
}

// Messages returns a conversation's messages from the local store, the
// newest Limit below BeforeSeq ascending by seq, followed (on the first
// page) by the user's pending and failed messages in send order. It does
// no network I/O; History fetches older pages from the server.
func (c *Client) Messages(ctx context.Context, convID string, q MessageQuery) ([]Message, error) {
	if q.Limit <= 0 {
		q.Limit = 50
	}
	row, err := c.store.conv(ctx, convID)
	if err != nil {
		return nil, err
	}
	msgs, err := c.store.messages(ctx, convID, q.BeforeSeq, q.Limit)
	if err != nil {
		return nil, err
	}
	me := c.me()
	out := make([]Message, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, Message{Message: m, Status: statusOf(m, row.Data, me)})
	}
	if q.BeforeSeq == 0 {
		items, err := c.store.outbox(ctx, convID)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			out = append(out, outboxMessage(it, me))
		}
	}
	return out, nil
}

// emitConversation emits a conversation's current view.
func (c *Client) emitConversation(ctx context.Context, row convRow) {
	if row.Stub {
		return
	}
	v, err := c.view(ctx, row, c.me())
	if err != nil {
		c.log.Warn("parley: read conversation", "err", err)
		return
	}
	c.events.emit(Event{Type: EventConversation, ConversationID: row.ID, Conversation: &v})
}

// emitApplied emits the messages a batch added or confirmed, wakes the
// waiters of WaitSent, and deletes the outbox's copies of the files of
// the confirmed ones.
func (c *Client) emitApplied(ctx context.Context, res applied) {
	if len(res.Added) == 0 && len(res.Confirmed) == 0 {
		return
	}
	c.removeUploads(res.Confirmed)
	me := c.me()
	row, err := c.store.conv(ctx, res.Row.ID)
	if err != nil {
		c.log.Warn("parley: read conversation", "err", err)
		row = res.Row
	}
	for _, list := range [][]parley.Message{res.Added, res.Confirmed} {
		for _, m := range list {
			msg := Message{Message: m, Status: statusOf(m, row.Data, me)}
			c.events.emit(Event{Type: EventMessage, ConversationID: m.ConversationID, Message: &msg})
		}
	}
	if len(res.Confirmed) > 0 {
		c.notify()
	}
}
