package conformance

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/server"
)

func isMessageNew(convID string, seq int64) func(frame) bool {
	return func(f frame) bool {
		if f.typ != "message.new" || f.payload == nil {
			return false
		}
		m, _ := f.payload["message"].(obj)
		return m != nil && m["conversation_id"] == convID && (seq == 0 || intOf(m["seq"]) == seq)
	}
}

func TestWSMessageFanOut(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	us := n.users(t, "fa", "fb", "fc")
	a, b, c := us[0], us[1], us[2]
	id := n.createDirect(t, a, b)["id"].(string)
	a1, _ := n.connect(t, a, "a1")
	a2, _ := n.connect(t, a, "a2")
	b1, _ := n.connect(t, b, "b1")
	c1, _ := n.connect(t, c, "c1")

	a1.request("message.send", "m1", obj{"conversation_id": id, "client_message_id": "cm-1", "kind": "text", "text": "hello"})
	ack := a1.reply("m1")
	if ack.typ != "message.ack" {
		t.Fatalf("message.send answered %v", ack)
	}
	if got := wantString(t, "message.ack", ack.payload, "client_message_id"); got != "cm-1" {
		t.Errorf("ack client_message_id %q", got)
	}
	msg := wantObject(t, "message.ack", ack.payload, "message")
	checkMessage(t, "acked message", msg)
	if msg["sender_id"] != a.id || msg["text"] != "hello" || intOf(msg["seq"]) != 1 || msg["client_message_id"] != "cm-1" {
		t.Errorf("acked message %v", msg)
	}

	// Every connection of every member gets message.new, the sender's
	// other connections included.
	for _, w := range []*wsClient{a2, b1} {
		f, _ := w.event("message.new", nil)
		got := wantObject(t, "message.new", f.payload, "message")
		checkMessage(t, "message.new", got)
		if got["id"] != msg["id"] || got["created_at"] != msg["created_at"] {
			t.Errorf("%s: message.new %v, want %v", w.name, got, msg)
		}
	}

	// The same client_message_id again acks the original, delivered once.
	a1.request("message.send", "m1-again", obj{"conversation_id": id, "client_message_id": "cm-1", "kind": "text", "text": "hello?"})
	again := a1.reply("m1-again")
	if again.typ != "message.ack" || wantObject(t, "ack", again.payload, "message")["id"] != msg["id"] {
		t.Errorf("repeated send answered %v, want the original %v", again, msg["id"])
	}
	// Barrier: b sends; everyone's next message.new is b's (seq 2).
	b1.request("message.send", "m2", obj{"conversation_id": id, "client_message_id": "cm-2", "kind": "text", "text": "hi"})
	if f := b1.reply("m2"); f.typ != "message.ack" || intOf(wantObject(t, "ack", f.payload, "message")["seq"]) != 2 {
		t.Fatalf("b's send answered %v", f)
	}
	for _, w := range []*wsClient{a1, a2} {
		_, skipped := w.until("message.new seq 2", isMessageNew(id, 2))
		none(t, w.name, "a second message.new for seq 1, or one for its own send", skipped, isMessageNew(id, 0))
	}
	// b1 sent seq 2 and has its ack: its next message.new is a's seq 3.
	a1.request("message.send", "m3", obj{"conversation_id": id, "client_message_id": "cm-3", "kind": "text", "text": "3"})
	a1.reply("m3")
	_, skipped := b1.until("message.new seq 3", isMessageNew(id, 3))
	none(t, "b1", "message.new for its own send or a repeat", skipped, isMessageNew(id, 0))

	// A non-member hears nothing of it: its first message.new is of a
	// conversation it is in.
	other := n.createDirect(t, a, c)["id"].(string)
	n.send(t, a, other, "to c")
	_, skipped = c1.until("message.new in its own conversation", isMessageNew(other, 1))
	none(t, "c1", "message.new of a conversation it is not in", skipped, isMessageNew(id, 0))

	t.Run("refused", func(t *testing.T) {
		cases := []struct {
			name    string
			payload obj
			code    string
		}{
			{"system kind", obj{"conversation_id": id, "client_message_id": "s", "kind": "system", "text": "x"}, "invalid_argument"},
			{"no client_message_id", obj{"conversation_id": id, "kind": "text", "text": "x"}, "invalid_argument"},
			{"client_message_id of 65", obj{"conversation_id": id, "client_message_id": strings.Repeat("c", 65), "kind": "text", "text": "x"}, "invalid_argument"},
			{"text over 16 KiB", obj{"conversation_id": id, "client_message_id": "big", "kind": "text", "text": strings.Repeat("x", 16<<10+1)}, "payload_too_large"},
			{"not a member", obj{"conversation_id": other, "client_message_id": "nm", "kind": "text", "text": "x"}, "not_found"},
			{"unknown conversation", obj{"conversation_id": unknownID, "client_message_id": "uc", "kind": "text", "text": "x"}, "not_found"},
		}
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				rid := fmt.Sprint("bad-", i)
				b1.request("message.send", rid, c.payload)
				wantError(t, b1.reply(rid), rid, c.code)
			})
		}
		// A 16 KiB text is allowed.
		b1.request("message.send", "16k", obj{"conversation_id": id, "client_message_id": "16k", "kind": "text", "text": strings.Repeat("x", 16<<10)})
		if f := b1.reply("16k"); f.typ != "message.ack" {
			t.Errorf("16 KiB text answered %v", f)
		}
	})
}

func isReceipt(f frame) bool { return f.typ == "receipt" && !f.hasID }

func TestWSReceipts(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	us := n.users(t, "ra", "rb", "rc")
	a, b, c := us[0], us[1], us[2]
	id := n.createGroup(t, a, "receipts", b)["id"].(string)
	for i := 0; i < 3; i++ {
		n.send(t, a, id, fmt.Sprint(i))
	}
	a1, _ := n.connect(t, a, "a1")
	a2, _ := n.connect(t, a, "a2")
	b1, _ := n.connect(t, b, "b1")
	b2, _ := n.connect(t, b, "b2")
	c1, _ := n.connect(t, c, "c1")
	everyone := []*wsClient{a1, a2, b1, b2}

	// expect sends a receipt from w and checks the broadcast (or, with
	// wantSeq 0, that it is answered ok and not broadcast: the next
	// receipt every connection sees is the one of the barrier).
	step := 0
	receipt := func(w *wsClient, kind string, seq int64) {
		t.Helper()
		step++
		rid := fmt.Sprint("r", step)
		w.request("receipt", rid, obj{"conversation_id": id, "kind": kind, "seq": seq})
		f := w.reply(rid)
		if f.typ != "ok" {
			t.Fatalf("receipt answered %v, want ok", f)
		}
	}
	expect := func(userID, kind string, seq int64) {
		t.Helper()
		for _, w := range everyone {
			f, _ := w.until(fmt.Sprintf("receipt %s %d of %s", kind, seq, userID), isReceipt)
			p := f.payload
			if p == nil {
				t.Fatalf("%s: receipt without payload", w.name)
			}
			if wantUUID(t, "receipt", p, "conversation_id") != id || wantUUID(t, "receipt", p, "user_id") != userID ||
				wantString(t, "receipt", p, "kind") != kind || wantInt(t, "receipt", p, "seq") != seq {
				t.Errorf("%s: receipt %v, want %s %s %d", w.name, p, userID, kind, seq)
			}
		}
	}
	watermarks := func(u user) (int64, int64) {
		m := memberOf(t, n.getConversation(t, a, id), u.id)
		return intOf(m["delivered_seq"]), intOf(m["read_seq"])
	}

	receipt(b1, "delivered", 2)
	expect(b.id, "delivered", 2)
	// Backwards: ok, not broadcast. The next receipt seen is the barrier's.
	receipt(b1, "delivered", 1)
	receipt(b2, "read", 1)
	expect(b.id, "read", 1)
	if d, r := watermarks(b); d != 2 || r != 1 {
		t.Errorf("b delivered %d read %d, want 2, 1", d, r)
	}
	// read beyond last_seq: clamped, and it moves delivered too.
	receipt(b1, "read", 99)
	expect(b.id, "read", 3)
	if d, r := watermarks(b); d != 3 || r != 3 {
		t.Errorf("b delivered %d read %d, want 3, 3", d, r)
	}
	// Moves nothing: delivered is already 3 (read moved it).
	receipt(b2, "delivered", 3)
	receipt(b1, "read", 3)
	receipt(b1, "delivered", 0)
	// Barrier: a's receipt is the next one everyone sees.
	receipt(a1, "delivered", 3)
	expect(a.id, "delivered", 3)

	// REST receipts are broadcast alike.
	n.send(t, a, id, "4")
	n.do(t, "POST", "/api/conversations/"+id+"/receipts", b.access, obj{"kind": "delivered", "seq": 4}).want(t, http.StatusNoContent)
	expect(b.id, "delivered", 4)

	// A non-member: not_found, and nothing to anyone.
	c1.request("receipt", "nm", obj{"conversation_id": id, "kind": "read", "seq": 1})
	wantError(t, c1.reply("nm"), "nm", "not_found")
	b1.request("receipt", "bad", obj{"conversation_id": id, "kind": "seen", "seq": 1})
	wantError(t, b1.reply("bad"), "bad", "invalid_argument")

	// Non-members never see receipts: c joins the group later, and the
	// first receipt it sees is one after that.
	n.do(t, "POST", "/api/conversations/"+id+"/members", a.access, obj{"user_id": c.id}).want(t, http.StatusOK)
	receipt(a1, "read", 4)
	f, skipped := c1.until("receipt", isReceipt)
	if f.payload["user_id"] != a.id || intOf(f.payload["seq"]) != 4 {
		t.Errorf("c's first receipt %v, want a's read 4", f)
	}
	none(t, "c1", "a receipt before it was a member", skipped, isReceipt)
}

func TestWSRoomsTypingPresence(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	us := n.users(t, "ta", "tb", "tc", "td", "te")
	a, b, c, d, e := us[0], us[1], us[2], us[3], us[4]
	id := n.createGroup(t, a, "room", b, c, e)["id"].(string)
	outside := n.createDirect(t, d, a)["id"].(string)
	a1, _ := n.connect(t, a, "a1")
	a2, _ := n.connect(t, a, "a2")
	b1, _ := n.connect(t, b, "b1")
	c1, _ := n.connect(t, c, "c1") // member, never joins the room
	d1, _ := n.connect(t, d, "d1") // not a member

	join := func(w *wsClient, rid string) obj {
		t.Helper()
		w.request("room.join", rid, obj{"conversation_id": id})
		f := w.reply(rid)
		if f.typ != "ok" || f.payload == nil {
			t.Fatalf("room.join answered %v, want ok with a payload", f)
		}
		return f.payload
	}
	st := join(b1, "j1")
	pres := wantObjects(t, "room.join", st, "presence")
	typing := wantArray(t, "room.join", st, "typing")
	if len(typing) != 0 {
		t.Errorf("typing %v, want []", typing)
	}
	status := map[string]string{}
	for _, p := range pres {
		uid := p["user_id"].(string)
		if uid == e.id {
			// e has never been connected.
			wantUUID(t, "presence", p, "user_id")
			if p["status"] != "offline" {
				t.Errorf("never-connected user %v", p)
			}
			status[uid] = "offline"
			continue
		}
		status[uid] = checkPresence(t, "room.join presence", p)
	}
	if status[a.id] != "online" || status[b.id] != "online" || status[c.id] != "online" || status[e.id] != "offline" {
		t.Errorf("presence %v", pres)
	}
	join(a2, "j2")

	isTyping := func(f frame) bool { return f.typ == "typing" }
	// a types: b1 (joined) gets it; a2 (joined, but a's own) and c1 (not
	// joined) do not.
	a1.request("typing", "", obj{"conversation_id": id, "state": "started"})
	f, _ := b1.event("typing", nil)
	if wantUUID(t, "typing", f.payload, "conversation_id") != id || wantUUID(t, "typing", f.payload, "user_id") != a.id ||
		wantString(t, "typing", f.payload, "state") != "started" {
		t.Errorf("typing %v", f)
	}
	// Who is typing now is in the reply of a join.
	st = join(c1, "j3")
	if tp := wantArray(t, "room.join", st, "typing"); len(tp) != 1 || tp[0] != a.id {
		t.Errorf("typing %v after a started, want [%s]", tp, a.id)
	}
	c1.request("room.leave", "l3", obj{"conversation_id": id})
	if f := c1.reply("l3"); f.typ != "ok" {
		t.Fatalf("room.leave answered %v", f)
	}
	// Typing in a conversation the user is not in is dropped silently.
	d1.request("typing", "dt", obj{"conversation_id": id, "state": "started"})
	d1.request("room.leave", "after", obj{"conversation_id": id})
	if f, skipped := d1.until("reply", func(f frame) bool { return f.hasID }); f.id != "after" {
		t.Errorf("typing by a non-member answered %v (skipped %v)", f, skipped)
	}
	// Barrier: b stops typing, then sends a message on the same
	// connection, which answers frames in order: the message.new reaches
	// everyone after the typing, if they get that at all.
	b1.request("typing", "", obj{"conversation_id": id, "state": "stopped"})
	b1.request("message.send", "bar", obj{"conversation_id": id, "client_message_id": "bar", "kind": "text", "text": "barrier"})
	if f := b1.reply("bar"); f.typ != "message.ack" {
		t.Fatalf("barrier answered %v", f)
	}
	_, skipped := a2.until("message.new", isMessageNew(id, 1))
	for _, s := range skipped {
		if isTyping(s) && s.payload["user_id"] == a.id {
			t.Errorf("a2 got its own user's typing: %v", s)
		}
	}
	if !containsFrame(skipped, func(f frame) bool {
		return isTyping(f) && f.payload["user_id"] == b.id && f.payload["state"] == "stopped"
	}) {
		t.Errorf("a2 (joined) did not get b's typing stopped before the next message: %v", skipped)
	}
	_, skipped = c1.until("message.new", isMessageNew(id, 1))
	none(t, "c1", "typing while not in the room", skipped, isTyping)
	n.send(t, a, outside, "barrier for d")
	_, skipped = d1.until("message.new", isMessageNew(outside, 1))
	none(t, "d1", "typing of a conversation it is not in", skipped, isTyping)
	n.send(t, a, id, "barrier for b")
	_, skipped = b1.until("message.new", isMessageNew(id, 2))
	none(t, "b1", "its own typing", skipped, func(f frame) bool { return isTyping(f) && f.payload["user_id"] == b.id })

	// Presence: e's first connection is online, its last one offline, to
	// the connections that joined a room with e (b1, a2), not the others.
	isPresence := func(status string) func(frame) bool {
		return func(f frame) bool {
			return f.typ == "presence" && f.payload != nil && f.payload["user_id"] == e.id && f.payload["status"] == status
		}
	}
	e1, _ := n.connect(t, e, "e1")
	for _, w := range []*wsClient{b1, a2} {
		f, _ := w.until("presence online", isPresence("online"))
		checkPresence(t, "presence", f.payload)
	}
	e2, _ := n.connect(t, e, "e2")
	e1.c.CloseNow()
	e2.c.CloseNow()
	for _, w := range []*wsClient{b1, a2} {
		f, skipped := w.until("presence offline", isPresence("offline"))
		checkPresence(t, "presence", f.payload)
		none(t, w.name, "a second online for e's second connection", skipped, isPresence("online"))
	}
	// Barrier for the ones that did not join: a message after the offline.
	n.send(t, a, id, "after presence")
	for _, w := range []*wsClient{a1, c1} {
		_, skipped := w.until("message.new", isMessageNew(id, 3))
		none(t, w.name, "presence without joining a room", skipped, ofType("presence"))
	}
}

func containsFrame(fs []frame, match func(frame) bool) bool {
	for _, f := range fs {
		if match(f) {
			return true
		}
	}
	return false
}

func isUpdated(convID string) func(frame) bool {
	return func(f frame) bool {
		if f.typ != "conversation.updated" || f.payload == nil {
			return false
		}
		c, _ := f.payload["conversation"].(obj)
		return c != nil && c["id"] == convID
	}
}

func TestWSConversationUpdated(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	us := n.users(t, "ca", "cb", "cc")
	a, b, c := us[0], us[1], us[2]
	a1, _ := n.connect(t, a, "a1")
	b1, _ := n.connect(t, b, "b1")
	b2, _ := n.connect(t, b, "b2")
	c1, _ := n.connect(t, c, "c1")

	updated := func(w *wsClient, convID string) obj {
		t.Helper()
		f, _ := w.until("conversation.updated", isUpdated(convID))
		conv := wantObject(t, "conversation.updated", f.payload, "conversation")
		checkConversation(t, w.name+" conversation.updated", conv)
		return conv
	}

	// Creation reaches the other member live, on every connection.
	d := n.createDirect(t, a, b)
	did := d["id"].(string)
	for _, w := range []*wsClient{a1, b1, b2} {
		conv := updated(w, did)
		wantNull(t, "conversation.updated", conv, "title")
		if conv["type"] != "direct" || !hasMember(conv, a.id) || !hasMember(conv, b.id) {
			t.Errorf("%s: %v", w.name, conv)
		}
	}

	// A group; b writes; a adds c. Each recipient's copy carries its own
	// read_seq and unread_count.
	g := n.createGroup(t, a, "updates", b)
	gid := g["id"].(string)
	for _, w := range []*wsClient{a1, b1, b2} {
		conv := updated(w, gid)
		if conv["title"] != "updates" {
			t.Errorf("%s: title %v", w.name, conv["title"])
		}
	}
	n.send(t, b, gid, "one")
	n.send(t, b, gid, "two")
	n.send(t, a, gid, "three")
	n.do(t, "POST", "/api/conversations/"+gid+"/receipts", a.access, obj{"kind": "read", "seq": 1}).want(t, http.StatusNoContent)
	n.do(t, "POST", "/api/conversations/"+gid+"/members", a.access, obj{"user_id": c.id}).want(t, http.StatusOK)
	want := map[*wsClient][2]int64{a1: {1, 1}, b1: {0, 1}, b2: {0, 1}, c1: {0, 3}}
	for w, rv := range want {
		conv := updated(w, gid)
		if !hasMember(conv, c.id) {
			t.Errorf("%s: added member missing: %v", w.name, conv["members"])
		}
		if r, u := intOf(conv["read_seq"]), intOf(conv["unread_count"]); r != rv[0] || u != rv[1] {
			t.Errorf("%s: read_seq %d unread_count %d, want its own %d, %d", w.name, r, u, rv[0], rv[1])
		}
		if intOf(conv["last_seq"]) != 3 {
			t.Errorf("%s: last_seq %v", w.name, conv["last_seq"])
		}
	}

	// Removal: the removed user hears of it too, and the conversation it
	// gets no longer lists it.
	n.do(t, "DELETE", "/api/conversations/"+gid+"/members/"+c.id, a.access, nil).want(t, http.StatusNoContent)
	for _, w := range []*wsClient{a1, b1, c1} {
		conv := updated(w, gid)
		if hasMember(conv, c.id) {
			t.Errorf("%s: removed member still listed", w.name)
		}
	}
	// Being removed closes nothing: c1 still answers.
	c1.request("room.leave", "alive", obj{"conversation_id": gid})
	if f := c1.reply("alive"); f.typ != "ok" {
		t.Errorf("c1 after removal: %v", f)
	}
	// An existing direct conversation is not created again: no update.
	n.do(t, "POST", "/api/conversations", b.access, obj{"type": "direct", "member_ids": []string{a.id}}).want(t, http.StatusOK)
	n.send(t, a, did, "barrier")
	_, skipped := b1.until("message.new", isMessageNew(did, 1))
	none(t, "b1", "conversation.updated for an existing direct conversation", skipped, isUpdated(did))
}

func TestWSSync(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *server.Config) {
		c.Limits = chat.Limits{SendBurst: 1000, SendPerSecond: 1000}
	})
	us := n.users(t, "sa", "sb", "sc")
	a, b, c := us[0], us[1], us[2]
	d1 := n.createDirect(t, a, b)["id"].(string)
	tick()
	g := n.createGroup(t, a, "sync", b, c)["id"].(string)
	tick()
	left := n.createGroup(t, a, "left", b)["id"].(string)
	tick()
	empty := n.createDirect(t, a, c)["id"].(string)
	for i := 1; i <= 60; i++ {
		n.do(t, "POST", "/api/conversations/"+d1+"/messages", a.access, obj{"client_message_id": newCMID(), "kind": "text", "text": fmt.Sprint(i)}).want(t, http.StatusCreated)
	}
	tick()
	for i := 1; i <= 5; i++ {
		n.send(t, b, g, fmt.Sprint(i))
	}
	n.do(t, "DELETE", "/api/conversations/"+left+"/members/"+b.id, b.access, nil).want(t, http.StatusNoContent)
	w, _ := n.connect(t, b, "b")

	sync := func(rid string, payload obj) (entries []obj, next any) {
		t.Helper()
		w.request("sync", rid, payload)
		f := w.reply(rid)
		if f.typ != "sync.result" {
			t.Fatalf("sync answered %v", f)
		}
		entries = wantObjects(t, "sync.result", f.payload, "conversations")
		next = member(t, "sync.result", f.payload, "next")
		for i, e := range entries {
			where := fmt.Sprintf("sync.result.conversations[%d]", i)
			if removed, _ := e["removed"].(bool); removed {
				continue
			}
			checkConversation(t, where, wantObject(t, where, e, "conversation"))
			for j, m := range wantObjects(t, where, e, "messages") {
				checkMessage(t, fmt.Sprintf("%s.messages[%d]", where, j), m)
			}
			wantBool(t, where, e, "has_more")
		}
		return entries, next
	}
	byID := func(entries []obj) map[string]obj {
		out := map[string]obj{}
		for _, e := range entries {
			out[e["conversation"].(obj)["id"].(string)] = e
		}
		return out
	}

	// A new client: every conversation, most recent activity first, with
	// its newest messages (50 by default).
	entries, next := sync("s1", obj{"conversations": obj{}})
	if next != nil {
		t.Errorf("next %v, want null", next)
	}
	var order []string
	for _, e := range entries {
		order = append(order, e["conversation"].(obj)["id"].(string))
	}
	if want := []string{g, d1}; fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("order %v, want %v (most recent activity first, only b's)", order, want)
	}
	got := byID(entries)
	if e := got[d1]; e != nil {
		ms := wantObjects(t, "sync", e, "messages")
		if s := seqs(ms); len(s) != 50 || s[0] != 11 || s[49] != 60 || !wantBool(t, "sync", e, "has_more") {
			t.Errorf("new conversation: seqs %v, has_more %v; want the newest 50 (11..60), true", s, e["has_more"])
		}
	}
	if e := got[g]; e != nil {
		if s := seqs(wantObjects(t, "sync", e, "messages")); len(s) != 5 || wantBool(t, "sync", e, "has_more") {
			t.Errorf("group: seqs %v has_more %v, want 1..5, false", s, e["has_more"])
		}
	}

	// A client that has some: the messages after its seq, oldest first,
	// at most limit; a listed conversation it left comes back removed.
	entries, _ = sync("s2", obj{"conversations": obj{d1: 55, g: 5, left: 0}, "limit": 3})
	got = byID(entries)
	if e := got[d1]; e == nil {
		t.Error("d1 missing")
	} else if s := seqs(wantObjects(t, "sync", e, "messages")); fmt.Sprint(s) != "[56 57 58]" || !wantBool(t, "sync", e, "has_more") {
		t.Errorf("after 55 limit 3: seqs %v has_more %v, want [56 57 58], true", s, e["has_more"])
	}
	if e := got[g]; e == nil {
		t.Error("g missing")
	} else if s := wantArray(t, "sync", e, "messages"); len(s) != 0 || wantBool(t, "sync", e, "has_more") {
		t.Errorf("up to date: messages %v has_more %v, want [], false", s, e["has_more"])
	}
	if e := got[left]; e == nil {
		t.Error("the conversation b left is not in the result")
	} else {
		if removed, _ := e["removed"].(bool); !removed {
			t.Errorf("left conversation %v, want removed true", e)
		}
		if ms, ok := e["messages"].([]any); ok && len(ms) != 0 {
			t.Errorf("removed conversation with messages %v", ms)
		}
	}
	if _, ok := got[empty]; ok {
		t.Error("sync returned a conversation b is not in")
	}

	// limit is at most 200.
	entries, _ = sync("s3", obj{"conversations": obj{d1: 0}, "limit": 1000})
	if e := byID(entries)[d1]; e != nil {
		if s := seqs(wantObjects(t, "sync", e, "messages")); len(s) != 60 {
			t.Errorf("limit 1000 with 60 messages: %d", len(s))
		}
	}
	w.request("sync", "neg", obj{"conversations": obj{}, "limit": -1})
	wantError(t, w.reply("neg"), "neg", "invalid_argument")
}

// TestWSSyncPages checks that paging a sync through its cursor returns
// every conversation exactly once, in order, whatever ties of updated_at
// there are.
func TestWSSyncPages(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *server.Config) {
		c.Limits = chat.Limits{SendBurst: 1000, SendPerSecond: 1000}
	})
	us := n.users(t, "pa", "pb")
	a, b := us[0], us[1]
	const total = 130
	// Created from many goroutines at once.
	var (
		mu   sync.Mutex
		want = map[string]bool{}
		wg   sync.WaitGroup
	)
	for g := 0; g < 10; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < total; i += 10 {
				r, err := n.doErr("POST", "/api/conversations", a.access, obj{"type": "group", "title": fmt.Sprint("g", i), "member_ids": []string{b.id}})
				if err != nil || r.status != http.StatusCreated {
					t.Errorf("create: %v %v", r, err)
					return
				}
				mu.Lock()
				want[r.v.(obj)["id"].(string)] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	w, _ := n.connect(t, b, "b")
	// Each round sends a message in every conversation from many senders
	// at once, so that the writer commits them in groups, some within the
	// same millisecond: conversations tie on updated_at, in a new order
	// each round. Then b pages through them. (From the outside a tie at a
	// page boundary is likely, not certain; internal/chat's
	// TestSyncPagesWithTies makes it certain.)
	for round := 0; round < 2; round++ {
		convs := make(chan string, total)
		for id := range want {
			convs <- id
		}
		close(convs)
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for id := range convs {
					r, err := n.doErr("POST", "/api/conversations/"+id+"/messages", a.access, obj{"client_message_id": fmt.Sprint("tie-", round), "kind": "text", "text": "tie"})
					if err != nil || r.status != http.StatusCreated {
						t.Errorf("send: %v %v", r, err)
					}
				}
			}()
		}
		wg.Wait()
		syncPages(t, w, fmt.Sprint("round ", round), want)
	}
}

// syncPages pages through a sync of every conversation with its cursor
// and checks that each of want comes exactly once, most recent activity
// first.
func syncPages(t *testing.T, w *wsClient, round string, want map[string]bool) {
	t.Helper()
	seen := map[string]int{}
	var order []obj
	payload := obj{"conversations": obj{}, "limit": 1}
	for page := 0; ; page++ {
		if page > len(want) {
			t.Fatalf("%s: sync pages never end", round)
		}
		rid := fmt.Sprint(round, " page ", page)
		w.request("sync", rid, payload)
		f := w.reply(rid)
		if f.typ != "sync.result" {
			t.Fatalf("sync answered %v", f)
		}
		for _, e := range wantObjects(t, "sync.result", f.payload, "conversations") {
			conv := wantObject(t, "sync", e, "conversation")
			seen[conv["id"].(string)]++
			order = append(order, conv)
		}
		next := member(t, "sync.result", f.payload, "next")
		if next == nil {
			break
		}
		cur, ok := next.(string)
		if !ok || cur == "" {
			t.Fatalf("next %#v, want a cursor string or null", next)
		}
		payload = obj{"conversations": obj{}, "limit": 1, "cursor": cur}
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("%s: conversation %s came %d times over the pages, want once", round, id, seen[id])
		}
	}
	if len(seen) != len(want) {
		t.Errorf("%s: %d conversations over the pages, want %d", round, len(seen), len(want))
	}
	for i := 1; i < len(order); i++ {
		if wantTime(t, "sync", order[i], "updated_at").After(wantTime(t, "sync", order[i-1], "updated_at")) {
			t.Errorf("%s: pages not most recent activity first at %d", round, i)
		}
	}
}

func TestWSRateLimit(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *server.Config) {
		c.Limits = chat.Limits{SendBurst: 2, SendPerSecond: 0.01}
	})
	us := n.users(t, "wl", "wl")
	a, b := us[0], us[1]
	id := n.createDirect(t, a, b)["id"].(string)
	w, _ := n.connect(t, a, "a")
	for i := 0; i < 3; i++ {
		w.request("message.send", fmt.Sprint("s", i), obj{"conversation_id": id, "client_message_id": fmt.Sprint("rl", i), "kind": "text", "text": "x"})
	}
	w.reply("s0")
	w.reply("s1")
	p := wantError(t, w.reply("s2"), "s2", "rate_limited")
	if ms := wantInt(t, "error", p, "retry_after_ms"); ms <= 0 {
		t.Errorf("retry_after_ms %d, want positive", ms)
	}
	msgs, _ := n.history(t, b, id, "")
	if len(msgs) != 2 {
		t.Errorf("%d messages stored, want 2: a refused request changes nothing", len(msgs))
	}
}
