package client

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strconv"
	"time"

	"github.com/ncruces/go-sqlite3/driver"

	"github.com/parley-chat/parley"
)

// schema is the local database. It is created on first open; schemaVersion
// in meta says which version a file holds.
//
// conversations keeps the server's object as JSON (data) next to the
// client's own bookkeeping:
//   - have_seq and floor_seq: every message with floor_seq <= seq <=
//     have_seq is stored (the contiguous run); have_seq is what sync sends.
//     Both are 0 while the client holds no run yet.
//   - last_seq: the highest seq known to exist (server objects, messages).
//   - base_*: read_seq, unread_count and last_seq of the last server object,
//     the basis of the unread count when the local run does not reach back
//     to the read watermark.
//   - read_want: the read watermark the application set (MarkRead);
//     srv_read and srv_delivered: this user's watermarks as the server has
//     them (moved by every device of the user). The receipt sender moves
//     the server's read up to the wanted one.
//   - dev_delivered (version 2): the highest seq that a delivered or read
//     receipt sent by this client covered, once the server acknowledged
//     it: what this device confirmed. The server holds back a push while
//     a device looks connected only if that device itself confirms the
//     message, so the delivered receipt is sent by this watermark, not by
//     srv_delivered, which the user's other devices move too.
//   - stub: a conversation known only from a message; its object must be
//     fetched.
//
// outbox holds messages not acknowledged yet, in send order (pos).
//
// schema is version 1 and never changes: a new database is created at
// version 1 and then migrated like an old one, so that every file reaches
// the current version by the same steps.
const schema = `
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS conversations (
	id            TEXT PRIMARY KEY,
	data          TEXT NOT NULL,
	updated_at    INTEGER NOT NULL DEFAULT 0,
	last_seq      INTEGER NOT NULL DEFAULT 0,
	have_seq      INTEGER NOT NULL DEFAULT 0,
	floor_seq     INTEGER NOT NULL DEFAULT 0,
	base_seq      INTEGER NOT NULL DEFAULT 0,
	base_read     INTEGER NOT NULL DEFAULT 0,
	base_unread   INTEGER NOT NULL DEFAULT 0,
	read_want     INTEGER NOT NULL DEFAULT 0,
	srv_read      INTEGER NOT NULL DEFAULT 0,
	srv_delivered INTEGER NOT NULL DEFAULT 0,
	stub          INTEGER NOT NULL DEFAULT 0,
	removed       INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS messages (
	id                TEXT PRIMARY KEY,
	conversation_id   TEXT NOT NULL,
	seq               INTEGER NOT NULL,
	sender_id         TEXT NOT NULL,
	client_message_id TEXT NOT NULL,
	kind              TEXT NOT NULL,
	text              TEXT NOT NULL,
	created_at        TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_seq ON messages (conversation_id, seq);
CREATE TABLE IF NOT EXISTS outbox (
	pos               INTEGER PRIMARY KEY AUTOINCREMENT,
	client_message_id TEXT NOT NULL UNIQUE,
	conversation_id   TEXT NOT NULL,
	kind              TEXT NOT NULL,
	text              TEXT NOT NULL,
	created_at        TEXT NOT NULL,
	state             TEXT NOT NULL,
	error             TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_by_conversation ON outbox (conversation_id, pos);
`

// migrations[v-1] moves a database from version v to v+1. Each runs in
// one transaction with the write of the new version, so a crash leaves
// the file at one version or the next.
var migrations = []string{
	// 1 → 2: dev_delivered. Existing rows start at srv_delivered: the
	// messages known so far are older than any push still waiting for a
	// receipt, and starting at 0 would send a delivered receipt for every
	// conversation at once.
	`ALTER TABLE conversations ADD COLUMN dev_delivered INTEGER NOT NULL DEFAULT 0;
	UPDATE conversations SET dev_delivered = srv_delivered;`,
	// 2 → 3: media. messages.media is the server's Media of an image,
	// video or file message, as JSON ('' for text). An outbox item of a
	// media kind has its file (a copy in the profile's uploads folder,
	// named by client_message_id): file_name, file_type (the type claimed
	// at upload) and file_size; upload_id and upload_offset, the tus
	// upload once created (its id, the media id) and the bytes the server
	// confirmed; auto_kind,
	// the kind to be decided by the server's type of the content; and
	// media, the server's Media once the upload is complete.
	`ALTER TABLE messages ADD COLUMN media TEXT NOT NULL DEFAULT '';
	ALTER TABLE outbox ADD COLUMN file_name TEXT NOT NULL DEFAULT '';
	ALTER TABLE outbox ADD COLUMN file_type TEXT NOT NULL DEFAULT '';
	ALTER TABLE outbox ADD COLUMN file_size INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE outbox ADD COLUMN upload_id TEXT NOT NULL DEFAULT '';
	ALTER TABLE outbox ADD COLUMN upload_offset INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE outbox ADD COLUMN auto_kind INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE outbox ADD COLUMN media TEXT NOT NULL DEFAULT '';`,
}

// schemaVersion is the version this client writes and reads.
var schemaVersion = len(migrations) + 1

// Outbox states. A pending item is sent when connected; a failed one stays
// until the application retries or discards it.
const (
	outboxPending = "pending"
	outboxFailed  = "failed"
)

// store is the profile's SQLite database. It is safe for concurrent use:
// database/sql serializes access to its single connection, and every
// read-modify-write runs in one transaction.
type store struct {
	db *sql.DB
}

// openStore opens (creating if needed) the database at path.
func openStore(ctx context.Context, path string) (*store, error) {
	q := url.Values{}
	// busy_timeout matters when another process (a CLI command next to the
	// chat UI) holds the file; immediate transactions take the write lock
	// up front, so that two writers never deadlock upgrading a read lock.
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	// FULL: a Send that returned survives a power loss, not only a crash.
	q.Add("_pragma", "synchronous(FULL)")
	q.Set("_txlock", "immediate")
	u := url.URL{Scheme: "file", OmitHost: true, Path: path, RawQuery: q.Encode()}
	db, err := driver.Open(u.String())
	if err != nil {
		return nil, fmt.Errorf("open local database: %w", err)
	}
	// One connection: the client's load is small, and one connection never
	// contends with itself.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("create local schema: %w", err)
	}
	s := &store{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// migrate brings the database to schemaVersion. A file without a version
// has just been created by schema (or was, by a client that crashed
// before recording it): it is at version 1.
func (s *store) migrate(ctx context.Context) error {
	v := 1
	switch text, err := s.meta(ctx, "schema_version"); {
	case err != nil:
		return err
	case text != "":
		if v, err = strconv.Atoi(text); err != nil || v < 1 {
			return fmt.Errorf("local database has schema version %q", text)
		}
	}
	if v > schemaVersion {
		return fmt.Errorf("local database has schema version %d, this client knows %d", v, schemaVersion)
	}
	for ; v < schemaVersion; v++ {
		err := s.tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('schema_version', ?)
				ON CONFLICT (key) DO UPDATE SET value = excluded.value`, strconv.Itoa(v+1))
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate local database to version %d: %w", v+1, err)
		}
	}
	return nil
}

func (s *store) close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close local database: %w", err)
	}
	return nil
}

// tx runs fn in a transaction and commits it if fn returns nil.
func (s *store) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback() // the error that matters is fn's
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (s *store) meta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", key, err)
	}
	return v, nil
}

func (s *store) setMeta(ctx context.Context, key, value string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	if err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

// setUser records whose data the database holds. A different user than
// the one recorded wipes everything first: one profile holds one account.
func (s *store) setUser(ctx context.Context, u parley.User) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var old string
		err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'user_id'`).Scan(&old)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read user: %w", err)
		}
		if old != "" && old != u.ID {
			if err := wipeTx(ctx, tx); err != nil {
				return err
			}
		}
		b, err := json.Marshal(u)
		if err != nil {
			return fmt.Errorf("encode user: %w", err)
		}
		for k, v := range map[string]string{"user_id": u.ID, "user": string(b)} {
			if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
				ON CONFLICT (key) DO UPDATE SET value = excluded.value`, k, v); err != nil {
				return fmt.Errorf("write user: %w", err)
			}
		}
		return nil
	})
}

// wipe deletes all account data: conversations, messages, the outbox and
// the recorded user.
func (s *store) wipe(ctx context.Context) error {
	return s.tx(ctx, func(tx *sql.Tx) error { return wipeTx(ctx, tx) })
}

func wipeTx(ctx context.Context, tx *sql.Tx) error {
	for _, q := range []string{
		`DELETE FROM messages`,
		`DELETE FROM outbox`,
		`DELETE FROM conversations`,
		`DELETE FROM meta WHERE key IN ('user_id', 'user')`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("wipe local data: %w", err)
		}
	}
	return nil
}

// convRow is a conversation's row.
type convRow struct {
	ID                              string
	Data                            parley.Conversation
	UpdatedAt                       int64
	LastSeq, HaveSeq, FloorSeq      int64
	BaseSeq, BaseRead, BaseUnread   int64
	ReadWant, SrvRead, SrvDelivered int64
	DevDelivered                    int64
	Stub, Removed                   bool
	exists                          bool
}

const convColumns = `id, data, updated_at, last_seq, have_seq, floor_seq, base_seq, base_read,
	base_unread, read_want, srv_read, srv_delivered, dev_delivered, stub, removed`

type rowScanner interface{ Scan(dest ...any) error }

func scanConv(r rowScanner) (convRow, error) {
	var (
		c    convRow
		data string
	)
	err := r.Scan(&c.ID, &data, &c.UpdatedAt, &c.LastSeq, &c.HaveSeq, &c.FloorSeq, &c.BaseSeq,
		&c.BaseRead, &c.BaseUnread, &c.ReadWant, &c.SrvRead, &c.SrvDelivered, &c.DevDelivered, &c.Stub, &c.Removed)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal([]byte(data), &c.Data); err != nil {
		return c, fmt.Errorf("decode conversation %s: %w", c.ID, err)
	}
	c.exists = true
	return c, nil
}

// queryer is what *sql.DB and *sql.Tx share.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// loadConv reads a conversation's row; a missing one has exists false and
// its id set.
func loadConv(ctx context.Context, q queryer, id string) (convRow, error) {
	c, err := scanConv(q.QueryRowContext(ctx, `SELECT `+convColumns+` FROM conversations WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return convRow{ID: id, Data: parley.Conversation{ID: id}}, nil
	}
	if err != nil {
		return convRow{}, fmt.Errorf("read conversation %s: %w", id, err)
	}
	return c, nil
}

// saveConv writes a conversation's row.
func saveConv(ctx context.Context, q queryer, c convRow) error {
	data, err := json.Marshal(c.Data)
	if err != nil {
		return fmt.Errorf("encode conversation %s: %w", c.ID, err)
	}
	_, err = q.ExecContext(ctx, `INSERT INTO conversations (`+convColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at,
			last_seq = excluded.last_seq, have_seq = excluded.have_seq, floor_seq = excluded.floor_seq,
			base_seq = excluded.base_seq, base_read = excluded.base_read, base_unread = excluded.base_unread,
			read_want = excluded.read_want, srv_read = excluded.srv_read,
			srv_delivered = excluded.srv_delivered, dev_delivered = excluded.dev_delivered,
			stub = excluded.stub, removed = excluded.removed`,
		c.ID, string(data), c.UpdatedAt, c.LastSeq, c.HaveSeq, c.FloorSeq, c.BaseSeq, c.BaseRead,
		c.BaseUnread, c.ReadWant, c.SrvRead, c.SrvDelivered, c.DevDelivered, c.Stub, c.Removed)
	if err != nil {
		return fmt.Errorf("write conversation %s: %w", c.ID, err)
	}
	return nil
}

// mergeConv folds a server object into row: the object replaces the
// stored one, except that watermarks never move back (a live receipt may
// be newer than an object computed a moment before it).
func mergeConv(row *convRow, conv parley.Conversation, me string) {
	old := map[string]parley.Member{}
	for _, m := range row.Data.Members {
		old[m.UserID] = m
	}
	members := make([]parley.Member, len(conv.Members))
	for i, m := range conv.Members {
		if o, ok := old[m.UserID]; ok {
			m.DeliveredSeq = max(m.DeliveredSeq, o.DeliveredSeq)
			m.ReadSeq = max(m.ReadSeq, o.ReadSeq)
		}
		members[i] = m
		if m.UserID == me {
			row.SrvDelivered = max(row.SrvDelivered, m.DeliveredSeq)
			row.SrvRead = max(row.SrvRead, m.ReadSeq)
		}
	}
	conv.Members = members
	row.Data = conv
	row.UpdatedAt = max(row.UpdatedAt, conv.UpdatedAt.UnixMilli())
	row.LastSeq = max(row.LastSeq, conv.LastSeq)
	if conv.LastSeq >= row.BaseSeq {
		row.BaseSeq, row.BaseRead, row.BaseUnread = conv.LastSeq, conv.ReadSeq, conv.UnreadCount
	}
	row.SrvRead = max(row.SrvRead, conv.ReadSeq)
	row.Stub, row.Removed = false, false
	row.exists = true
}

// upsertConversation stores a server object. A conversation the caller is
// no longer a member of is stored as removed. changed says whether the row
// is different from before.
func (s *store) upsertConversation(ctx context.Context, conv parley.Conversation, me string) (row convRow, changed bool, err error) {
	err = s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		row, err = loadConv(ctx, tx, conv.ID)
		if err != nil {
			return err
		}
		before := row
		mergeConv(&row, conv, me)
		if _, member := conv.Member(me); !member {
			row.Removed = true
		}
		changed = !sameRow(before, row)
		if !changed {
			return nil
		}
		return saveConv(ctx, tx, row)
	})
	return row, changed, err
}

// sameRow reports whether two rows hold the same state.
func sameRow(a, b convRow) bool {
	if !a.exists || !b.exists {
		return a.exists == b.exists
	}
	ad, err1 := json.Marshal(a.Data)
	bd, err2 := json.Marshal(b.Data)
	if err1 != nil || err2 != nil || string(ad) != string(bd) {
		return false
	}
	a.Data, b.Data = parley.Conversation{}, parley.Conversation{}
	return reflect.DeepEqual(a, b)
}

// markRemoved records that the user is no longer a member. It reports
// whether anything changed.
func (s *store) markRemoved(ctx context.Context, id string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE conversations SET removed = 1 WHERE id = ? AND removed = 0`, id)
	if err != nil {
		return false, fmt.Errorf("mark %s removed: %w", id, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// conv returns a conversation's row.
func (s *store) conv(ctx context.Context, id string) (convRow, error) {
	return loadConv(ctx, s.db, id)
}

// convs returns the rows of every conversation, latest activity first.
func (s *store) convs(ctx context.Context) ([]convRow, error) {
	out, err := queryAll(ctx, s.db, scanConv, `SELECT `+convColumns+` FROM conversations ORDER BY updated_at DESC, id`)
	if err != nil {
		return nil, fmt.Errorf("list conversations: %w", err)
	}
	return out, nil
}

// queryAll runs a query and scans every row with scan.
func queryAll[T any](ctx context.Context, db *sql.DB, scan func(rowScanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// unread counts the messages of others after readSeq in the local store.
func (s *store) countUnread(ctx context.Context, convID, me string, after int64) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM messages
		WHERE conversation_id = ? AND seq > ? AND sender_id <> ?`, convID, after, me).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count unread in %s: %w", convID, err)
	}
	return n, nil
}

// applied is what storing a batch of server messages changed.
type applied struct {
	// Added are messages stored for the first time that were not in the
	// outbox; Confirmed are the user's own that replaced an outbox item.
	Added, Confirmed []parley.Message
	// Gap says that a message beyond the contiguous run is stored, or a
	// stub conversation needs its object: the gap filler must run.
	Gap bool
	// NewConversation says the conversation was unknown and is now a stub.
	NewConversation bool
	Row             convRow
}

// applyMessages stores messages of one conversation from the server,
// dropping ids it already has, reconciling the user's own with their
// outbox items (by client_message_id: they then live in messages only),
// and moving the contiguous run. newest says the batch is the newest page
// of a conversation new to this client (sync of an unlisted one, or history
// without bounds), which starts a run when there is none.
func (s *store) applyMessages(ctx context.Context, convID, me string, msgs []parley.Message, newest bool) (applied, error) {
	var res applied
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res = applied{}
		row, err := loadConv(ctx, tx, convID)
		if err != nil {
			return err
		}
		if !row.exists {
			row.Stub, row.exists = true, true
			res.NewConversation = true
		}
		var minSeq, maxSeq int64
		for i, m := range msgs {
			if m.ConversationID != convID || m.Seq <= 0 || m.ID == "" {
				return fmt.Errorf("message %q does not belong to conversation %s", m.ID, convID)
			}
			media, err := encodeMedia(m.Media)
			if err != nil {
				return fmt.Errorf("store message %s: %w", m.ID, err)
			}
			r, err := tx.ExecContext(ctx, `INSERT INTO messages
				(id, conversation_id, seq, sender_id, client_message_id, kind, text, created_at, media)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
				m.ID, m.ConversationID, m.Seq, m.SenderID, m.ClientMessageID, string(m.Kind), m.Text, m.CreatedAt.String(), media)
			if err != nil {
				return fmt.Errorf("store message %s: %w", m.ID, err)
			}
			if i == 0 || m.Seq < minSeq {
				minSeq = m.Seq
			}
			maxSeq = max(maxSeq, m.Seq)
			row.UpdatedAt = max(row.UpdatedAt, m.CreatedAt.UnixMilli())
			if n, _ := r.RowsAffected(); n == 0 {
				continue // a duplicate: at least once on the wire, once here
			}
			confirmed := false
			if m.SenderID == me && m.ClientMessageID != "" {
				r, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE client_message_id = ? AND conversation_id = ?`,
					m.ClientMessageID, convID)
				if err != nil {
					return fmt.Errorf("reconcile outbox: %w", err)
				}
				n, _ := r.RowsAffected()
				confirmed = n > 0
			}
			if confirmed {
				res.Confirmed = append(res.Confirmed, m)
			} else {
				res.Added = append(res.Added, m)
			}
		}
		row.LastSeq = max(row.LastSeq, maxSeq)
		if newest && row.HaveSeq == 0 && len(msgs) > 0 {
			// A page from the server has no holes.
			row.FloorSeq, row.HaveSeq = minSeq, maxSeq
		}
		if err := extendRun(ctx, tx, &row); err != nil {
			return err
		}
		var beyond int64
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation_id = ?`,
			convID).Scan(&beyond); err != nil {
			return fmt.Errorf("read last seq of %s: %w", convID, err)
		}
		res.Gap = row.Stub || beyond > row.HaveSeq
		res.Row = row
		return saveConv(ctx, tx, row)
	})
	return res, err
}

// extendRun moves the contiguous run over the stored messages next to it:
// have_seq up, floor_seq down. With no run yet, a stored seq 1 starts one.
func extendRun(ctx context.Context, tx *sql.Tx, row *convRow) error {
	if row.HaveSeq == 0 {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM messages WHERE conversation_id = ? AND seq = 1`, row.ID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read run of %s: %w", row.ID, err)
		}
		row.FloorSeq, row.HaveSeq = 1, 1
	}
	rows, err := tx.QueryContext(ctx, `SELECT seq FROM messages WHERE conversation_id = ? AND seq > ? ORDER BY seq`,
		row.ID, row.HaveSeq)
	if err != nil {
		return fmt.Errorf("read run of %s: %w", row.ID, err)
	}
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			rows.Close()
			return fmt.Errorf("read run of %s: %w", row.ID, err)
		}
		if seq != row.HaveSeq+1 {
			break
		}
		row.HaveSeq = seq
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read run of %s: %w", row.ID, err)
	}
	rows, err = tx.QueryContext(ctx, `SELECT seq FROM messages WHERE conversation_id = ? AND seq < ? ORDER BY seq DESC`,
		row.ID, row.FloorSeq)
	if err != nil {
		return fmt.Errorf("read run of %s: %w", row.ID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			return fmt.Errorf("read run of %s: %w", row.ID, err)
		}
		if seq != row.FloorSeq-1 {
			break
		}
		row.FloorSeq = seq
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read run of %s: %w", row.ID, err)
	}
	return nil
}

// applyReceipt moves a member's watermark in the stored object. It reports
// whether anything moved.
func (s *store) applyReceipt(ctx context.Context, r parley.Receipt, me string) (bool, error) {
	moved := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		row, err := loadConv(ctx, tx, r.ConversationID)
		if err != nil || !row.exists {
			return err
		}
		if moved = receiptMoves(&row, r, me); !moved {
			return nil
		}
		return saveConv(ctx, tx, row)
	})
	return moved, err
}

// receiptMoves applies a receipt to a row and reports whether anything
// moved.
func receiptMoves(row *convRow, r parley.Receipt, me string) bool {
	moved := false
	for i := range row.Data.Members {
		m := &row.Data.Members[i]
		if m.UserID != r.UserID {
			continue
		}
		switch r.Kind {
		case parley.Read:
			if r.Seq > m.ReadSeq {
				m.ReadSeq, moved = r.Seq, true
			}
			fallthrough // read moves delivered too
		case parley.Delivered:
			if r.Seq > m.DeliveredSeq {
				m.DeliveredSeq, moved = r.Seq, true
			}
		}
	}
	if r.UserID == me {
		if r.Kind == parley.Read && r.Seq > row.SrvRead {
			row.SrvRead, moved = r.Seq, true
		}
		if r.Seq > row.SrvDelivered {
			row.SrvDelivered, moved = r.Seq, true
		}
	}
	return moved
}

// setReadWant moves the application's read watermark forward, clamped to
// the last seq known. It reports whether it moved.
func (s *store) setReadWant(ctx context.Context, convID string, seq int64) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE conversations SET read_want = MIN(?, last_seq)
		WHERE id = ? AND read_want < MIN(?, last_seq)`, seq, convID, seq)
	if err != nil {
		return false, fmt.Errorf("mark %s read: %w", convID, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// receiptTask is a watermark of this user that the server lags behind.
type receiptTask struct {
	ConversationID string
	Kind           parley.ReceiptKind
	Seq            int64
}

// receiptTasks lists the receipts to send: read where the application's
// read watermark is ahead of the server's; delivered where a message of
// another member in the contiguous run (never beyond a gap) is beyond
// what this device confirmed (own messages alone need no delivered
// receipt). Delivered is compared with dev_delivered, not srv_delivered:
// another device of the user moving the user's watermark does not confirm
// the message on this one (a push held back because this device looked
// connected is sent unless this device confirms).
func (s *store) receiptTasks(ctx context.Context, me string) ([]receiptTask, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, read_want, srv_read, dev_delivered,
		COALESCE((SELECT seq FROM messages m
			WHERE m.conversation_id = c.id AND m.seq <= c.have_seq AND m.sender_id <> ?
			ORDER BY m.seq DESC LIMIT 1), 0)
		FROM conversations c WHERE removed = 0 AND stub = 0`, me)
	if err != nil {
		return nil, fmt.Errorf("list receipts: %w", err)
	}
	defer rows.Close()
	var out []receiptTask
	for rows.Next() {
		var (
			id                                 string
			readWant, srvRead, devDel, delWant int64
		)
		if err := rows.Scan(&id, &readWant, &srvRead, &devDel, &delWant); err != nil {
			return nil, fmt.Errorf("list receipts: %w", err)
		}
		if readWant > srvRead {
			out = append(out, receiptTask{ConversationID: id, Kind: parley.Read, Seq: readWant})
			devDel = max(devDel, readWant) // read implies delivered
		}
		if delWant > devDel {
			out = append(out, receiptTask{ConversationID: id, Kind: parley.Delivered, Seq: delWant})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list receipts: %w", err)
	}
	return out, nil
}

// serverMarked records that the server acknowledged a receipt this client
// sent: the user's watermarks move, and so does what this device
// confirmed (a read receipt confirms delivery too).
func (s *store) serverMarked(ctx context.Context, t receiptTask, me string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		row, err := loadConv(ctx, tx, t.ConversationID)
		if err != nil || !row.exists {
			return err
		}
		moved := receiptMoves(&row, parley.Receipt{ConversationID: t.ConversationID, UserID: me, Kind: t.Kind, Seq: t.Seq}, me)
		if t.Seq > row.DevDelivered {
			row.DevDelivered, moved = t.Seq, true
		}
		if !moved {
			return nil
		}
		return saveConv(ctx, tx, row)
	})
}

// syncState returns the contiguous last seq of every conversation that has
// a run (what sync sends), and the ids of all conversations not removed.
func (s *store) syncState(ctx context.Context) (have map[string]int64, known []string, err error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, have_seq FROM conversations WHERE removed = 0`)
	if err != nil {
		return nil, nil, fmt.Errorf("read sync state: %w", err)
	}
	defer rows.Close()
	have = map[string]int64{}
	for rows.Next() {
		var (
			id  string
			seq int64
		)
		if err := rows.Scan(&id, &seq); err != nil {
			return nil, nil, fmt.Errorf("read sync state: %w", err)
		}
		known = append(known, id)
		// A conversation without a run is not listed: sync then returns
		// its newest messages, which starts one. (Listed with 0, the
		// has_more of the answer would be ambiguous.)
		if seq > 0 {
			have[id] = seq
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read sync state: %w", err)
	}
	return have, known, nil
}

// scanMessage reads a messages row.
func scanMessage(r rowScanner) (parley.Message, error) {
	var (
		m       parley.Message
		kind    string
		created string
		media   string
	)
	if err := r.Scan(&m.ID, &m.ConversationID, &m.Seq, &m.SenderID, &m.ClientMessageID, &kind, &m.Text, &created, &media); err != nil {
		return m, err
	}
	m.Kind = parley.MessageKind(kind)
	if t, err := time.Parse(time.RFC3339Nano, created); err == nil {
		m.CreatedAt = parley.NewTime(t)
	}
	var err error
	if m.Media, err = decodeMedia(media); err != nil {
		return m, fmt.Errorf("message %s: %w", m.ID, err)
	}
	return m, nil
}

const messageColumns = `id, conversation_id, seq, sender_id, client_message_id, kind, text, created_at, media`

// encodeMedia is the media column of a Media: JSON, or ” for none.
func encodeMedia(m *parley.Media) (string, error) {
	if m == nil {
		return "", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode media: %w", err)
	}
	return string(b), nil
}

// decodeMedia reads a media column.
func decodeMedia(s string) (*parley.Media, error) {
	if s == "" {
		return nil, nil
	}
	var m parley.Media
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("decode media: %w", err)
	}
	return &m, nil
}

// messages returns up to limit stored messages below beforeSeq (0: no
// bound), the newest ones, ascending by seq.
func (s *store) messages(ctx context.Context, convID string, beforeSeq int64, limit int) ([]parley.Message, error) {
	if beforeSeq <= 0 {
		beforeSeq = 1<<63 - 1
	}
	out, err := queryAll(ctx, s.db, scanMessage, `SELECT `+messageColumns+` FROM messages
		WHERE conversation_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?`, convID, beforeSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("read messages of %s: %w", convID, err)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// messageByClientID returns the stored message the user sent with a
// client_message_id, if the server has acknowledged it.
func (s *store) messageByClientID(ctx context.Context, cmid, me string) (parley.Message, bool, error) {
	m, err := scanMessage(s.db.QueryRowContext(ctx, `SELECT `+messageColumns+` FROM messages
		WHERE client_message_id = ? AND sender_id = ?`, cmid, me))
	if errors.Is(err, sql.ErrNoRows) {
		return m, false, nil
	}
	if err != nil {
		return m, false, fmt.Errorf("read message %s: %w", cmid, err)
	}
	return m, true, nil
}

// outboxItem is a message not acknowledged yet.
type outboxItem struct {
	Pos             int64
	ClientMessageID string
	ConversationID  string
	Kind            parley.MessageKind
	Text            string
	CreatedAt       parley.Time
	State           string
	Error           string
	// File is the file of an image, video or file message; nil for text.
	File *outboxFile
}

// outboxFile is the file of a media message in the outbox, and where its
// upload is.
type outboxFile struct {
	// Name and Type are the file name and the type claimed at upload;
	// Size its length in bytes.
	Name string
	Type string
	Size int64
	// UploadID is the id of the tus upload once created ("" before): the
	// last segment of its URL, the media id. Offset is what the server
	// confirmed of it, a hint until a HEAD says.
	UploadID string
	Offset   int64
	// AutoKind says the message's kind is decided by what the server
	// found in the content; otherwise the sender chose it.
	AutoKind bool
	// Media is the server's, once the upload is complete: its ID is what
	// message.send carries.
	Media *parley.Media
}

// needsUpload reports whether the item still needs its upload before it
// can be sent.
func (it outboxItem) needsUpload() bool { return it.File != nil && it.File.Media == nil }

const outboxColumns = `pos, client_message_id, conversation_id, kind, text, created_at, state, error,
	file_name, file_type, file_size, upload_id, upload_offset, auto_kind, media`

func scanOutbox(r rowScanner) (outboxItem, error) {
	var (
		it            outboxItem
		kind, created string
		f             outboxFile
		media         string
	)
	if err := r.Scan(&it.Pos, &it.ClientMessageID, &it.ConversationID, &kind, &it.Text, &created, &it.State, &it.Error,
		&f.Name, &f.Type, &f.Size, &f.UploadID, &f.Offset, &f.AutoKind, &media); err != nil {
		return it, err
	}
	it.Kind = parley.MessageKind(kind)
	if t, err := time.Parse(time.RFC3339Nano, created); err == nil {
		it.CreatedAt = parley.NewTime(t)
	}
	if it.Kind != parley.KindText {
		var err error
		if f.Media, err = decodeMedia(media); err != nil {
			return it, fmt.Errorf("outbox item %s: %w", it.ClientMessageID, err)
		}
		it.File = &f
	}
	return it, nil
}

// enqueue adds a pending item to the outbox. It returns once the item is
// committed to disk.
func (s *store) enqueue(ctx context.Context, it outboxItem) error {
	var f outboxFile
	if it.File != nil {
		f = *it.File
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO outbox
		(client_message_id, conversation_id, kind, text, created_at, state, file_name, file_type, file_size, auto_kind)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		it.ClientMessageID, it.ConversationID, string(it.Kind), it.Text, it.CreatedAt.String(), outboxPending,
		f.Name, f.Type, f.Size, f.AutoKind)
	if err != nil {
		return fmt.Errorf("queue message: %w", err)
	}
	return nil
}

// setUpload records where an item's upload is: its id and the bytes the
// server confirmed. It reports whether the item still exists.
func (s *store) setUpload(ctx context.Context, cmid, id string, offset int64) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE outbox SET upload_id = ?, upload_offset = ? WHERE client_message_id = ?`,
		id, offset, cmid)
	if err != nil {
		return false, fmt.Errorf("update upload of %s: %w", cmid, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// resetUpload forgets an item's upload, complete or not, so that its file
// is uploaded anew.
func (s *store) resetUpload(ctx context.Context, cmid string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE outbox SET upload_id = '', upload_offset = 0, media = ''
		WHERE client_message_id = ?`, cmid)
	if err != nil {
		return fmt.Errorf("reset upload of %s: %w", cmid, err)
	}
	return nil
}

// setUploaded records that an item's upload is complete: the server's
// Media, and the kind the message is sent as. It reports whether the item
// still exists.
func (s *store) setUploaded(ctx context.Context, cmid string, kind parley.MessageKind, m parley.Media) (bool, error) {
	media, err := encodeMedia(&m)
	if err != nil {
		return false, err
	}
	res, err := s.db.ExecContext(ctx, `UPDATE outbox SET kind = ?, media = ?, upload_offset = file_size
		WHERE client_message_id = ?`, string(kind), media, cmid)
	if err != nil {
		return false, fmt.Errorf("update upload of %s: %w", cmid, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// outboxItem returns one outbox item.
func (s *store) outboxItem(ctx context.Context, cmid string) (outboxItem, bool, error) {
	it, err := scanOutbox(s.db.QueryRowContext(ctx, `SELECT `+outboxColumns+` FROM outbox WHERE client_message_id = ?`, cmid))
	if errors.Is(err, sql.ErrNoRows) {
		return it, false, nil
	}
	if err != nil {
		return it, false, fmt.Errorf("read outbox item %s: %w", cmid, err)
	}
	return it, true, nil
}

// outbox returns the outbox items of one conversation ("" for all), in
// send order.
func (s *store) outbox(ctx context.Context, convID string) ([]outboxItem, error) {
	out, err := queryAll(ctx, s.db, scanOutbox, `SELECT `+outboxColumns+` FROM outbox
		WHERE ? = '' OR conversation_id = ? ORDER BY pos`, convID, convID)
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	return out, nil
}

// pendingHeads returns the first pending item of every conversation, in
// send order: the next message each conversation may send. A failed item
// does not hold back the ones after it.
func (s *store) pendingHeads(ctx context.Context) ([]outboxItem, error) {
	out, err := queryAll(ctx, s.db, scanOutbox, `SELECT `+outboxColumns+` FROM outbox
		WHERE pos IN (SELECT MIN(pos) FROM outbox WHERE state = ? GROUP BY conversation_id) ORDER BY pos`, outboxPending)
	if err != nil {
		return nil, fmt.Errorf("read pending outbox: %w", err)
	}
	return out, nil
}

// setOutboxState marks an item pending or failed with a reason. It reports
// whether the item still exists.
func (s *store) setOutboxState(ctx context.Context, cmid, state, reason string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE outbox SET state = ?, error = ? WHERE client_message_id = ?`, state, reason, cmid)
	if err != nil {
		return false, fmt.Errorf("update outbox item %s: %w", cmid, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// deleteOutbox removes an item. It reports whether it existed.
func (s *store) deleteOutbox(ctx context.Context, cmid string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM outbox WHERE client_message_id = ?`, cmid)
	if err != nil {
		return false, fmt.Errorf("delete outbox item %s: %w", cmid, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}
