package sqlstore

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/parley-chat/parley"
)

func TestSendMessage(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		db, rec := openTestDB(t, engine)
		alice, bob, carol := newUser(t, db, "alice"), newUser(t, db, "bob"), newUser(t, db, "carol")
		g := newGroup(t, db, alice.ID, bob.ID, carol.ID)
		rec.take()

		p := parley.NewMessage{ConversationID: g.ID, SenderID: bob.ID, ClientMessageID: "c-1", Kind: parley.KindText, Text: "hi", Origin: "conn-1"}
		m, created, err := db.SendMessage(ctx, p)
		if err != nil || !created {
			t.Fatalf("created %v err %v", created, err)
		}
		want := parley.Message{ID: m.ID, ConversationID: g.ID, Seq: 1, SenderID: bob.ID, ClientMessageID: "c-1",
			Kind: parley.KindText, Text: "hi", CreatedAt: m.CreatedAt}
		if m != want || m.ID == "" || m.CreatedAt.IsZero() {
			t.Errorf("message = %+v", m)
		}
		evs := rec.take()
		if len(evs) != 1 || evs[0].Type != parley.EventMessageNew || *evs[0].Message != m || evs[0].Origin != "conn-1" ||
			!slices.Equal(evs[0].Recipients, g.MemberIDs()) {
			t.Fatalf("events = %s", describe(evs))
		}

		// A retry, even with other text, is the original, stored once.
		p.Text = "hi again"
		again, created, err := db.SendMessage(ctx, p)
		if err != nil || created || again != m {
			t.Errorf("retry = %+v, created %v, err %v; want the original", again, created, err)
		}
		if evs := rec.take(); len(evs) != 0 {
			t.Errorf("retry published %s", describe(evs))
		}
		// The same client_message_id from another sender is another message.
		p.SenderID = carol.ID
		other, created, err := db.SendMessage(ctx, p)
		if err != nil || !created || other.Seq != 2 {
			t.Errorf("other sender: %+v created %v err %v", other, created, err)
		}
		msgs, _, err := db.Messages(ctx, g.ID, alice.ID, parley.HistoryQuery{Limit: 10})
		if err != nil || len(msgs) != 2 {
			t.Fatalf("history %v, %v", msgs, err)
		}
		c, _ := db.Conversation(ctx, g.ID, alice.ID)
		if !c.UpdatedAt.Equal(other.CreatedAt.Time) || c.LastSeq != 2 {
			t.Errorf("conversation updated_at %v last_seq %d, want %v, 2", c.UpdatedAt, c.LastSeq, other.CreatedAt)
		}

		for _, tt := range []struct {
			name string
			p    parley.NewMessage
			want parley.Code
		}{
			{"unknown kind", parley.NewMessage{ConversationID: g.ID, SenderID: bob.ID, ClientMessageID: "x", Kind: "sticker"}, parley.CodeInvalidArgument},
			{"no client id", parley.NewMessage{ConversationID: g.ID, SenderID: bob.ID, Kind: parley.KindText}, parley.CodeInvalidArgument},
			{"unknown conversation", parley.NewMessage{ConversationID: mustID(t), SenderID: bob.ID, ClientMessageID: "x", Kind: parley.KindText}, parley.CodeNotFound},
		} {
			t.Run(tt.name, func(t *testing.T) {
				_, _, err := db.SendMessage(ctx, tt.p)
				wantCode(t, err, tt.want)
			})
		}
	})
}

func TestNonMemberNotFound(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		db, rec := openTestDB(t, engine)
		alice, bob, eve := newUser(t, db, "alice"), newUser(t, db, "bob"), newUser(t, db, "eve")
		g := newGroup(t, db, alice.ID, bob.ID)
		d := newDirect(t, db, alice.ID, bob.ID)
		send(t, db, g.ID, alice.ID, "secret")
		rec.take()

		for _, conv := range []string{g.ID, d.ID, mustID(t)} {
			calls := map[string]func() error{
				"Conversation": func() error { _, err := db.Conversation(ctx, conv, eve.ID); return err },
				"MemberIDs":    func() error { _, err := db.MemberIDs(ctx, conv, eve.ID); return err },
				"AddMember":    func() error { _, err := db.AddMember(ctx, conv, eve.ID, eve.ID); return err },
				"RemoveMember": func() error { return db.RemoveMember(ctx, conv, eve.ID, alice.ID) },
				"SendMessage": func() error {
					_, _, err := db.SendMessage(ctx, parley.NewMessage{ConversationID: conv, SenderID: eve.ID, ClientMessageID: "x", Kind: parley.KindText})
					return err
				},
				"Messages": func() error {
					_, _, err := db.Messages(ctx, conv, eve.ID, parley.HistoryQuery{Limit: 50})
					return err
				},
				"MarkReceipt": func() error { _, err := db.MarkReceipt(ctx, eve.ID, conv, parley.Read, 1, ""); return err },
			}
			for name, call := range calls {
				t.Run(name, func(t *testing.T) { wantCode(t, call(), parley.CodeNotFound) })
			}
		}
		if evs := rec.take(); len(evs) != 0 {
			t.Errorf("events = %s, want none", describe(evs))
		}
	})
}

func TestMessagesPaging(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		db, _ := openTestDB(t, engine)
		alice, bob := newUser(t, db, "alice"), newUser(t, db, "bob")
		d := newDirect(t, db, alice.ID, bob.ID)
		empty := newGroup(t, db, alice.ID, bob.ID)
		for i := range 10 {
			send(t, db, d.ID, []string{alice.ID, bob.ID}[i%2], "m")
		}

		tests := []struct {
			name         string
			q            parley.HistoryQuery
			first, last  int64 // the seqs returned, first..last; 0, 0 for none
			more         bool
			conversation string
		}{
			{"newest", parley.HistoryQuery{Limit: 3}, 8, 10, true, d.ID},
			{"newest all", parley.HistoryQuery{Limit: 10}, 1, 10, false, d.ID},
			{"newest more than all", parley.HistoryQuery{Limit: 50}, 1, 10, false, d.ID},
			{"newest of none", parley.HistoryQuery{Limit: 5}, 0, 0, false, empty.ID},
			{"before", parley.HistoryQuery{BeforeSeq: 8, Limit: 3}, 5, 7, true, d.ID},
			{"before exactly to the start", parley.HistoryQuery{BeforeSeq: 4, Limit: 3}, 1, 3, false, d.ID},
			{"before near the start", parley.HistoryQuery{BeforeSeq: 3, Limit: 3}, 1, 2, false, d.ID},
			{"before the first", parley.HistoryQuery{BeforeSeq: 1, Limit: 3}, 0, 0, false, d.ID},
			{"before beyond the end", parley.HistoryQuery{BeforeSeq: 100, Limit: 2}, 9, 10, true, d.ID},
			{"after", parley.HistoryQuery{AfterSeq: 2, HasAfter: true, Limit: 3}, 3, 5, true, d.ID},
			{"after zero", parley.HistoryQuery{AfterSeq: 0, HasAfter: true, Limit: 3}, 1, 3, true, d.ID},
			{"after exactly to the end", parley.HistoryQuery{AfterSeq: 7, HasAfter: true, Limit: 3}, 8, 10, false, d.ID},
			{"after near the end", parley.HistoryQuery{AfterSeq: 8, HasAfter: true, Limit: 3}, 9, 10, false, d.ID},
			{"after the last", parley.HistoryQuery{AfterSeq: 10, HasAfter: true, Limit: 3}, 0, 0, false, d.ID},
			{"between", parley.HistoryQuery{AfterSeq: 2, HasAfter: true, BeforeSeq: 9, Limit: 3}, 3, 5, true, d.ID},
			{"between exactly", parley.HistoryQuery{AfterSeq: 2, HasAfter: true, BeforeSeq: 6, Limit: 3}, 3, 5, false, d.ID},
			{"between wide", parley.HistoryQuery{AfterSeq: 2, HasAfter: true, BeforeSeq: 6, Limit: 10}, 3, 5, false, d.ID},
			{"between adjacent", parley.HistoryQuery{AfterSeq: 4, HasAfter: true, BeforeSeq: 5, Limit: 10}, 0, 0, false, d.ID},
			{"between reversed", parley.HistoryQuery{AfterSeq: 8, HasAfter: true, BeforeSeq: 3, Limit: 10}, 0, 0, false, d.ID},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				msgs, more, err := db.Messages(ctx, tt.conversation, bob.ID, tt.q)
				if err != nil {
					t.Fatal(err)
				}
				var got []int64
				for _, m := range msgs {
					got = append(got, m.Seq)
				}
				var want []int64
				for s := tt.first; tt.first > 0 && s <= tt.last; s++ {
					want = append(want, s)
				}
				if !slices.Equal(got, want) || more != tt.more {
					t.Errorf("seqs %v has_more %v, want %v %v", got, more, want, tt.more)
				}
				if msgs == nil {
					t.Error("nil slice, want empty")
				}
			})
		}
		_, _, err := db.Messages(ctx, d.ID, bob.ID, parley.HistoryQuery{})
		wantCode(t, err, parley.CodeInvalidArgument)
	})
}

func TestMarkReceipt(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		db, rec := openTestDB(t, engine)
		alice, bob, carol := newUser(t, db, "alice"), newUser(t, db, "bob"), newUser(t, db, "carol")
		g := newGroup(t, db, alice.ID, bob.ID, carol.ID)
		empty := newGroup(t, db, alice.ID, bob.ID)
		for range 5 {
			send(t, db, g.ID, alice.ID, "m")
		}
		before, _ := db.Conversation(ctx, g.ID, bob.ID)
		rec.take()

		// Steps run in order on bob's watermarks in g (last_seq 5).
		steps := []struct {
			name                    string
			conv                    string
			kind                    parley.ReceiptKind
			seq                     int64
			moved                   bool
			eventSeq                int64 // the receipt published, if moved
			wantDelivered, wantRead int64
		}{
			{"nothing at zero", g.ID, parley.Delivered, 0, false, 0, 0, 0},
			{"negative", g.ID, parley.Read, -3, false, 0, 0, 0},
			{"delivered", g.ID, parley.Delivered, 2, true, 2, 2, 0},
			{"delivered again", g.ID, parley.Delivered, 2, false, 0, 2, 0},
			{"delivered backwards", g.ID, parley.Delivered, 1, false, 0, 2, 0},
			{"read below delivered", g.ID, parley.Read, 1, true, 1, 2, 1},
			{"read moves delivered", g.ID, parley.Read, 3, true, 3, 3, 3},
			{"read backwards", g.ID, parley.Read, 2, false, 0, 3, 3},
			{"delivered beyond last_seq is clamped", g.ID, parley.Delivered, 99, true, 5, 5, 3},
			{"read beyond last_seq is clamped", g.ID, parley.Read, 1000, true, 5, 5, 5},
			{"read at the end again", g.ID, parley.Read, 1000, false, 0, 5, 5},
			{"nothing to read yet", empty.ID, parley.Read, 1, false, 0, 5, 5},
		}
		for _, st := range steps {
			moved, err := db.MarkReceipt(ctx, bob.ID, st.conv, st.kind, st.seq, "")
			if err != nil || moved != st.moved {
				t.Fatalf("%s: moved %v err %v, want %v", st.name, moved, err, st.moved)
			}
			evs := rec.take()
			if !st.moved {
				if len(evs) != 0 {
					t.Errorf("%s: events %s, want none", st.name, describe(evs))
				}
			} else {
				want := parley.Receipt{ConversationID: g.ID, UserID: bob.ID, Kind: st.kind, Seq: st.eventSeq}
				if len(evs) != 1 || evs[0].Type != parley.EventReceipt || *evs[0].Receipt != want ||
					!slices.Equal(evs[0].Recipients, g.MemberIDs()) {
					t.Errorf("%s: events %s, want receipt %+v", st.name, describe(evs), want)
				}
			}
			c, err := db.Conversation(ctx, g.ID, bob.ID)
			if err != nil {
				t.Fatal(err)
			}
			m, _ := c.Member(bob.ID)
			if m.DeliveredSeq != st.wantDelivered || m.ReadSeq != st.wantRead || c.ReadSeq != st.wantRead {
				t.Errorf("%s: delivered %d read %d, want %d %d", st.name, m.DeliveredSeq, m.ReadSeq, st.wantDelivered, st.wantRead)
			}
			if c.UnreadCount != 5-st.wantRead {
				t.Errorf("%s: unread %d, want %d", st.name, c.UnreadCount, 5-st.wantRead)
			}
			if !c.UpdatedAt.Equal(before.UpdatedAt.Time) {
				t.Errorf("%s: a receipt moved updated_at", st.name)
			}
		}
		_, err := db.MarkReceipt(ctx, bob.ID, g.ID, "seen", 1, "")
		wantCode(t, err, parley.CodeInvalidArgument)
	})
}

func TestDeviceTokens(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		db, _ := openTestDB(t, engine)
		alice, bob := newUser(t, db, "alice"), newUser(t, db, "bob")
		owner := func(token string) (string, string) {
			var user, env string
			err := rawQueryRow(db, `SELECT user_id, environment FROM device_tokens WHERE token = ?`, token).Scan(&user, &env)
			if err != nil {
				return "", ""
			}
			return user, env
		}
		tok := strings.Repeat("ab", 32)
		steps := []struct {
			name        string
			t           parley.DeviceToken
			created     bool
			owner, env  string
			wantErrCode parley.Code
		}{
			{"new", parley.DeviceToken{UserID: alice.ID, Platform: parley.PlatformIOS, Token: tok, Environment: "sandbox"}, true, alice.ID, "sandbox", ""},
			{"again", parley.DeviceToken{UserID: alice.ID, Platform: parley.PlatformIOS, Token: tok, Environment: "production"}, false, alice.ID, "production", ""},
			{"moves to bob", parley.DeviceToken{UserID: bob.ID, Platform: parley.PlatformIOS, Token: tok, Environment: "production"}, true, bob.ID, "production", ""},
			{"bad platform", parley.DeviceToken{UserID: bob.ID, Platform: "android", Token: "x"}, false, "", "", parley.CodeInvalidArgument},
			{"no token", parley.DeviceToken{UserID: bob.ID, Platform: parley.PlatformWeb}, false, "", "", parley.CodeInvalidArgument},
		}
		for _, st := range steps {
			created, err := db.PutDeviceToken(ctx, st.t)
			wantCode(t, err, st.wantErrCode)
			if created != st.created {
				t.Errorf("%s: created %v, want %v", st.name, created, st.created)
			}
			if u, env := owner(st.t.Token); err == nil && (u != st.owner || env != st.env) {
				t.Errorf("%s: owner %s env %s, want %s %s", st.name, u, env, st.owner, st.env)
			}
		}
		// Alice cannot delete bob's token; bob can.
		if err := db.DeleteDeviceToken(ctx, alice.ID, tok); err != nil {
			t.Fatal(err)
		}
		if u, _ := owner(tok); u != bob.ID {
			t.Errorf("after foreign delete owner %q, want bob", u)
		}
		if err := db.DeleteDeviceToken(ctx, bob.ID, tok); err != nil {
			t.Fatal(err)
		}
		if u, _ := owner(tok); u != "" {
			t.Errorf("after delete owner %q, want none", u)
		}
		if err := db.DeleteDeviceToken(ctx, bob.ID, "unknown"); err != nil {
			t.Errorf("delete unknown: %v", err)
		}
	})
}
