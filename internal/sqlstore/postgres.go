package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/parley-chat/parley"
)

const (
	// maxConnectTimeout bounds a connection attempt to PostgreSQL.
	maxConnectTimeout = 5 * time.Second
	// pingEvery is how often a DB whose database is down asks again.
	pingEvery = 250 * time.Millisecond
)

// OpenPostgres opens the PostgreSQL database at url
// (postgres://user@host:port/db?sslmode=disable, with &search_path=schema
// to use a schema other than public), applies the migrations it lacks, and
// connects and starts Options.Writers writers (see writer.warm). Several
// nodes may open the same database at the same moment: one applies the
// migrations while the others wait (an advisory lock), then find them
// applied. ctx bounds only the opening.
//
// Events of committed writes go to pub, which may be nil, as for Open.
// Publish is called from the writer goroutines, one at a time and in commit
// order; with Options.Outbox, pub may also implement
// interface{ Flush(ctx context.Context) error }, which says that what was
// published has reached its destination (see the package comment).
func OpenPostgres(ctx context.Context, url string, pub parley.Publisher, opts Options) (_ *DB, err error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	db, err := newDB(&dialect{postgres: true}, pub, opts)
	if err != nil {
		return nil, err
	}
	if cfg.ConnectTimeout <= 0 || cfg.ConnectTimeout > maxConnectTimeout {
		cfg.ConnectTimeout = min(db.timeout, maxConnectTimeout)
	}
	writers := opts.Writers
	if writers <= 0 {
		writers = defaultWriters
	}

	db.writer = stdlib.OpenDB(*cfg)
	db.writer.SetMaxOpenConns(writers)
	db.writer.SetMaxIdleConns(writers)
	db.readers = stdlib.OpenDB(*cfg)
	n := max(8, 2*runtime.GOMAXPROCS(0))
	db.readers.SetMaxOpenConns(n)
	db.readers.SetMaxIdleConns(n)
	db.readers.SetConnMaxIdleTime(5 * time.Minute)
	defer func() {
		if err != nil {
			db.writer.Close()
			db.readers.Close()
		}
	}()
	if err := migratePostgres(ctx, db.readers); err != nil {
		return nil, err
	}

	db.health = &health{wake: make(chan struct{}, 1)}
	if opts.Outbox && pub != nil {
		db.outbox = newOutbox(db, opts)
	}
	ws := make([]*writer, writers)
	for i := range ws {
		ws[i] = &writer{db: db}
		ws[i].w.session = session{d: db.d}
	}
	defer func() {
		if err != nil {
			for _, wr := range ws {
				wr.drop()
			}
		}
	}()
	warmCtx, cancel := context.WithTimeout(ctx, db.timeout)
	defer cancel()
	for _, wr := range ws {
		if err := wr.warm(warmCtx); err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
	}

	db.background.Add(1)
	go db.pinger()
	if db.outbox != nil {
		db.background.Add(1)
		go db.outbox.run()
	}
	db.start(ws...)
	return db, nil
}

// warm connects the writer and runs the statements of every message once,
// with ids that match nothing, so that neither the first sends nor the
// first receipts of a node wait for a connection, for the server process
// of the connection to start and load what it needs of the catalog, or for
// their statements to be parsed and planned, all while holding a
// conversation's lock. It also checks that those statements work.
func (wr *writer) warm(ctx context.Context) error {
	wr.w.ctx = ctx
	defer func() { wr.w.ctx = nil }()
	if err := wr.connect(); err != nil {
		return err
	}
	none := ""
	var stale bool
	var list sql.NullString
	var seq sql.NullInt64
	var original nullMessage
	if err := wr.w.queryRow(wr.db.qSend, none, none, none, none, string(parley.KindText), none, 0).
		Scan(append([]any{&stale, &list, &seq}, original.dest()...)...); err != nil {
		return fmt.Errorf("warm send: %w", err)
	}
	for _, q := range []string{qDelivered, qRead} {
		var member bool
		var to sql.NullInt64
		if err := wr.w.queryRow(q, none, none, 0).Scan(&stale, &member, &to, &list); err != nil {
			return fmt.Errorf("warm receipt: %w", err)
		}
	}
	if wr.db.outbox != nil {
		rows, err := wr.w.query(qOutboxInsert, []string{})
		if err != nil {
			return fmt.Errorf("warm outbox: %w", err)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("warm outbox: %w", err)
		}
	}
	return nil
}

// health tracks whether PostgreSQL answers. A nil *health (SQLite) is
// always up.
type health struct {
	mu sync.Mutex // guards cause
	// cause is why the database was last found unreachable; nil while it
	// is up.
	cause error
	// wake tells the pinger that the database went down.
	wake chan struct{}
}

// check answers unavailable while the database is down.
func (h *health) check() error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cause != nil {
		return errUnavailable(h.cause)
	}
	return nil
}

// down records that the database did not answer, and wakes the pinger.
func (h *health) down(cause error) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cause == nil {
		h.cause = cause
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
}

// up records that the database answered.
func (h *health) up() {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cause = nil
}

func (h *health) isDown() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cause != nil
}

// pinger is the goroutine that, while the database is down, pings it until
// it answers. It returns when stopBackground is closed.
func (db *DB) pinger() {
	defer db.background.Done()
	tick := time.NewTicker(pingEvery)
	defer tick.Stop()
	for {
		select {
		case <-db.stopBackground:
			return
		case <-db.health.wake:
		}
		for db.health.isDown() {
			select {
			case <-db.stopBackground:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), min(db.timeout, 2*time.Second))
			err := db.readers.PingContext(ctx)
			cancel()
			if err == nil {
				db.health.up()
				db.log.Info("sqlstore: postgres answers again")
			}
		}
	}
}

// errUnavailable is the answer to an operation that could not reach the
// database.
func errUnavailable(cause error) error {
	return &parley.Error{Code: parley.CodeUnavailable, Message: "storage unavailable", Err: cause}
}

// storageError turns an error of the database into what callers get: on
// PostgreSQL, a failure to reach it is unavailable (and marks it down);
// anything else is returned as it is.
func (db *DB) storageError(err error) error {
	if err == nil || !db.d.postgres {
		return err
	}
	var pe *parley.Error
	if errors.As(err, &pe) && pe.Code == parley.CodeUnavailable {
		return err
	}
	if isUnreachable(err) {
		db.health.down(err)
		return errUnavailable(err)
	}
	return err
}

// isUnreachable reports whether err says that PostgreSQL could not be
// reached or did not answer in time, rather than that it refused a
// statement.
func isUnreachable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// 08: connection exception; 53: insufficient resources (too many
		// connections, out of memory or disk); 57: operator intervention
		// (shutdown, cancelled by our timeout).
		switch pgErr.Code[:2] {
		case "08", "53", "57":
			return true
		}
		return false
	}
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	return errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.As(err, &netErr) ||
		errors.As(err, &connectErr) ||
		pgconn.Timeout(err) ||
		pgconn.SafeToRetry(err)
}

// isRetryable reports whether err is PostgreSQL's deadlock or
// serialization failure, or errRaced: the transaction lost a race and may
// run again.
func isRetryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.Is(err, errRaced) ||
		errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// isUniqueViolation reports whether err is PostgreSQL's unique_violation.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}
