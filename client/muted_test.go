package client

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/server"
)

// TestMuted: a conversation's muted_until is kept with it and shown, and
// a muted conversation is left out of TotalUnread.
func TestMuted(t *testing.T) {
	ts := startServer(t, server.Config{})
	dir := filepath.Join(t.TempDir(), "alice")
	alice, bob := openClient(t, dir, ts.URL), openClient(t, "", ts.URL)
	conv := pair(t, alice, bob)
	group, err := bob.CreateGroup(ctxT(t, 10*time.Second), "team", []string{"alice"})
	if err != nil {
		t.Fatal(err)
	}
	send(t, bob, conv, "one")
	send(t, bob, conv, "two")
	send(t, bob, group.ID, "three")
	total := func(want int64) func() error {
		return func() error {
			n, err := alice.TotalUnread(context.Background())
			if err != nil {
				return err
			}
			if n != want {
				return fmt.Errorf("total unread %d, want %d", n, want)
			}
			return nil
		}
	}
	eventually(t, 10*time.Second, total(3))

	// As the server's object says (GET /api/conversations, sync,
	// conversation.updated).
	mute := func(until *parley.Time) {
		t.Helper()
		row, err := alice.store.conv(context.Background(), conv)
		if err != nil {
			t.Fatal(err)
		}
		obj := row.Data
		obj.MutedUntil = until
		if _, err := alice.storeConversation(context.Background(), obj); err != nil {
			t.Fatal(err)
		}
	}
	forever := parley.MutedForever
	mute(&forever)
	if err := total(1)(); err != nil {
		t.Fatal(err)
	}
	v, err := alice.Conversation(context.Background(), conv)
	if err != nil || !v.Muted(time.Now()) || v.UnreadCount != 2 {
		t.Fatalf("muted conversation %+v (%v)", v, err)
	}

	// Kept in the store.
	if err := alice.Close(); err != nil {
		t.Fatal(err)
	}
	alice = openClient(t, dir, ts.URL)
	if v, err := alice.Conversation(context.Background(), conv); err != nil || v.MutedUntil == nil || !v.MutedUntil.Equal(forever.Time) {
		t.Fatalf("after reopening: %v (%v)", v.MutedUntil, err)
	}
	if err := total(1)(); err != nil {
		t.Fatal(err)
	}

	// A mute that ended counts again; so does an unmuted conversation.
	past := parley.NewTime(time.Now().Add(-time.Minute))
	mute(&past)
	if err := total(3)(); err != nil {
		t.Fatal(err)
	}
	mute(nil)
	if err := total(3)(); err != nil {
		t.Fatal(err)
	}
}
