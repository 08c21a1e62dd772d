// Package sqlstore is the embedded SQLite implementation of parley.Store,
// the durable state of a single-node Parley server.
//
// All writes go through one goroutine that owns the only writing connection
// and commits them in groups: whatever is queued (up to Options.MaxBatch) runs
// in one transaction, each write inside its own savepoint so that a failing
// one rolls back alone, and one fsync makes the whole group durable. The
// events of the committed writes are then published in commit order, so
// message.new for a conversation is published in increasing seq. Reads use a
// separate pool of read-only connections, which WAL mode lets run alongside
// the writer.
//
// Besides parley.Store, a DB is the push outbox (push.Queue): SendMessage
// queues the message's push jobs in its own transaction, and the push worker
// claims and finishes them (push.go).
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/ncruces/go-sqlite3/driver"

	"github.com/parley-chat/parley"
)

// Options tunes a DB. The zero value is ready to use.
type Options struct {
	// Logger receives errors that have no caller to return to, such as a
	// Publisher failing. Nil means slog.Default().
	Logger *slog.Logger
	// ObserveLatency, if not nil, is called after every store operation
	// with its name (the method name in snake_case, e.g. "send_message",
	// "messages") and how long it took, including the wait for the writer.
	// The writer also reports each group commit as "commit". It is called
	// from many goroutines at once and must not block.
	ObserveLatency func(op string, d time.Duration)
	// MaxBatch is the most writes committed in one transaction, and the
	// length of the write queue. Zero or less means 256.
	MaxBatch int
	// PushPlatforms are the device platforms for which SendMessage queues
	// push jobs: those that have a push sender. Empty means none, for a
	// store that no push worker serves.
	PushPlatforms []parley.Platform
}

const (
	defaultMaxBatch = 256
	// busyTimeout only matters if another process holds the database: within
	// this process there is one writing connection.
	busyTimeout = 10 * time.Second
)

// DB is a parley.Store kept in one SQLite database file. It is safe for
// concurrent use. Close it to finish queued writes and release the file.
type DB struct {
	writer  *sql.DB   // one connection, used only through conn
	conn    *sql.Conn // the writer goroutine's connection
	wstmts  *stmtCache
	readers *sql.DB // read-only pool
	rstmts  *stmtCache

	pub      parley.Publisher
	log      *slog.Logger
	observe  func(op string, d time.Duration)
	maxBatch int
	// qQueuePush is qQueuePush for Options.PushPlatforms, or "" for none.
	qQueuePush string

	// bg is the context events are published with: the DB's lifetime, not
	// any caller's, since a write once taken completes and publishes
	// whatever its caller does. It ends when Close has finished the writes.
	bg     context.Context
	stopBg context.CancelFunc

	reqs chan *request
	// mu guards closed and the sends on reqs: Close takes it exclusively
	// before closing reqs, so that no send races the close.
	mu     sync.RWMutex
	closed bool
	// done is closed when the writer goroutine has returned.
	done chan struct{}
}

var _ parley.Store = (*DB)(nil)

// Open opens (creating if needed) the SQLite database at path, applies the
// migrations it lacks, and starts the writer. ctx bounds only the opening.
//
// Events of committed writes go to pub, which may be nil. Publish is called
// from the writer goroutine, so it may block for backpressure (writes wait)
// but must not wait for a write of this DB.
func Open(ctx context.Context, path string, pub parley.Publisher, opts Options) (_ *DB, err error) {
	if path == "" {
		return nil, fmt.Errorf("open sqlite: empty path")
	}
	db := &DB{
		pub:      pub,
		log:      opts.Logger,
		observe:  opts.ObserveLatency,
		maxBatch: opts.MaxBatch,
		done:     make(chan struct{}),
	}
	if db.log == nil {
		db.log = slog.Default()
	}
	if db.maxBatch <= 0 {
		db.maxBatch = defaultMaxBatch
	}
	if db.qQueuePush, err = queuePushQuery(opts.PushPlatforms); err != nil {
		return nil, err
	}
	db.reqs = make(chan *request, db.maxBatch)

	// On failure, close whatever was opened, newest first.
	var undo []func() error
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	// synchronous=FULL: a commit that returned survives a power loss, not
	// only a crash of the process (which NORMAL would already survive).
	db.writer, err = driver.Open(dsn(path, "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)"))
	if err != nil {
		return nil, fmt.Errorf("open sqlite writer: %w", err)
	}
	undo = append(undo, db.writer.Close)
	db.writer.SetMaxOpenConns(1)
	db.writer.SetMaxIdleConns(1)
	db.writer.SetConnMaxLifetime(0)
	db.writer.SetConnMaxIdleTime(0)
	db.conn, err = db.writer.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("open sqlite writer: %w", err)
	}
	undo = append(undo, db.conn.Close)
	if err := migrate(ctx, db.conn); err != nil {
		return nil, err
	}
	db.wstmts = newStmtCache(db.conn)
	undo = append(undo, db.wstmts.close)

	// The readers are opened after the writer has switched the file to WAL
	// (which persists in the file), and cannot write by mistake.
	db.readers, err = driver.Open(dsn(path, "query_only(1)", "foreign_keys(1)"))
	if err != nil {
		return nil, fmt.Errorf("open sqlite readers: %w", err)
	}
	undo = append(undo, db.readers.Close)
	n := max(4, runtime.GOMAXPROCS(0))
	db.readers.SetMaxOpenConns(n)
	db.readers.SetMaxIdleConns(n)
	db.readers.SetConnMaxIdleTime(0)
	db.readers.SetConnMaxLifetime(0)
	db.rstmts = newStmtCache(db.readers)
	undo = append(undo, db.rstmts.close)
	// The statements that run inside read transactions are prepared now
	// (see session.stmt); this also checks that the readers work.
	for _, q := range [...]string{qConversationFor, qMembers, qConversationsFor, qMembersOfConversationsFor} {
		if _, err := db.rstmts.get(ctx, q); err != nil {
			return nil, fmt.Errorf("open sqlite readers: %w", err)
		}
	}

	db.bg, db.stopBg = context.WithCancel(context.Background())
	go db.run()
	return db, nil
}

// dsn builds the driver's URI for path with the given pragmas, busy_timeout
// first as the driver requires.
func dsn(path string, pragmas ...string) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(busyTimeout.Milliseconds(), 10)+")")
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	u := url.URL{Scheme: "file", OmitHost: true, Path: path, RawQuery: q.Encode()}
	return u.String()
}

// Close stops accepting writes (they answer unavailable), waits for the
// queued ones to commit and publish, and closes the database. Reads started
// after Close answer unavailable. Calling Close again does nothing.
func (db *DB) Close() error {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		<-db.done
		return nil
	}
	db.closed = true
	close(db.reqs)
	db.mu.Unlock()
	<-db.done
	db.stopBg()

	// Statements before their connections; arguments run in order.
	err := errors.Join(db.wstmts.close(), db.conn.Close(), db.writer.Close(), db.rstmts.close(), db.readers.Close())
	if err != nil {
		return fmt.Errorf("close sqlite: %w", err)
	}
	return nil
}

// errClosed answers operations on a closed DB.
func errClosed() error { return parley.Errorf(parley.CodeUnavailable, "storage is closed") }

func (db *DB) isClosed() bool {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.closed
}

// observeSince reports the latency of op, if anyone listens.
func (db *DB) observeSince(op string, start time.Time) {
	if db.observe != nil {
		db.observe(op, time.Since(start))
	}
}

// read runs fn on the read pool, in a read-only transaction when snapshot is
// true (for reads of several queries that must agree with each other).
func (db *DB) read(ctx context.Context, op string, snapshot bool, fn func(s *session) error) error {
	defer db.observeSince(op, time.Now())
	if db.isClosed() {
		return errClosed()
	}
	err := db.readIn(ctx, snapshot, fn)
	if err != nil && db.isClosed() {
		// Closed while reading: the pool's error says nothing more.
		return errClosed()
	}
	return err
}

func (db *DB) readIn(ctx context.Context, snapshot bool, fn func(s *session) error) error {
	s := &session{ctx: ctx, cache: db.rstmts}
	if !snapshot {
		return fn(s)
	}
	tx, err := db.readers.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin read: %w", err)
	}
	// A read-only transaction has nothing to commit; rolling back ends it.
	defer tx.Rollback()
	s.tx = tx
	return fn(s)
}

// Ping reports whether the database answers a query on the read pool.
func (db *DB) Ping(ctx context.Context) error {
	return db.read(ctx, "ping", false, func(s *session) error {
		var one int
		if err := s.queryRow(`SELECT 1`).Scan(&one); err != nil {
			return fmt.Errorf("ping: %w", err)
		}
		return nil
	})
}
