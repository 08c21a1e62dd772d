package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley"
)

// Request states. A request moves from queued to taken (a writer will
// apply it) or to cancelled (its caller gave up first), exactly once.
const (
	queued int32 = iota
	taken
	cancelled
)

// maxRetries is how many times a request that lost a deadlock or a
// serialization conflict (PostgreSQL) is run again, alone, before its
// caller is told the storage is busy.
const maxRetries = 5

// request is one write waiting for a writer goroutine.
type request struct {
	ctx context.Context
	// key orders the requests of a batch on PostgreSQL (see lockKey), so
	// that batches on different connections and nodes take their locks in
	// the same order, and picks the request's writer (queueFor). Empty for
	// a request that waits for no lock.
	key string
	// apply makes the change inside the batch's transaction (within a
	// savepoint of its own when the batch runs with savepoints, see
	// applyAll) and records its results in variables of the caller's
	// closure. An error rolls back this request alone and is what the
	// caller gets. A request that must commit a change and still answer an
	// error (refresh-token reuse) returns nil and reports its error through
	// the closure. apply may run more than once (the batch run again after
	// another request failed, a retry after a deadlock: only the last run
	// commits), so it must set every result it records on each run, and do
	// nothing outside the transaction.
	apply func(w *writeTx) error
	state atomic.Int32
	// done receives the outcome once; it is buffered so the writer never
	// waits for a caller.
	done chan error
	err  error
	// retry is set when apply lost a deadlock or a serialization conflict:
	// it is rolled back and must run again in a transaction of its own.
	retry bool
}

// writeTx is what a request's apply sees: the writer's session inside the
// open transaction, the time of this write, and the events to publish if
// the transaction commits.
type writeTx struct {
	session
	now    parley.Time
	events []*parley.Event
	// outboxIDs are the outbox rows of events, index for index, when the
	// DB has an outbox.
	outboxIDs []int64
}

// publish queues ev to be published after the commit, in order.
func (w *writeTx) publish(ev *parley.Event) { w.events = append(w.events, ev) }

// Lock keys, the sort order of a PostgreSQL batch: every request that
// locks a row names it here, so that all batches lock in one order.
// Conversations come first: most writes lock one. The key also picks the
// request's writer (see queueFor). Kind "c" is lockConversationKey's.
func lockKey(kind, id string) string { return kind + " " + id }

// lockConversationKey is the key of a write that locks a conversation in
// mode. Of the writes of one conversation in a batch, those that take the
// row FOR UPDATE come first: a batch that took it FOR SHARE first and then
// wanted it FOR UPDATE would deadlock with another batch doing the same.
func lockConversationKey(id string, mode lockMode) string {
	if mode == forUpdate {
		return "c " + id + " 0"
	}
	return "c " + id + " 1"
}

// shardKey is the part of a lock key that picks the writer: the whole key,
// except that both modes of a conversation's key pick the same writer.
func shardKey(key string) string {
	if strings.HasPrefix(key, "c ") {
		return key[:len(key)-len(" 0")]
	}
	return key
}

// queueFor returns the queue of the writer that takes a request with lock
// key key. On PostgreSQL the requests of one key (one conversation, in
// either mode) always go to the same writer: the writers of a process then
// never wait for each other's row locks (which they would hold one batch
// after the other, each also waiting for the commit of the one before),
// and the writes of a busy conversation are committed together, in one
// batch, instead of one per writer. Requests without a key go to each
// writer in turn. SQLite has one writer.
func (db *DB) queueFor(key string) chan<- *request {
	qs := db.queues
	n := uint64(len(qs))
	switch {
	case n == 1:
		return qs[0]
	case key == "":
		return qs[db.spread.Add(1)%n]
	default:
		return qs[maphash.String(db.seed, shardKey(key))%n]
	}
}

// write queues apply for a writer goroutine and waits for its outcome.
// key is the request's lock key (see request.key). If ctx ends before a
// writer takes the request, the request is dropped and ctx's error
// returned; once taken it is applied, and write waits for the commit (a
// batch is short) so that its answer is always the truth.
func (db *DB) write(ctx context.Context, op, key string, apply func(w *writeTx) error) error {
	defer db.observeSince(op, time.Now())
	return db.writeUnobserved(ctx, key, apply)
}

// writeUnobserved is write for an operation that observes its latency
// itself.
func (db *DB) writeUnobserved(ctx context.Context, key string, apply func(w *writeTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := db.health.check(); err != nil {
		return err
	}
	req := &request{ctx: ctx, key: key, apply: apply, done: make(chan error, 1)}

	db.mu.RLock()
	if db.closed {
		db.mu.RUnlock()
		return errClosed()
	}
	select {
	case db.queueFor(key) <- req:
		db.mu.RUnlock()
	case <-ctx.Done():
		db.mu.RUnlock()
		return ctx.Err()
	}

	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		if req.state.CompareAndSwap(queued, cancelled) {
			return ctx.Err()
		}
		return <-req.done
	}
}

// writer is one writer goroutine with its connection and its queue: SQLite
// has one, PostgreSQL Options.Writers.
type writer struct {
	db *DB
	// reqs is the writer's queue (see queueFor), closed by Close.
	reqs chan *request
	// conn is the connection of this writer. On PostgreSQL it is nil after
	// a failed transaction until the next batch takes a fresh one, since a
	// failure may have broken it.
	conn *sql.Conn
	w    writeTx
	// careful makes the writer's batches of several requests run each in
	// a savepoint (see applyAll): from a batch in which one failed until a
	// batch in which none did.
	careful bool
}

// run is the writer goroutine. It returns when its queue is closed and
// drained.
func (wr *writer) run() {
	batch := make([]*request, 0, wr.db.maxBatch)
	for {
		req, ok := <-wr.reqs
		if !ok {
			return
		}
		batch = append(batch[:0], req)
	drain:
		for len(batch) < wr.db.maxBatch {
			select {
			case req, ok := <-wr.reqs:
				if !ok {
					break drain // the next receive returns
				}
				batch = append(batch, req)
			default:
				break drain
			}
		}
		wr.commit(batch)
		clear(batch) // drop references to finished requests
	}
}

// commit applies the batch in one transaction, publishes the events of the
// requests that succeeded, and answers every caller. Requests that lost a
// deadlock are run again, each in a transaction of its own.
func (wr *writer) commit(batch []*request) {
	db := wr.db
	// Take the requests whose callers are still waiting; the others are
	// never applied.
	live := batch[:0]
	for _, req := range batch {
		if req.ctx.Err() != nil {
			if req.state.CompareAndSwap(queued, cancelled) {
				req.done <- req.ctx.Err()
			}
			continue
		}
		if req.state.CompareAndSwap(queued, taken) {
			live = append(live, req)
		}
	}
	if len(live) == 0 {
		return
	}
	if db.d.postgres {
		slices.SortStableFunc(live, func(a, b *request) int { return cmp.Compare(a.key, b.key) })
	}
	retry := wr.attempt(live)
	for i := 0; len(retry) > 0; i++ {
		if i == maxRetries {
			for _, req := range retry {
				req.done <- &parley.Error{Code: parley.CodeUnavailable, Message: "storage busy, try again", Err: req.err}
			}
			return
		}
		// Back off a little, at random, so that the requests that
		// deadlocked do not meet again at once.
		time.Sleep(time.Duration(1+rand.IntN(10<<i)) * time.Millisecond)
		var again []*request
		for _, req := range retry {
			again = append(again, wr.attempt([]*request{req})...)
		}
		retry = again
	}
}

// attempt runs live in one transaction, publishes the events of the
// requests that succeeded, answers their callers, and returns the requests
// to run again (deadlocks, PostgreSQL only).
func (wr *writer) attempt(live []*request) (retry []*request) {
	db, w := wr.db, &wr.w
	start := time.Now()
	defer func() {
		clear(w.events) // drop references to published events
		w.events = w.events[:0]
		w.outboxIDs = w.outboxIDs[:0]
	}()
	if db.d.postgres {
		ctx, cancel := context.WithTimeout(context.Background(), db.timeout)
		defer cancel()
		w.ctx = ctx
	}
	savepoints := len(live) > 1 && wr.careful
	err := wr.begin(savepoints)
	commit, redo := false, false
	if err == nil {
		commit, redo, err = wr.applyAll(live, savepoints)
	}
	if redo {
		// One of several failed, and took the others with it: run them
		// all again, each in a savepoint.
		wr.careful = true
		if err = wr.begin(true); err == nil {
			commit, _, err = wr.applyAll(live, true)
		}
	}
	if err == nil && commit {
		// The ticket is taken before COMMIT: see turnstile.
		var ticket uint64
		ordered := len(w.events) > 0
		if ordered {
			ticket = db.order.take()
		}
		if _, err = w.exec(`COMMIT`); err != nil {
			// A failed COMMIT may leave the transaction open (SQLite);
			// an error here means there was none left.
			w.exec(`ROLLBACK`)
			err = fmt.Errorf("commit: %w", err)
		}
		if ordered {
			db.order.wait(ticket)
			if err == nil {
				wr.publishEvents()
			}
			db.order.done(ticket)
		}
	}
	if err != nil {
		wr.drop()
		if db.d.postgres && isRetryable(err) {
			return live
		}
		// The transaction is gone: nothing of the batch was applied.
		err = db.storageError(err)
		db.log.Error("sqlstore: write batch failed", "err", err, "writes", len(live))
		for _, req := range live {
			req.done <- err
		}
		return nil
	}
	if commit {
		db.observeSince("commit", start)
	}
	for _, req := range live {
		if req.retry {
			retry = append(retry, req)
			continue
		}
		req.done <- req.err
	}
	return retry
}

// connect makes sure the writer has a connection (PostgreSQL), failing fast
// while the database is known to be unreachable.
func (wr *writer) connect() error {
	db := wr.db
	if !db.d.postgres {
		return nil
	}
	if err := db.health.check(); err != nil {
		return err
	}
	if wr.conn != nil {
		return nil
	}
	conn, err := db.writer.Conn(wr.w.ctx)
	if err != nil {
		return fmt.Errorf("writer connection: %w", err)
	}
	wr.conn, wr.w.q = conn, conn
	return nil
}

// begin starts the batch's transaction, and with savepoint also sets the
// savepoint of its first request (see applyAll), in the same round trip on
// PostgreSQL. There a connection that broke while idle (the server
// restarted, the network dropped it) is found out here, before anything was
// sent: the writer takes a fresh one and begins again, rather than fail a
// batch for a connection it no longer needed.
func (wr *writer) begin(savepoint bool) error {
	err := wr.connect()
	if err != nil {
		return err
	}
	d := wr.db.d
	query := d.beginWrite()
	if savepoint && d.postgres {
		query += `; SAVEPOINT request` // statements without arguments: one round trip
	}
	_, err = wr.w.exec(query)
	if err != nil && d.postgres && errors.Is(err, driver.ErrBadConn) {
		wr.drop()
		if err = wr.connect(); err != nil {
			return err
		}
		_, err = wr.w.exec(query)
	}
	if err != nil {
		return fmt.Errorf("begin write: %w", err)
	}
	if savepoint && !d.postgres {
		if _, err := wr.w.exec(`SAVEPOINT request`); err != nil {
			wr.w.exec(`ROLLBACK`)
			return fmt.Errorf("savepoint: %w", err)
		}
	}
	return nil
}

// drop gives up the writer's connection after a failed transaction
// (PostgreSQL), so that the next batch starts on a sound one; on SQLite the
// one connection stays.
func (wr *writer) drop() {
	if !wr.db.d.postgres || wr.conn == nil {
		return
	}
	// ErrBadConn from Raw makes database/sql close the connection instead
	// of returning it to the pool.
	wr.conn.Raw(func(any) error { return driver.ErrBadConn })
	wr.conn.Close()
	wr.conn, wr.w.q = nil, nil
}

// applyAll runs the requests in the transaction begun, then writes the
// events to the outbox if there is one, and reports whether there is
// anything to commit.
//
// Without savepoints, the requests run one after the other, as one: if one
// fails, the transaction is rolled back. A request alone is then answered
// (nothing is left to commit); of several, applyAll asks for the batch to
// be run again (redo) with savepoints. With savepoints, each request runs
// in a savepoint of its own (the first set by begin), so that a failing one
// rolls back alone: the savepoint of one that succeeded is released along
// with setting the next (one round trip on PostgreSQL), the last is left
// for COMMIT to release, and ROLLBACK TO leaves the savepoint set for the
// next request. A batch run so in which nothing failed makes the writer
// try without savepoints again.
//
// applyAll returns an error only when the transaction as a whole failed,
// and then has rolled it back; each request's own error is in req.err.
func (wr *writer) applyAll(live []*request, savepoints bool) (commit, redo bool, err error) {
	db, w := wr.db, &wr.w
	defer func() {
		if err != nil {
			w.exec(`ROLLBACK`)
		}
	}()
	if !savepoints {
		for _, req := range live {
			req.err, req.retry = nil, false
			w.now = parley.Now()
			if req.err = req.apply(w); req.err == nil {
				continue
			}
			w.events = w.events[:0]
			if _, err := w.exec(`ROLLBACK`); err != nil {
				return false, false, fmt.Errorf("rollback: %w (after %w)", err, req.err)
			}
			if len(live) > 1 {
				return false, true, nil
			}
			wr.failed(req)
			return false, false, nil
		}
		return true, false, wr.insertOutbox()
	}
	// set is whether the savepoint "request" is set, with nothing done
	// since: begin set the first.
	set := true
	failures := false
	for i, req := range live {
		req.err, req.retry = nil, false
		mark := len(w.events)
		w.now = parley.Now()
		if !set {
			if _, err := w.exec(`SAVEPOINT request`); err != nil {
				return false, false, fmt.Errorf("savepoint: %w", err)
			}
		}
		set = false
		req.err = req.apply(w)
		if req.err == nil {
			switch {
			case i == len(live)-1:
			case db.d.postgres:
				if _, err := w.exec(`RELEASE request; SAVEPOINT request`); err != nil {
					return false, false, fmt.Errorf("release savepoint: %w", err)
				}
				set = true
			default:
				if _, err := w.exec(`RELEASE request`); err != nil {
					return false, false, fmt.Errorf("release savepoint: %w", err)
				}
			}
			continue
		}
		failures = true
		w.events = w.events[:mark]
		// The savepoint stays set after ROLLBACK TO, for the next request.
		if _, err := w.exec(`ROLLBACK TO request`); err != nil {
			return false, false, fmt.Errorf("rollback to savepoint: %w (after %w)", err, req.err)
		}
		set = true
		wr.failed(req)
	}
	wr.careful = failures
	return true, false, wr.insertOutbox()
}

// failed marks a request whose apply failed to run again if it lost a race
// (PostgreSQL), and logs its error unless it is the client's.
func (wr *writer) failed(req *request) {
	switch {
	case wr.db.d.postgres && isRetryable(req.err):
		req.retry = true
	case !isClientError(req.err):
		wr.db.log.Error("sqlstore: write failed", "err", req.err)
	}
}

// insertOutbox writes the events of the transaction to the outbox, if the
// DB has one.
func (wr *writer) insertOutbox() error {
	if wr.db.outbox == nil || len(wr.w.events) == 0 {
		return nil
	}
	return wr.db.outbox.insert(&wr.w)
}

// publishEvents publishes the events of the committed transaction, in
// order, and hands the outbox rows of those published to the outbox.
func (wr *writer) publishEvents() {
	db, w := wr.db, &wr.w
	if db.pub == nil {
		return
	}
	var published []int64
	for i, ev := range w.events {
		if err := db.pub.Publish(db.bg, ev); err != nil {
			db.log.Error("sqlstore: publish failed", "err", err, "type", ev.Type)
			continue // its outbox row stays, for the relay
		}
		if db.outbox != nil {
			published = append(published, w.outboxIDs[i])
		}
	}
	if len(published) > 0 {
		db.outbox.published(published)
	}
}

// isClientError reports whether err is a client's mistake (a *parley.Error
// other than internal) rather than a failure worth logging.
func isClientError(err error) bool {
	var pe *parley.Error
	return errors.As(err, &pe) && pe.Code != parley.CodeInternal
}
