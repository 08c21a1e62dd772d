package sqlstore

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley"
)

func TestDeleteUser(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		rec := &recorder{}
		db := newLocation(t, engine).mustOpen(t, rec, Options{PushPlatforms: []parley.Platform{parley.PlatformIOS}})
		alice, bob, carol := newUser(t, db, "alice"), newUser(t, db, "bob"), newUser(t, db, "carol")
		g := newGroup(t, db, bob.ID, alice.ID, carol.ID) // bob is its admin
		d := newDirect(t, db, alice.ID, bob.ID)
		family := mustID(t)
		future := parley.NewTime(time.Now().Add(time.Hour))
		if err := db.CreateSession(ctx, parley.RefreshToken{Hash: "rb", FamilyID: family, UserID: bob.ID, ExpiresAt: future}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.PutDeviceToken(ctx, parley.DeviceToken{UserID: bob.ID, DeviceID: family, Platform: parley.PlatformIOS, Token: "b1", Environment: "sandbox"}); err != nil {
			t.Fatal(err)
		}
		if err := db.SetMute(ctx, d.ID, bob.ID, nil); err != nil {
			t.Fatal(err)
		}
		send(t, db, g.ID, alice.ID, "queued for bob's phone")
		rec.take()

		if err := db.DeleteUser(ctx, bob.ID); err != nil {
			t.Fatal(err)
		}
		evs := rec.take()
		if len(evs) != 2 {
			t.Fatalf("events %s, want the group's conversation.updated and account.closed", describe(evs))
		}
		if ev := evs[0]; ev.Type != parley.EventConversationUpdated || !slices.Equal(ev.Recipients, []string{alice.ID, carol.ID}) {
			t.Errorf("first event %s, want conversation.updated to alice and carol", describe(evs[:1]))
		} else if c := ev.Conversation.For(alice.ID); len(c.Members) != 2 || c.Members[0].Role != parley.RoleAdmin {
			t.Errorf("the group after bob left: %+v, want two members, the first an admin", c.Members)
		}
		if ev := evs[1]; ev.Type != parley.EventAccountClosed || ev.Session.UserID != bob.ID || !slices.Equal(ev.Recipients, []string{bob.ID}) {
			t.Errorf("second event %s, want account.closed to bob", describe(evs[1:]))
		}

		u, err := db.UserByID(ctx, bob.ID)
		if err != nil || !u.Deleted || u.DisplayName != parley.DeletedDisplayName {
			t.Fatalf("bob after deletion: %+v, %v", u, err)
		}
		if active, _ := db.SessionActive(ctx, family); active {
			t.Error("bob's login still active")
		}
		// Nothing of bob's is left that could act or be pushed.
		for q, want := range map[string]int{
			`SELECT COUNT(*) FROM device_tokens WHERE user_id = ?`:            0,
			`SELECT COUNT(*) FROM refresh_tokens WHERE user_id = ?`:           0,
			`SELECT COUNT(*) FROM push_jobs WHERE user_id = ?`:                0,
			`SELECT COUNT(*) FROM mutes WHERE user_id = ?`:                    0,
			`SELECT COUNT(*) FROM users WHERE id = ? AND password_hash <> ''`: 0,
			`SELECT COUNT(*) FROM members WHERE user_id = ?`:                  1, // the direct conversation
		} {
			var n int
			if err := rawQueryRow(db, q, bob.ID).Scan(&n); err != nil || n != want {
				t.Errorf("%s: %d, %v; want %d", q, n, err, want)
			}
		}
		if found, _ := db.SearchUsers(ctx, "bo", 10); len(found) != 0 {
			t.Errorf("search finds the deleted account: %+v", found)
		}
		if _, _, err := db.CreateConversation(ctx, parley.NewConversation{Type: parley.Direct, CreatorID: carol.ID, MemberIDs: []string{bob.ID}}); parley.ErrorCode(err) != parley.CodeInvalidArgument {
			t.Errorf("a new conversation with a deleted account: %v, want invalid_argument", err)
		}
		wantCode(t, db.DeleteUser(ctx, bob.ID), parley.CodeNotFound)

		// The username is held for 30 days, then free.
		taken := parley.User{ID: mustID(t), Username: bob.Username, DisplayName: "Not Bob"}
		wantCode(t, db.CreateUser(ctx, taken, "h"), parley.CodeConflict)
		if err := db.write(ctx, "test", "", func(w *writeTx) error {
			_, err := w.exec(`UPDATE users SET deleted_at = deleted_at - ? WHERE id = ?`, (usernameHeld + time.Minute).Milliseconds(), bob.ID)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateUser(ctx, taken, "h"); err != nil {
			t.Fatalf("the username 30 days after: %v", err)
		}
		if old, err := db.UserByID(ctx, bob.ID); err != nil || !old.Deleted {
			t.Errorf("the deleted account after its username was taken: %+v, %v", old, err)
		}
	})
}
