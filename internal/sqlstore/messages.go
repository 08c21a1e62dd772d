package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
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
	if (p.MediaID != "") != (p.Kind == parley.KindImage || p.Kind == parley.KindVideo || p.Kind == parley.KindFile) {
		return parley.Message{}, false, parley.Errorf(parley.CodeInvalidArgument, "image, video and file messages carry a media_id, and only they do")
	}
	var msg parley.Message
	var created bool
	err := db.write(ctx, "send_message", lockConversationKey(p.ConversationID, forUpdate), func(w *writeTx) error {
		var members []string
		var err error
		// A media message checks and attaches its upload: the steps do
		// that on both engines.
		if w.d.postgres && p.MediaID == "" {
			msg, members, created, err = db.sendInOne(w, p)
		} else {
			msg, members, created, err = db.sendInSteps(w, p)
		}
		if err != nil || !created {
			return err
		}
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

// sendInSteps is SendMessage's write in one statement per step, as SQLite
// runs it (where a statement costs no round trip). It returns the message
// (new, or the original of a repeated send), the members of the
// conversation, and whether the message is new.
func (db *DB) sendInSteps(w *writeTx, p parley.NewMessage) (parley.Message, []string, bool, error) {
	// First the lock: then the lookup of the original below sees a send of
	// the same message that another writer committed, and the seq taken is
	// the next one.
	if err := lockConversation(w, p.ConversationID, forUpdate); err != nil {
		return parley.Message{}, nil, false, fmt.Errorf("send message: %w", err)
	}
	members, err := memberIDs(&w.session, p.ConversationID)
	if err != nil {
		return parley.Message{}, nil, false, fmt.Errorf("send message: members: %w", err)
	}
	if !slices.Contains(members, p.SenderID) {
		return parley.Message{}, nil, false, errConversationNotFound()
	}
	msg, err := scanMessage(w.queryRow(`SELECT `+msgCols+` FROM messages m
		WHERE m.conversation_id = ? AND m.sender_id = ? AND m.client_message_id = ?`,
		p.ConversationID, p.SenderID, p.ClientMessageID))
	if err == nil {
		return msg, members, false, nil // a retry: the original, stored once
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return parley.Message{}, nil, false, fmt.Errorf("send message: find original: %w", err)
	}
	id, err := newID()
	if err != nil {
		return parley.Message{}, nil, false, fmt.Errorf("send message: %w", err)
	}
	// Writes of the conversation are serialized (the lock, or SQLite's one
	// writer), so last_seq+1 is gap-free; the message's time is the
	// conversation's latest activity.
	now := millis(w.now)
	var media *parley.Media
	var mediaCol, mediaID any // NULL without media
	if p.MediaID != "" {
		if media, err = attachMedia(w, p); err != nil {
			return parley.Message{}, nil, false, wrapInternal("send message", err)
		}
		col, err := encodeMedia(media)
		if err != nil {
			return parley.Message{}, nil, false, fmt.Errorf("send message: %w", err)
		}
		mediaCol, mediaID = col, media.ID
	}
	var seq int64
	if err := w.queryRow(`UPDATE conversations SET last_seq = last_seq + 1, updated_at = ?
		WHERE id = ? RETURNING last_seq`, now, p.ConversationID).Scan(&seq); err != nil {
		return parley.Message{}, nil, false, fmt.Errorf("send message: next seq: %w", err)
	}
	if _, err := w.exec(`INSERT INTO messages
		(id, conversation_id, seq, sender_id, client_message_id, kind, text, created_at, media, media_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		id, p.ConversationID, seq, p.SenderID, p.ClientMessageID, string(p.Kind), p.Text, now, mediaCol, mediaID); err != nil {
		return parley.Message{}, nil, false, fmt.Errorf("send message: insert: %w", err)
	}
	if _, err := w.exec(`UPDATE members SET unread_count = unread_count + 1
		WHERE conversation_id = ? AND user_id <> ?`, p.ConversationID, p.SenderID); err != nil {
		return parley.Message{}, nil, false, fmt.Errorf("send message: unread counts: %w", err)
	}
	if err := db.queuePush(w, id, p.ConversationID, p.SenderID); err != nil {
		return parley.Message{}, nil, false, fmt.Errorf("send message: %w", err)
	}
	msg = newMessage(p, id, seq, w.now)
	msg.Media = media
	return msg, members, true, nil
}

// attachMedia checks that p's media may be attached to it and attaches it
// to p's conversation: the sender's own upload (any other, or an unknown
// id, is invalid_argument, so that nobody learns of others' uploads),
// ready, not attached yet, and of a kind the message allows. On
// PostgreSQL the media row is locked, so that two sends cannot attach it
// twice.
func attachMedia(w *writeTx, p parley.NewMessage) (*parley.Media, error) {
	var (
		f             parley.MediaFile
		width, height sql.NullInt64
		duration      sql.NullInt64
		conv          sql.NullString
	)
	err := w.queryRow(`SELECT uploader_id, state, kind, mime_type, size, name, width, height, duration_ms,
		has_thumbnail <> 0, conversation_id FROM media WHERE id = ?`+w.d.lockSuffix(forUpdate, ""), p.MediaID).Scan(
		&f.UploaderID, &f.State, &f.Kind, &f.MIMEType, &f.Size, &f.Name, &width, &height, &duration, &f.HasThumbnail, &conv)
	switch {
	case errors.Is(err, sql.ErrNoRows) || (err == nil && f.UploaderID != p.SenderID):
		return nil, parley.Errorf(parley.CodeInvalidArgument, "unknown media_id")
	case err != nil:
		return nil, fmt.Errorf("attach media: %w", err)
	case f.State != parley.MediaReady:
		return nil, parley.Errorf(parley.CodeInvalidArgument, "the upload of that media is not complete (%s)", f.State)
	case conv.Valid:
		return nil, parley.Errorf(parley.CodeInvalidArgument, "that media is attached to a message already")
	case !parley.KindAllows(p.Kind, f.Kind):
		return nil, parley.Errorf(parley.CodeInvalidArgument, "a message of kind %s cannot carry %s", p.Kind, f.MIMEType)
	}
	if _, err := w.exec(`UPDATE media SET conversation_id = ?, attached_at = ? WHERE id = ?`,
		p.ConversationID, millis(w.now), p.MediaID); err != nil {
		return nil, fmt.Errorf("attach media: %w", err)
	}
	m := f.Media
	m.ID = p.MediaID
	m.Width, m.Height, m.DurationMS = intPtr(width), intPtr(height), int64Ptr(duration)
	return &m, nil
}

func intPtr(v sql.NullInt64) *int {
	if !v.Valid {
		return nil
	}
	i := int(v.Int64)
	return &i
}

func int64Ptr(v sql.NullInt64) *int64 {
	if !v.Valid {
		return nil
	}
	return &v.Int64
}

// newMessage is the message p stored with id and seq at now.
func newMessage(p parley.NewMessage, id string, seq int64, now parley.Time) parley.Message {
	return parley.Message{
		ID:              id,
		ConversationID:  p.ConversationID,
		Seq:             seq,
		SenderID:        p.SenderID,
		ClientMessageID: p.ClientMessageID,
		Kind:            p.Kind,
		Text:            p.Text,
		CreatedAt:       now,
	}
}

// The statements that write a message or a receipt in one round trip
// (PostgreSQL), while the conversation's row lock is held (see sendInOne).
// Each begins with the same two CTEs (withLockFresh): locked locks the
// conversation row and reads its newest version, which after a wait for
// the lock is the version the previous holder committed; fresh finds that
// same version in the statement's snapshot, taken before the wait. Every
// write that changes what these statements read (the messages, the
// members) also updates the conversation row, so when fresh is empty the
// snapshot may have missed such a write: the statement then changes
// nothing, answers stale, and runs again, by then holding the lock, with a
// snapshot that sees everything committed before. The UPDATEs read the
// newest version of each row they change in any case (READ COMMITTED), so
// a receipt committed while a send waited is counted right. What the
// snapshot may still miss after a wait is a mute of the conversation
// (which locks it FOR SHARE without changing it): the send then queues a
// push to a member who has just muted it, which the claim drops as
// obsolete.
const (
	// isStale is the first column of each: the lock found a version of the
	// conversation row newer than the snapshot's.
	isStale = `EXISTS (SELECT 1 FROM locked) AND NOT EXISTS (SELECT 1 FROM fresh)`
	// memberList is the conversation's members, as a JSON array in
	// joining order.
	memberList = `(SELECT json_agg(o.user_id ORDER BY o.joined_at, o.user_id)
		FROM members o WHERE o.conversation_id = ?1)`

	// qSendInOne is sendInSteps as one statement, after withLockFresh: ?1
	// conversation, ?2 sender, ?3 client_message_id, ?4 the new message's
	// id, ?5 kind, ?6 text, ?7 now (ms); %[1]s is the CTEs that queue the
	// pushes (qSendPush), if any. Only an allowed send (a member's, fresh,
	// not a repeat) takes a seq, and only a message inserted counts as
	// unread. It answers stale, the members, the new message's seq (NULL if
	// none) and the original (msgCols, NULLs if none).
	qSendInOne = `,
	original AS MATERIALIZED (
		SELECT ` + msgCols + ` FROM messages m
		WHERE m.conversation_id = ?1 AND m.sender_id = ?2 AND m.client_message_id = ?3),
	allowed AS MATERIALIZED (
		SELECT 1 FROM fresh
		WHERE EXISTS (SELECT 1 FROM members WHERE conversation_id = ?1 AND user_id = ?2)
		AND NOT EXISTS (SELECT 1 FROM original)),
	next AS (
		UPDATE conversations SET last_seq = last_seq + 1, updated_at = ?7
		WHERE id = ?1 AND EXISTS (SELECT 1 FROM allowed)
		RETURNING last_seq),
	inserted AS (
		INSERT INTO messages (id, conversation_id, seq, sender_id, client_message_id, kind, text, created_at)
		SELECT CAST(?4 AS TEXT), ?1, last_seq, ?2, ?3, CAST(?5 AS TEXT), CAST(?6 AS TEXT), ?7 FROM next
		RETURNING seq),
	unread AS (
		UPDATE members SET unread_count = unread_count + 1
		WHERE conversation_id = ?1 AND user_id <> ?2 AND EXISTS (SELECT 1 FROM inserted)
		RETURNING user_id, unread_count)%[1]s
	SELECT ` + isStale + `, ` + memberList + `, (SELECT seq FROM inserted), ` + msgCols + `
	FROM (SELECT 1) AS one LEFT JOIN original m ON true`
)

// sendQuery returns the whole of qSendInOne, queuing pushes for platforms
// (the list of pushPlatformList, "" for none).
func sendQuery(platforms string) string {
	push := ""
	if platforms != "" {
		push = fmt.Sprintf(qSendPush, platforms)
	}
	return withLockFresh("FOR UPDATE") + fmt.Sprintf(qSendInOne, push)
}

// withLockFresh is the beginning of those statements: the CTEs locked and
// fresh, with lock the clause that locks the conversation row.
func withLockFresh(lock string) string {
	return `WITH locked AS MATERIALIZED (
		SELECT c.xmin AS version, c.last_seq FROM conversations c WHERE c.id = ?1 ` + lock + `),
	fresh AS MATERIALIZED (
		SELECT l.last_seq FROM locked l JOIN conversations c ON c.xmin = l.version WHERE c.id = ?1)`
}

// errRaced is the error of a write that lost a race it cannot see in its
// own transaction: the writer runs it again, alone (see isRetryable).
var errRaced = errors.New("lost a race with a concurrent write")

// sendInOne is sendInSteps in one round trip (PostgreSQL): qSendInOne, run
// twice when the first run was stale. A concurrent send of the same
// client_message_id that the snapshot missed (which every send's update
// of the conversation row makes fresh notice first) would be refused by
// the unique index: the request is then run again in a new transaction,
// which finds the original.
func (db *DB) sendInOne(w *writeTx, p parley.NewMessage) (parley.Message, []string, bool, error) {
	id, err := newID()
	if err != nil {
		return parley.Message{}, nil, false, fmt.Errorf("send message: %w", err)
	}
	for range 2 {
		var stale bool
		var list sql.NullString
		var seq sql.NullInt64
		var original nullMessage
		err := w.queryRow(db.qSend, p.ConversationID, p.SenderID, p.ClientMessageID,
			id, string(p.Kind), p.Text, millis(w.now)).Scan(append([]any{&stale, &list, &seq}, original.dest()...)...)
		if isUniqueViolation(err) {
			return parley.Message{}, nil, false, fmt.Errorf("send message: %w: %w", errRaced, err)
		}
		if err != nil {
			return parley.Message{}, nil, false, fmt.Errorf("send message: %w", err)
		}
		if stale {
			continue
		}
		var members []string
		if list.Valid {
			if err := json.Unmarshal([]byte(list.String), &members); err != nil {
				return parley.Message{}, nil, false, fmt.Errorf("send message: members: %w", err)
			}
		}
		switch {
		case !slices.Contains(members, p.SenderID):
			return parley.Message{}, nil, false, errConversationNotFound()
		case original.id.Valid:
			return *original.message(), members, false, nil // a retry: the original, stored once
		case !seq.Valid:
			return parley.Message{}, nil, false, fmt.Errorf("send message: no seq taken")
		}
		return newMessage(p, id, seq.Int64, w.now), members, true, nil
	}
	return parley.Message{}, nil, false, fmt.Errorf("send message: stale while holding the lock")
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
//
// deviceID, if not empty, is the login the receipt came from: its own
// delivered watermark is recorded too (if it has a push token), moved or
// not, since a push held back for that device waits for exactly that. A
// read that moved queues badge updates for the user's devices.
func (db *DB) MarkReceipt(ctx context.Context, callerID, conversationID string, kind parley.ReceiptKind, seq int64, deviceID string) (bool, error) {
	if kind != parley.Delivered && kind != parley.Read {
		return false, parley.Errorf(parley.CodeInvalidArgument, "receipt kind must be delivered or read")
	}
	var moved bool
	err := db.write(ctx, "mark_receipt", lockConversationKey(conversationID, forShare), func(w *writeTx) error {
		var to int64
		var members []string
		var err error
		if w.d.postgres {
			moved, to, members, err = receiptInOne(w, conversationID, callerID, kind, seq)
		} else {
			moved, to, members, err = receiptInSteps(w, conversationID, callerID, kind, seq)
		}
		if err != nil {
			return err
		}
		if deviceID != "" {
			// The device's own confirmation, whether or not the user's
			// watermark moved: another device may have moved it first.
			if _, err := w.exec(qDeviceReceipt, deviceID, conversationID, seq); err != nil {
				return fmt.Errorf("mark receipt: device: %w", err)
			}
		}
		if !moved {
			return nil
		}
		if kind == parley.Read {
			if err := db.queueBadge(w, callerID); err != nil {
				return fmt.Errorf("mark receipt: %w", err)
			}
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
		return nil
	})
	if err != nil {
		return false, err
	}
	return moved, nil
}

// receiptInSteps is MarkReceipt's write in one statement per step, as
// SQLite runs it. It returns whether the watermark moved, to where, and
// then the members of the conversation.
func receiptInSteps(w *writeTx, conversationID, callerID string, kind parley.ReceiptKind, seq int64) (bool, int64, []string, error) {
	// Sends wait while receipts hold the lock, so that the unread count
	// recounted below stays exact; receipts do not wait for each other.
	if err := lockConversation(w, conversationID, forShare); err != nil {
		return false, 0, nil, fmt.Errorf("mark receipt: %w", err)
	}
	var lastSeq, delivered, read int64
	err := w.queryRow(`SELECT c.last_seq, me.delivered_seq, me.read_seq
		FROM members me JOIN conversations c ON c.id = me.conversation_id
		WHERE me.conversation_id = ? AND me.user_id = ?`,
		conversationID, callerID).Scan(&lastSeq, &delivered, &read)
	if errors.Is(err, sql.ErrNoRows) {
		return false, 0, nil, errConversationNotFound()
	}
	if err != nil {
		return false, 0, nil, fmt.Errorf("mark receipt: %w", err)
	}
	to := min(seq, lastSeq)
	// The updates are conditional: a receipt of the same member that
	// another writer committed meanwhile (PostgreSQL) may have moved the
	// watermark further, and it never moves back.
	var res sql.Result
	switch kind {
	case parley.Delivered:
		if to <= delivered {
			return false, 0, nil, nil
		}
		res, err = w.exec(`UPDATE members SET delivered_seq = ?
			WHERE conversation_id = ? AND user_id = ? AND delivered_seq < ?`,
			to, conversationID, callerID, to)
	case parley.Read:
		// delivered_seq >= read_seq always holds, so read not moving means
		// nothing moves.
		if to <= read {
			return false, 0, nil, nil
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
		return false, 0, nil, fmt.Errorf("mark receipt: %w", err)
	}
	if n, err := rowsAffected(res); err != nil {
		return false, 0, nil, fmt.Errorf("mark receipt: %w", err)
	} else if n == 0 {
		return false, 0, nil, nil
	}
	members, err := memberIDs(&w.session, conversationID)
	if err != nil {
		return false, 0, nil, fmt.Errorf("mark receipt: members: %w", err)
	}
	return true, to, members, nil
}

// The receipt statements (PostgreSQL), receiptInSteps in one: ?1
// conversation, ?2 caller, ?3 seq. The lock is FOR SHARE (withLockFresh);
// the watermark moves to seq clamped to the locked last_seq, conditionally
// as in receiptInSteps, and only when fresh. They answer stale, whether the
// caller is a member, the watermark moved to (NULL if it did not move), and
// the members when it moved.
const qReceiptMoved = `
	SELECT ` + isStale + `,
		EXISTS (SELECT 1 FROM members WHERE conversation_id = ?1 AND user_id = ?2),
		(SELECT upto FROM moved),
		CASE WHEN EXISTS (SELECT 1 FROM moved) THEN ` + memberList + ` END`

var (
	qDelivered = withLockFresh("FOR SHARE") + `,
	moved AS (
		UPDATE members me SET delivered_seq = f.upto
		FROM (SELECT LEAST(CAST(?3 AS BIGINT), last_seq) AS upto FROM fresh) f
		WHERE me.conversation_id = ?1 AND me.user_id = ?2 AND me.delivered_seq < f.upto
		RETURNING f.upto)` + qReceiptMoved
	qRead = withLockFresh("FOR SHARE") + `,
	moved AS (
		UPDATE members me SET read_seq = f.upto,
			delivered_seq = CASE WHEN me.delivered_seq > f.upto THEN me.delivered_seq ELSE f.upto END,
			unread_count = (SELECT COUNT(*) FROM messages x
				WHERE x.conversation_id = ?1 AND x.seq > f.upto AND x.sender_id <> ?2)
		FROM (SELECT LEAST(CAST(?3 AS BIGINT), last_seq) AS upto FROM fresh) f
		WHERE me.conversation_id = ?1 AND me.user_id = ?2 AND me.read_seq < f.upto
		RETURNING f.upto)` + qReceiptMoved
)

// receiptInOne is receiptInSteps in one round trip (PostgreSQL): qDelivered
// or qRead, run twice when the first run was stale.
func receiptInOne(w *writeTx, conversationID, callerID string, kind parley.ReceiptKind, seq int64) (bool, int64, []string, error) {
	q := qDelivered
	if kind == parley.Read {
		q = qRead
	}
	for range 2 {
		var stale, member bool
		var to sql.NullInt64
		var list sql.NullString
		if err := w.queryRow(q, conversationID, callerID, seq).Scan(&stale, &member, &to, &list); err != nil {
			return false, 0, nil, fmt.Errorf("mark receipt: %w", err)
		}
		switch {
		case stale:
			continue
		case !member:
			return false, 0, nil, errConversationNotFound()
		case !to.Valid:
			return false, 0, nil, nil
		}
		var members []string
		if err := json.Unmarshal([]byte(list.String), &members); err != nil {
			return false, 0, nil, fmt.Errorf("mark receipt: members: %w", err)
		}
		return true, to.Int64, members, nil
	}
	return false, 0, nil, fmt.Errorf("mark receipt: stale while holding the lock")
}
