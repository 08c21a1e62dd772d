package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley"
)

// flakyBus is a Publisher with Flush, like a bus that hands events to a
// server, whose Publish and Flush can be made to fail.
type flakyBus struct {
	failPublish atomic.Bool
	failFlush   atomic.Bool
	flushes     atomic.Int64

	mu sync.Mutex
	// published are the events it took, attempted those it was given.
	published, attempted []*parley.Event
}

func (b *flakyBus) Publish(_ context.Context, ev *parley.Event) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.attempted = append(b.attempted, ev)
	if b.failPublish.Load() {
		return errors.New("bus down")
	}
	b.published = append(b.published, ev)
	return nil
}

func (b *flakyBus) Flush(context.Context) error {
	b.flushes.Add(1)
	if b.failFlush.Load() {
		return errors.New("flush failed")
	}
	return nil
}

// events returns the JSON of the published (or attempted) events, sorted.
func (b *flakyBus) events(t testing.TB, attempted bool) []string {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	evs := b.published
	if attempted {
		evs = b.attempted
	}
	var out []string
	for _, ev := range evs {
		j, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(j))
	}
	slices.Sort(out)
	return out
}

func outboxRows(t testing.TB, db *DB) int {
	t.Helper()
	var n int
	if err := rawQueryRow(db, `SELECT COUNT(*) FROM outbox`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestOutbox(t *testing.T) {
	ctx := context.Background()

	t.Run("published events are deleted after Flush", func(t *testing.T) {
		loc := newLocation(t, "postgres")
		bus := &flakyBus{}
		db, err := loc.open(ctx, bus, Options{Outbox: true})
		if err != nil {
			t.Fatal(err)
		}
		alice, bob := newUser(t, db, "alice"), newUser(t, db, "bob")
		d := newDirect(t, db, alice.ID, bob.ID)
		for range 5 {
			send(t, db, d.ID, alice.ID, "x")
		}
		if got := len(bus.events(t, false)); got != 6 {
			t.Fatalf("%d events published, want 6", got)
		}
		waitFor(t, "the outbox to empty", func() bool { return outboxRows(t, db) == 0 })
		if bus.flushes.Load() == 0 {
			t.Error("rows deleted without a Flush")
		}
		// What Close finds published it deletes before closing.
		send(t, db, d.ID, alice.ID, "last")
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		other := loc.mustOpen(t, nil, Options{})
		if n := outboxRows(t, other); n != 0 {
			t.Errorf("%d outbox rows after Close", n)
		}
	})

	t.Run("rows stay while Flush fails, then are relayed", func(t *testing.T) {
		bus := &flakyBus{}
		db := newLocation(t, "postgres").mustOpen(t, bus, Options{Outbox: true,
			OutboxRelayAfter: 300 * time.Millisecond, OutboxRelayEvery: 100 * time.Millisecond})
		alice, bob := newUser(t, db, "alice"), newUser(t, db, "bob")
		d := newDirect(t, db, alice.ID, bob.ID)
		waitFor(t, "the outbox to empty", func() bool { return outboxRows(t, db) == 0 })
		bus.failFlush.Store(true)
		m := send(t, db, d.ID, alice.ID, "x")
		flushes := bus.flushes.Load()
		waitFor(t, "a failed Flush", func() bool { return bus.flushes.Load() > flushes })
		if n := outboxRows(t, db); n != 1 {
			t.Fatalf("%d outbox rows after a failed Flush, want 1", n)
		}
		bus.failFlush.Store(false)
		waitFor(t, "the relay to empty the outbox", func() bool { return outboxRows(t, db) == 0 })
		// At least once: published live, and again by the relay.
		n := 0
		for _, ev := range bus.events(t, false) {
			if ev == mustJSON(t, &parley.Event{Type: parley.EventMessageNew, Recipients: d.MemberIDs(), Message: &m}) {
				n++
			}
		}
		if n < 2 {
			t.Errorf("message published %d times, want the live one and the relayed one", n)
		}
	})

	t.Run("another node relays what a node did not publish", func(t *testing.T) {
		const relayAfter, relayEvery = 500 * time.Millisecond, 200 * time.Millisecond
		loc := newLocation(t, "postgres")
		// Node b commits but cannot publish, and does not relay.
		downBus := &flakyBus{}
		downBus.failPublish.Store(true)
		b := loc.mustOpen(t, downBus, Options{Outbox: true, OutboxRelayEvery: time.Hour})
		// Node a relays.
		bus := &flakyBus{}
		loc.mustOpen(t, bus, Options{Outbox: true, OutboxRelayAfter: relayAfter, OutboxRelayEvery: relayEvery})

		alice, bob := newUser(t, b, "alice"), newUser(t, b, "bob")
		d := newDirect(t, b, alice.ID, bob.ID)
		for i := range 5 {
			// Texts that a literal must quote right (the events go into
			// the outbox as one).
			send(t, b, d.ID, []string{alice.ID, bob.ID}[i%2],
				fmt.Sprintf(`%d: it's "quoted", a \ back\\slash, {braces,}, $1 ? -- ünï 😀 '' ;`, i))
		}
		if _, err := b.MarkReceipt(ctx, bob.ID, d.ID, parley.Read, 3, ""); err != nil {
			t.Fatal(err)
		}
		committed := time.Now()
		lost := downBus.events(t, true)
		if len(lost) != 7 {
			t.Fatalf("%d events lost, want 7", len(lost))
		}
		// The relay is due within relayAfter+relayEvery of the commit; the
		// rest is slack for a slow machine.
		deadline := committed.Add(relayAfter + relayEvery + 2*time.Second)
		for len(bus.events(t, false)) < len(lost) {
			if time.Now().After(deadline) {
				t.Fatalf("relayed %d of %d events in %v", len(bus.events(t, false)), len(lost), time.Since(committed))
			}
			time.Sleep(10 * time.Millisecond)
		}
		if got := bus.events(t, false); !slices.Equal(got, lost) {
			t.Errorf("relayed:\n%v\nwant exactly the lost ones:\n%v", got, lost)
		}
		waitFor(t, "the outbox to empty", func() bool { return outboxRows(t, b) == 0 })
	})
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
