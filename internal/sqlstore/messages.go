package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/parley-chat/parley"
)

// validKind reports whether k is one of the contract's message kinds.
func validKind(k parley.MessageKind) bool {
	switch k {
	case parley.KindText, parley.KindImage, parley.KindVideo, parley.KindFile, parley.KindSystem:
		return true
	}
	return false
}

// SendMessage stores a message from p.SenderID, a member of the
// conversation (not_found otherwise), with the next seq, and publishes
// message.new to all members. In the same transaction it counts the message
// as unread for the other members and queues a push job for each device of
// the platforms in Options.PushPlatforms of each other member who has not
// muted the conversation (see queuePush). A repeated (conversation, sender,
// client_message_id) returns the original with created false, queues and
// publishes nothing. It returns once the message is durable.
func (db *DB) SendMessage(ctx context.Context, p parley.NewMessage) (parley.Message, bool, error) {
	if !validKind(p.Kind) {
		return parley.Message{}, false, parley.Errorf(parley.CodeInvalidArgument, "unknown message kind")
	}
	if p.ClientMessageID == "" {
		return parley.Message{}, false, parley.Errorf(parley.CodeInvalidArgument, "client_message_id is required")
	}
	var msg parley.Message
	var created bool
	err := db.write(ctx, "send_message", lockConversationKey(p.ConversationID, forUpdate), func(w *writeTx) error {
		msg, created = parley.Message{}, false
		// First the lock: then the lookup of the original below sees a
		// send of the same message that another writer committed, and the
		// seq taken is the next one.
		if err := lockConversation(w, p.ConversationID, forUpdate); err != nil {
			return fmt.Errorf("send message: %w", err)
		}
		members, err := memberIDs(&w.session, p.ConversationID)
		if err != nil {
			return fmt.Errorf("send message: members: %w", err)
		}
		if !slices.Contains(members, p.SenderID) {
			return errConversationNotFound()
		}
		msg, err = scanMessage(w.queryRow(`SELECT `+msgCols+` FROM messages m
			WHERE m.conversation_id = ? AND m.sender_id = ? AND m.client_message_id = ?`,
			p.ConversationID, p.SenderID, p.ClientMessageID))
		if err == nil {
			return nil // a retry: the original, stored once
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("send message: find original: %w", err)
		}
		id, err := newID()
		if err != nil {
			return fmt.Errorf("send message: %w", err)
		}
		// Writes of the conversation are serialized (the lock, or SQLite's
		// one writer), so last_seq+1 is gap-free; the message's time is the
		// conversation's latest activity.
		now := millis(w.now)
		var seq int64
		if err := w.queryRow(`UPDATE conversations SET last_seq = last_seq + 1, updated_at = ?
			WHERE id = ? RETURNING last_seq`, now, p.ConversationID).Scan(&seq); err != nil {
			return fmt.Errorf("send message: next seq: %w", err)
		}
		if _, err := w.exec(`INSERT INTO messages
			(id, conversation_id, seq, sender_id, client_message_id, kind, text, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			id, p.ConversationID, seq, p.SenderID, p.ClientMessageID, string(p.Kind), p.Text, now); err != nil {
			return fmt.Errorf("send message: insert: %w", err)
		}
		if _, err := w.exec(`UPDATE members SET unread_count = unread_count + 1
			WHERE conversation_id = ? AND user_id <> ?`, p.ConversationID, p.SenderID); err != nil {
			return fmt.Errorf("send message: unread counts: %w", err)
		}
		if err := db.queuePush(w, id, p.ConversationID, p.SenderID); err != nil {
			return fmt.Errorf("send message: %w", err)
		}
		msg = parley.Message{
			ID:              id,
			ConversationID:  p.ConversationID,
			Seq:             seq,
			SenderID:        p.SenderID,
			ClientMessageID: p.ClientMessageID,
			Kind:            p.Kind,
			Text:            p.Text,
			CreatedAt:       w.now,
		}
		created = true
		ev := msg // the event's own copy
		w.publish(&parley.Event{
			Type:       parley.EventMessageNew,
			Recipients: members,
			Origin:     p.Origin,
			Message:    &ev,
		})
		return nil
	})
	if err != nil {
		return parley.Message{}, false, err
	}
	return msg, created, nil
}

// The history statements, one per combination of bounds. Each fetches one
// row more than asked, to tell whether there are more.
const (
	qNewest = `SELECT ` + msgCols + ` FROM messages m
		WHERE m.conversation_id = ? ORDER BY m.seq DESC LIMIT ?`
	qBefore = `SELECT ` + msgCols + ` FROM messages m
		WHERE m.conversation_id = ? AND m.seq < ? ORDER BY m.seq DESC LIMIT ?`
	qAfter = `SELECT ` + msgCols + ` FROM messages m
		WHERE m.conversation_id = ? AND m.seq > ? ORDER BY m.seq LIMIT ?`
	qBetween = `SELECT ` + msgCols + ` FROM messages m
		WHERE m.conversation_id = ? AND m.seq > ? AND m.seq < ? ORDER BY m.seq LIMIT ?`
	qIsMember = `SELECT COUNT(*) FROM members WHERE conversation_id = ? AND user_id = ?`
)

// Messages returns a page of a conversation's history, ascending by seq;
// not_found if callerID is not a member. With no bound it is the newest
// q.Limit messages, with BeforeSeq only the newest below it (hasMore: older
// ones exist); with AfterSeq only the oldest above it (hasMore: newer ones
// exist); with both the oldest strictly between them (hasMore: more in the
// interval). q.Limit must be positive.
func (db *DB) Messages(ctx context.Context, conversationID, callerID string, q parley.HistoryQuery) ([]parley.Message, bool, error) {
	if q.Limit <= 0 {
		return nil, false, parley.Errorf(parley.CodeInvalidArgument, "limit must be positive")
	}
	msgs := make([]parley.Message, 0, min(q.Limit+1, 256))
	var hasMore bool
	err := db.read(ctx, "messages", false, func(s *session) error {
		var n int
		if err := s.queryRow(qIsMember, conversationID, callerID).Scan(&n); err != nil {
			return fmt.Errorf("messages: %w", err)
		}
		if n == 0 {
			return errConversationNotFound()
		}
		var rows *sql.Rows
		var err error
		descending := false
		switch limit := q.Limit + 1; {
		case !q.HasAfter && q.BeforeSeq == 0:
			rows, err = s.query(qNewest, conversationID, limit)
			descending = true
		case !q.HasAfter:
			rows, err = s.query(qBefore, conversationID, q.BeforeSeq, limit)
			descending = true
		case q.BeforeSeq == 0:
			rows, err = s.query(qAfter, conversationID, q.AfterSeq, limit)
		default:
			rows, err = s.query(qBetween, conversationID, q.AfterSeq, q.BeforeSeq, limit)
		}
		if err != nil {
			return fmt.Errorf("messages: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			m, err := scanMessage(rows)
			if err != nil {
				return fmt.Errorf("messages: %w", err)
			}
			msgs = append(msgs, m)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("messages: %w", err)
		}
		// The extra row is the farthest from the bound: the oldest when
		// reading backwards, the newest when reading forwards.
		if len(msgs) > q.Limit {
			hasMore = true
			msgs = msgs[:q.Limit]
		}
		if descending {
			slices.Reverse(msgs)
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return msgs, hasMore, nil
}

// MessageRange returns the messages of a conversation with afterSeq < seq
// < beforeSeq (a zero beforeSeq is no upper bound), ascending, at most
// limit of them. Unlike Messages it checks no membership: it is an internal
// read, for filling a gap in a live event stream. limit must be positive
// (invalid_argument).
func (db *DB) MessageRange(ctx context.Context, conversationID string, afterSeq, beforeSeq int64, limit int) ([]parley.Message, error) {
	if limit <= 0 {
		return nil, parley.Errorf(parley.CodeInvalidArgument, "limit must be positive")
	}
	msgs := make([]parley.Message, 0, min(limit, 256))
	err := db.read(ctx, "message_range", false, func(s *session) error {
		var rows *sql.Rows
		var err error
		if beforeSeq == 0 {
			rows, err = s.query(qAfter, conversationID, afterSeq, limit)
		} else {
			rows, err = s.query(qBetween, conversationID, afterSeq, beforeSeq, limit)
		}
		if err != nil {
			return fmt.Errorf("message range: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			m, err := scanMessage(rows)
			if err != nil {
				return fmt.Errorf("message range: %w", err)
			}
			msgs = append(msgs, m)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("message range: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return msgs, nil
}

// MarkReceipt moves callerID's watermark of kind in a conversation forward
// to seq, clamped to last_seq; read moves delivered along. A watermark never
// moves back, and seq <= 0 moves nothing. When it moved, it publishes a
// receipt with the new watermark to all members and returns true. Receipts
// do not change updated_at. not_found if callerID is not a member.
func (db *DB) MarkReceipt(ctx context.Context, conversationID, callerID string, kind parley.ReceiptKind, seq int64) (bool, error) {
	if kind != parley.Delivered && kind != parley.Read {
		return false, parley.Errorf(parley.CodeInvalidArgument, "receipt kind must be delivered or read")
	}
	var moved bool
	err := db.write(ctx, "mark_receipt", lockConversationKey(conversationID, forShare), func(w *writeTx) error {
		moved = false
		// Sends wait while receipts hold the lock, so that the unread
		// count recounted below stays exact; receipts do not wait for
		// each other.
		if err := lockConversation(w, conversationID, forShare); err != nil {
			return fmt.Errorf("mark receipt: %w", err)
		}
		var lastSeq, delivered, read int64
		err := w.queryRow(`SELECT c.last_seq, me.delivered_seq, me.read_seq
			FROM members me JOIN conversations c ON c.id = me.conversation_id
			WHERE me.conversation_id = ? AND me.user_id = ?`,
			conversationID, callerID).Scan(&lastSeq, &delivered, &read)
		if errors.Is(err, sql.ErrNoRows) {
			return errConversationNotFound()
		}
		if err != nil {
			return fmt.Errorf("mark receipt: %w", err)
		}
		to := min(seq, lastSeq)
		// The updates are conditional: a receipt of the same member that
		// another writer committed meanwhile (PostgreSQL) may have moved
		// the watermark further, and it never moves back.
		var res sql.Result
		switch kind {
		case parley.Delivered:
			if to <= delivered {
				return nil
			}
			res, err = w.exec(`UPDATE members SET delivered_seq = ?
				WHERE conversation_id = ? AND user_id = ? AND delivered_seq < ?`,
				to, conversationID, callerID, to)
		case parley.Read:
			// delivered_seq >= read_seq always holds, so read not moving
			// means nothing moves.
			if to <= read {
				return nil
			}
			// The unread count is recounted from the new watermark: usually
			// nothing is left, and the count cannot drift.
			res, err = w.exec(`UPDATE members SET read_seq = ?1,
				delivered_seq = CASE WHEN delivered_seq > ?1 THEN delivered_seq ELSE ?1 END,
				unread_count = (SELECT COUNT(*) FROM messages x
					WHERE x.conversation_id = ?2 AND x.seq > ?1 AND x.sender_id <> ?3)
				WHERE conversation_id = ?2 AND user_id = ?3 AND read_seq < ?1`,
				to, conversationID, callerID)
		}
		if err != nil {
			return fmt.Errorf("mark receipt: %w", err)
		}
		if n, err := rowsAffected(res); err != nil {
			return fmt.Errorf("mark receipt: %w", err)
		} else if n == 0 {
			return nil
		}
		members, err := memberIDs(&w.session, conversationID)
		if err != nil {
			return fmt.Errorf("mark receipt: members: %w", err)
		}
		w.publish(&parley.Event{
			Type:       parley.EventReceipt,
			Recipients: members,
			Receipt: &parley.Receipt{
				ConversationID: conversationID,
				UserID:         callerID,
				Kind:           kind,
				Seq:            to,
			},
		})
		moved = true
		return nil
	})
	if err != nil {
		return false, err
	}
	return moved, nil
}
