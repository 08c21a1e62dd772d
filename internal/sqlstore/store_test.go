package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parley-chat/parley"
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

// openTestDB opens a store in a fresh directory and closes it at the end.
func openTestDB(t testing.TB) (*DB, *recorder) {
	t.Helper()
	rec := &recorder{}
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "parley.db"), rec, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db, rec
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
