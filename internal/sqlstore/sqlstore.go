// Package sqlstore is the SQL implementation of parley.Store, on one of two
// engines: embedded SQLite (Open), the durable state of a single-node
// Parley server, or PostgreSQL (OpenPostgres), shared by the nodes of a
// cluster. Both run the same statements and pass the same tests; what
// differs (placeholders, id lists, how a write transaction starts, row
// locks) is a small dialect (dialect.go), and each engine has its own
// versioned migrations (migrations/sqlite, migrations/postgres).
//
// # Writes
//
// All writes go through writer goroutines that commit them in groups: what
// is queued (up to Options.MaxBatch) runs in one transaction, and one
// commit (one fsync) makes the whole group durable. A write that fails
// rolls back alone: the writes of a group run one after the other, and if
// one fails, the group runs again with each write inside its own savepoint
// (as the writer's next groups do, until one in which nothing failed).
//
// SQLite has exactly one writer, on the only writing connection, in BEGIN
// IMMEDIATE transactions: it serializes every write. PostgreSQL has
// Options.Writers of them, each with its own connection and its own queue,
// at READ COMMITTED, alongside the writers of the other nodes. The writes
// of one conversation always go to the same writer of a node, so that its
// writers never queue for each other's row locks. There every write locks
// the rows it depends on first (the conversation row, FOR UPDATE to change
// it, FOR SHARE to rely on it), a batch runs its writes sorted by what they
// lock so that batches lock in one order, and uniqueness races are settled
// by the database (INSERT ... ON CONFLICT, conditional UPDATEs). A write
// that loses a deadlock runs again, alone, a few times. seq stays gap-free
// and a client_message_id is stored once across nodes because sending
// locks the conversation row before it looks for the original and takes
// the next seq. Sends and receipts, the writes of every message, do so in
// one statement and one round trip each on PostgreSQL, which checks that
// what it read is as new as the row it locked (withLockFresh); a writer's
// connection and those statements are made ready when the DB opens, not
// by its first messages.
//
// The events of committed writes are published to the Publisher after the
// commit, in commit order (turnstile), so that message.new for a
// conversation is published in increasing seq by each node. Reads use a
// separate pool: read-only connections that WAL mode lets run alongside
// the writer on SQLite, ordinary ones on PostgreSQL (where snapshot reads
// are REPEATABLE READ READ ONLY transactions).
//
// # Failures (PostgreSQL)
//
// Every batch, read and ping is bounded by Options.Timeout. A lost,
// refused or silent connection answers unavailable (parley.CodeUnavailable,
// "storage unavailable", with the cause in Err), never internal, and marks
// the database down: until a background ping succeeds again, reads and
// writes answer unavailable at once instead of waiting for a timeout each.
// Recovery is automatic.
//
// # Outbox (PostgreSQL, Options.Outbox)
//
// With the outbox, each batch also inserts its events into the outbox table
// in its transaction. The writer publishes them after the commit as usual;
// a goroutine of the DB then deletes the rows of those published, after the
// Publisher's Flush (if it has one) has succeeded. Rows older than
// Options.OutboxRelayAfter, left by a node that died between commit and
// publication or failed to publish, are relayed by whichever node claims
// them first (FOR UPDATE SKIP LOCKED). Delivery is therefore at least once:
// a relay may repeat an event that the dead node had published, and relayed
// events come later than, and out of order with, the live ones (subscribers
// fill gaps with MessageRange).
//
// Besides parley.Store, a DB is the push outbox (push.Queue): SendMessage
// queues the message's push jobs in its own transaction, and the push
// workers, on any node, claim and finish them (push.go).
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
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
	// length of each writer's queue. Zero or less means 256.
	MaxBatch int
	// PushPlatforms are the device platforms for which SendMessage queues
	// push jobs: those that have a push sender. Empty means none, for a
	// store that no push worker serves.
	PushPlatforms []parley.Platform
	// BadgeInterval is the least time between two badge-only pushes to one
	// device (updates in between are coalesced into the next). Zero or less
	// means 10 s.
	BadgeInterval time.Duration

	// Writers is the number of writer goroutines on PostgreSQL, each with
	// its own connection and queue, each committing batches; the writes of
	// one conversation always go to the same writer. Zero or less means 4.
	// SQLite always has exactly one.
	Writers int
	// Timeout bounds, on PostgreSQL, each write batch, each read, each ping
	// and each connection attempt (at most 5 s for the latter): past it the
	// operation answers unavailable. Zero or less means 10 s.
	Timeout time.Duration
	// Outbox makes a PostgreSQL DB keep the events of each write in an
	// outbox table until they are published, and relay those that a node
	// failed to publish (see the package comment). It needs a Publisher.
	// SQLite ignores it.
	Outbox bool
	// OutboxRelayAfter is how old an outbox row must be before another node
	// takes it for lost and publishes it. Zero or less means 5 s.
	OutboxRelayAfter time.Duration
	// OutboxRelayEvery is how often a DB looks for such rows. Zero or less
	// means 1 s.
	OutboxRelayEvery time.Duration
}

const (
	defaultMaxBatch = 256
	defaultWriters  = 4
	defaultTimeout  = 10 * time.Second
	// defaultBadgeInterval is Apple's advice, more or less: badge updates
	// are low priority and must not flood a device.
	defaultBadgeInterval = 10 * time.Second
	// busyTimeout only matters if another process holds the database: within
	// this process there is one writing connection.
	busyTimeout = 10 * time.Second
)

// DB is a parley.Store kept in a SQLite database file or a PostgreSQL
// database. It is safe for concurrent use. Close it to finish queued writes
// and release the database.
type DB struct {
	d *dialect

	// writer is SQLite's one writing connection, used only through conn,
	// or the PostgreSQL writers' pool, one connection per writer.
	writer  *sql.DB
	conn    *sql.Conn  // SQLite: the writer goroutine's connection
	wstmts  *stmtCache // SQLite: the writer's statements
	readers *sql.DB    // the read pool (on PostgreSQL, also the outbox's)
	rstmts  *stmtCache // SQLite: the readers' statements

	pub      parley.Publisher
	log      *slog.Logger
	observe  func(op string, d time.Duration)
	maxBatch int
	// timeout bounds PostgreSQL operations (Options.Timeout).
	timeout time.Duration
	// qQueuePush is qQueuePush for Options.PushPlatforms, or "" for none;
	// qQueueBadge likewise.
	qQueuePush, qQueueBadge string
	// badgeInterval is Options.BadgeInterval.
	badgeInterval time.Duration
	// qSend is qSendInOne for Options.PushPlatforms (PostgreSQL).
	qSend string

	// bg is the context events are published with: the DB's lifetime, not
	// any caller's, since a write once taken completes and publishes
	// whatever its caller does. It ends when Close has finished the writes.
	bg     context.Context
	stopBg context.CancelFunc

	// queues are the writers' queues, index for index (see queueFor).
	queues []chan *request
	// spread picks the queue of the next request without a lock key.
	spread atomic.Uint64
	// seed hashes lock keys to queues.
	seed maphash.Seed
	// mu guards closed and the sends on queues: Close takes it exclusively
	// before closing them, so that no send races the close.
	mu     sync.RWMutex
	closed bool
	// done is closed when every writer goroutine has returned.
	done    chan struct{}
	writers []*writer
	// order makes the writers publish in commit order.
	order *turnstile

	// health is nil on SQLite; on PostgreSQL it tracks whether the
	// database answers, with its pinger goroutine.
	health *health
	// outbox is nil unless Options.Outbox on PostgreSQL.
	outbox *outbox
	// background counts the goroutines other than the writers (the pinger,
	// the outbox's), which stop when stopBackground is closed.
	background     sync.WaitGroup
	stopBackground chan struct{}
}

var _ parley.Store = (*DB)(nil)

// newDB returns a DB with opts applied, not yet connected.
func newDB(d *dialect, pub parley.Publisher, opts Options) (*DB, error) {
	db := &DB{
		d:              d,
		pub:            pub,
		log:            opts.Logger,
		observe:        opts.ObserveLatency,
		maxBatch:       opts.MaxBatch,
		timeout:        opts.Timeout,
		done:           make(chan struct{}),
		order:          newTurnstile(),
		seed:           maphash.MakeSeed(),
		stopBackground: make(chan struct{}),
	}
	if db.log == nil {
		db.log = slog.Default()
	}
	if db.maxBatch <= 0 {
		db.maxBatch = defaultMaxBatch
	}
	if db.timeout <= 0 {
		db.timeout = defaultTimeout
	}
	platforms, err := pushPlatformList(opts.PushPlatforms)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", d.name(), err)
	}
	if platforms != "" {
		db.qQueuePush = fmt.Sprintf(qQueuePush, platforms)
		db.qQueueBadge = fmt.Sprintf(qQueueBadge, platforms)
	}
	db.badgeInterval = opts.BadgeInterval
	if db.badgeInterval <= 0 {
		db.badgeInterval = defaultBadgeInterval
	}
	db.qSend = sendQuery(platforms)
	return db, nil
}

// Open opens (creating if needed) the SQLite database at path, applies the
// migrations it lacks, and starts the writer. ctx bounds only the opening.
// Options.Writers, Timeout and the outbox options do not apply to SQLite.
//
// Events of committed writes go to pub, which may be nil. Publish is called
// from the writer goroutine, so it may block for backpressure (writes wait)
// but must not wait for a write of this DB.
func Open(ctx context.Context, path string, pub parley.Publisher, opts Options) (_ *DB, err error) {
	if path == "" {
		return nil, fmt.Errorf("open sqlite: empty path")
	}
	db, err := newDB(&dialect{}, pub, opts)
	if err != nil {
		return nil, err
	}

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
	if err := migrateSQLite(ctx, db.conn); err != nil {
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
	for _, q := range [...]string{qConversationFor, qMembers, qConversationsFor, qMembersOfConversationsFor,
		qPageFirst, qPageFrom, qMembersOfList(db.d)} {
		if _, err := db.rstmts.get(ctx, q); err != nil {
			return nil, fmt.Errorf("open sqlite readers: %w", err)
		}
	}

	// Statements run with no deadline or cancellation: a write once taken
	// is applied. (A context that can end would also cost database/sql a
	// goroutine per query.)
	wr := &writer{db: db, conn: db.conn}
	wr.w.session = session{ctx: context.Background(), d: db.d, cache: db.wstmts}
	db.start(wr)
	return db, nil
}

// start gives each writer its queue and starts the writers and the DB's
// context.
func (db *DB) start(writers ...*writer) {
	db.bg, db.stopBg = context.WithCancel(context.Background())
	db.writers = writers
	for _, wr := range writers {
		wr.reqs = make(chan *request, db.maxBatch)
		db.queues = append(db.queues, wr.reqs)
	}
	var wg sync.WaitGroup
	for _, wr := range writers {
		wg.Go(wr.run)
	}
	go func() {
		wg.Wait()
		close(db.done)
	}()
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
// queued ones to commit and publish, publishes and deletes what it can of
// the outbox, stops every goroutine of the DB and closes the database.
// Reads started after Close answer unavailable. Calling Close again does
// nothing.
func (db *DB) Close() error {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		<-db.done
		return nil
	}
	db.closed = true
	for _, q := range db.queues {
		close(q)
	}
	db.mu.Unlock()
	<-db.done
	close(db.stopBackground)
	db.background.Wait() // the outbox's last deletions included
	db.stopBg()

	// Statements before their connections.
	var errs []error
	if db.wstmts != nil {
		errs = append(errs, db.wstmts.close())
	}
	for _, wr := range db.writers {
		if wr.conn != nil {
			errs = append(errs, wr.conn.Close())
		}
	}
	errs = append(errs, db.writer.Close())
	if db.rstmts != nil {
		errs = append(errs, db.rstmts.close())
	}
	errs = append(errs, db.readers.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close %s: %w", db.d.name(), err)
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
	if err := db.health.check(); err != nil {
		return err
	}
	return db.readChecked(ctx, snapshot, fn)
}

// readChecked is read without the fast answer while the database is down.
func (db *DB) readChecked(ctx context.Context, snapshot bool, fn func(s *session) error) error {
	if db.isClosed() {
		return errClosed()
	}
	err := db.readIn(ctx, snapshot, fn)
	if err != nil && db.isClosed() {
		// Closed while reading: the pool's error says nothing more.
		return errClosed()
	}
	if err != nil && ctx.Err() == nil {
		// The caller's own cancellation stays what it is.
		err = db.storageError(err)
	}
	return err
}

func (db *DB) readIn(ctx context.Context, snapshot bool, fn func(s *session) error) error {
	s := &session{ctx: ctx, d: db.d, cache: db.rstmts}
	opts := &sql.TxOptions{ReadOnly: true}
	if db.d.postgres {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, db.timeout)
		defer cancel()
		s = &session{ctx: ctx, d: db.d, q: db.readers}
		// At READ COMMITTED each statement would see its own snapshot.
		opts.Isolation = sql.LevelRepeatableRead
	}
	if !snapshot {
		return fn(s)
	}
	tx, err := db.readers.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin read: %w", err)
	}
	// A read-only transaction has nothing to commit; rolling back ends it.
	defer tx.Rollback()
	if db.d.postgres {
		s.q = tx
	} else {
		s.tx = tx
	}
	return fn(s)
}

// Ping reports whether the database answers a query on the read pool. On
// PostgreSQL it asks even while the database is known to be down, and an
// answer ends that state at once.
func (db *DB) Ping(ctx context.Context) error {
	defer db.observeSince("ping", time.Now())
	err := db.readChecked(ctx, false, func(s *session) error {
		var one int
		if err := s.queryRow(`SELECT 1`).Scan(&one); err != nil {
			return fmt.Errorf("ping: %w", err)
		}
		return nil
	})
	if err == nil {
		db.health.up()
	}
	return err
}
