package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/parley-chat/parley"
)

// The event outbox (PostgreSQL, Options.Outbox). A writer inserts the events
// of its batch in the batch's transaction (insert) and publishes them after
// the commit; the outbox's goroutine (run) deletes the rows of those
// published once the Publisher's Flush has succeeded, and relays the rows
// that nobody published in time. See the package comment.

const (
	defaultRelayAfter = 5 * time.Second
	defaultRelayEvery = time.Second
	// outboxBatch is the most rows relayed, or deleted, in one statement.
	outboxBatch = 500
	// maxPendingDeletes bounds the published rows waiting for deletion
	// while the database is unreachable; past it they are forgotten, and
	// relayed (again) later instead.
	maxPendingDeletes = 100_000
)

// flusher is what a Publisher implements when publishing is asynchronous:
// Flush returns once everything published before it has reached its
// destination (a bus's server), or an error if that is not known.
type flusher interface {
	Flush(ctx context.Context) error
}

// outbox deletes and relays the rows of the outbox table.
type outbox struct {
	db         *DB
	flush      flusher // nil if the Publisher has no Flush
	relayAfter time.Duration
	relayEvery time.Duration

	mu sync.Mutex // guards pending
	// pending are the rows whose events were published, to delete.
	pending []int64
	// wake tells run that pending has rows.
	wake chan struct{}
}

func newOutbox(db *DB, opts Options) *outbox {
	o := &outbox{
		db:         db,
		relayAfter: opts.OutboxRelayAfter,
		relayEvery: opts.OutboxRelayEvery,
		wake:       make(chan struct{}, 1),
	}
	if f, ok := db.pub.(flusher); ok {
		o.flush = f
	}
	if o.relayAfter <= 0 {
		o.relayAfter = defaultRelayAfter
	}
	if o.relayEvery <= 0 {
		o.relayEvery = defaultRelayEvery
	}
	return o
}

// qOutboxInsert inserts the events of a batch (?: a text[] of JSON) and
// returns the id of each with its place in the array. The ids are drawn in
// a materialized CTE, evaluated once, so that the ids inserted and those
// returned are the same.
const qOutboxInsert = `WITH ids AS MATERIALIZED (
		SELECT nextval('outbox_id_seq') AS id, e, n
		FROM unnest(CAST(? AS text[])) WITH ORDINALITY AS x(e, n)),
	ins AS (INSERT INTO outbox (id, event) SELECT id, CAST(e AS json) FROM ids)
	SELECT id, n FROM ids`

// insert writes the events of w to the outbox, in its transaction, and
// records their rows in w.outboxIDs.
func (o *outbox) insert(w *writeTx) error {
	texts := make([]string, len(w.events))
	for i, ev := range w.events {
		b, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("outbox: encode %s: %w", ev.Type, err)
		}
		texts[i] = string(b)
	}
	rows, err := w.query(qOutboxInsert, texts)
	if err != nil {
		return fmt.Errorf("outbox: insert: %w", err)
	}
	defer rows.Close()
	w.outboxIDs = append(w.outboxIDs[:0], make([]int64, len(texts))...)
	got := 0
	for rows.Next() {
		var id, n int64
		if err := rows.Scan(&id, &n); err != nil {
			return fmt.Errorf("outbox: insert: %w", err)
		}
		if n < 1 || n > int64(len(texts)) {
			return fmt.Errorf("outbox: insert returned place %d of %d", n, len(texts))
		}
		w.outboxIDs[n-1] = id
		got++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("outbox: insert: %w", err)
	}
	if got != len(texts) {
		return fmt.Errorf("outbox: inserted %d rows for %d events", got, len(texts))
	}
	return nil
}

// published queues the rows of published events for deletion.
func (o *outbox) published(ids []int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.pending)+len(ids) > maxPendingDeletes {
		o.db.log.Error("sqlstore: outbox deletions backlog full; the rows will be relayed", "rows", len(ids))
		return
	}
	o.pending = append(o.pending, ids...)
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// run is the outbox's goroutine: it deletes published rows as they come,
// relays lost ones every relayEvery, and on stopBackground deletes what it
// can one last time and returns.
func (o *outbox) run() {
	defer o.db.background.Done()
	tick := time.NewTicker(o.relayEvery)
	defer tick.Stop()
	for {
		select {
		case <-o.db.stopBackground:
			o.deletePublished()
			return
		case <-o.wake:
			o.deletePublished()
		case <-tick.C:
			o.relay()
		}
	}
}

// deletePublished flushes the Publisher and deletes the pending rows. If
// Flush fails, the rows stay (and will be relayed): their events may not
// have left this node.
func (o *outbox) deletePublished() {
	o.mu.Lock()
	ids := o.pending
	o.pending = nil
	o.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.db.timeout)
	defer cancel()
	if o.flush != nil {
		if err := o.flush.Flush(ctx); err != nil {
			o.db.log.Error("sqlstore: outbox: flush failed; the rows will be relayed", "err", err, "rows", len(ids))
			return
		}
	}
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), outboxBatch)]
		if err := o.deleteRows(ctx, o.db.readers, chunk); err != nil {
			o.db.log.Error("sqlstore: outbox: delete failed", "err", o.db.storageError(err), "rows", len(ids))
			// Try again with the next ones; published is bounded.
			o.mu.Lock()
			o.pending = append(ids, o.pending...)
			o.mu.Unlock()
			return
		}
		ids = ids[len(chunk):]
	}
}

func (o *outbox) deleteRows(ctx context.Context, q querier, ids []int64) error {
	s := session{ctx: ctx, d: o.db.d, q: q}
	if _, err := s.exec(`DELETE FROM outbox WHERE id `+o.db.d.inInt64List(), int64List(ids)); err != nil {
		return fmt.Errorf("outbox: delete: %w", err)
	}
	return nil
}

// relay publishes the rows older than relayAfter, batch after batch while
// whole batches go.
func (o *outbox) relay() {
	for {
		select {
		case <-o.db.stopBackground:
			return
		default:
		}
		n, err := o.relayBatch()
		if err != nil {
			o.db.log.Error("sqlstore: outbox: relay failed", "err", o.db.storageError(err))
			return
		}
		if n < outboxBatch {
			return
		}
	}
}

// qOutboxClaim claims the outbox rows older than ? ms, by the database's
// clock, skipping those another node is relaying.
const qOutboxClaim = `SELECT id, event FROM outbox
	WHERE created_at < CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) - ?
	ORDER BY id LIMIT ?`

// relayBatch claims up to outboxBatch lost rows, publishes their events,
// flushes, and deletes them, in one transaction: a row another node holds
// is skipped, and a row is deleted only once its event has gone. It
// returns how many rows it deleted.
func (o *outbox) relayBatch() (int, error) {
	db := o.db
	if err := db.health.check(); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), db.timeout)
	defer cancel()
	tx, err := db.readers.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return 0, fmt.Errorf("outbox relay: begin: %w", err)
	}
	defer tx.Rollback() // after Commit, does nothing
	s := session{ctx: ctx, d: db.d, q: tx}
	rows, err := s.query(qOutboxClaim+db.d.skipLocked("outbox"), o.relayAfter.Milliseconds(), outboxBatch)
	if err != nil {
		return 0, fmt.Errorf("outbox relay: claim: %w", err)
	}
	type claimed struct {
		id    int64
		event []byte
	}
	var claims []claimed
	for rows.Next() {
		var c claimed
		if err := rows.Scan(&c.id, &c.event); err != nil {
			rows.Close()
			return 0, fmt.Errorf("outbox relay: claim: %w", err)
		}
		claims = append(claims, c)
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return 0, fmt.Errorf("outbox relay: claim: %w", err)
	}
	if len(claims) == 0 {
		return 0, nil
	}

	var done []int64
	for _, c := range claims {
		ev := new(parley.Event)
		if err := json.Unmarshal(c.event, ev); err != nil {
			// It can never be published: keeping it would stop nothing
			// but would come back every time.
			db.log.Error("sqlstore: outbox relay: dropping an undecodable event", "err", err, "id", c.id)
			done = append(done, c.id)
			continue
		}
		if err := db.pub.Publish(db.bg, ev); err != nil {
			db.log.Error("sqlstore: outbox relay: publish failed", "err", err, "type", ev.Type)
			continue
		}
		done = append(done, c.id)
	}
	if len(done) == 0 {
		return 0, nil
	}
	if o.flush != nil {
		if err := o.flush.Flush(ctx); err != nil {
			return 0, fmt.Errorf("outbox relay: flush: %w", err)
		}
	}
	if err := o.deleteRows(ctx, tx, done); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("outbox relay: commit: %w", err)
	}
	db.log.Warn("sqlstore: outbox: relayed events a node had not published", "events", len(done))
	return len(done), nil
}
