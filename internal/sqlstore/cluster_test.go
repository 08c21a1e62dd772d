package sqlstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/pgtest"
)

// The tests of this file run PostgreSQL only: several DBs opened on the
// same schema are the nodes of a cluster, each with several writers.

// openNodes opens n DBs on one fresh schema, each publishing to its own
// recorder, and closes them at the end of the test.
func openNodes(t *testing.T, n int, opts Options) ([]*DB, []*recorder) {
	t.Helper()
	loc := newLocation(t, "postgres")
	var dbs []*DB
	var recs []*recorder
	for range n {
		rec := &recorder{}
		dbs = append(dbs, loc.mustOpen(t, rec, opts))
		recs = append(recs, rec)
	}
	return dbs, recs
}

// together runs f(i) for i in [0, n) in goroutines released at once, and
// waits for them.
func together(n int, f func(i int)) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			f(i)
		})
	}
	close(start)
	wg.Wait()
}

// TestClusterConcurrentSends sends from two nodes into one conversation at
// once: seqs are 1..N without gaps, every client_message_id is stored once,
// and each node published message.new in increasing seq.
func TestClusterConcurrentSends(t *testing.T) {
	ctx := context.Background()
	dbs, recs := openNodes(t, 2, Options{MaxBatch: 16})
	const senders, perSender = 8, 25
	var users []string
	for i := range senders {
		users = append(users, newUser(t, dbs[i%2], fmt.Sprintf("user%02d", i)).ID)
	}
	g := newGroup(t, dbs[0], users[0], users[1:]...)
	recs[0].take()

	// Each sender sends through both nodes, alternately, and repeats each
	// message through the other node at once: one is stored.
	ids := make([]map[string]string, senders) // client id -> message id, per sender
	together(2*senders, func(k int) {
		i, node := k/2, k%2
		for j := range perSender {
			db := dbs[(node+j)%2]
			m, _, err := db.SendMessage(ctx, parley.NewMessage{ConversationID: g.ID, SenderID: users[i],
				ClientMessageID: fmt.Sprintf("m%d", j), Kind: parley.KindText, Text: "x"})
			if err != nil {
				t.Errorf("SendMessage: %v", err)
				return
			}
			if node == 0 {
				// Only the first goroutine of the pair records; the other
				// checks below through the history.
				if ids[i] == nil {
					ids[i] = map[string]string{}
				}
				ids[i][m.ClientMessageID] = m.ID
			}
		}
	})

	msgs, more, err := dbs[1].Messages(ctx, g.ID, users[0], parley.HistoryQuery{Limit: 1000})
	if err != nil || more {
		t.Fatalf("history: more %v err %v", more, err)
	}
	if len(msgs) != senders*perSender {
		t.Fatalf("%d messages stored, want %d", len(msgs), senders*perSender)
	}
	seen := map[string]bool{}
	for i, m := range msgs {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d", i, m.Seq)
		}
		k := m.SenderID + "/" + m.ClientMessageID
		if seen[k] {
			t.Errorf("%s stored twice", k)
		}
		seen[k] = true
		sender := slices.Index(users, m.SenderID)
		if got := ids[sender][m.ClientMessageID]; got != m.ID {
			t.Errorf("%s: the sender got message %s, stored %s", k, got, m.ID)
		}
	}
	total := 0
	for node, rec := range recs {
		var last int64
		for _, ev := range rec.take() {
			if ev.Type != parley.EventMessageNew {
				continue
			}
			if ev.Message.Seq <= last {
				t.Fatalf("node %d published seq %d after %d", node, ev.Message.Seq, last)
			}
			last = ev.Message.Seq
			total++
		}
	}
	if total != len(msgs) {
		t.Errorf("%d message.new published by the nodes, want %d", total, len(msgs))
	}
}

// TestClusterSameClientMessageID sends the same message through two nodes
// at the same moment: one is stored, and both callers get it.
func TestClusterSameClientMessageID(t *testing.T) {
	ctx := context.Background()
	dbs, _ := openNodes(t, 2, Options{})
	alice, bob := newUser(t, dbs[0], "alice"), newUser(t, dbs[0], "bob")
	d := newDirect(t, dbs[0], alice.ID, bob.ID)
	for round := range 20 {
		var got [2]parley.Message
		var created [2]bool
		together(2, func(i int) {
			var err error
			got[i], created[i], err = dbs[i].SendMessage(ctx, parley.NewMessage{ConversationID: d.ID, SenderID: alice.ID,
				ClientMessageID: fmt.Sprint("c", round), Kind: parley.KindText, Text: fmt.Sprint("from node ", i)})
			if err != nil {
				t.Errorf("node %d: %v", i, err)
			}
		})
		if got[0] != got[1] || created[0] == created[1] {
			t.Fatalf("round %d: %+v created %v, %+v created %v; want one message, created once", round, got[0], created[0], got[1], created[1])
		}
		if got[0].Seq != int64(round+1) {
			t.Fatalf("round %d: seq %d", round, got[0].Seq)
		}
	}
}

// TestClusterDirectConversation creates the same pair's direct conversation
// through two nodes at once, each from one side: one conversation.
func TestClusterDirectConversation(t *testing.T) {
	ctx := context.Background()
	dbs, recs := openNodes(t, 2, Options{})
	for round := range 10 {
		a, b := newUser(t, dbs[0], fmt.Sprint("a", round)), newUser(t, dbs[1], fmt.Sprint("b", round))
		recs[0].take()
		recs[1].take()
		var convs [2]parley.Conversation
		var created [2]bool
		together(2, func(i int) {
			p := parley.NewConversation{Type: parley.Direct, CreatorID: a.ID, MemberIDs: []string{b.ID}}
			if i == 1 {
				p.CreatorID, p.MemberIDs = b.ID, []string{a.ID}
			}
			var err error
			convs[i], created[i], err = dbs[i].CreateConversation(ctx, p)
			if err != nil {
				t.Errorf("node %d: %v", i, err)
			}
		})
		if convs[0].ID != convs[1].ID || created[0] == created[1] {
			t.Fatalf("round %d: %s created %v, %s created %v; want one conversation, created once",
				round, convs[0].ID, created[0], convs[1].ID, created[1])
		}
		if len(convs[0].Members) != 2 || len(convs[1].Members) != 2 {
			t.Fatalf("round %d: members %v, %v", round, convs[0].Members, convs[1].Members)
		}
		if evs := len(recs[0].take()) + len(recs[1].take()); evs != 1 {
			t.Errorf("round %d: %d conversation.updated, want 1", round, evs)
		}
	}
}

// TestClusterRefreshRotation rotates one refresh token through two nodes
// at once: exactly one rotation succeeds, the other is reuse.
func TestClusterRefreshRotation(t *testing.T) {
	ctx := context.Background()
	dbs, _ := openNodes(t, 2, Options{})
	alice := newUser(t, dbs[0], "alice")
	future := parley.NewTime(time.Now().Add(time.Hour))
	for round := range 10 {
		first := fmt.Sprint("t", round)
		if err := dbs[0].CreateSession(ctx, parley.RefreshToken{Hash: first, FamilyID: mustID(t), UserID: alice.ID, ExpiresAt: future}); err != nil {
			t.Fatal(err)
		}
		var errs [2]error
		together(2, func(i int) {
			_, errs[i] = dbs[i].RotateRefreshToken(ctx, first, parley.RefreshToken{Hash: fmt.Sprint(first, "-", i), ExpiresAt: future}, 0)
		})
		ok := 0
		for _, err := range errs {
			switch parley.ErrorCode(err) {
			case "":
				ok++
			case parley.CodeUnauthenticated:
			default:
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d rotations succeeded (%v), want 1", round, ok, errs)
		}
	}
}

// TestClusterRefreshGrace rotates one refresh token through two nodes at
// once with a grace period, as a client whose first answer was lost and
// that tried again: both answer a pair, and the family stays.
func TestClusterRefreshGrace(t *testing.T) {
	ctx := context.Background()
	dbs, _ := openNodes(t, 2, Options{})
	alice := newUser(t, dbs[0], "alice")
	future := parley.NewTime(time.Now().Add(time.Hour))
	for round := range 5 {
		first, family := fmt.Sprint("g", round), mustID(t)
		if err := dbs[0].CreateSession(ctx, parley.RefreshToken{Hash: first, FamilyID: family, UserID: alice.ID, ExpiresAt: future}); err != nil {
			t.Fatal(err)
		}
		var errs [2]error
		together(2, func(i int) {
			_, errs[i] = dbs[i].RotateRefreshToken(ctx, first, parley.RefreshToken{Hash: fmt.Sprint(first, "-", i), ExpiresAt: future}, 30*time.Second)
		})
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: %v", round, errs)
		}
		if ok, err := dbs[1].SessionActive(ctx, family); err != nil || !ok {
			t.Fatalf("round %d: family active = %v, %v", round, ok, err)
		}
	}
}

// TestClusterSecret asks three nodes for a secret at once: they all get the
// same value, and later calls create nothing.
func TestClusterSecret(t *testing.T) {
	ctx := context.Background()
	dbs, _ := openNodes(t, 3, Options{})
	for round := range 5 {
		name := fmt.Sprint("key", round)
		var got [3][]byte
		together(3, func(i int) {
			var err error
			got[i], err = dbs[i].Secret(ctx, name, func() ([]byte, error) {
				b := make([]byte, 32)
				rand.Read(b)
				return b, nil
			})
			if err != nil {
				t.Errorf("node %d: %v", i, err)
			}
		})
		if len(got[0]) != 32 || !bytes.Equal(got[0], got[1]) || !bytes.Equal(got[0], got[2]) {
			t.Fatalf("round %d: the nodes got %x, %x, %x", round, got[0], got[1], got[2])
		}
		again, err := dbs[1].Secret(ctx, name, func() ([]byte, error) { return nil, errors.New("created again") })
		if err != nil || !bytes.Equal(again, got[0]) {
			t.Fatalf("round %d: again %x, %v", round, again, err)
		}
	}
}

// TestClusterClaimPushJobs claims from two nodes, each with several
// claimers, at once: no job is claimed twice, and every job is claimed.
func TestClusterClaimPushJobs(t *testing.T) {
	ctx := context.Background()
	dbs, _ := openNodes(t, 2, Options{PushPlatforms: []parley.Platform{parley.PlatformIOS}})
	var users []string
	for i := range 8 {
		users = append(users, newUser(t, dbs[0], fmt.Sprintf("user%d", i)).ID)
		putToken(t, dbs[0], users[i], parley.PlatformIOS, fmt.Sprint("tok", i))
	}
	g := newGroup(t, dbs[0], users[0], users[1:]...)
	for range 30 {
		send(t, dbs[0], g.ID, users[0], "x") // 7 jobs each
	}
	const want = 30 * 7
	var mu sync.Mutex
	claimed := map[int64]int{}
	now := time.Now()
	together(6, func(i int) {
		for {
			jobs, _, err := dbs[i%2].ClaimPushJobs(ctx, now, time.Hour, 5)
			if err != nil {
				t.Errorf("claim: %v", err)
				return
			}
			if len(jobs) == 0 {
				return
			}
			mu.Lock()
			for _, j := range jobs {
				claimed[j.ID]++
			}
			mu.Unlock()
		}
	})
	for id, n := range claimed {
		if n != 1 {
			t.Errorf("job %d claimed %d times", id, n)
		}
	}
	if len(claimed) != want {
		t.Errorf("%d jobs claimed, want %d", len(claimed), want)
	}
}

// TestClusterRaces runs the other writes that two nodes may race on: the
// same username, the same device token, receipts while messages arrive.
func TestClusterRaces(t *testing.T) {
	ctx := context.Background()
	dbs, _ := openNodes(t, 2, Options{})

	t.Run("username", func(t *testing.T) {
		for round := range 10 {
			var errs [2]error
			together(2, func(i int) {
				errs[i] = dbs[i].CreateUser(ctx, parley.User{ID: mustID(t), Username: fmt.Sprint("taken", round)}, "h")
			})
			codes := []parley.Code{parley.ErrorCode(errs[0]), parley.ErrorCode(errs[1])}
			slices.Sort(codes)
			if !slices.Equal(codes, []parley.Code{"", parley.CodeConflict}) {
				t.Fatalf("round %d: %v, want one success and one conflict", round, errs)
			}
		}
	})

	t.Run("device token", func(t *testing.T) {
		alice, bob := newUser(t, dbs[0], "alice"), newUser(t, dbs[0], "bob")
		for round := range 10 {
			tok := fmt.Sprint("same", round)
			var created [2]bool
			together(2, func(i int) {
				var err error
				created[i], err = dbs[i].PutDeviceToken(ctx, parley.DeviceToken{UserID: alice.ID, Platform: parley.PlatformIOS, Token: tok})
				if err != nil {
					t.Errorf("node %d: %v", i, err)
				}
			})
			if created[0] == created[1] {
				t.Fatalf("round %d: created %v, want once", round, created)
			}
			// Two users at once: both succeed; one owns it.
			together(2, func(i int) {
				u := []string{alice.ID, bob.ID}[i]
				if _, err := dbs[i].PutDeviceToken(ctx, parley.DeviceToken{UserID: u, Platform: parley.PlatformWeb, Token: tok + "w"}); err != nil {
					t.Errorf("node %d: %v", i, err)
				}
			})
		}
	})

	t.Run("receipts and unread", func(t *testing.T) {
		alice, bob := newUser(t, dbs[0], "carol"), newUser(t, dbs[0], "dave")
		g := newGroup(t, dbs[0], alice.ID, bob.ID)
		var highest atomic.Int64
		together(4, func(i int) {
			db := dbs[i%2]
			for j := range 25 {
				if i < 2 {
					m, _, err := db.SendMessage(ctx, parley.NewMessage{ConversationID: g.ID, SenderID: alice.ID,
						ClientMessageID: fmt.Sprint(i, "-", j), Kind: parley.KindText, Text: "x"})
					if err != nil {
						t.Errorf("send: %v", err)
						return
					}
					highest.Store(max(highest.Load(), m.Seq))
					continue
				}
				kind := []parley.ReceiptKind{parley.Read, parley.Delivered}[j%2]
				if _, err := db.MarkReceipt(ctx, bob.ID, g.ID, kind, highest.Load(), ""); err != nil {
					t.Errorf("receipt: %v", err)
					return
				}
			}
		})
		c, err := dbs[1].Conversation(ctx, g.ID, bob.ID)
		if err != nil {
			t.Fatal(err)
		}
		if c.LastSeq != 50 || c.UnreadCount != c.LastSeq-c.ReadSeq {
			t.Fatalf("last_seq %d read_seq %d unread %d; want 50 and unread = last - read", c.LastSeq, c.ReadSeq, c.UnreadCount)
		}
		if m, _ := c.Member(bob.ID); m.DeliveredSeq < m.ReadSeq {
			t.Fatalf("delivered %d < read %d", m.DeliveredSeq, m.ReadSeq)
		}
		if _, err := dbs[0].MarkReceipt(ctx, bob.ID, g.ID, parley.Read, 50, ""); err != nil {
			t.Fatal(err)
		}
		if c, _ := dbs[1].Conversation(ctx, g.ID, bob.ID); c.UnreadCount != 0 || c.ReadSeq != 50 {
			t.Fatalf("after reading all: read %d unread %d", c.ReadSeq, c.UnreadCount)
		}
	})
}

// TestClusterMigrations opens three nodes on an empty schema at once: each
// migration is applied once, and all three work.
func TestClusterMigrations(t *testing.T) {
	ctx := context.Background()
	url := pgtest.DSN(t)
	dbs := make([]*DB, 3)
	together(3, func(i int) {
		var err error
		if dbs[i], err = OpenPostgres(ctx, url, nil, Options{}); err != nil {
			t.Errorf("node %d: %v", i, err)
		}
	})
	for _, db := range dbs {
		if db != nil {
			defer db.Close()
		}
	}
	if t.Failed() {
		return
	}
	ms, err := loadMigrations(migrations, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	var rows, versions int
	if err := rawQueryRow(dbs[0], `SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_migrations`).Scan(&rows, &versions); err != nil {
		t.Fatal(err)
	}
	if rows != len(ms) || versions != len(ms) {
		t.Errorf("schema_migrations has %d rows of %d versions, want %d", rows, versions, len(ms))
	}
	for i, db := range dbs {
		newUser(t, db, fmt.Sprint("user", i))
	}
}

// TestClusterDeadlockRetry makes two nodes deadlock for real: each write
// locks one conversation and then the other's. PostgreSQL aborts one; it
// runs again, alone, and both writes succeed, each published once.
func TestClusterDeadlockRetry(t *testing.T) {
	ctx := context.Background()
	dbs, recs := openNodes(t, 2, Options{Writers: 1})
	alice, bob := newUser(t, dbs[0], "alice"), newUser(t, dbs[0], "bob")
	convs := []string{newGroup(t, dbs[0], alice.ID, bob.ID).ID, newGroup(t, dbs[0], alice.ID, bob.ID).ID}
	recs[0].take()
	var locked sync.WaitGroup
	locked.Add(2)
	var runs [2]atomic.Int64
	together(2, func(i int) {
		first, second := convs[i], convs[1-i]
		err := dbs[i].write(ctx, "test", "", func(w *writeTx) error {
			n := runs[i].Add(1)
			if err := lockConversation(w, first, forUpdate); err != nil {
				return err
			}
			if n == 1 {
				// Both hold their first lock before either asks for
				// its second.
				locked.Done()
				locked.Wait()
			}
			if err := lockConversation(w, second, forUpdate); err != nil {
				return err
			}
			w.publish(&parley.Event{Type: parley.EventTyping, Typing: &parley.Typing{ConversationID: first, UserID: alice.ID}})
			return nil
		})
		if err != nil {
			t.Errorf("node %d: %v", i, err)
		}
	})
	if total := runs[0].Load() + runs[1].Load(); total != 3 {
		t.Errorf("%d runs, want 3: one of the two deadlocked and ran again", total)
	}
	for i, rec := range recs {
		if evs := rec.take(); len(evs) != 1 {
			t.Errorf("node %d published %s, want one event", i, describe(evs))
		}
	}
}

// TestRetriesExhausted checks that a write that keeps losing deadlocks
// answers unavailable after a few runs, and commits and publishes nothing.
func TestRetriesExhausted(t *testing.T) {
	ctx := context.Background()
	dbs, recs := openNodes(t, 1, Options{})
	alice := newUser(t, dbs[0], "alice")
	runs := 0
	err := dbs[0].write(ctx, "test", "", func(w *writeTx) error {
		runs++
		if _, err := w.exec(`UPDATE users SET display_name = 'changed' WHERE id = ?`, alice.ID); err != nil {
			return err
		}
		w.publish(&parley.Event{Type: parley.EventTyping, Typing: &parley.Typing{UserID: alice.ID}})
		return fmt.Errorf("lost: %w", &pgconn.PgError{Code: "40P01", Message: "deadlock detected"})
	})
	wantCode(t, err, parley.CodeUnavailable)
	if runs != maxRetries+1 {
		t.Errorf("%d runs, want %d", runs, maxRetries+1)
	}
	if u, _ := dbs[0].UserByID(ctx, alice.ID); u.DisplayName == "changed" {
		t.Error("a failed write committed")
	}
	if evs := recs[0].take(); len(evs) != 0 {
		t.Errorf("published %s", describe(evs))
	}
}

// otherNode is a transaction of its own on db's database, standing for
// another node's write: it holds the conversation's lock while the test
// makes db's writes wait for it.
type otherNode struct {
	t  *testing.T
	db *DB
	tx *sql.Tx
}

func beginOtherNode(t *testing.T, db *DB, conversationID string) *otherNode {
	t.Helper()
	tx, err := db.readers.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback() })
	o := &otherNode{t, db, tx}
	o.exec(`SELECT id FROM conversations WHERE id = ? FOR UPDATE`, conversationID)
	return o
}

func (o *otherNode) exec(query string, args ...any) {
	o.t.Helper()
	if _, err := o.tx.Exec(o.db.d.rebind(query), args...); err != nil {
		o.t.Fatal(err)
	}
}

// waitForLockWaits waits until n statements of the test's database wait
// for a lock.
func waitForLockWaits(t *testing.T, db *DB, n int) {
	t.Helper()
	waitFor(t, "a write to wait for the lock", func() bool {
		var waiting int
		err := rawQueryRow(db, `SELECT COUNT(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		return err == nil && waiting >= n
	})
}

// TestClusterWritesAfterWaitingForTheLock makes a send and a read receipt
// wait for the conversation's lock while another node sends a message and
// adds a member: once it commits, they see both, although their statements
// started before (see withLockFresh).
func TestClusterWritesAfterWaitingForTheLock(t *testing.T) {
	ctx := context.Background()
	dbs, recs := openNodes(t, 2, Options{})
	db, rec := dbs[0], recs[0]
	alice, bob, carol := newUser(t, db, "alice"), newUser(t, db, "bob"), newUser(t, db, "carol")
	g := newGroup(t, db, alice.ID, bob.ID)
	send(t, db, g.ID, alice.ID, "one")
	rec.take()

	// The other node sends message 2 from alice and adds carol, who has
	// read nothing of it.
	other := beginOtherNode(t, db, g.ID)
	now := nowMillis()
	other.exec(`INSERT INTO messages (id, conversation_id, seq, sender_id, client_message_id, kind, text, created_at)
		VALUES (?, ?, 2, ?, 'other', 'text', 'two', ?)`, mustID(t), g.ID, alice.ID, now)
	other.exec(`UPDATE conversations SET last_seq = 2, updated_at = ? WHERE id = ?`, now, g.ID)
	other.exec(`UPDATE members SET unread_count = unread_count + 1 WHERE conversation_id = ? AND user_id <> ?`, g.ID, alice.ID)
	other.exec(`INSERT INTO members (conversation_id, user_id, role, joined_at, unread_count) VALUES (?, ?, 'member', ?, 0)`,
		g.ID, carol.ID, now)

	type sent struct {
		m       parley.Message
		created bool
		err     error
	}
	sends := make(chan sent, 1)
	go func() {
		m, created, err := db.SendMessage(ctx, parley.NewMessage{ConversationID: g.ID, SenderID: alice.ID,
			ClientMessageID: "waited", Kind: parley.KindText, Text: "three"})
		sends <- sent{m, created, err}
	}()
	receipts := make(chan error, 1)
	go func() {
		// Bob read message 1, as he saw it before the other node's
		// commit: message 2 stays unread. Through another node, so that
		// both writes wait (one node's would be one batch).
		_, err := dbs[1].MarkReceipt(ctx, bob.ID, g.ID, parley.Read, 1, "")
		receipts <- err
	}()
	waitForLockWaits(t, db, 2)
	if err := other.tx.Commit(); err != nil {
		t.Fatal(err)
	}
	s := <-sends
	if s.err != nil || !s.created || s.m.Seq != 3 {
		t.Fatalf("send: seq %d created %v err %v; want seq 3, created", s.m.Seq, s.created, s.err)
	}
	if err := <-receipts; err != nil {
		t.Fatal(err)
	}
	for _, ev := range append(rec.take(), recs[1].take()...) {
		if ev.Type == parley.EventMessageNew && !slices.Contains(ev.Recipients, carol.ID) {
			t.Errorf("message.new to %v, without carol", ev.Recipients)
		}
		if ev.Type == parley.EventReceipt && !slices.Contains(ev.Recipients, carol.ID) {
			t.Errorf("receipt to %v, without carol", ev.Recipients)
		}
	}
	for _, u := range []struct {
		id     string
		unread int64
	}{{carol.ID, 1}, {bob.ID, 2}} {
		c, err := db.Conversation(ctx, g.ID, u.id)
		if err != nil {
			t.Fatal(err)
		}
		if c.UnreadCount != u.unread {
			t.Errorf("%s: unread %d, want %d", u.id, c.UnreadCount, u.unread)
		}
	}
}

// TestClusterSendRacesAnUncommittedOriginal sends a message whose original
// another node has inserted but not committed: the send waits for it, and
// once it commits, answers the original, taking no seq.
func TestClusterSendRacesAnUncommittedOriginal(t *testing.T) {
	ctx := context.Background()
	dbs, recs := openNodes(t, 1, Options{})
	db, rec := dbs[0], recs[0]
	alice, bob := newUser(t, db, "alice"), newUser(t, db, "bob")
	d := newDirect(t, db, alice.ID, bob.ID)
	rec.take()

	// Another node's transaction that inserted the message (at seq 7, to
	// tell it apart) and has not committed yet: it locks no conversation
	// row for update, so the send's statement runs and meets it in the
	// unique index.
	tx, err := db.readers.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	origID := mustID(t)
	if _, err := tx.Exec(db.d.rebind(`INSERT INTO messages (id, conversation_id, seq, sender_id, client_message_id, kind, text, created_at)
		VALUES (?, ?, 7, ?, 'same', 'text', 'original', ?)`), origID, d.ID, alice.ID, nowMillis()); err != nil {
		t.Fatal(err)
	}
	type sent struct {
		m       parley.Message
		created bool
		err     error
	}
	sends := make(chan sent, 1)
	go func() {
		m, created, err := db.SendMessage(ctx, parley.NewMessage{ConversationID: d.ID, SenderID: alice.ID,
			ClientMessageID: "same", Kind: parley.KindText, Text: "again"})
		sends <- sent{m, created, err}
	}()
	waitForLockWaits(t, db, 1)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	s := <-sends
	if s.err != nil || s.created || s.m.ID != origID || s.m.Text != "original" {
		t.Fatalf("send: %+v created %v err %v; want the original, not created", s.m, s.created, s.err)
	}
	if c, err := db.Conversation(ctx, d.ID, bob.ID); err != nil || c.LastSeq != 0 {
		t.Fatalf("last_seq %d (err %v), want 0: a seq was taken", c.LastSeq, err)
	}
	if evs := rec.take(); len(evs) != 0 {
		t.Errorf("published %s", describe(evs))
	}
}
