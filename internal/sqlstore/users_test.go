package sqlstore

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley"
)

func TestCreateUser(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		db, _ := openTestDB(t, engine)
		ctx := context.Background()
		alice := newUser(t, db, "alice")
		if alice.CreatedAt.IsZero() {
			t.Error("CreatedAt not assigned")
		}

		tests := []struct {
			name string
			user parley.User
			want parley.Code
		}{
			{"taken username", parley.User{ID: mustID(t), Username: "alice"}, parley.CodeConflict},
			{"no id", parley.User{Username: "bob"}, parley.CodeInvalidArgument},
			{"new username", parley.User{ID: mustID(t), Username: "alice_2"}, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				wantCode(t, db.CreateUser(ctx, tt.user, "h"), tt.want)
			})
		}

		got, hash, err := db.UserByUsername(ctx, "alice")
		if err != nil || got != alice || hash != "hash-alice" {
			t.Errorf("UserByUsername = %+v, %q, %v; want %+v, hash-alice", got, hash, err, alice)
		}
		_, _, err = db.UserByUsername(ctx, "nobody")
		wantCode(t, err, parley.CodeNotFound)
		_, err = db.UserByID(ctx, mustID(t))
		wantCode(t, err, parley.CodeNotFound)
	})
}

func TestSearchUsers(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		db, _ := openTestDB(t, engine)
		for _, name := range []string{"bob", "a_b", "axb", "a.b", "abc", "abd", "ab", "zed"} {
			newUser(t, db, name)
		}
		tests := []struct {
			prefix string
			limit  int
			want   []string
		}{
			{"ab", 20, []string{"ab", "abc", "abd"}},
			{"a_", 20, []string{"a_b"}}, // _ is a username character, not a wildcard
			{"a%", 20, nil},
			{"a.", 20, []string{"a.b"}},
			{"a", 3, []string{"a.b", "a_b", "ab"}},
			{"AB", 20, []string{"ab", "abc", "abd"}},
			{"", 2, []string{"a.b", "a_b"}},
			{"zz", 20, nil},
			{"ab", 0, nil},
		}
		for _, tt := range tests {
			t.Run(tt.prefix, func(t *testing.T) {
				users, err := db.SearchUsers(context.Background(), tt.prefix, tt.limit)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, u := range users {
					got = append(got, u.Username)
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("SearchUsers(%q, %d) = %v, want %v", tt.prefix, tt.limit, got, tt.want)
				}
			})
		}
	})
}

func TestPrefixEnd(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"ab", "ac", true},
		{"a\xff", "b", true},
		{"\xff\xff", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := prefixEnd(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("prefixEnd(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestLastSeen(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		db, _ := openTestDB(t, engine)
		ctx := context.Background()
		alice, bob := newUser(t, db, "alice"), newUser(t, db, "bob")
		// A user who never connected was last seen registering.
		seen, err := db.LastSeen(ctx, []string{bob.ID})
		if err != nil || !seen[bob.ID].Equal(bob.CreatedAt.Time) {
			t.Fatalf("LastSeen(new user) = %v, %v; want its created_at %v", seen, err, bob.CreatedAt)
		}
		t1 := parley.NewTime(bob.CreatedAt.Add(time.Hour))
		if err := db.SetLastSeen(ctx, alice.ID, t1); err != nil {
			t.Fatal(err)
		}
		// An older time, from a slower node, does not move it back.
		if err := db.SetLastSeen(ctx, alice.ID, parley.NewTime(t1.Add(-time.Hour))); err != nil {
			t.Fatal(err)
		}
		if err := db.SetLastSeen(ctx, mustID(t), t1); err != nil {
			t.Errorf("SetLastSeen(unknown user) = %v, want nil", err)
		}
		seen, err = db.LastSeen(ctx, []string{alice.ID, bob.ID, "nobody"})
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) != 2 || !seen[alice.ID].Equal(t1.Time) || !seen[bob.ID].Equal(bob.CreatedAt.Time) {
			t.Errorf("LastSeen = %v, want alice at %v and bob at registration", seen, t1)
		}
		seen, err = db.LastSeen(ctx, nil)
		if err != nil || len(seen) != 0 {
			t.Errorf("LastSeen(nil) = %v, %v", seen, err)
		}
	})
}

func TestSessions(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		future := parley.NewTime(time.Now().Add(time.Hour))

		// start creates a user's session with token hash first.
		start := func(t *testing.T, db *DB, userID, first string) string {
			t.Helper()
			family := mustID(t)
			if err := db.CreateSession(ctx, parley.RefreshToken{Hash: first, FamilyID: family, UserID: userID, ExpiresAt: future}); err != nil {
				t.Fatal(err)
			}
			return family
		}
		rotate := func(db *DB, old, next string) (parley.RefreshToken, error) {
			return db.RotateRefreshToken(ctx, old, parley.RefreshToken{Hash: next, ExpiresAt: future}, 0)
		}
		active := func(t *testing.T, db *DB, family string) bool {
			t.Helper()
			ok, err := db.SessionActive(ctx, family)
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}

		t.Run("rotation", func(t *testing.T) {
			db, rec := openTestDB(t, engine)
			alice := newUser(t, db, "alice")
			family := start(t, db, alice.ID, "t1")
			got, err := rotate(db, "t1", "t2")
			if err != nil {
				t.Fatal(err)
			}
			want := parley.RefreshToken{Hash: "t2", FamilyID: family, UserID: alice.ID, ExpiresAt: future}
			if got != want {
				t.Errorf("rotated = %+v, want %+v", got, want)
			}
			if _, err := rotate(db, "t2", "t3"); err != nil {
				t.Fatal(err)
			}
			if !active(t, db, family) {
				t.Error("family not active after rotations")
			}
			if evs := rec.take(); len(evs) != 0 {
				t.Errorf("events = %s, want none", describe(evs))
			}
		})

		t.Run("reuse revokes the family", func(t *testing.T) {
			db, rec := openTestDB(t, engine)
			alice := newUser(t, db, "alice")
			family := start(t, db, alice.ID, "t1")
			other := start(t, db, alice.ID, "o1")
			for _, step := range [][2]string{{"t1", "t2"}, {"t2", "t3"}} {
				if _, err := rotate(db, step[0], step[1]); err != nil {
					t.Fatal(err)
				}
			}
			// t1 was rotated two generations ago: theft.
			_, err := rotate(db, "t1", "x1")
			wantCode(t, err, parley.CodeUnauthenticated)
			evs := rec.take()
			want := parley.SessionRevoked{UserID: alice.ID, FamilyID: family}
			if len(evs) != 1 || evs[0].Type != parley.EventSessionRevoked || *evs[0].Session != want ||
				!slices.Equal(evs[0].Recipients, []string{alice.ID}) {
				t.Fatalf("events = %s, want one session.revoked of %+v", describe(evs), want)
			}
			if active(t, db, family) {
				t.Error("family still active after reuse")
			}
			// The newest token of the family stops working too, and so does the
			// rotated one, without publishing again.
			for _, tok := range []string{"t3", "t2", "t1", "x1"} {
				_, err := rotate(db, tok, "y-"+tok)
				wantCode(t, err, parley.CodeUnauthenticated)
			}
			if evs := rec.take(); len(evs) != 0 {
				t.Errorf("events after revocation = %s, want none", describe(evs))
			}
			// Another login of the same user is untouched.
			if !active(t, db, other) {
				t.Error("other family revoked")
			}
			if _, err := rotate(db, "o1", "o2"); err != nil {
				t.Errorf("other family: %v", err)
			}
		})

		t.Run("grace period", func(t *testing.T) {
			db, rec := openTestDB(t, engine)
			alice := newUser(t, db, "alice")
			family := start(t, db, alice.ID, "t1")
			const grace = 30 * time.Second
			rotateIn := func(old, next string) (parley.RefreshToken, error) {
				return db.RotateRefreshToken(ctx, old, parley.RefreshToken{Hash: next, ExpiresAt: future}, grace)
			}
			if _, err := rotateIn("t1", "t2"); err != nil {
				t.Fatal(err)
			}
			// The answer carrying t2 was lost, twice: t1 still answers.
			for _, next := range []string{"t2b", "t2c"} {
				got, err := rotateIn("t1", next)
				if err != nil {
					t.Fatalf("t1 again within the grace period: %v", err)
				}
				if got.FamilyID != family || got.UserID != alice.ID || got.Hash != next {
					t.Errorf("t1 again = %+v, want %s of family %s", got, next, family)
				}
			}
			if !active(t, db, family) {
				t.Fatal("family revoked by a repeat within the grace period")
			}
			// The client goes on with the pair it got: its siblings are gone
			// (unknown, which revokes nothing) and t1 is now reuse.
			if _, err := rotateIn("t2c", "t3"); err != nil {
				t.Fatal(err)
			}
			for _, tok := range []string{"t2", "t2b"} {
				_, err := rotateIn(tok, "x-"+tok)
				wantCode(t, err, parley.CodeUnauthenticated)
			}
			if !active(t, db, family) {
				t.Fatal("an unused sibling revoked the family")
			}
			if evs := rec.take(); len(evs) != 0 {
				t.Fatalf("events = %s, want none", describe(evs))
			}
			_, err := rotateIn("t1", "x1")
			wantCode(t, err, parley.CodeUnauthenticated)
			if active(t, db, family) {
				t.Error("a token whose child was used, presented again, did not revoke the family")
			}
			if evs := rec.take(); len(evs) != 1 || evs[0].Type != parley.EventSessionRevoked {
				t.Errorf("events = %s, want one session.revoked", describe(evs))
			}
		})

		t.Run("after the grace period", func(t *testing.T) {
			db, _ := openTestDB(t, engine)
			alice := newUser(t, db, "alice")
			family := start(t, db, alice.ID, "t1")
			if _, err := db.RotateRefreshToken(ctx, "t1", parley.RefreshToken{Hash: "t2", ExpiresAt: future}, time.Minute); err != nil {
				t.Fatal(err)
			}
			// Rotated a minute and a second ago, as far as the store knows.
			if err := db.write(ctx, "test", "", func(w *writeTx) error {
				_, err := w.exec(`UPDATE refresh_tokens SET rotated_at = rotated_at - 61000 WHERE hash = 't1'`)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			_, err := db.RotateRefreshToken(ctx, "t1", parley.RefreshToken{Hash: "x1", ExpiresAt: future}, time.Minute)
			wantCode(t, err, parley.CodeUnauthenticated)
			if active(t, db, family) {
				t.Error("reuse after the grace period did not revoke the family")
			}
		})

		t.Run("revocation survives reopen", func(t *testing.T) {
			loc := newLocation(t, engine)
			db, err := loc.open(ctx, nil, Options{})
			if err != nil {
				t.Fatal(err)
			}
			alice := newUser(t, db, "alice")
			family := start(t, db, alice.ID, "t1")
			if _, err := rotate(db, "t1", "t2"); err != nil {
				t.Fatal(err)
			}
			_, err = rotate(db, "t1", "t9")
			wantCode(t, err, parley.CodeUnauthenticated)
			db.Close()
			db, err = loc.open(ctx, nil, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if active(t, db, family) {
				t.Error("revocation by reuse was not committed")
			}
		})

		t.Run("unusable tokens", func(t *testing.T) {
			db, rec := openTestDB(t, engine)
			alice := newUser(t, db, "alice")
			past := parley.NewTime(time.Now().Add(-time.Minute))
			expiredFamily := mustID(t)
			if err := db.CreateSession(ctx, parley.RefreshToken{Hash: "old", FamilyID: expiredFamily, UserID: alice.ID, ExpiresAt: past}); err != nil {
				t.Fatal(err)
			}
			for _, tok := range []string{"unknown", "old"} {
				_, err := rotate(db, tok, "n-"+tok)
				wantCode(t, err, parley.CodeUnauthenticated)
			}
			if evs := rec.take(); len(evs) != 0 {
				t.Errorf("events = %s, want none", describe(evs))
			}
			if !active(t, db, expiredFamily) {
				t.Error("an expired token revoked its family")
			}
			if active(t, db, "no-such-family") {
				t.Error("unknown family active")
			}
		})

		t.Run("logout", func(t *testing.T) {
			db, rec := openTestDB(t, engine)
			alice := newUser(t, db, "alice")
			family := start(t, db, alice.ID, "t1")
			other := start(t, db, alice.ID, "o1")
			if _, err := rotate(db, "t1", "t2"); err != nil {
				t.Fatal(err)
			}
			// Logging out with any token of the family revokes all of it.
			if err := db.RevokeSession(ctx, "t2"); err != nil {
				t.Fatal(err)
			}
			evs := rec.take()
			if len(evs) != 1 || evs[0].Type != parley.EventSessionRevoked || evs[0].Session.FamilyID != family {
				t.Fatalf("events = %s, want one session.revoked", describe(evs))
			}
			if active(t, db, family) {
				t.Error("family active after logout")
			}
			_, err := rotate(db, "t2", "t3")
			wantCode(t, err, parley.CodeUnauthenticated)
			if !active(t, db, other) {
				t.Error("logout revoked another login")
			}
			// Unknown tokens and repeated logouts change nothing.
			for _, tok := range []string{"unknown", "t2"} {
				if err := db.RevokeSession(ctx, tok); err != nil {
					t.Errorf("RevokeSession(%s) = %v", tok, err)
				}
			}
			if evs := rec.take(); len(evs) != 0 {
				t.Errorf("events = %s, want none", describe(evs))
			}
		})
	})
}
