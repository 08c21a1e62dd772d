package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley"
)

// Request states. A request moves from queued to taken (the writer will
// apply it) or to cancelled (its caller gave up first), exactly once.
const (
	queued int32 = iota
	taken
	cancelled
)

// request is one write waiting for the writer goroutine.
type request struct {
	ctx context.Context
	// apply makes the change inside the batch's transaction, within a
	// savepoint of its own, and records its results in variables of the
	// caller's closure. An error rolls back this request alone and is what
	// the caller gets. A request that must commit a change and still answer
	// an error (refresh-token reuse) returns nil and reports its error
	// through the closure.
	apply func(w *writeTx) error
	state atomic.Int32
	// done receives the outcome once; it is buffered so the writer never
	// waits for a caller.
	done chan error
	err  error
}

// writeTx is what a request's apply sees: the writer's session inside the
// open transaction, the time of this write, and the events to publish if
// the transaction commits.
type writeTx struct {
	session
	now    parley.Time
	events []*parley.Event
}

// publish queues ev to be published after the commit, in order.
func (w *writeTx) publish(ev *parley.Event) { w.events = append(w.events, ev) }

// write queues apply for the writer goroutine and waits for its outcome.
// If ctx ends before the writer takes the request, the request is dropped
// and ctx's error returned; once taken it is applied, and write waits for
// the commit (a batch is short) so that its answer is always the truth.
func (db *DB) write(ctx context.Context, op string, apply func(w *writeTx) error) error {
	defer db.observeSince(op, time.Now())
	if err := ctx.Err(); err != nil {
		return err
	}
	req := &request{ctx: ctx, apply: apply, done: make(chan error, 1)}

	db.mu.RLock()
	if db.closed {
		db.mu.RUnlock()
		return errClosed()
	}
	select {
	case db.reqs <- req:
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

// run is the writer goroutine. It returns when reqs is closed and drained.
func (db *DB) run() {
	defer close(db.done)
	// Statements run with no deadline or cancellation: a write once taken
	// is applied. (A context that can end would also cost database/sql a
	// goroutine per query.)
	w := &writeTx{session: session{ctx: context.Background(), cache: db.wstmts}}
	batch := make([]*request, 0, db.maxBatch)
	for {
		req, ok := <-db.reqs
		if !ok {
			return
		}
		batch = append(batch[:0], req)
	drain:
		for len(batch) < db.maxBatch {
			select {
			case req, ok := <-db.reqs:
				if !ok {
					break drain // the next receive returns
				}
				batch = append(batch, req)
			default:
				break drain
			}
		}
		db.commit(w, batch)
		clear(batch) // drop references to finished requests
	}
}

// commit applies the batch in one transaction, publishes the events of the
// requests that succeeded, and answers every caller.
func (db *DB) commit(w *writeTx, batch []*request) {
	start := time.Now()
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

	defer func() {
		clear(w.events) // drop references to published events
		w.events = w.events[:0]
	}()
	if err := db.applyBatch(w, live); err != nil {
		// The transaction is gone: nothing of the batch was applied.
		db.log.Error("sqlstore: write batch failed", "err", err, "writes", len(live))
		for _, req := range live {
			req.done <- err
		}
		return
	}
	db.observeSince("commit", start)

	if db.pub != nil {
		for _, ev := range w.events {
			if err := db.pub.Publish(db.bg, ev); err != nil {
				db.log.Error("sqlstore: publish failed", "err", err, "type", ev.Type)
			}
		}
	}
	for _, req := range live {
		req.done <- req.err
	}
}

// applyBatch runs every request in its own savepoint inside one
// BEGIN IMMEDIATE transaction and commits. It returns an error only when the
// transaction as a whole failed; each request's own error is in req.err.
func (db *DB) applyBatch(w *writeTx, live []*request) (err error) {
	if _, err := w.exec(`BEGIN IMMEDIATE`); err != nil {
		return fmt.Errorf("begin write: %w", err)
	}
	defer func() {
		if err != nil {
			// Also rolls back after a failed COMMIT, which may leave the
			// transaction open. An error here means there was none left.
			w.exec(`ROLLBACK`)
		}
	}()
	for _, req := range live {
		mark := len(w.events)
		w.now = parley.Now()
		if _, err := w.exec(`SAVEPOINT request`); err != nil {
			return fmt.Errorf("savepoint: %w", err)
		}
		req.err = req.apply(w)
		if req.err == nil {
			if _, err := w.exec(`RELEASE request`); err != nil {
				return fmt.Errorf("release savepoint: %w", err)
			}
			continue
		}
		w.events = w.events[:mark]
		if _, err := w.exec(`ROLLBACK TO request`); err != nil {
			return fmt.Errorf("rollback to savepoint: %w (after %w)", err, req.err)
		}
		if _, err := w.exec(`RELEASE request`); err != nil {
			return fmt.Errorf("release savepoint: %w", err)
		}
		if !isClientError(req.err) {
			db.log.Error("sqlstore: write failed", "err", req.err)
		}
	}
	if _, err := w.exec(`COMMIT`); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// isClientError reports whether err is a client's mistake (a *parley.Error
// other than internal) rather than a failure worth logging.
func isClientError(err error) bool {
	var pe *parley.Error
	return errors.As(err, &pe) && pe.Code != parley.CodeInternal
}
