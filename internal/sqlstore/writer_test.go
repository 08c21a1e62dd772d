package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley"
)

// TestConcurrentSends sends from many goroutines into a few conversations,
// some of them repeating client_message_ids, and checks that every
// conversation got gap-free seqs, that each client_message_id was stored
// once, and that message.new was published in increasing seq.
func TestConcurrentSends(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		rec := &recorder{}
		db := newLocation(t, engine).mustOpen(t, rec, Options{MaxBatch: 16})
		const (
			convs     = 3
			senders   = 24
			perSender = 30
		)
		var users []string
		for i := range senders {
			users = append(users, newUser(t, db, fmt.Sprintf("user%02d", i)).ID)
		}
		var convIDs []string
		for range convs {
			convIDs = append(convIDs, newGroup(t, db, users[0], users[1:]...).ID)
		}
		rec.take()

		// Sender i sends message j to conversation j%convs with client id j,
		// twice at once from two goroutines: each pair must store one message.
		type key struct{ conv, sender, client string }
		var mu sync.Mutex
		ids := make(map[key]map[string]bool) // the message ids each key got back
		var wg sync.WaitGroup
		for i := range senders {
			for copy := range 2 {
				wg.Go(func() {
					for j := range perSender {
						p := parley.NewMessage{
							ConversationID:  convIDs[j%convs],
							SenderID:        users[i],
							ClientMessageID: fmt.Sprintf("m%d", j),
							Kind:            parley.KindText,
							Text:            fmt.Sprintf("%d/%d/%d", i, j, copy),
						}
						m, _, err := db.SendMessage(ctx, p)
						if err != nil {
							t.Errorf("SendMessage: %v", err)
							return
						}
						k := key{p.ConversationID, p.SenderID, p.ClientMessageID}
						mu.Lock()
						if ids[k] == nil {
							ids[k] = map[string]bool{}
						}
						ids[k][m.ID] = true
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()

		for k, got := range ids {
			if len(got) != 1 {
				t.Errorf("%v got %d different messages", k, len(got))
			}
		}
		total := 0
		for _, conv := range convIDs {
			msgs, more, err := db.Messages(ctx, conv, users[0], parley.HistoryQuery{Limit: 1000})
			if err != nil || more {
				t.Fatalf("history: more %v err %v", more, err)
			}
			seen := map[string]bool{}
			for i, m := range msgs {
				if m.Seq != int64(i+1) {
					t.Fatalf("conversation %s: message %d has seq %d", conv, i, m.Seq)
				}
				k := m.SenderID + "/" + m.ClientMessageID
				if seen[k] {
					t.Errorf("%s stored twice", k)
				}
				seen[k] = true
			}
			total += len(msgs)
		}
		if want := senders * perSender; total != want {
			t.Errorf("%d messages stored, want %d", total, want)
		}

		evs := rec.take()
		if len(evs) != total {
			t.Errorf("%d events, want %d", len(evs), total)
		}
		last := map[string]int64{}
		for _, ev := range evs {
			m := ev.Message
			if m.Seq != last[m.ConversationID]+1 {
				t.Fatalf("conversation %s: published seq %d after %d", m.ConversationID, m.Seq, last[m.ConversationID])
			}
			last[m.ConversationID] = m.Seq
		}
	})
}

// blockingPublisher holds the writer inside Publish until released, so
// tests can queue writes behind it.
type blockingPublisher struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (p *blockingPublisher) Publish(ctx context.Context, ev *parley.Event) error {
	p.once.Do(func() {
		close(p.entered)
		<-p.release
	})
	return nil
}

// queuedWrites is how many writes wait in the writers' queues.
func queuedWrites(db *DB) int {
	n := 0
	for _, q := range db.queues {
		n += len(q)
	}
	return n
}

func TestCancelledWriteIsNotApplied(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		pub := &blockingPublisher{entered: make(chan struct{}), release: make(chan struct{})}
		// One writer on PostgreSQL too, so that writes queue behind it.
		db := newLocation(t, engine).mustOpen(t, pub, Options{Writers: 1})
		alice, bob := newUser(t, db, "alice"), newUser(t, db, "bob")

		// The first event blocks the writer after its commit.
		firstDone := make(chan error, 1)
		go func() {
			_, _, err := db.CreateConversation(ctx, parley.NewConversation{Type: parley.Direct, CreatorID: alice.ID, MemberIDs: []string{bob.ID}})
			firstDone <- err
		}()
		<-pub.entered

		// A write queued now, whose caller gives up before the writer takes it.
		cctx, cancel := context.WithCancel(ctx)
		queuedDone := make(chan error, 1)
		go func() {
			queuedDone <- db.SetLastSeen(cctx, alice.ID, parley.NewTime(alice.CreatedAt.Add(time.Hour)))
		}()
		waitFor(t, "the write to be queued", func() bool { return queuedWrites(db) == 1 })
		cancel()
		if err := <-queuedDone; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled write = %v, want context.Canceled", err)
		}
		// A write whose context is already over never reaches the queue.
		if err := db.SetLastSeen(cctx, alice.ID, parley.NewTime(alice.CreatedAt.Add(time.Hour))); !errors.Is(err, context.Canceled) {
			t.Fatalf("write with a done context = %v", err)
		}
		close(pub.release)
		if err := <-firstDone; err != nil {
			t.Fatal(err)
		}
		seen, err := db.LastSeen(ctx, []string{alice.ID})
		if err != nil {
			t.Fatal(err)
		}
		if !seen[alice.ID].Equal(alice.CreatedAt.Time) {
			t.Errorf("the cancelled write was applied: %v", seen)
		}
	})
}

func TestFailingWriteRollsBackAlone(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		pub := &blockingPublisher{entered: make(chan struct{}), release: make(chan struct{})}
		db := newLocation(t, engine).mustOpen(t, pub, Options{Writers: 1})
		alice, bob := newUser(t, db, "alice"), newUser(t, db, "bob")

		// Hold the writer so that the next writes commit in one batch.
		go db.CreateConversation(ctx, parley.NewConversation{Type: parley.Direct, CreatorID: alice.ID, MemberIDs: []string{bob.ID}})
		<-pub.entered
		errs := make([]error, 3)
		var wg sync.WaitGroup
		names := []string{"carol", "alice", "dave"} // alice is taken: fails alone
		for i, name := range names {
			wg.Go(func() {
				errs[i] = db.CreateUser(ctx, parley.User{ID: mustID(t), Username: name}, "h")
			})
			waitFor(t, "queued", func() bool { return queuedWrites(db) == i+1 })
		}
		close(pub.release)
		wg.Wait()
		wantCode(t, errs[0], "")
		wantCode(t, errs[1], parley.CodeConflict)
		wantCode(t, errs[2], "")
		for _, name := range []string{"carol", "dave"} {
			if _, _, err := db.UserByUsername(ctx, name); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	})
}

// holdWriter makes db's only writer wait until the returned function is
// called: the writes queued meanwhile are then committed in one batch.
func holdWriter(t *testing.T, db *DB) (release func()) {
	t.Helper()
	hold, held := make(chan struct{}), make(chan struct{})
	go db.write(context.Background(), "test", "", func(*writeTx) error {
		close(held)
		<-hold
		return nil
	})
	<-held
	return func() { close(hold) }
}

// TestFailingSendInABatch queues sends into one batch, one of them from a
// non-member: it fails alone (the batch runs again, each send in a
// savepoint), the others are stored once each, with gap-free seqs, and
// published once each. The next batch in which nothing fails lets the
// writer run without savepoints again.
func TestFailingSendInABatch(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		rec := &recorder{}
		db := newLocation(t, engine).mustOpen(t, rec, Options{Writers: 1})
		alice, bob, carol := newUser(t, db, "alice"), newUser(t, db, "bob"), newUser(t, db, "carol")
		d := newDirect(t, db, alice.ID, bob.ID)
		rec.take()

		// sendAll queues one send per sender, in one batch behind a held
		// writer, and returns their errors.
		sendAll := func(senders ...string) []error {
			release := holdWriter(t, db)
			errs := make([]error, len(senders))
			var wg sync.WaitGroup
			for i, sender := range senders {
				wg.Go(func() {
					_, _, errs[i] = db.SendMessage(ctx, parley.NewMessage{ConversationID: d.ID, SenderID: sender,
						ClientMessageID: mustID(t), Kind: parley.KindText, Text: fmt.Sprint(i)})
				})
				waitFor(t, "queued", func() bool { return queuedWrites(db) == i+1 })
			}
			release()
			wg.Wait()
			return errs
		}
		errs := sendAll(alice.ID, carol.ID, bob.ID)
		wantCode(t, errs[0], "")
		wantCode(t, errs[1], parley.CodeNotFound)
		wantCode(t, errs[2], "")
		var seqs []int64
		for _, ev := range rec.take() {
			if ev.Type == parley.EventMessageNew {
				seqs = append(seqs, ev.Message.Seq)
			}
		}
		if !slices.Equal(seqs, []int64{1, 2}) {
			t.Fatalf("published seqs %v, want [1 2]", seqs)
		}
		if !db.writers[0].careful {
			t.Error("after a failure, the writer does not use savepoints")
		}

		errs = sendAll(alice.ID, bob.ID)
		wantCode(t, errs[0], "")
		wantCode(t, errs[1], "")
		if db.writers[0].careful {
			t.Error("after a batch without failures, the writer still uses savepoints")
		}
		msgs, _, err := db.Messages(ctx, d.ID, alice.ID, parley.HistoryQuery{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range msgs {
			if m.Seq != int64(i+1) {
				t.Fatalf("message %d has seq %d", i, m.Seq)
			}
		}
		if len(msgs) != 4 {
			t.Errorf("%d messages stored, want 4", len(msgs))
		}
	})
}

func TestClose(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		loc := newLocation(t, engine)
		db, err := loc.open(ctx, nil, Options{MaxBatch: 8})
		if err != nil {
			t.Fatal(err)
		}
		alice, bob := newUser(t, db, "alice"), newUser(t, db, "bob")
		conv := newDirect(t, db, alice.ID, bob.ID)

		// Writes racing Close either complete durably or answer unavailable.
		var ok atomic.Int64
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				_, _, err := db.SendMessage(ctx, parley.NewMessage{ConversationID: conv.ID, SenderID: alice.ID,
					ClientMessageID: fmt.Sprint(i), Kind: parley.KindText, Text: "x"})
				switch parley.ErrorCode(err) {
				case "":
					ok.Add(1)
				case parley.CodeUnavailable:
				default:
					t.Errorf("SendMessage during Close: %v", err)
				}
			})
		}
		waitFor(t, "some writes to commit", func() bool { return ok.Load() > 0 })
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		select {
		case <-db.done:
		default:
			t.Error("writer goroutine still running after Close")
		}
		if err := db.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		_, _, err = db.SendMessage(ctx, parley.NewMessage{ConversationID: conv.ID, SenderID: alice.ID, ClientMessageID: "late", Kind: parley.KindText})
		wantCode(t, err, parley.CodeUnavailable)
		wantCode(t, db.Ping(ctx), parley.CodeUnavailable)
		_, err = db.UserByID(ctx, alice.ID)
		wantCode(t, err, parley.CodeUnavailable)

		db = loc.mustOpen(t, nil, Options{})
		msgs, _, err := db.Messages(ctx, conv.ID, bob.ID, parley.HistoryQuery{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(msgs)) != ok.Load() {
			t.Errorf("%d messages stored, %d acknowledged", len(msgs), ok.Load())
		}
	})
}

func TestReopen(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		loc := newLocation(t, engine)
		db, err := loc.open(ctx, nil, Options{})
		if err != nil {
			t.Fatal(err)
		}
		alice, bob := newUser(t, db, "alice"), newUser(t, db, "bob")
		g := newGroup(t, db, alice.ID, bob.ID)
		last := send(t, db, g.ID, bob.ID, "persisted")
		if _, err := db.MarkReceipt(ctx, alice.ID, g.ID, parley.Read, 1, ""); err != nil {
			t.Fatal(err)
		}
		ms, err := loadMigrations(migrations, engine)
		if err != nil {
			t.Fatal(err)
		}

		for range 2 { // reopening again applies no migration twice
			want, err := db.Conversation(ctx, g.ID, alice.ID)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db, err = loc.open(ctx, nil, Options{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := db.Conversation(ctx, g.ID, alice.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.ReadSeq != 1 || got.LastSeq != last.Seq || *got.LastMessage != last ||
				!got.UpdatedAt.Equal(want.UpdatedAt.Time) || !slices.Equal(got.Members, want.Members) {
				t.Errorf("after reopen %+v, want %+v", got, want)
			}
			if u, _, err := db.UserByUsername(ctx, "alice"); err != nil || u != alice {
				t.Errorf("alice after reopen: %+v, %v", u, err)
			}
			var rows, versions int
			if err := db.readers.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_migrations`).Scan(&rows, &versions); err != nil {
				t.Fatal(err)
			}
			if rows != len(ms) || versions != len(ms) {
				t.Errorf("schema_migrations has %d rows of %d versions, want %d", rows, versions, len(ms))
			}
			// The sequence continues where it was.
			next := send(t, db, g.ID, alice.ID, "more")
			if next.Seq != last.Seq+1 {
				t.Errorf("seq after reopen %d, want %d", next.Seq, last.Seq+1)
			}
			last = next
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestPragmas checks SQLite's settings: WAL, synchronous=FULL, foreign
// keys, and a read pool that cannot write.
func TestPragmas(t *testing.T) {
	db, _ := openTestDB(t, "sqlite")
	ctx := context.Background()
	var mode string
	var sync, fk int
	err := db.conn.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode)
	if err == nil {
		err = db.conn.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync)
	}
	if err == nil {
		err = db.conn.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk)
	}
	if err != nil {
		t.Fatal(err)
	}
	if mode != "wal" || sync != 2 || fk != 1 {
		t.Errorf("journal_mode %s synchronous %d foreign_keys %d; want wal, 2 (FULL), 1", mode, sync, fk)
	}
	// The read pool cannot write.
	if _, err := db.readers.ExecContext(ctx, `DELETE FROM users`); err == nil {
		t.Error("a reader wrote")
	}
}

func TestObserveLatency(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		var mu sync.Mutex
		ops := map[string]int{}
		db := newLocation(t, engine).mustOpen(t, nil, Options{ObserveLatency: func(op string, d time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			ops[op]++
		}})
		alice, bob := newUser(t, db, "alice"), newUser(t, db, "bob")
		d := newDirect(t, db, alice.ID, bob.ID)
		send(t, db, d.ID, alice.ID, "x")
		db.Messages(ctx, d.ID, alice.ID, parley.HistoryQuery{Limit: 1})
		mu.Lock()
		defer mu.Unlock()
		for _, op := range []string{"create_user", "user_by_id", "create_conversation", "send_message", "messages", "commit"} {
			if ops[op] == 0 {
				t.Errorf("no latency observed for %s (got %v)", op, ops)
			}
		}
	})
}

func TestMigrationNames(t *testing.T) {
	for _, engine := range engines {
		ms, err := loadMigrations(migrations, engine)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			t.Errorf("no %s migrations", engine)
		}
		for i, m := range ms {
			if m.version != i+1 {
				t.Errorf("migration %s has version %d, want %d", m.name, m.version, i+1)
			}
		}
	}
}

// TestConcurrentReadsAndWrites runs more snapshot reads at once than the
// read pool has connections, alongside writes: nothing may deadlock.
func TestConcurrentReadsAndWrites(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		db, _ := openTestDB(t, engine)
		alice, bob := newUser(t, db, "alice"), newUser(t, db, "bob")
		g := newGroup(t, db, alice.ID, bob.ID)
		var wg sync.WaitGroup
		for i := range 64 {
			wg.Go(func() {
				for j := range 10 {
					var err error
					switch (i + j) % 4 {
					case 0:
						_, err = db.Conversations(ctx, alice.ID)
					case 1:
						_, err = db.Conversation(ctx, g.ID, bob.ID)
					case 2:
						_, _, err = db.Messages(ctx, g.ID, alice.ID, parley.HistoryQuery{Limit: 5})
					case 3:
						_, _, err = db.SendMessage(ctx, parley.NewMessage{ConversationID: g.ID, SenderID: bob.ID,
							ClientMessageID: fmt.Sprint(i, "-", j), Kind: parley.KindText, Text: "x"})
					}
					if err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	})
}

// TestOpenOddPath opens a SQLite file whose path needs escaping in the
// driver's URI.
func TestOpenOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir #1?")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "p%20.db")
	db, err := Open(context.Background(), path, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	newUser(t, db, "alice")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at %s: %v", path, err)
	}
	if _, err := Open(context.Background(), "", nil, Options{}); err == nil {
		t.Error("Open with an empty path succeeded")
	}
}

// TestQueueFor checks how writes are spread over the PostgreSQL writers:
// both modes of a conversation's key go to one writer, conversations and
// writes without a key are spread over all of them; SQLite has one queue.
func TestQueueFor(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		db := newLocation(t, engine).mustOpen(t, nil, Options{Writers: 4})
		want := 4
		if engine == "sqlite" {
			want = 1
		}
		if len(db.queues) != want {
			t.Fatalf("%d queues, want %d", len(db.queues), want)
		}
		index := func(key string) int {
			q := db.queueFor(key)
			for i, c := range db.queues {
				if (chan<- *request)(c) == q {
					return i
				}
			}
			t.Fatalf("queueFor(%q) is no writer's queue", key)
			return -1
		}
		used := map[int]bool{}
		for i := range 64 {
			id := fmt.Sprint("conversation", i)
			w := index(lockConversationKey(id, forUpdate))
			if got := index(lockConversationKey(id, forShare)); got != w {
				t.Fatalf("%s: writer %d for update, %d for share", id, w, got)
			}
			if got := index(lockConversationKey(id, forUpdate)); got != w {
				t.Fatalf("%s: writer %d, then %d", id, w, got)
			}
			used[w] = true
		}
		if len(used) != want {
			t.Errorf("64 conversations went to %d writers, want %d", len(used), want)
		}
		clear(used)
		for range want {
			used[index("")] = true
		}
		if len(used) != want {
			t.Errorf("%d writes without a key went to %d writers, want %d", want, len(used), want)
		}
	})
}
