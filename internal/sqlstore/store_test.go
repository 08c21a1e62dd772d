package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/pgtest"
)

// recorder is a Publisher that keeps what it is given.
type recorder struct {
	mu     sync.Mutex
	events []*parley.Event
}

func (r *recorder) Publish(_ context.Context, ev *parley.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	return nil
}

// take returns the events published since the last take.
func (r *recorder) take() []*parley.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := r.events
	r.events = nil
	return evs
}

func TestMain(m *testing.M) { pgtest.Main(m) }

// engines are the engines that the conformance tests run on, each test
// once per engine in a subtest named after it, with the same assertions.
var engines = [...]string{"sqlite", "postgres"}

// forEachEngine runs f in a subtest per engine.
func forEachEngine(t *testing.T, f func(t *testing.T, engine string)) {
	t.Helper()
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) { f(t, engine) })
	}
}

// location is where one test's store lives, so that it can be opened
// again, or by several DBs at once: a SQLite file, or a PostgreSQL schema
// of its own.
type location struct {
	engine string
	where  string // the file's path or the schema's URL
}

func newLocation(t testing.TB, engine string) location {
	t.Helper()
	if engine == "sqlite" {
		return location{engine, filepath.Join(t.TempDir(), "parley.db")}
	}
	return location{engine, pgtest.DSN(t)}
}

// open opens a DB at l.
func (l location) open(ctx context.Context, pub parley.Publisher, opts Options) (*DB, error) {
	if l.engine == "sqlite" {
		return Open(ctx, l.where, pub, opts)
	}
	return OpenPostgres(ctx, l.where, pub, opts)
}

// mustOpen opens a DB at l and closes it at the end of the test.
func (l location) mustOpen(t testing.TB, pub parley.Publisher, opts Options) *DB {
	t.Helper()
	db, err := l.open(context.Background(), pub, opts)
	if err != nil {
		t.Fatalf("open %s: %v", l.engine, err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

// openTestDB opens a store of engine in a fresh place and closes it at the
// end.
func openTestDB(t testing.TB, engine string) (*DB, *recorder) {
	t.Helper()
	rec := &recorder{}
	return newLocation(t, engine).mustOpen(t, rec, Options{}), rec
}

// rawQueryRow runs a query on the read pool, with ? placeholders on both
// engines, for tests that look at the tables themselves.
func rawQueryRow(db *DB, query string, args ...any) *sql.Row {
	return db.readers.QueryRowContext(context.Background(), db.d.rebind(query), args...)
}

func newUser(t testing.TB, db *DB, username string) parley.User {
	t.Helper()
	u := parley.User{ID: mustID(t), Username: username, DisplayName: "User " + username}
	if err := db.CreateUser(context.Background(), u, "hash-"+username); err != nil {
		t.Fatalf("CreateUser(%s): %v", username, err)
	}
	u, err := db.UserByID(context.Background(), u.ID)
	if err != nil {
		t.Fatalf("UserByID(%s): %v", username, err)
	}
	return u
}

func mustID(t testing.TB) string {
	t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}

func newGroup(t testing.TB, db *DB, creator string, members ...string) parley.Conversation {
	t.Helper()
	title := "group"
	c, created, err := db.CreateConversation(context.Background(), parley.NewConversation{
		Type: parley.Group, Title: &title, CreatorID: creator, MemberIDs: members,
	})
	if err != nil || !created {
		t.Fatalf("CreateConversation(group): created %v, err %v", created, err)
	}
	return c
}

func newDirect(t testing.TB, db *DB, a, b string) parley.Conversation {
	t.Helper()
	c, _, err := db.CreateConversation(context.Background(), parley.NewConversation{
		Type: parley.Direct, CreatorID: a, MemberIDs: []string{b},
	})
	if err != nil {
		t.Fatalf("CreateConversation(direct): %v", err)
	}
	return c
}

func send(t testing.TB, db *DB, convID, sender, text string) parley.Message {
	t.Helper()
	m, created, err := db.SendMessage(context.Background(), parley.NewMessage{
		ConversationID: convID, SenderID: sender, ClientMessageID: mustID(t), Kind: parley.KindText, Text: text,
	})
	if err != nil || !created {
		t.Fatalf("SendMessage: created %v, err %v", created, err)
	}
	return m
}

// wantCode fails unless err carries code (or is nil when code is "").
func wantCode(t testing.TB, err error, code parley.Code) {
	t.Helper()
	if got := parley.ErrorCode(err); got != code {
		t.Fatalf("error %v: code %q, want %q", err, got, code)
	}
	if code != "" && code != parley.CodeInternal {
		var pe *parley.Error
		if !errors.As(err, &pe) {
			t.Fatalf("error %v is not a *parley.Error", err)
		}
	}
}

func sortedCopy(ids ...string) []string {
	s := slices.Clone(ids)
	slices.Sort(s)
	return s
}

// describe lists events for failure messages.
func describe(evs []*parley.Event) string {
	var s string
	for _, ev := range evs {
		s += fmt.Sprintf("%s%v ", ev.Type, ev.Recipients)
	}
	return s
}

// waitFor polls cond until it holds or a few seconds pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
