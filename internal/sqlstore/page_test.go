package sqlstore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/parley-chat/parley"
)

// activityOrder is the order ConversationsPage promises: updated_at
// descending, then id descending.
func activityOrder(a, b parley.Conversation) int {
	if c := cmp.Compare(b.UpdatedAt.UnixMilli(), a.UpdatedAt.UnixMilli()); c != 0 {
		return c
	}
	return strings.Compare(b.ID, a.ID)
}

func TestConversationsPage(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		db, _ := openTestDB(t, engine)
		alice, bob, carol := newUser(t, db, "alice"), newUser(t, db, "bob"), newUser(t, db, "carol")
		var convs []parley.Conversation
		for i := range 9 {
			switch i % 3 {
			case 0:
				convs = append(convs, newGroup(t, db, alice.ID, bob.ID, carol.ID))
			case 1:
				convs = append(convs, newGroup(t, db, bob.ID, alice.ID))
			default:
				convs = append(convs, newGroup(t, db, alice.ID, carol.ID))
			}
		}
		newDirect(t, db, bob.ID, carol.ID) // not alice's
		// Messages and receipts in some of them, out of creation order.
		for _, i := range []int{4, 0, 7, 4} {
			send(t, db, convs[i].ID, bob.ID, fmt.Sprint(i))
		}
		if _, err := db.MarkReceipt(ctx, alice.ID, convs[4].ID, parley.Read, 1, ""); err != nil {
			t.Fatal(err)
		}

		all, err := db.Conversations(ctx, alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		// Many conversations share an updated_at (they were made in the
		// same millisecond): the id breaks the ties.
		slices.SortStableFunc(all, activityOrder)
		if len(all) != 9 {
			t.Fatalf("%d conversations, want 9", len(all))
		}

		for _, size := range []int{1, 2, 4, 9, 20} {
			t.Run(fmt.Sprint("pages of ", size), func(t *testing.T) {
				var got []parley.Conversation
				var from *parley.ActivityCursor
				for pages := 0; ; pages++ {
					if pages > 20 {
						t.Fatal("paging does not end")
					}
					// One more than a page: the extra one starts the next.
					page, err := db.ConversationsPage(ctx, alice.ID, from, size+1)
					if err != nil {
						t.Fatal(err)
					}
					if len(page) <= size {
						got = append(got, page...)
						break
					}
					got = append(got, page[:size]...)
					next := page[size]
					from = &parley.ActivityCursor{UpdatedAt: next.UpdatedAt, ID: next.ID}
				}
				if len(got) != len(all) {
					t.Fatalf("paged %d conversations, want %d", len(got), len(all))
				}
				for i := range got {
					g, w := got[i], all[i]
					if g.ID != w.ID || g.ReadSeq != w.ReadSeq || g.UnreadCount != w.UnreadCount || g.LastSeq != w.LastSeq ||
						!slices.Equal(g.Members, w.Members) || (g.LastMessage == nil) != (w.LastMessage == nil) ||
						(g.LastMessage != nil && *g.LastMessage != *w.LastMessage) || !g.UpdatedAt.Equal(w.UpdatedAt.Time) {
						t.Errorf("conversation %d: %+v, want %+v", i, g, w)
					}
				}
			})
		}

		// The cursor is inclusive; one after every conversation finds none.
		c := all[3]
		page, err := db.ConversationsPage(ctx, alice.ID, &parley.ActivityCursor{UpdatedAt: c.UpdatedAt, ID: c.ID}, 2)
		if err != nil || len(page) != 2 || page[0].ID != c.ID || page[1].ID != all[4].ID {
			t.Errorf("page from %s: %v, %v", c.ID, ids(page), err)
		}
		last := all[len(all)-1]
		page, err = db.ConversationsPage(ctx, alice.ID, &parley.ActivityCursor{UpdatedAt: last.UpdatedAt, ID: last.ID + "-"}, 5)
		if err != nil || len(page) != 1 || page[0].ID != last.ID {
			t.Errorf("page from just above the last: %v, %v", ids(page), err)
		}
		page, err = db.ConversationsPage(ctx, alice.ID, &parley.ActivityCursor{UpdatedAt: last.UpdatedAt, ID: ""}, 5)
		if err != nil || page == nil || len(page) != 0 {
			t.Errorf("page after the last: %v, %v", ids(page), err)
		}
		page, err = db.ConversationsPage(ctx, mustID(t), nil, 5)
		if err != nil || page == nil || len(page) != 0 {
			t.Errorf("page of a stranger: %v, %v", ids(page), err)
		}
		_, err = db.ConversationsPage(ctx, alice.ID, nil, 0)
		wantCode(t, err, parley.CodeInvalidArgument)
	})
}

func ids(convs []parley.Conversation) []string {
	var out []string
	for _, c := range convs {
		out = append(out, c.ID)
	}
	return out
}

func TestMemberships(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		db, _ := openTestDB(t, engine)
		alice, bob, carol := newUser(t, db, "alice"), newUser(t, db, "bob"), newUser(t, db, "carol")
		g := newGroup(t, db, alice.ID, bob.ID)
		d := newDirect(t, db, alice.ID, carol.ID)
		other := newDirect(t, db, bob.ID, carol.ID)
		got, err := db.Memberships(ctx, alice.ID, []string{g.ID, d.ID, other.ID, mustID(t), g.ID})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || !got[g.ID] || !got[d.ID] || got[other.ID] {
			t.Errorf("Memberships = %v, want %s and %s", got, g.ID, d.ID)
		}
		if err := db.RemoveMember(ctx, g.ID, alice.ID, alice.ID); err != nil {
			t.Fatal(err)
		}
		got, err = db.Memberships(ctx, alice.ID, []string{g.ID, d.ID})
		if err != nil || len(got) != 1 || !got[d.ID] {
			t.Errorf("after leaving: %v, %v", got, err)
		}
		got, err = db.Memberships(ctx, alice.ID, nil)
		if err != nil || got == nil || len(got) != 0 {
			t.Errorf("no ids: %v, %v", got, err)
		}
	})
}

func TestMessageRange(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		db, _ := openTestDB(t, engine)
		alice, bob := newUser(t, db, "alice"), newUser(t, db, "bob")
		d := newDirect(t, db, alice.ID, bob.ID)
		for range 10 {
			send(t, db, d.ID, alice.ID, "m")
		}
		tests := []struct {
			after, before int64
			limit         int
			first, last   int64 // 0, 0 for none
		}{
			{0, 0, 100, 1, 10},
			{3, 0, 100, 4, 10},
			{3, 0, 2, 4, 5},
			{3, 7, 100, 4, 6},
			{3, 4, 100, 0, 0},
			{10, 0, 100, 0, 0},
			{0, 3, 100, 1, 2},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("after %d before %d limit %d", tt.after, tt.before, tt.limit), func(t *testing.T) {
				msgs, err := db.MessageRange(ctx, d.ID, tt.after, tt.before, tt.limit)
				if err != nil {
					t.Fatal(err)
				}
				var got, want []int64
				for _, m := range msgs {
					got = append(got, m.Seq)
				}
				for s := tt.first; tt.first > 0 && s <= tt.last; s++ {
					want = append(want, s)
				}
				if !slices.Equal(got, want) || msgs == nil {
					t.Errorf("seqs %v, want %v", got, want)
				}
			})
		}
		// No membership check: an internal read.
		if msgs, err := db.MessageRange(ctx, d.ID, 0, 0, 1); err != nil || len(msgs) != 1 || msgs[0].SenderID != alice.ID {
			t.Errorf("MessageRange = %v, %v", msgs, err)
		}
		_, err := db.MessageRange(ctx, d.ID, 0, 0, 0)
		wantCode(t, err, parley.CodeInvalidArgument)
	})
}

func TestSecret(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		loc := newLocation(t, engine)
		db := loc.mustOpen(t, nil, Options{})
		calls := 0
		create := func() ([]byte, error) {
			calls++
			return []byte(fmt.Sprint("secret-", calls)), nil
		}
		v, err := db.Secret(ctx, "signing", create)
		if err != nil || string(v) != "secret-1" {
			t.Fatalf("Secret = %q, %v", v, err)
		}
		again, err := db.Secret(ctx, "signing", create)
		if err != nil || !bytes.Equal(again, v) || calls != 1 {
			t.Fatalf("again: %q, %v, %d calls", again, err, calls)
		}
		other, err := db.Secret(ctx, "vapid", create)
		if err != nil || string(other) != "secret-2" {
			t.Fatalf("another name: %q, %v", other, err)
		}
		boom := errors.New("no entropy")
		if _, err := db.Secret(ctx, "broken", func() ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
			t.Errorf("create failing: %v", err)
		}
		// It survives a reopen.
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		db = loc.mustOpen(t, nil, Options{})
		if v2, err := db.Secret(ctx, "signing", create); err != nil || !bytes.Equal(v2, v) {
			t.Errorf("after reopen: %q, %v", v2, err)
		}
	})
}
