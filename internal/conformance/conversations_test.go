package conformance

import (
	"net/http"
	"slices"
	"testing"
)

const unknownID = "0190a0a0-0000-7000-8000-000000000000"

func TestCreateConversation(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	us := n.users(t, "ann", "ben", "cat")
	ann, ben, cat := us[0], us[1], us[2]

	t.Run("direct", func(t *testing.T) {
		d := n.createDirect(t, ann, ben)
		if d["type"] != "direct" {
			t.Errorf("type %v", d["type"])
		}
		wantNull(t, "direct", d, "title")
		wantNull(t, "direct", d, "last_message")
		for key, want := range map[string]int64{"last_seq": 0, "read_seq": 0, "unread_count": 0} {
			if got := wantInt(t, "direct", d, key); got != want {
				t.Errorf("%s %d, want %d", key, got, want)
			}
		}
		if !hasMember(d, ann.id) || !hasMember(d, ben.id) {
			t.Errorf("members %v, want ann and ben", d["members"])
		}
		// The same pair, from either side, answers 200 with the same one.
		again := n.do(t, "POST", "/api/conversations", ben.access, obj{"type": "direct", "member_ids": []string{ann.id}}).want(t, http.StatusOK)
		checkConversation(t, "existing direct", again)
		if again["id"] != d["id"] {
			t.Errorf("existing direct %v, want %v", again["id"], d["id"])
		}
		n.do(t, "POST", "/api/conversations", ann.access, obj{"type": "direct", "title": nil, "member_ids": []string{ben.id}}).want(t, http.StatusOK)
	})

	t.Run("group", func(t *testing.T) {
		g := n.createGroup(t, ann, "Team", ben, cat)
		if g["title"] != "Team" || g["type"] != "group" {
			t.Errorf("group %v", g)
		}
		if len(g["members"].([]any)) != 3 {
			t.Errorf("members %v", g["members"])
		}
		for _, u := range us {
			want := "member"
			if u.id == ann.id {
				want = "admin"
			}
			if got := memberOf(t, g, u.id)["role"]; got != want {
				t.Errorf("%s has role %v, want %s", u.name, got, want)
			}
		}
		// The caller is always a member, listed or not.
		g2 := n.do(t, "POST", "/api/conversations", ann.access, obj{"type": "group", "title": "T2", "member_ids": []string{ann.id, ben.id}}).want(t, http.StatusCreated)
		if len(g2["members"].([]any)) != 2 {
			t.Errorf("members %v", g2["members"])
		}
	})

	t.Run("refused", func(t *testing.T) {
		cases := []struct {
			name string
			body obj
			code string
		}{
			{"direct with a title", obj{"type": "direct", "title": "x", "member_ids": []string{ben.id}}, "invalid_argument"},
			{"direct with two others", obj{"type": "direct", "member_ids": []string{ben.id, cat.id}}, "invalid_argument"},
			{"direct with nobody", obj{"type": "direct", "member_ids": []string{}}, "invalid_argument"},
			{"direct with oneself", obj{"type": "direct", "member_ids": []string{ann.id}}, "invalid_argument"},
			{"direct with an unknown user", obj{"type": "direct", "member_ids": []string{unknownID}}, "invalid_argument"},
			{"direct with a malformed id", obj{"type": "direct", "member_ids": []string{"bob"}}, "invalid_argument"},
			{"group without others", obj{"type": "group", "title": "alone", "member_ids": []string{}}, "invalid_argument"},
			{"group with only oneself", obj{"type": "group", "title": "alone", "member_ids": []string{ann.id}}, "invalid_argument"},
			{"group with an unknown user", obj{"type": "group", "title": "x", "member_ids": []string{ben.id, unknownID}}, "invalid_argument"},
			{"unknown type", obj{"type": "channel", "title": "x", "member_ids": []string{ben.id}}, "invalid_argument"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				n.do(t, "POST", "/api/conversations", ann.access, c.body).wantProblem(t, 400, "invalid_argument")
			})
		}
		n.do(t, "POST", "/api/conversations", "", obj{"type": "direct", "member_ids": []string{ben.id}}).wantProblem(t, 401, "unauthenticated")
	})
}

func TestNotAMemberIsNotFound(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	us := n.users(t, "in", "in", "out")
	a, b, out := us[0], us[1], us[2]
	g := n.createGroup(t, a, "private", b)
	id := g["id"].(string)
	n.send(t, a, id, "secret")

	cases := []struct {
		method, path string
		body         any
	}{
		{"GET", "/api/conversations/" + id, nil},
		{"GET", "/api/conversations/" + id + "/messages", nil},
		{"POST", "/api/conversations/" + id + "/messages", obj{"client_message_id": "x", "kind": "text", "text": "hi"}},
		{"POST", "/api/conversations/" + id + "/receipts", obj{"kind": "read", "seq": 1}},
		{"POST", "/api/conversations/" + id + "/members", obj{"user_id": out.id}},
		{"DELETE", "/api/conversations/" + id + "/members/" + out.id, nil},
		{"DELETE", "/api/conversations/" + id + "/members/" + b.id, nil},
		{"GET", "/api/conversations/" + unknownID, nil},
		{"GET", "/api/conversations/" + unknownID + "/messages", nil},
		{"GET", "/api/conversations/not-a-uuid", nil},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			n.do(t, c.method, c.path, out.access, c.body).wantProblem(t, 404, "not_found")
		})
	}
	// Nothing changed.
	got := n.getConversation(t, a, id)
	if len(got["members"].([]any)) != 2 || intOf(got["last_seq"]) != 1 {
		t.Errorf("conversation changed by a non-member: %v", got)
	}
}

func TestMembers(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	us := n.users(t, "adm", "mem", "new", "late", "other")
	adm, mem, nw, late, other := us[0], us[1], us[2], us[3], us[4]
	g := n.createGroup(t, adm, "members", mem)
	id := g["id"].(string)
	add := func(by user, who string) *resp {
		return n.do(t, "POST", "/api/conversations/"+id+"/members", by.access, obj{"user_id": who})
	}
	remove := func(by user, who string) *resp {
		return n.do(t, "DELETE", "/api/conversations/"+id+"/members/"+who, by.access, nil)
	}

	tick()
	c := add(adm, nw.id).want(t, http.StatusOK)
	checkConversation(t, "after add", c)
	if !hasMember(c, nw.id) || memberOf(t, c, nw.id)["role"] != "member" {
		t.Fatalf("added member missing: %v", c["members"])
	}
	if !wantTime(t, "after add", c, "updated_at").After(wantTime(t, "before", g, "updated_at")) {
		t.Errorf("updated_at did not move on a membership change: %v → %v", g["updated_at"], c["updated_at"])
	}
	// Adding a member again answers 200 and changes nothing.
	tick()
	again := add(adm, nw.id).want(t, http.StatusOK)
	if again["updated_at"] != c["updated_at"] || len(again["members"].([]any)) != 3 {
		t.Errorf("adding a member again changed the conversation: %v → %v", c, again)
	}

	add(mem, other.id).wantProblem(t, 403, "forbidden")
	add(adm, unknownID).wantProblem(t, 400, "invalid_argument")
	add(other, late.id).wantProblem(t, 404, "not_found")
	remove(mem, nw.id).wantProblem(t, 403, "forbidden")

	d := n.createDirect(t, adm, mem)
	n.do(t, "POST", "/api/conversations/"+d["id"].(string)+"/members", adm.access, obj{"user_id": nw.id}).wantProblem(t, 403, "forbidden")
	n.do(t, "DELETE", "/api/conversations/"+d["id"].(string)+"/members/"+mem.id, adm.access, nil).wantProblem(t, 403, "forbidden")
	n.do(t, "DELETE", "/api/conversations/"+d["id"].(string)+"/members/"+adm.id, adm.access, nil).wantProblem(t, 403, "forbidden")

	tick()
	add(adm, late.id).want(t, http.StatusOK)

	// A member leaves.
	before := n.getConversation(t, adm, id)
	tick()
	remove(nw, nw.id).want(t, http.StatusNoContent)
	after := n.getConversation(t, adm, id)
	if hasMember(after, nw.id) {
		t.Error("left member still listed")
	}
	if !wantTime(t, "after leave", after, "updated_at").After(wantTime(t, "before", before, "updated_at")) {
		t.Errorf("updated_at did not move on a leave: %v → %v", before["updated_at"], after["updated_at"])
	}
	n.do(t, "GET", "/api/conversations/"+id, nw.access, nil).wantProblem(t, 404, "not_found")

	// The last admin leaves: the longest-standing member (mem, who joined
	// before late) becomes admin.
	remove(adm, adm.id).want(t, http.StatusNoContent)
	c = n.getConversation(t, mem, id)
	if memberOf(t, c, mem.id)["role"] != "admin" {
		t.Errorf("after the last admin left, roles are %v; want mem (longest-standing) admin", c["members"])
	}
	if memberOf(t, c, late.id)["role"] != "member" {
		t.Errorf("late became %v", memberOf(t, c, late.id)["role"])
	}
	// The new admin can remove others.
	remove(mem, late.id).want(t, http.StatusNoContent)
}

func TestConversationList(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	us := n.users(t, "lister", "peer", "third", "fourth")
	me, peer, third, fourth := us[0], us[1], us[2], us[3]
	list := func() []obj {
		o := n.do(t, "GET", "/api/conversations", me.access, nil).want(t, http.StatusOK)
		cs := wantObjects(t, "list", o, "conversations")
		for i, c := range cs {
			checkConversation(t, "list", c)
			if i > 0 && wantTime(t, "list", c, "updated_at").After(wantTime(t, "list", cs[i-1], "updated_at")) {
				t.Errorf("list not in most recent activity first order: %v after %v", c["updated_at"], cs[i-1]["updated_at"])
			}
		}
		return cs
	}
	if got := list(); len(got) != 0 {
		t.Fatalf("new user has conversations %v", got)
	}
	d1 := n.createDirect(t, me, peer)
	tick()
	d2 := n.createDirect(t, me, third)
	tick()
	g := n.createGroup(t, peer, "theirs", me)
	order := func() []string { return ids(list(), "id") }
	if got, want := order(), []string{g["id"].(string), d2["id"].(string), d1["id"].(string)}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}

	// A new message moves its conversation first; updated_at is the
	// message's time.
	tick()
	m := n.send(t, peer, d1["id"].(string), "ping")
	cs := list()
	if cs[0]["id"] != d1["id"] {
		t.Fatalf("after a message, order %v, want %v first", ids(cs, "id"), d1["id"])
	}
	if cs[0]["updated_at"] != m["created_at"] {
		t.Errorf("updated_at %v, want the new message's created_at %v", cs[0]["updated_at"], m["created_at"])
	}
	lm := wantObject(t, "list", cs[0], "last_message")
	if lm["id"] != m["id"] {
		t.Errorf("last_message %v, want %v", lm, m)
	}

	// A membership change moves it too.
	tick()
	n.do(t, "POST", "/api/conversations/"+g["id"].(string)+"/members", peer.access, obj{"user_id": fourth.id}).want(t, http.StatusOK)
	if got := order(); got[0] != g["id"] {
		t.Errorf("after a membership change, order %v, want %v first", got, g["id"])
	}

	// A receipt does not.
	tick()
	n.do(t, "POST", "/api/conversations/"+d1["id"].(string)+"/receipts", me.access, obj{"kind": "read", "seq": 1}).want(t, http.StatusNoContent)
	if got := order(); got[0] != g["id"] {
		t.Errorf("after a receipt, order %v, want %v still first", got, g["id"])
	}
}

func TestUnreadCount(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	us := n.users(t, "ua", "ub", "uc")
	a, b, c := us[0], us[1], us[2]
	g := n.createGroup(t, a, "unread", b, c)
	id := g["id"].(string)
	view := func(u user) (readSeq, unread int64) {
		conv := n.getConversation(t, u, id)
		return intOf(conv["read_seq"]), intOf(conv["unread_count"])
	}
	n.send(t, a, id, "a1") // 1
	n.send(t, b, id, "b1") // 2
	n.send(t, a, id, "a2") // 3
	n.send(t, c, id, "c1") // 4
	steps := []struct {
		name       string
		who        user
		readTo     int64 // 0: no receipt
		wantRead   int64
		wantUnread int64
	}{
		{"a: b1 and c1 are unread, a's own are not", a, 0, 0, 2},
		{"b: a1, a2, c1", b, 0, 0, 3},
		{"c: a1, b1, a2", c, 0, 0, 3},
		{"a reads to 2", a, 2, 2, 1},
		{"b reads to 3", b, 3, 3, 1},
		{"c reads beyond last_seq: clamped", c, 99, 4, 0},
		{"a reads back: nothing moves", a, 1, 2, 1},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.readTo > 0 {
				n.do(t, "POST", "/api/conversations/"+id+"/receipts", s.who.access, obj{"kind": "read", "seq": s.readTo}).want(t, http.StatusNoContent)
			}
			r, u := view(s.who)
			if r != s.wantRead || u != s.wantUnread {
				t.Errorf("read_seq %d unread_count %d, want %d, %d", r, u, s.wantRead, s.wantUnread)
			}
		})
	}
	// The list shows the same caller-specific view.
	o := n.do(t, "GET", "/api/conversations", b.access, nil).want(t, http.StatusOK)
	for _, conv := range wantObjects(t, "list", o, "conversations") {
		if conv["id"] == id && (intOf(conv["read_seq"]) != 3 || intOf(conv["unread_count"]) != 1) {
			t.Errorf("b's list view read_seq %v unread_count %v, want 3, 1", conv["read_seq"], conv["unread_count"])
		}
	}
	// read moved delivered too.
	conv := n.getConversation(t, a, id)
	for _, u := range us {
		m := memberOf(t, conv, u.id)
		if intOf(m["delivered_seq"]) < intOf(m["read_seq"]) {
			t.Errorf("%s: delivered_seq %v below read_seq %v", u.name, m["delivered_seq"], m["read_seq"])
		}
	}
}
