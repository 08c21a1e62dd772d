package httpapi_test

import (
	"net/http"
	"slices"
	"testing"

	"github.com/parley-chat/parley"
)

func TestCreateConversation(t *testing.T) {
	n := startNode(t)
	us := n.users("alice", "bob", "carol")
	alice, bob, carol := us[0], us[1], us[2]

	var direct parley.Conversation
	t.Run("direct", func(t *testing.T) {
		r := n.do("POST", "/api/conversations", alice.AccessToken, map[string]any{"type": "direct", "member_ids": []string{bob.User.ID}})
		r.want(t, http.StatusCreated, &direct)
		if direct.Type != parley.Direct || direct.Title != nil || len(direct.Members) != 2 || direct.LastSeq != 0 || direct.LastMessage != nil {
			t.Errorf("direct conversation %+v", direct)
		}
		for _, m := range direct.Members {
			if m.Role != parley.RoleMember {
				t.Errorf("member %s of a direct conversation has role %s", m.UserID, m.Role)
			}
		}
		if _, ok := direct.Member(alice.User.ID); !ok {
			t.Errorf("caller is not a member: %+v", direct.Members)
		}
	})
	t.Run("direct again from either side", func(t *testing.T) {
		for _, c := range []struct {
			from  tokens
			other string
		}{{alice, bob.User.ID}, {bob, alice.User.ID}} {
			var again parley.Conversation
			n.do("POST", "/api/conversations", c.from.AccessToken, map[string]any{"type": "direct", "member_ids": []string{c.other}}).
				want(t, http.StatusOK, &again)
			if again.ID != direct.ID {
				t.Errorf("second create gave %s, want %s", again.ID, direct.ID)
			}
		}
	})
	t.Run("direct with null title", func(t *testing.T) {
		n.do("POST", "/api/conversations", alice.AccessToken, map[string]any{"type": "direct", "title": nil, "member_ids": []string{carol.User.ID}}).
			want(t, http.StatusCreated, nil)
	})
	t.Run("group", func(t *testing.T) {
		var g parley.Conversation
		n.do("POST", "/api/conversations", alice.AccessToken, map[string]any{"type": "group", "title": "Team", "member_ids": []string{bob.User.ID, carol.User.ID}}).
			want(t, http.StatusCreated, &g)
		if g.Type != parley.Group || g.Title == nil || *g.Title != "Team" || len(g.Members) != 3 {
			t.Fatalf("group %+v", g)
		}
		roles := map[string]parley.Role{}
		for _, m := range g.Members {
			roles[m.UserID] = m.Role
		}
		want := map[string]parley.Role{alice.User.ID: parley.RoleAdmin, bob.User.ID: parley.RoleMember, carol.User.ID: parley.RoleMember}
		for id, role := range want {
			if roles[id] != role {
				t.Errorf("role of %s = %q, want %q", id, roles[id], role)
			}
		}
	})

	unknown := "0190d1f0-0000-7000-8000-000000000000"
	invalid := []struct {
		name string
		body any
	}{
		{"direct with a title", map[string]any{"type": "direct", "title": "x", "member_ids": []string{bob.User.ID}}},
		{"direct with two others", map[string]any{"type": "direct", "member_ids": []string{bob.User.ID, carol.User.ID}}},
		{"direct with nobody", map[string]any{"type": "direct", "member_ids": []string{}}},
		{"direct with oneself", map[string]any{"type": "direct", "member_ids": []string{alice.User.ID}}},
		{"direct with an unknown user", map[string]any{"type": "direct", "member_ids": []string{unknown}}},
		{"direct with a malformed id", map[string]any{"type": "direct", "member_ids": []string{"bob"}}},
		{"group without others", map[string]any{"type": "group", "title": "Solo", "member_ids": []string{}}},
		{"group without member_ids", map[string]any{"type": "group", "title": "Solo"}},
		{"group of only the caller", map[string]any{"type": "group", "title": "Solo", "member_ids": []string{alice.User.ID}}},
		{"group with an unknown user", map[string]any{"type": "group", "title": "T", "member_ids": []string{bob.User.ID, unknown}}},
		{"group without a title", map[string]any{"type": "group", "member_ids": []string{bob.User.ID}}},
		{"group with a blank title", map[string]any{"type": "group", "title": "  ", "member_ids": []string{bob.User.ID}}},
		{"unknown type", map[string]any{"type": "channel", "member_ids": []string{bob.User.ID}}},
		{"no type", map[string]any{"member_ids": []string{bob.User.ID}}},
		{"member_ids not an array", map[string]any{"type": "direct", "member_ids": bob.User.ID}},
		{"title not a string", map[string]any{"type": "group", "title": 5, "member_ids": []string{bob.User.ID}}},
	}
	for _, c := range invalid {
		t.Run(c.name, func(t *testing.T) {
			n.do("POST", "/api/conversations", alice.AccessToken, c.body).wantProblem(t, parley.CodeInvalidArgument)
		})
	}
}

func TestConversations(t *testing.T) {
	n := startNode(t)
	us := n.users("alice", "bob", "carol", "dave")
	alice, bob, carol, dave := us[0], us[1], us[2], us[3]

	withBob := n.direct(alice, bob)
	withCarol := n.direct(alice, carol)
	team := n.group(alice, "Team", bob, carol)

	list := func(tok tokens) []string {
		t.Helper()
		var res struct {
			Conversations []parley.Conversation `json:"conversations"`
		}
		n.do("GET", "/api/conversations", tok.AccessToken, nil).want(t, http.StatusOK, &res)
		if res.Conversations == nil {
			t.Fatal("conversations is null")
		}
		ids := make([]string, len(res.Conversations))
		for i, c := range res.Conversations {
			ids[i] = c.ID
		}
		return ids
	}

	steps := []struct {
		name   string
		sendIn string
		want   []string
	}{
		{"after creation", "", []string{team.ID, withCarol.ID, withBob.ID}},
		{"after a message to bob", withBob.ID, []string{withBob.ID, team.ID, withCarol.ID}},
		{"after a message to carol", withCarol.ID, []string{withCarol.ID, withBob.ID, team.ID}},
		{"after a message to the team", team.ID, []string{team.ID, withCarol.ID, withBob.ID}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.sendIn != "" {
				n.sendText(alice, s.sendIn, "hi")
			}
			if got := list(alice); !slices.Equal(got, s.want) {
				t.Errorf("order %v, want %v", got, s.want)
			}
		})
	}
	t.Run("only the caller's", func(t *testing.T) {
		if got := list(bob); !slices.Equal(got, []string{team.ID, withBob.ID}) {
			t.Errorf("bob's %v", got)
		}
		if got := list(dave); len(got) != 0 {
			t.Errorf("dave's %v, want none", got)
		}
	})

	t.Run("get", func(t *testing.T) {
		c := n.conversation(bob, team.ID)
		if c.ID != team.ID || c.LastSeq != 1 || c.LastMessage == nil || c.LastMessage.Text != "hi" || c.UnreadCount != 1 || c.ReadSeq != 0 {
			t.Errorf("team as bob sees it: %+v", c)
		}
		if mine := n.conversation(alice, team.ID); mine.UnreadCount != 0 {
			t.Errorf("alice's own message is unread for her: %+v", mine)
		}
	})
	// Not a member, or no such conversation: the same 404, never 403.
	for _, c := range []struct{ name, id string }{
		{"not a member", withBob.ID},
		{"unknown", "0190d1f0-0000-7000-8000-000000000000"},
		{"malformed id", "nope"},
	} {
		t.Run("get "+c.name, func(t *testing.T) {
			n.do("GET", "/api/conversations/"+c.id, dave.AccessToken, nil).wantProblem(t, parley.CodeNotFound)
			n.do("GET", "/api/conversations/"+c.id+"/messages", dave.AccessToken, nil).wantProblem(t, parley.CodeNotFound)
			n.do("POST", "/api/conversations/"+c.id+"/messages", dave.AccessToken, map[string]any{"client_message_id": "x", "text": "hi"}).
				wantProblem(t, parley.CodeNotFound)
			n.do("POST", "/api/conversations/"+c.id+"/receipts", dave.AccessToken, map[string]any{"kind": "read", "seq": 1}).
				wantProblem(t, parley.CodeNotFound)
			n.do("POST", "/api/conversations/"+c.id+"/members", dave.AccessToken, map[string]any{"user_id": dave.User.ID}).
				wantProblem(t, parley.CodeNotFound)
			n.do("DELETE", "/api/conversations/"+c.id+"/members/"+dave.User.ID, dave.AccessToken, nil).
				wantProblem(t, parley.CodeNotFound)
		})
	}
}

func TestMembers(t *testing.T) {
	n := startNode(t)
	us := n.users("alice", "bob", "carol", "dave", "erin")
	alice, bob, carol, dave, erin := us[0], us[1], us[2], us[3], us[4]

	team := n.group(alice, "Team", bob, carol)
	add := func(by tokens, convID, userID string) *response {
		return n.do("POST", "/api/conversations/"+convID+"/members", by.AccessToken, map[string]string{"user_id": userID})
	}
	remove := func(by tokens, convID, userID string) *response {
		return n.do("DELETE", "/api/conversations/"+convID+"/members/"+userID, by.AccessToken, nil)
	}
	members := func(c parley.Conversation) map[string]parley.Role {
		m := map[string]parley.Role{}
		for _, mem := range c.Members {
			m[mem.UserID] = mem.Role
		}
		return m
	}

	t.Run("admin adds", func(t *testing.T) {
		var c parley.Conversation
		add(alice, team.ID, dave.User.ID).want(t, http.StatusOK, &c)
		if role, ok := members(c)[dave.User.ID]; !ok || role != parley.RoleMember || len(c.Members) != 4 {
			t.Errorf("after adding dave: %+v", c.Members)
		}
		n.conversation(dave, team.ID) // dave can see it now
	})
	t.Run("re-adding changes nothing", func(t *testing.T) {
		before := n.conversation(alice, team.ID)
		var c parley.Conversation
		add(alice, team.ID, dave.User.ID).want(t, http.StatusOK, &c)
		if len(c.Members) != len(before.Members) || !c.UpdatedAt.Equal(before.UpdatedAt.Time) {
			t.Errorf("re-add changed the group: before %+v, after %+v", before, c)
		}
	})
	t.Run("non-admin adds", func(t *testing.T) {
		add(bob, team.ID, erin.User.ID).wantProblem(t, parley.CodeForbidden)
	})
	t.Run("adding an unknown user", func(t *testing.T) {
		add(alice, team.ID, "0190d1f0-0000-7000-8000-000000000000").wantProblem(t, parley.CodeInvalidArgument)
	})
	t.Run("adding without user_id", func(t *testing.T) {
		n.do("POST", "/api/conversations/"+team.ID+"/members", alice.AccessToken, map[string]string{}).wantProblem(t, parley.CodeInvalidArgument)
	})
	t.Run("member removes another", func(t *testing.T) {
		remove(bob, team.ID, carol.User.ID).wantProblem(t, parley.CodeForbidden)
	})
	t.Run("member leaves", func(t *testing.T) {
		r := remove(bob, team.ID, bob.User.ID)
		r.want(t, http.StatusNoContent, nil)
		n.do("GET", "/api/conversations/"+team.ID, bob.AccessToken, nil).wantProblem(t, parley.CodeNotFound)
	})
	t.Run("admin removes another", func(t *testing.T) {
		remove(alice, team.ID, carol.User.ID).want(t, http.StatusNoContent, nil)
		if _, ok := members(n.conversation(alice, team.ID))[carol.User.ID]; ok {
			t.Error("carol is still a member")
		}
	})

	direct := n.direct(alice, bob)
	t.Run("direct gains no members", func(t *testing.T) {
		add(alice, direct.ID, carol.User.ID).wantProblem(t, parley.CodeForbidden)
	})
	t.Run("direct loses no members", func(t *testing.T) {
		remove(alice, direct.ID, alice.User.ID).wantProblem(t, parley.CodeForbidden)
		remove(alice, direct.ID, bob.User.ID).wantProblem(t, parley.CodeForbidden)
	})

	t.Run("last admin leaves", func(t *testing.T) {
		g := n.group(alice, "Handover", bob)
		add(alice, g.ID, carol.User.ID).want(t, http.StatusOK, nil)
		remove(alice, g.ID, alice.User.ID).want(t, http.StatusNoContent, nil)
		after := members(n.conversation(bob, g.ID))
		want := map[string]parley.Role{bob.User.ID: parley.RoleAdmin, carol.User.ID: parley.RoleMember}
		if len(after) != len(want) || after[bob.User.ID] != want[bob.User.ID] || after[carol.User.ID] != want[carol.User.ID] {
			t.Errorf("roles after the admin left: %v, want %v", after, want)
		}
		// The new admin can act as one.
		add(bob, g.ID, erin.User.ID).want(t, http.StatusOK, nil)
	})
}
