package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/wire"
)

// maxInflight bounds the conversations whose head message is on the wire
// at once. Within a conversation one message is in flight at a time, so
// that a refusal (a rate limit, say) can never reorder it.
const maxInflight = 16

// Send queues a text message and returns its client_message_id, which
// identifies it from then on (Message.ClientMessageID). The message is
// committed to the local outbox before Send returns and before any
// network I/O, so it survives a crash or a restart; the sender sends it
// when connected, in order within its conversation. Only an empty text
// or one that is not UTF-8 is refused here (invalid_argument); whatever
// the server refuses becomes a failed message.
func (c *Client) Send(ctx context.Context, convID, text string) (string, error) {
	if strings.TrimSpace(text) == "" || !utf8.ValidString(text) {
		return "", parley.Errorf(parley.CodeInvalidArgument, "a message needs UTF-8 text")
	}
	if convID == "" {
		return "", parley.Errorf(parley.CodeInvalidArgument, "no conversation")
	}
	me := c.me()
	if me == "" {
		return "", errSignedOut
	}
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("send: %w", err)
	}
	it := outboxItem{
		ClientMessageID: id.String(),
		ConversationID:  convID,
		Kind:            parley.KindText,
		Text:            text,
		CreatedAt:       parley.Now(),
		State:           outboxPending,
	}
	if err := c.store.enqueue(ctx, it); err != nil {
		return "", err
	}
	msg := outboxMessage(it, me)
	c.events.emit(Event{Type: EventMessage, ConversationID: convID, Message: &msg})
	c.typist.sent(convID)
	signal(c.sendKick)
	return it.ClientMessageID, nil
}

// sharedPoll is how often WaitSent looks at the store again without being
// woken: another process on the same profile (the chat UI and a CLI
// command, say) may send the message and store its ack, and nothing in
// this process hears of it.
const sharedPoll = time.Second

// WaitSent waits until the message Send returned clientMessageID for is
// acknowledged, and returns it with its id and seq. A message the server
// refused returns with StatusFailed and an error with the server's code.
func (c *Client) WaitSent(ctx context.Context, clientMessageID string) (Message, error) {
	poll := time.NewTicker(sharedPoll)
	defer poll.Stop()
	for {
		c.mu.Lock()
		ch := c.changed
		c.mu.Unlock()
		me := c.me()
		m, ok, err := c.store.messageByClientID(ctx, clientMessageID, me)
		if err != nil {
			return Message{}, err
		}
		if ok {
			row, err := c.store.conv(ctx, m.ConversationID)
			if err != nil {
				return Message{}, err
			}
			return Message{Message: m, Status: statusOf(m, row.Data, me)}, nil
		}
		it, ok, err := c.store.outboxItem(ctx, clientMessageID)
		if err != nil {
			return Message{}, err
		}
		if !ok {
			// The ack may have moved it from the outbox to the messages
			// (one transaction) between the two reads: look again.
			_, stored, err := c.store.messageByClientID(ctx, clientMessageID, me)
			if err != nil {
				return Message{}, err
			}
			if stored {
				continue
			}
			return Message{}, parley.Errorf(parley.CodeNotFound, "no message %s", clientMessageID)
		}
		if it.State == outboxFailed {
			return outboxMessage(it, me), parley.Errorf(failureCode(it.Error), "%s", it.Error)
		}
		select {
		case <-ch:
		case <-poll.C:
		case <-ctx.Done():
			return outboxMessage(it, me), ctx.Err()
		}
	}
}

// failureCode recovers the code from a failure reason ("code: message").
func failureCode(reason string) parley.Code {
	code, _, _ := strings.Cut(reason, ":")
	return parley.Code(code)
}

// Retry puts a failed message back in the queue, with the same
// client_message_id.
func (c *Client) Retry(ctx context.Context, clientMessageID string) error {
	it, ok, err := c.store.outboxItem(ctx, clientMessageID)
	if err != nil {
		return err
	}
	if !ok || it.State != outboxFailed {
		return parley.Errorf(parley.CodeNotFound, "no failed message %s", clientMessageID)
	}
	if _, err := c.store.setOutboxState(ctx, clientMessageID, outboxPending, ""); err != nil {
		return err
	}
	it.State, it.Error = outboxPending, ""
	msg := outboxMessage(it, c.me())
	c.events.emit(Event{Type: EventMessage, ConversationID: it.ConversationID, Message: &msg})
	c.notify()
	signal(c.sendKick)
	return nil
}

// Discard deletes a failed message from the outbox. Pending messages
// cannot be discarded: one may be on the wire already.
func (c *Client) Discard(ctx context.Context, clientMessageID string) error {
	it, ok, err := c.store.outboxItem(ctx, clientMessageID)
	if err != nil {
		return err
	}
	if !ok || it.State != outboxFailed {
		return parley.Errorf(parley.CodeNotFound, "no failed message %s", clientMessageID)
	}
	if _, err := c.store.deleteOutbox(ctx, clientMessageID); err != nil {
		return err
	}
	if it.File != nil {
		c.removeUpload(clientMessageID)
		c.progress.drop(clientMessageID)
	}
	c.notify()
	return nil
}

// Outbox returns the user's messages that the server has not
// acknowledged, pending or failed, of every conversation in send order.
// It does no network I/O.
func (c *Client) Outbox(ctx context.Context) ([]Message, error) {
	items, err := c.store.outbox(ctx, "")
	if err != nil {
		return nil, err
	}
	me := c.me()
	out := make([]Message, len(items))
	for i, it := range items {
		out[i] = outboxMessage(it, me)
	}
	return out, nil
}

// sendResult is the outcome of one message.send, or of one attempt at
// the upload of a media message's file (upload).
type sendResult struct {
	item   outboxItem
	upload bool
	reply  wire.Frame
	err    error
}

// sendLoop is the outbox sender of a session. It sends the head of every
// conversation's queue (at most maxInflight conversations at once, one
// message each), and on the reply: an ack stores the message and removes
// the outbox item (in one transaction); a permanent refusal marks the item
// failed with its reason; rate_limited waits retry_after_ms before that
// conversation sends again; any other error backs off. A message whose
// connection dropped stays pending and goes out again, with the same
// client_message_id, on the next connection.
//
// A media message whose file is not uploaded yet is uploaded first (at
// most maxUploads at once), and its conversation waits meanwhile; once the
// upload is complete it is sent as any other. An upload that failed for
// good (the server refused the file) marks the message failed; one cut
// short backs off as a failed send does, and the next attempt resumes it.
func (c *Client) sendLoop(s *session) {
	defer s.wg.Done()
	inflight := map[string]bool{}       // conversations with a message on the wire
	notBefore := map[string]time.Time{} // conversations backing off
	failures := map[string]int{}        // consecutive transient failures
	uploading := 0                      // uploads in flight
	results := make(chan sendResult, maxInflight)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		heads, err := c.store.pendingHeads(s.ctx)
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			c.log.Error("parley: read outbox", "err", err)
		}
		now := time.Now()
		var wake time.Time
		for _, it := range heads {
			if inflight[it.ConversationID] || len(inflight) >= maxInflight {
				continue
			}
			if t := notBefore[it.ConversationID]; t.After(now) {
				if wake.IsZero() || t.Before(wake) {
					wake = t
				}
				continue
			}
			if it.needsUpload() {
				if uploading >= maxUploads {
					continue
				}
				uploading++
				inflight[it.ConversationID] = true
				s.wg.Add(1)
				go func(it outboxItem) {
					defer s.wg.Done()
					err := c.upload(s.ctx, it)
					results <- sendResult{item: it, upload: true, err: err} // buffered for every one in flight
				}(it)
				continue
			}
			inflight[it.ConversationID] = true
			send := wire.MessageSend{
				ConversationID:  it.ConversationID,
				ClientMessageID: it.ClientMessageID,
				Kind:            it.Kind,
				Text:            it.Text,
			}
			if it.File != nil {
				send.MediaID = it.File.Media.ID
			}
			s.wg.Add(1)
			go func(it outboxItem) {
				defer s.wg.Done()
				f, err := s.request(s.ctx, wire.TypeMessageSend, send)
				results <- sendResult{item: it, reply: f, err: err} // buffered for every one in flight
			}(it)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if !wake.IsZero() {
			timer.Reset(time.Until(wake))
		}
		select {
		case <-s.ctx.Done():
			return
		case <-c.sendKick:
		case <-timer.C:
		case r := <-results:
			delete(inflight, r.item.ConversationID)
			conv := r.item.ConversationID
			handle := c.handleSendResult
			if r.upload {
				uploading--
				handle = c.handleUploadResult
			}
			switch d := handle(s, r); {
			case d < 0:
				return // the session is over
			case d == 0:
				delete(failures, conv)
				delete(notBefore, conv)
			default:
				failures[conv]++
				if parley.ErrorCode(r.err) != parley.CodeRateLimited {
					d = max(d, backoff(failures[conv], time.Second, 30*time.Second))
				}
				notBefore[conv] = time.Now().Add(d)
			}
		}
	}
}

// handleSendResult applies the reply to a message.send. It returns 0 when
// the conversation may send its next message, a delay when it must wait,
// or -1 when the session ended.
func (c *Client) handleSendResult(s *session, r sendResult) time.Duration {
	if r.err == nil {
		var ack wire.MessageAck
		if err := wire.DecodePayload(r.reply, &ack); err != nil || ack.Message.ID == "" {
			c.log.Error("parley: malformed message.ack", "err", err)
			return time.Second
		}
		// The client's context: an ack that arrived is stored even if the
		// connection ends meanwhile.
		res, err := c.store.applyMessages(c.ctx, ack.Message.ConversationID, s.me, []parley.Message{ack.Message}, false)
		if err != nil {
			c.log.Error("parley: store acknowledged message", "err", err)
			return time.Second
		}
		c.emitApplied(c.ctx, res)
		// Wake WaitSent even when the outbox item was already gone: the
		// user's own message.new, seen by another client on this profile,
		// may have confirmed it first.
		c.notify()
		if res.Gap {
			s.markDirty(ack.Message.ConversationID, fillMessages)
		}
		return 0
	}
	if s.ctx.Err() != nil || errors.Is(r.err, errConnLost) {
		return -1
	}
	if isPermanent(r.err) {
		if r.item.File != nil && parley.ErrorCode(r.err) == parley.CodeInvalidArgument {
			// The media may be gone (an upload no message carries is
			// deleted after a day): a Retry uploads the file again.
			r.item = c.forgetUpload(r.item)
		}
		c.fail(s, r.item, r.err)
		return 0
	}
	if d := parley.RetryAfter(r.err); d > 0 {
		return d
	}
	c.log.Warn("parley: send failed, retrying", "err", r.err)
	return time.Second
}

// fail marks an outbox item failed with the reason err gives.
func (c *Client) fail(s *session, it outboxItem, err error) {
	reason := string(parley.ErrorCode(err)) + ": " + parley.ErrorMessage(err)
	if ok, err := c.store.setOutboxState(c.ctx, it.ClientMessageID, outboxFailed, reason); err != nil {
		c.log.Error("parley: mark message failed", "err", err)
	} else if ok {
		it.State, it.Error = outboxFailed, reason
		msg := outboxMessage(it, s.me)
		c.events.emit(Event{Type: EventMessage, ConversationID: it.ConversationID, Message: &msg})
		c.notify()
	}
}

// forgetUpload forgets the upload of a media message's file, so that a
// Retry uploads it anew, and returns the item without it.
func (c *Client) forgetUpload(it outboxItem) outboxItem {
	if err := c.store.resetUpload(c.ctx, it.ClientMessageID); err != nil {
		c.log.Error("parley: forget an upload", "err", err)
		return it
	}
	f := *it.File
	f.UploadID, f.Offset, f.Media = "", 0, nil
	it.File = &f
	return it
}

// handleUploadResult applies the outcome of an upload attempt, as
// handleSendResult does for a send: 0 when the conversation may go on
// (the upload is complete and the message goes out next, or it failed
// for good), a delay when it must wait, -1 when the session ended. A
// file refused for good fails its message and forgets the upload, so
// that Retry uploads it anew.
func (c *Client) handleUploadResult(s *session, r sendResult) time.Duration {
	switch {
	case r.err == nil, errors.Is(r.err, errOutboxGone):
		return 0
	case s.ctx.Err() != nil:
		return -1
	case isPermanentUpload(r.err):
		c.log.Warn("parley: upload refused", "err", r.err)
		c.progress.drop(r.item.ClientMessageID)
		c.fail(s, c.forgetUpload(r.item), r.err)
		return 0
	}
	if d := parley.RetryAfter(r.err); d > 0 {
		return d
	}
	c.log.Warn("parley: upload cut short, resuming later", "err", r.err)
	return time.Second
}
