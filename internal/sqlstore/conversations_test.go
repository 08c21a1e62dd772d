package sqlstore

import (
	"context"
	"slices"
	"testing"

	"github.com/parley-chat/parley"
)

func TestCreateConversationValidation(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		db, rec := openTestDB(t, engine)
		alice, bob, carol := newUser(t, db, "alice"), newUser(t, db, "bob"), newUser(t, db, "carol")
		title := "t"
		tests := []struct {
			name string
			p    parley.NewConversation
		}{
			{"direct with nobody", parley.NewConversation{Type: parley.Direct, CreatorID: alice.ID}},
			{"direct with oneself", parley.NewConversation{Type: parley.Direct, CreatorID: alice.ID, MemberIDs: []string{alice.ID}}},
			{"direct with two", parley.NewConversation{Type: parley.Direct, CreatorID: alice.ID, MemberIDs: []string{bob.ID, carol.ID}}},
			{"direct with title", parley.NewConversation{Type: parley.Direct, CreatorID: alice.ID, MemberIDs: []string{bob.ID}, Title: &title}},
			{"direct with unknown", parley.NewConversation{Type: parley.Direct, CreatorID: alice.ID, MemberIDs: []string{mustID(t)}}},
			{"group alone", parley.NewConversation{Type: parley.Group, CreatorID: alice.ID, Title: &title}},
			{"group with only the creator", parley.NewConversation{Type: parley.Group, CreatorID: alice.ID, Title: &title, MemberIDs: []string{alice.ID, alice.ID}}},
			{"group with unknown", parley.NewConversation{Type: parley.Group, CreatorID: alice.ID, Title: &title, MemberIDs: []string{bob.ID, mustID(t)}}},
			{"unknown creator", parley.NewConversation{Type: parley.Group, CreatorID: mustID(t), Title: &title, MemberIDs: []string{bob.ID}}},
			{"bad type", parley.NewConversation{Type: "channel", CreatorID: alice.ID, MemberIDs: []string{bob.ID}}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, _, err := db.CreateConversation(context.Background(), tt.p)
				wantCode(t, err, parley.CodeInvalidArgument)
			})
		}
		if evs := rec.take(); len(evs) != 0 {
			t.Errorf("events = %s, want none", describe(evs))
		}
		if convs, _ := db.Conversations(context.Background(), alice.ID); len(convs) != 0 {
			t.Errorf("alice has %d conversations, want 0", len(convs))
		}
	})
}

func TestCreateGroup(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		db, rec := openTestDB(t, engine)
		alice, bob, carol := newUser(t, db, "alice"), newUser(t, db, "bob"), newUser(t, db, "carol")
		title := "Trip"
		c, created, err := db.CreateConversation(context.Background(), parley.NewConversation{
			Type: parley.Group, Title: &title, CreatorID: alice.ID,
			MemberIDs: []string{carol.ID, bob.ID, carol.ID, alice.ID}, // duplicates and the creator are dropped
		})
		if err != nil || !created {
			t.Fatalf("created %v, err %v", created, err)
		}
		if c.Type != parley.Group || c.Title == nil || *c.Title != title || c.LastSeq != 0 || c.LastMessage != nil ||
			c.CreatedAt.IsZero() || !c.UpdatedAt.Equal(c.CreatedAt.Time) {
			t.Errorf("conversation = %+v", c)
		}
		if got, want := len(c.Members), 3; got != want {
			t.Fatalf("%d members, want %d", got, want)
		}
		for _, m := range c.Members {
			wantRole := parley.RoleMember
			if m.UserID == alice.ID {
				wantRole = parley.RoleAdmin
			}
			if m.Role != wantRole || m.ReadSeq != 0 || m.DeliveredSeq != 0 {
				t.Errorf("member %+v, want role %s", m, wantRole)
			}
		}
		if !slices.Equal(sortedCopy(c.MemberIDs()...), sortedCopy(alice.ID, bob.ID, carol.ID)) {
			t.Errorf("members %v", c.MemberIDs())
		}

		evs := rec.take()
		if len(evs) != 1 || evs[0].Type != parley.EventConversationUpdated {
			t.Fatalf("events = %s, want one conversation.updated", describe(evs))
		}
		ev := evs[0]
		if !slices.Equal(ev.Recipients, c.MemberIDs()) {
			t.Errorf("recipients %v, want %v", ev.Recipients, c.MemberIDs())
		}
		if ev.Conversation.Conversation.ID != c.ID || len(ev.Conversation.Views) != 3 {
			t.Errorf("change = %+v", ev.Conversation)
		}
		// The returned conversation shares nothing with the published event.
		c.Members[0].Role = "changed"
		if ev.Conversation.Conversation.Members[0].Role == "changed" {
			t.Error("returned conversation aliases the event")
		}
	})
}

func TestDirectDedupe(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		db, rec := openTestDB(t, engine)
		ctx := context.Background()
		alice, bob, carol := newUser(t, db, "alice"), newUser(t, db, "bob"), newUser(t, db, "carol")
		first, created, err := db.CreateConversation(ctx, parley.NewConversation{Type: parley.Direct, CreatorID: alice.ID, MemberIDs: []string{bob.ID}})
		if err != nil || !created {
			t.Fatalf("created %v, err %v", created, err)
		}
		if first.Title != nil || first.Type != parley.Direct {
			t.Errorf("direct = %+v", first)
		}
		for _, m := range first.Members {
			if m.Role != parley.RoleMember {
				t.Errorf("direct member %+v, want role member", m)
			}
		}
		if evs := rec.take(); len(evs) != 1 || !slices.Equal(sortedCopy(evs[0].Recipients...), sortedCopy(alice.ID, bob.ID)) {
			t.Fatalf("events = %s", describe(evs))
		}
		send(t, db, first.ID, alice.ID, "hi")
		rec.take()

		// Either member asking again gets the same conversation, as they see it.
		for _, p := range []parley.NewConversation{
			{Type: parley.Direct, CreatorID: alice.ID, MemberIDs: []string{bob.ID}},
			{Type: parley.Direct, CreatorID: bob.ID, MemberIDs: []string{alice.ID, alice.ID}},
		} {
			again, created, err := db.CreateConversation(ctx, p)
			if err != nil || created || again.ID != first.ID {
				t.Errorf("again: id %s created %v err %v; want %s, false", again.ID, created, err, first.ID)
			}
			wantUnread := int64(0)
			if p.CreatorID == bob.ID {
				wantUnread = 1
			}
			if again.UnreadCount != wantUnread || again.LastSeq != 1 {
				t.Errorf("as %s: unread %d last_seq %d", p.CreatorID, again.UnreadCount, again.LastSeq)
			}
		}
		if evs := rec.take(); len(evs) != 0 {
			t.Errorf("events = %s, want none", describe(evs))
		}
		// Another pair gets its own.
		other := newDirect(t, db, bob.ID, carol.ID)
		if other.ID == first.ID {
			t.Error("bob-carol reused alice-bob")
		}
	})
}

func TestConversations(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		db, _ := openTestDB(t, engine)
		ctx := context.Background()
		alice, bob, carol := newUser(t, db, "alice"), newUser(t, db, "bob"), newUser(t, db, "carol")
		g := newGroup(t, db, alice.ID, bob.ID, carol.ID)
		d := newDirect(t, db, alice.ID, bob.ID)
		lonely := newDirect(t, db, alice.ID, carol.ID)
		newDirect(t, db, bob.ID, carol.ID) // not alice's

		send(t, db, g.ID, bob.ID, "1")
		send(t, db, g.ID, alice.ID, "2")
		send(t, db, g.ID, carol.ID, "3")
		last := send(t, db, d.ID, bob.ID, "4")
		if _, err := db.MarkReceipt(ctx, alice.ID, g.ID, parley.Read, 1, ""); err != nil {
			t.Fatal(err)
		}

		convs, err := db.Conversations(ctx, alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, c := range convs {
			ids = append(ids, c.ID)
		}
		// Latest activity first: d had the last message, then g; lonely has
		// none, and the receipt did not move g's updated_at.
		if want := []string{d.ID, g.ID, lonely.ID}; !slices.Equal(ids, want) {
			t.Fatalf("order %v, want %v", ids, want)
		}
		dc, gc, lc := convs[0], convs[1], convs[2]
		if dc.LastMessage == nil || *dc.LastMessage != last || dc.LastSeq != 1 || dc.UnreadCount != 1 || dc.ReadSeq != 0 {
			t.Errorf("direct = %+v, last %+v", dc, dc.LastMessage)
		}
		if !dc.UpdatedAt.Equal(last.CreatedAt.Time) {
			t.Errorf("updated_at %v, want the last message's %v", dc.UpdatedAt, last.CreatedAt)
		}
		// Unread: after read_seq 1, messages 2 (alice's own) and 3 (carol's).
		if gc.LastSeq != 3 || gc.ReadSeq != 1 || gc.UnreadCount != 1 || gc.LastMessage.Text != "3" || len(gc.Members) != 3 {
			t.Errorf("group = %+v", gc)
		}
		if lc.LastMessage != nil || lc.UnreadCount != 0 || len(lc.Members) != 2 {
			t.Errorf("empty direct = %+v", lc)
		}
		if m, _ := gc.Member(alice.ID); m.ReadSeq != 1 || m.DeliveredSeq != 1 {
			t.Errorf("alice in group = %+v", m)
		}

		// Conversation agrees with the list.
		one, err := db.Conversation(ctx, g.ID, alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		if one.UnreadCount != gc.UnreadCount || one.ReadSeq != gc.ReadSeq || !slices.Equal(one.Members, gc.Members) ||
			*one.LastMessage != *gc.LastMessage {
			t.Errorf("Conversation = %+v, list has %+v", one, gc)
		}
		// Bob sees his own counts.
		asBob, err := db.Conversation(ctx, g.ID, bob.ID)
		if err != nil {
			t.Fatal(err)
		}
		if asBob.ReadSeq != 0 || asBob.UnreadCount != 2 {
			t.Errorf("as bob: read %d unread %d, want 0, 2", asBob.ReadSeq, asBob.UnreadCount)
		}

		ids, err = db.MemberIDs(ctx, g.ID, carol.ID)
		if err != nil || !slices.Equal(ids, gc.MemberIDs()) {
			t.Errorf("MemberIDs = %v, %v; want %v", ids, err, gc.MemberIDs())
		}
		none, err := db.Conversations(ctx, mustID(t))
		if err != nil || none == nil || len(none) != 0 {
			t.Errorf("Conversations(stranger) = %v, %v; want empty", none, err)
		}
	})
}

func TestAddMember(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		db, rec := openTestDB(t, engine)
		alice, bob, carol, dave := newUser(t, db, "alice"), newUser(t, db, "bob"), newUser(t, db, "carol"), newUser(t, db, "dave")
		g := newGroup(t, db, alice.ID, bob.ID)
		d := newDirect(t, db, alice.ID, bob.ID)
		rec.take()

		tests := []struct {
			name          string
			conv, actor   string
			user          string
			want          parley.Code
			wantEvent     bool
			wantMembersOf int
		}{
			{"outsider actor", g.ID, carol.ID, dave.ID, parley.CodeNotFound, false, 2},
			{"unknown conversation", mustID(t), alice.ID, dave.ID, parley.CodeNotFound, false, 0},
			{"direct", d.ID, alice.ID, carol.ID, parley.CodeForbidden, false, 0},
			{"not admin", g.ID, bob.ID, carol.ID, parley.CodeForbidden, false, 2},
			{"unknown user", g.ID, alice.ID, mustID(t), parley.CodeInvalidArgument, false, 2},
			{"already a member", g.ID, alice.ID, bob.ID, "", false, 2},
			{"admin adds", g.ID, alice.ID, carol.ID, "", true, 3},
			{"added again", g.ID, alice.ID, carol.ID, "", false, 3},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before, _ := db.Conversation(ctx, g.ID, alice.ID)
				c, err := db.AddMember(ctx, tt.conv, tt.actor, tt.user)
				wantCode(t, err, tt.want)
				evs := rec.take()
				if tt.wantEvent != (len(evs) == 1) || len(evs) > 1 {
					t.Fatalf("events = %s, want event %v", describe(evs), tt.wantEvent)
				}
				if err != nil {
					return
				}
				if len(c.Members) != tt.wantMembersOf {
					t.Errorf("%d members, want %d", len(c.Members), tt.wantMembersOf)
				}
				if !tt.wantEvent {
					if !c.UpdatedAt.Equal(before.UpdatedAt.Time) {
						t.Error("a no-op moved updated_at")
					}
					return
				}
				ev := evs[0]
				if ev.Type != parley.EventConversationUpdated || !slices.Contains(ev.Recipients, tt.user) ||
					len(ev.Recipients) != tt.wantMembersOf {
					t.Errorf("event %s%v", ev.Type, ev.Recipients)
				}
				if m, ok := c.Member(tt.user); !ok || m.Role != parley.RoleMember {
					t.Errorf("new member %+v, %v", m, ok)
				}
				if c.UpdatedAt.Before(before.UpdatedAt.Time) {
					t.Error("updated_at moved back")
				}
			})
		}
	})
}

func TestRemoveMember(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		// Each case starts from a group made by alice (admin) with bob, carol
		// and dave, who joined later in that order.
		type setup struct {
			db                      *DB
			rec                     *recorder
			alice, bob, carol, dave string
			group, direct           string
		}
		build := func(t *testing.T) setup {
			db, rec := openTestDB(t, engine)
			s := setup{db: db, rec: rec}
			s.alice, s.bob = newUser(t, db, "alice").ID, newUser(t, db, "bob").ID
			s.carol, s.dave = newUser(t, db, "carol").ID, newUser(t, db, "dave").ID
			s.group = newGroup(t, db, s.alice, s.bob).ID
			for _, u := range []string{s.carol, s.dave} {
				if _, err := db.AddMember(ctx, s.group, s.alice, u); err != nil {
					t.Fatal(err)
				}
			}
			s.direct = newDirect(t, db, s.alice, s.bob).ID
			rec.take()
			return s
		}

		t.Run("refused", func(t *testing.T) {
			s := build(t)
			outsider := newUser(t, s.db, "eve").ID
			tests := []struct {
				name              string
				conv, actor, user string
				want              parley.Code
			}{
				{"outsider actor", s.group, outsider, s.bob, parley.CodeNotFound},
				{"unknown conversation", mustID(t), s.alice, s.bob, parley.CodeNotFound},
				{"direct", s.direct, s.alice, s.bob, parley.CodeForbidden},
				{"direct self", s.direct, s.alice, s.alice, parley.CodeForbidden},
				{"member removes another", s.group, s.bob, s.carol, parley.CodeForbidden},
				{"target not a member", s.group, s.alice, outsider, parley.CodeNotFound},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					wantCode(t, s.db.RemoveMember(ctx, tt.conv, tt.actor, tt.user), tt.want)
				})
			}
			if evs := s.rec.take(); len(evs) != 0 {
				t.Errorf("events = %s, want none", describe(evs))
			}
		})

		// removal: actor removes user; then the remaining members and the admin.
		tests := []struct {
			name      string
			actor     func(s setup) string
			user      func(s setup) string
			remaining func(s setup) []string
			admin     func(s setup) string
		}{
			{
				"admin removes a member",
				func(s setup) string { return s.alice }, func(s setup) string { return s.carol },
				func(s setup) []string { return []string{s.alice, s.bob, s.dave} },
				func(s setup) string { return s.alice },
			},
			{
				"member leaves",
				func(s setup) string { return s.dave }, func(s setup) string { return s.dave },
				func(s setup) []string { return []string{s.alice, s.bob, s.carol} },
				func(s setup) string { return s.alice },
			},
			{
				"last admin leaves: the longest-standing member takes over",
				func(s setup) string { return s.alice }, func(s setup) string { return s.alice },
				func(s setup) []string { return []string{s.bob, s.carol, s.dave} },
				func(s setup) string { return s.bob },
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := build(t)
				before, _ := s.db.Conversation(ctx, s.group, s.alice)
				send(t, s.db, s.group, s.bob, "hello")
				s.rec.take()
				user := tt.user(s)
				if err := s.db.RemoveMember(ctx, s.group, tt.actor(s), user); err != nil {
					t.Fatal(err)
				}
				evs := s.rec.take()
				if len(evs) != 1 || evs[0].Type != parley.EventConversationUpdated {
					t.Fatalf("events = %s, want one conversation.updated", describe(evs))
				}
				ev := evs[0]
				remaining := tt.remaining(s)
				if want := append(slices.Clone(remaining), user); !slices.Equal(sortedCopy(ev.Recipients...), sortedCopy(want...)) {
					t.Errorf("recipients %v, want %v", ev.Recipients, want)
				}
				conv := ev.Conversation.Conversation
				if !slices.Equal(sortedCopy(conv.MemberIDs()...), sortedCopy(remaining...)) {
					t.Errorf("members %v, want %v", conv.MemberIDs(), remaining)
				}
				// The removed user's view is theirs: bob's message is unread.
				if v := ev.Conversation.For(user); user != s.bob && v.UnreadCount != 1 {
					t.Errorf("removed user's view: unread %d, want 1", v.UnreadCount)
				}
				var admins []string
				for _, m := range conv.Members {
					if m.Role == parley.RoleAdmin {
						admins = append(admins, m.UserID)
					}
				}
				if want := []string{tt.admin(s)}; !slices.Equal(admins, want) {
					t.Errorf("admins %v, want %v", admins, want)
				}
				if !conv.UpdatedAt.After(before.UpdatedAt.Time) && !conv.UpdatedAt.Equal(before.UpdatedAt.Time) {
					t.Error("updated_at moved back")
				}
				_, err := s.db.Conversation(ctx, s.group, user)
				wantCode(t, err, parley.CodeNotFound)
			})
		}

		t.Run("everyone leaves", func(t *testing.T) {
			s := build(t)
			for _, u := range []string{s.alice, s.bob, s.carol, s.dave} {
				if err := s.db.RemoveMember(ctx, s.group, u, u); err != nil {
					t.Fatalf("leave: %v", err)
				}
			}
			evs := s.rec.take()
			if len(evs) != 4 {
				t.Fatalf("events = %s", describe(evs))
			}
			lastEv := evs[3]
			if !slices.Equal(lastEv.Recipients, []string{s.dave}) || len(lastEv.Conversation.Conversation.Members) != 0 {
				t.Errorf("last leave event %v, members %v", lastEv.Recipients, lastEv.Conversation.Conversation.Members)
			}
			// Each leave promoted the next longest-standing member.
			for i, want := range []string{s.bob, s.carol, s.dave} {
				conv := evs[i].Conversation.Conversation
				if m, _ := conv.Member(want); m.Role != parley.RoleAdmin {
					t.Errorf("after leave %d: %s is %s, want admin", i, want, m.Role)
				}
			}
		})
	})
}
