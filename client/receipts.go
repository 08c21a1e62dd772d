package client

import (
	"context"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/wire"
)

// receiptInterval is the least time between two rounds of receipts.
// Receipts are watermarks, so waiting coalesces a burst of messages into
// one receipt per conversation and keeps well inside the request rate
// limit.
const receiptInterval = 250 * time.Millisecond

// MarkRead says that the application showed the conversation's messages
// up to seq: the client sends a read receipt (which moves delivered too)
// and the unread count drops. Call it only for messages actually on
// screen. A seq at or below the current read watermark changes nothing.
func (c *Client) MarkRead(ctx context.Context, convID string, seq int64) error {
	moved, err := c.store.setReadWant(ctx, convID, seq)
	if err != nil || !moved {
		return err
	}
	row, err := c.store.conv(ctx, convID)
	if err != nil {
		return err
	}
	c.emitConversation(ctx, row)
	signal(c.receiptKick)
	return nil
}

// receiptLoop is the receipt sender of a session. Each round it compares
// the watermarks this user wants (read: MarkRead; delivered: the newest
// message of others in the contiguous run) with the user's read watermark
// on the server and with what this device confirmed (delivered is per
// device: see store.receiptTasks), and sends a receipt for each that lags;
// an ok moves both.
// Watermarks live in the store, so receipts not sent before a disconnect
// or a restart go out on the next connection.
func (c *Client) receiptLoop(s *session) {
	defer s.wg.Done()
	failures := 0
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-c.receiptKick:
		}
		wait := receiptInterval
		if err := c.sendReceipts(s); err != nil {
			if s.ctx.Err() != nil {
				return
			}
			failures++
			wait = backoff(failures, time.Second, 30*time.Second) + receiptInterval
			if d := parley.RetryAfter(err); d > 0 {
				wait = d
			}
			c.log.Warn("parley: receipts failed, retrying", "err", err)
			signal(c.receiptKick)
		} else {
			failures = 0
		}
		if err := sleep(s.ctx, wait); err != nil {
			return
		}
	}
}

// sendReceipts sends one round of receipts.
func (c *Client) sendReceipts(s *session) error {
	tasks, err := c.store.receiptTasks(s.ctx, s.me)
	if err != nil {
		return err
	}
	for _, t := range tasks {
		_, err := s.request(s.ctx, wire.TypeReceipt, wire.ReceiptSend{ConversationID: t.ConversationID, Kind: t.Kind, Seq: t.Seq})
		if parley.ErrorCode(err) == parley.CodeNotFound {
			if err := c.removeConversation(s.ctx, t.ConversationID); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := c.store.serverMarked(c.ctx, t, s.me); err != nil {
			return err
		}
	}
	return nil
}
