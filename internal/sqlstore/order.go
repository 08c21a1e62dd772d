package sqlstore

import "sync"

// turnstile makes the writers publish in commit order. A writer whose
// transaction has events takes a ticket just before its COMMIT, and
// publishes (or, if the commit failed, does nothing) only when every lower
// ticket is done. Two transactions that write the same conversation cannot
// both be before their COMMIT at once: the second waits for the first's
// row lock (on SQLite, for the only writer), which the first releases only
// by committing after it took its ticket. So the events of one
// conversation, message.new in increasing seq above all, are published in
// the order they were committed, however many writers there are.
type turnstile struct {
	mu   sync.Mutex // guards next and turn
	cond sync.Cond  // signalled when turn moves; uses mu
	next uint64     // the ticket take hands out next
	turn uint64     // the ticket allowed to publish now
}

func newTurnstile() *turnstile {
	t := &turnstile{}
	t.cond.L = &t.mu
	return t
}

// take returns a new ticket. Every ticket taken must be passed to done.
func (t *turnstile) take() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.next
	t.next++
	return n
}

// wait blocks until every ticket below n is done.
func (t *turnstile) wait(n uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.turn != n {
		t.cond.Wait()
	}
}

// done lets the holder of the ticket after n go; n must be the turn.
func (t *turnstile) done(n uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.turn = n + 1
	t.cond.Broadcast()
}
