package sqlstore

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3/driver"

	"github.com/parley-chat/parley"
)

// openPushDB opens a store that queues pushes for iOS and web devices.
func openPushDB(t testing.TB, engine string) *DB {
	t.Helper()
	return newLocation(t, engine).mustOpen(t, nil, Options{
		PushPlatforms: []parley.Platform{parley.PlatformIOS, parley.PlatformWeb},
	})
}

func putToken(t testing.TB, db *DB, userID string, p parley.Platform, token string) {
	t.Helper()
	env := ""
	if p == parley.PlatformIOS {
		env = "sandbox"
	}
	if _, err := db.PutDeviceToken(context.Background(), parley.DeviceToken{UserID: userID, Platform: p, Token: token, Environment: env}); err != nil {
		t.Fatal(err)
	}
}

// pushQueue returns "token:badge" of every queued job, sorted.
func pushQueue(t testing.TB, db *DB) []string {
	t.Helper()
	rows, err := db.readers.Query(`SELECT token, badge FROM push_jobs`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var tok string
		var badge int
		if err := rows.Scan(&tok, &badge); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s:%d", tok, badge))
	}
	slices.Sort(out)
	return out
}

func clearQueue(t testing.TB, db *DB) {
	t.Helper()
	if err := db.write(context.Background(), "test", "", func(w *writeTx) error {
		_, err := w.exec(`DELETE FROM push_jobs`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func TestQueuePush(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		db := openPushDB(t, engine)
		alice, bob, carol, dave := newUser(t, db, "alice"), newUser(t, db, "bob"), newUser(t, db, "carol"), newUser(t, db, "dave")
		g := newGroup(t, db, alice.ID, bob.ID, carol.ID, dave.ID)
		d := newDirect(t, db, alice.ID, bob.ID)
		putToken(t, db, alice.ID, parley.PlatformIOS, "a1")
		putToken(t, db, bob.ID, parley.PlatformIOS, "b1")
		putToken(t, db, bob.ID, parley.PlatformWeb, "b2")
		putToken(t, db, dave.ID, parley.PlatformIOS, "d1")
		// carol has no device.
		if err := db.SetMute(ctx, g.ID, dave.ID, nil); err != nil {
			t.Fatal(err)
		}

		send(t, db, g.ID, alice.ID, "one")
		// Bob's two devices, with his unread count; not the sender, not carol
		// (no device), not dave (muted).
		if got, want := pushQueue(t, db), []string{"b1:1", "b2:1"}; !slices.Equal(got, want) {
			t.Fatalf("queued %v, want %v", got, want)
		}
		send(t, db, d.ID, alice.ID, "two")
		send(t, db, g.ID, alice.ID, "three")
		if got, want := pushQueue(t, db), []string{"b1:1", "b1:2", "b1:3", "b2:1", "b2:2", "b2:3"}; !slices.Equal(got, want) {
			t.Fatalf("queued %v, want %v", got, want)
		}

		// Bob answers: alice gets a push with her own unread count (1), and
		// bob's reading of the direct conversation lowers his badge.
		clearQueue(t, db)
		if _, err := db.MarkReceipt(ctx, bob.ID, d.ID, parley.Read, 99, ""); err != nil {
			t.Fatal(err)
		}
		send(t, db, d.ID, bob.ID, "reply")
		if got, want := pushQueue(t, db), []string{"a1:1"}; !slices.Equal(got, want) {
			t.Fatalf("queued %v, want %v", got, want)
		}
		clearQueue(t, db)
		send(t, db, g.ID, carol.ID, "carol")
		// Bob: 3 unread in g; alice: 1 in d and 1 in g. Dave is muted.
		if got, want := pushQueue(t, db), []string{"a1:2", "b1:3", "b2:3"}; !slices.Equal(got, want) {
			t.Fatalf("queued %v, want %v", got, want)
		}

		// A muted conversation does not count in the badge: alice mutes g until
		// later, and her badge for a message in d leaves g's unread one out.
		clearQueue(t, db)
		later := parley.NewTime(time.Now().Add(time.Hour))
		if err := db.SetMute(ctx, g.ID, alice.ID, &later); err != nil {
			t.Fatal(err)
		}
		send(t, db, d.ID, bob.ID, "again")
		if got, want := pushQueue(t, db), []string{"a1:2"}; !slices.Equal(got, want) {
			t.Fatalf("queued %v, want %v (d only)", got, want)
		}
		// A mute that has ended is no mute.
		clearQueue(t, db)
		past := parley.NewTime(time.Now().Add(-time.Second))
		if err := db.SetMute(ctx, g.ID, dave.ID, &past); err != nil {
			t.Fatal(err)
		}
		send(t, db, g.ID, bob.ID, "dave hears")
		if got, want := pushQueue(t, db), []string{"d1:4"}; !slices.Equal(got, want) {
			t.Fatalf("queued %v, want %v", got, want)
		}

		// An idempotent repeat queues nothing.
		clearQueue(t, db)
		p := parley.NewMessage{ConversationID: d.ID, SenderID: bob.ID, ClientMessageID: "same", Kind: parley.KindText, Text: "x"}
		for i := range 2 {
			if _, created, err := db.SendMessage(ctx, p); err != nil || created != (i == 0) {
				t.Fatalf("send %d: created %v err %v", i, created, err)
			}
		}
		if got := pushQueue(t, db); len(got) != 1 {
			t.Fatalf("queued %v after a repeat, want one job", got)
		}
	})
}

func TestNoPushPlatformsQueuesNothing(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		db, _ := openTestDB(t, engine)
		alice, bob := newUser(t, db, "alice"), newUser(t, db, "bob")
		d := newDirect(t, db, alice.ID, bob.ID)
		putToken(t, db, bob.ID, parley.PlatformIOS, "b1")
		send(t, db, d.ID, alice.ID, "hi")
		if got := pushQueue(t, db); len(got) != 0 {
			t.Fatalf("queued %v without push platforms", got)
		}
	})
}

func TestUnreadCounter(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		db, _ := openTestDB(t, engine)
		alice, bob, carol := newUser(t, db, "alice"), newUser(t, db, "bob"), newUser(t, db, "carol")
		g := newGroup(t, db, alice.ID, bob.ID)
		unread := func(user string) int64 {
			t.Helper()
			c, err := db.Conversation(ctx, g.ID, user)
			if err != nil {
				t.Fatal(err)
			}
			return c.UnreadCount
		}
		send(t, db, g.ID, alice.ID, "1")
		send(t, db, g.ID, bob.ID, "2")
		send(t, db, g.ID, alice.ID, "3")
		if a, b := unread(alice.ID), unread(bob.ID); a != 1 || b != 2 {
			t.Fatalf("unread alice %d bob %d, want 1 2", a, b)
		}
		if _, err := db.MarkReceipt(ctx, bob.ID, g.ID, parley.Read, 1, ""); err != nil {
			t.Fatal(err)
		}
		if b := unread(bob.ID); b != 1 {
			t.Fatalf("unread bob after reading 1: %d, want 1", b)
		}
		// Carol joins: everything the others sent is unread for her; after
		// leaving and coming back, her own messages are not.
		if _, err := db.AddMember(ctx, g.ID, alice.ID, carol.ID); err != nil {
			t.Fatal(err)
		}
		if c := unread(carol.ID); c != 3 {
			t.Fatalf("unread carol %d, want 3", c)
		}
		send(t, db, g.ID, carol.ID, "4")
		if err := db.RemoveMember(ctx, g.ID, carol.ID, carol.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := db.AddMember(ctx, g.ID, alice.ID, carol.ID); err != nil {
			t.Fatal(err)
		}
		if c := unread(carol.ID); c != 3 {
			t.Fatalf("unread carol after rejoining %d, want 3", c)
		}
		// The list agrees with the single view.
		convs, err := db.Conversations(ctx, bob.ID)
		if err != nil || len(convs) != 1 || convs[0].UnreadCount != 2 {
			t.Fatalf("Conversations(bob) = %+v, %v; want unread 2", convs, err)
		}
	})
}

func TestMutes(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		db, _ := openTestDB(t, engine)
		alice, bob, carol := newUser(t, db, "alice"), newUser(t, db, "bob"), newUser(t, db, "carol")
		g := newGroup(t, db, alice.ID, bob.ID)
		mute := func(user string) parley.Mute {
			t.Helper()
			m, err := db.MuteOf(ctx, g.ID, user)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
		if m := mute(bob.ID); m.Muted {
			t.Fatalf("initially %+v", m)
		}
		if err := db.SetMute(ctx, g.ID, bob.ID, nil); err != nil {
			t.Fatal(err)
		}
		if m := mute(bob.ID); !m.Muted || m.Until != nil {
			t.Fatalf("muted for ever: %+v", m)
		}
		until := parley.NewTime(time.Now().Add(time.Hour))
		if err := db.SetMute(ctx, g.ID, bob.ID, &until); err != nil {
			t.Fatal(err)
		}
		if m := mute(bob.ID); !m.Muted || m.Until == nil || !m.Until.Equal(until.Time) {
			t.Fatalf("muted for an hour: %+v", m)
		}
		if m := mute(alice.ID); m.Muted {
			t.Fatalf("alice's is her own: %+v", m)
		}
		past := parley.NewTime(time.Now().Add(-time.Minute))
		if err := db.SetMute(ctx, g.ID, bob.ID, &past); err != nil {
			t.Fatal(err)
		}
		if m := mute(bob.ID); m.Muted {
			t.Fatalf("an ended mute: %+v", m)
		}
		if err := db.SetMute(ctx, g.ID, bob.ID, nil); err != nil {
			t.Fatal(err)
		}
		if err := db.ClearMute(ctx, g.ID, bob.ID); err != nil {
			t.Fatal(err)
		}
		if m := mute(bob.ID); m.Muted {
			t.Fatalf("after clearing: %+v", m)
		}
		if err := db.ClearMute(ctx, g.ID, bob.ID); err != nil {
			t.Fatalf("clearing again: %v", err)
		}
		// Leaving drops the mute.
		if err := db.SetMute(ctx, g.ID, bob.ID, nil); err != nil {
			t.Fatal(err)
		}
		if err := db.RemoveMember(ctx, g.ID, bob.ID, bob.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := db.AddMember(ctx, g.ID, alice.ID, bob.ID); err != nil {
			t.Fatal(err)
		}
		if m := mute(bob.ID); m.Muted {
			t.Fatalf("after leaving and rejoining: %+v", m)
		}
		// Non-members.
		wantCode(t, db.SetMute(ctx, g.ID, carol.ID, nil), parley.CodeNotFound)
		wantCode(t, db.ClearMute(ctx, g.ID, carol.ID), parley.CodeNotFound)
		_, err := db.MuteOf(ctx, g.ID, carol.ID)
		wantCode(t, err, parley.CodeNotFound)
		wantCode(t, db.SetMute(ctx, mustID(t), bob.ID, nil), parley.CodeNotFound)
	})
}

func TestClaimPushJobs(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		db := openPushDB(t, engine)
		alice, bob := newUser(t, db, "alice"), newUser(t, db, "bob")
		title := "Trip"
		g, _, err := db.CreateConversation(ctx, parley.NewConversation{Type: parley.Group, Title: &title, CreatorID: alice.ID, MemberIDs: []string{bob.ID}})
		if err != nil {
			t.Fatal(err)
		}
		putToken(t, db, bob.ID, parley.PlatformIOS, "b1")
		putToken(t, db, bob.ID, parley.PlatformWeb, "b2")
		m1 := send(t, db, g.ID, alice.ID, "first")
		m2 := send(t, db, g.ID, alice.ID, "second")
		const lease = time.Minute

		now := time.Now()
		jobs, next, err := db.ClaimPushJobs(ctx, now, lease, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) != 3 {
			t.Fatalf("claimed %d jobs, want 3", len(jobs))
		}
		// Oldest first; everything a push needs.
		j := jobs[0]
		if j.Message != m1 || j.SenderName != alice.DisplayName || j.ConversationType != parley.Group ||
			j.Title == nil || *j.Title != "Trip" || j.Badge != 1 || j.Attempts != 0 ||
			j.Device.UserID != bob.ID || j.Device.Platform == "" || j.QueuedAt.IsZero() {
			t.Errorf("first job %+v", j)
		}
		if jobs[2].Message != m2 || jobs[2].Badge != 2 {
			t.Errorf("third job %+v, want m2 with badge 2", jobs[2])
		}
		if next.IsZero() || next.After(now) {
			t.Errorf("next %v, want at most now (one job is due)", next)
		}
		// The leased ones are not claimed again; the fourth is.
		more, next, err := db.ClaimPushJobs(ctx, now, lease, 10)
		if err != nil || len(more) != 1 || more[0].Message != m2 {
			t.Fatalf("second claim %+v, %v; want the fourth job", more, err)
		}
		if want := time.UnixMilli(now.Add(lease).UnixMilli()); !next.Equal(want) {
			t.Errorf("next %v, want the lease's end %v", next, want)
		}
		if none, _, err := db.ClaimPushJobs(ctx, now.Add(lease-time.Millisecond), lease, 10); err != nil || len(none) != 0 {
			t.Fatalf("claim within the lease: %+v, %v", none, err)
		}

		// Finish one, retry one later, remove a token with its jobs.
		if err := db.FinishPushJob(ctx, jobs[0], true); err != nil {
			t.Fatal(err)
		}
		at := now.Add(5 * time.Second)
		if err := db.RetryPushJob(ctx, jobs[1].ID, 3, at); err != nil {
			t.Fatal(err)
		}
		got, next, err := db.ClaimPushJobs(ctx, at, lease, 10)
		if err != nil || len(got) != 1 || got[0].ID != jobs[1].ID || got[0].Attempts != 3 {
			t.Fatalf("claim at the retry time: %+v, %v", got, err)
		}
		if next.IsZero() {
			t.Error("next is zero with leased jobs queued")
		}
		// After the lease, the crashed worker's jobs come back.
		back, _, err := db.ClaimPushJobs(ctx, now.Add(lease), lease, 10)
		if err != nil || len(back) != 2 {
			t.Fatalf("claim after the lease: %d jobs, %v; want 2", len(back), err)
		}
		if err := db.RemoveDeviceToken(ctx, got[0].Device.Token); err != nil {
			t.Fatal(err)
		}
		for _, q := range pushQueue(t, db) {
			if strings.HasPrefix(q, got[0].Device.Token+":") {
				t.Errorf("job %s left for a removed token", q)
			}
		}
		if err := db.FinishPushJob(ctx, parley.PushJob{ID: 999999}, false); err != nil {
			t.Errorf("finishing an unknown job: %v", err)
		}
		if _, _, err := db.ClaimPushJobs(ctx, now, lease, 0); parley.ErrorCode(err) != parley.CodeInvalidArgument {
			t.Errorf("limit 0: %v", err)
		}
	})
}

func TestClaimDropsObsoleteJobs(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		db := openPushDB(t, engine)
		alice, bob, carol := newUser(t, db, "alice"), newUser(t, db, "bob"), newUser(t, db, "carol")
		g := newGroup(t, db, alice.ID, bob.ID, carol.ID)
		putToken(t, db, bob.ID, parley.PlatformIOS, "b1")
		putToken(t, db, carol.ID, parley.PlatformIOS, "c1")
		m := send(t, db, g.ID, alice.ID, "hello")
		if got := pushQueue(t, db); len(got) != 2 {
			t.Fatalf("queued %v", got)
		}
		// Bob reads it on another device; carol mutes the group.
		if _, err := db.MarkReceipt(ctx, bob.ID, g.ID, parley.Read, m.Seq, ""); err != nil {
			t.Fatal(err)
		}
		if err := db.SetMute(ctx, g.ID, carol.ID, nil); err != nil {
			t.Fatal(err)
		}
		jobs, next, err := db.ClaimPushJobs(ctx, time.Now(), time.Minute, 10)
		if err != nil || len(jobs) != 0 || !next.IsZero() {
			t.Fatalf("claim: %+v next %v err %v; want nothing, queue empty", jobs, next, err)
		}

		// A token that moves to another user takes no queued push with it.
		putToken(t, db, carol.ID, parley.PlatformIOS, "x1")
		if err := db.ClearMute(ctx, g.ID, carol.ID); err != nil {
			t.Fatal(err)
		}
		send(t, db, g.ID, alice.ID, "for carol")
		putToken(t, db, bob.ID, parley.PlatformIOS, "x1")
		if got := pushQueue(t, db); !slices.Equal(got, []string{"b1:1", "c1:2"}) {
			t.Fatalf("queued %v after the token moved, want b1 and c1 (not x1)", got)
		}
	})
}

// TestMigrationCountsUnread opens a database made by the first schema
// version and checks that the migration fills the unread counters.
func TestMigrationCountsUnread(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v1.db")
	raw, err := driver.Open(dsn(path, "foreign_keys(1)"))
	if err != nil {
		t.Fatal(err)
	}
	v1, err := migrations.ReadFile("migrations/sqlite/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	alice, bob, conv := mustID(t), mustID(t), mustID(t)
	for _, q := range []string{
		`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`,
		string(v1),
		`INSERT INTO schema_migrations VALUES (1, 0)`,
		fmt.Sprintf(`INSERT INTO users (id, username, display_name, password_hash, created_at) VALUES ('%s', 'alice', 'A', 'h', 0), ('%s', 'bob', 'B', 'h', 0)`, alice, bob),
		fmt.Sprintf(`INSERT INTO conversations (id, type, last_seq, created_at, updated_at) VALUES ('%s', 'group', 4, 0, 0)`, conv),
		fmt.Sprintf(`INSERT INTO members (conversation_id, user_id, role, joined_at, read_seq, delivered_seq) VALUES ('%s', '%s', 'admin', 0, 0, 0), ('%s', '%s', 'member', 0, 1, 1)`, conv, alice, conv, bob),
		fmt.Sprintf(`INSERT INTO messages (id, conversation_id, seq, sender_id, client_message_id, kind, text, created_at) VALUES
			('%s', '%s', 1, '%s', 'c1', 'text', 'x', 0), ('%s', '%s', 2, '%s', 'c2', 'text', 'x', 0),
			('%s', '%s', 3, '%s', 'c3', 'text', 'x', 0), ('%s', '%s', 4, '%s', 'c4', 'text', 'x', 0)`,
			mustID(t), conv, alice, mustID(t), conv, bob, mustID(t), conv, alice, mustID(t), conv, alice),
	} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := Open(ctx, path, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for user, want := range map[string]int64{alice: 1, bob: 2} {
		c, err := db.Conversation(ctx, conv, user)
		if err != nil {
			t.Fatal(err)
		}
		if c.UnreadCount != want {
			t.Errorf("unread of %s after migrating: %d, want %d", user, c.UnreadCount, want)
		}
	}
}

func TestOpenUnknownPushPlatform(t *testing.T) {
	_, err := Open(context.Background(), filepath.Join(t.TempDir(), "p.db"), nil, Options{PushPlatforms: []parley.Platform{"android"}})
	if err == nil {
		t.Fatal("Open with push platform android: no error")
	}
}

// TestClaimNothingDueReads checks that a claim that finds nothing due only
// reads: no writer commits anything for it.
func TestClaimNothingDueReads(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		var commits atomic.Int64
		db := newLocation(t, engine).mustOpen(t, nil, Options{
			PushPlatforms: []parley.Platform{parley.PlatformIOS},
			ObserveLatency: func(op string, _ time.Duration) {
				if op == "commit" {
					commits.Add(1)
				}
			},
		})
		alice, bob := newUser(t, db, "alice"), newUser(t, db, "bob")
		d := newDirect(t, db, alice.ID, bob.ID)
		now := time.Now()

		before := commits.Load()
		jobs, next, err := db.ClaimPushJobs(ctx, now, time.Minute, 10)
		if err != nil || len(jobs) != 0 || !next.IsZero() {
			t.Fatalf("empty queue: %d jobs, next %v, err %v", len(jobs), next, err)
		}
		send(t, db, d.ID, alice.ID, "nobody has a device") // queues nothing
		before++
		if jobs, next, err = db.ClaimPushJobs(ctx, now, time.Minute, 10); err != nil || len(jobs) != 0 || !next.IsZero() {
			t.Fatalf("no device: %d jobs, next %v, err %v", len(jobs), next, err)
		}
		if got := commits.Load(); got != before {
			t.Fatalf("%d commits for claims that found nothing", got-before)
		}

		// A job due later is only read; once due, it is claimed.
		putToken(t, db, bob.ID, parley.PlatformIOS, "tok")
		send(t, db, d.ID, alice.ID, "hi")
		now = time.Now()
		jobs, _, err = db.ClaimPushJobs(ctx, now, time.Minute, 10)
		if err != nil || len(jobs) != 1 {
			t.Fatalf("due: %d jobs, err %v", len(jobs), err)
		}
		before = commits.Load()
		jobs, next, err = db.ClaimPushJobs(ctx, now, time.Minute, 10)
		if err != nil || len(jobs) != 0 || next.UnixMilli() != now.Add(time.Minute).UnixMilli() {
			t.Fatalf("leased: %d jobs, next %v (want the lease's end %v), err %v", len(jobs), next, now.Add(time.Minute), err)
		}
		if got := commits.Load(); got != before {
			t.Fatalf("%d commits for a claim that found nothing due", got-before)
		}
		jobs, _, err = db.ClaimPushJobs(ctx, now.Add(2*time.Minute), time.Minute, 10)
		if err != nil || len(jobs) != 1 {
			t.Fatalf("lease over: %d jobs, err %v", len(jobs), err)
		}
	})
}
