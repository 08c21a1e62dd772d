package gateway_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/server"
	"github.com/parley-chat/parley/wire"
)

func TestMessageSend(t *testing.T) {
	n := startNode(t)
	a, b := n.register(), n.register()
	a1, a2, b1 := n.connect(a), n.connect(a), n.connect(b)
	conv := n.group(a, b)

	send := wire.MessageSend{ConversationID: conv.ID, ClientMessageID: "cm-1", Kind: parley.KindText, Text: "hello"}
	f := a1.request(wire.TypeMessageSend, send)
	if f.Type != wire.TypeMessageAck {
		t.Fatalf("message.send answered %v", f)
	}
	ack := decode[wire.MessageAck](t, f)
	m := ack.Message
	if ack.ClientMessageID != "cm-1" || m.ClientMessageID != "cm-1" || m.Seq != 1 || m.SenderID != a.ID ||
		m.ConversationID != conv.ID || m.Text != "hello" || m.Kind != parley.KindText || m.ID == "" {
		t.Fatalf("ack %+v", ack)
	}

	// The sender's other connection and the other member get message.new.
	for name, c := range map[string]*client{"sender's other connection": a2, "other member": b1} {
		f, _ := c.waitFor(isMessageNew("hello"))
		if got := decode[wire.MessageNew](t, f).Message; got == nil || *got != m {
			t.Errorf("%s: message.new %+v, want %+v", name, got, m)
		}
	}

	// The same client_message_id again acks the original, stored once.
	f = a1.request(wire.TypeMessageSend, send)
	if f.Type != wire.TypeMessageAck {
		t.Fatalf("resend answered %v", f)
	}
	if again := decode[wire.MessageAck](t, f).Message; again != m {
		t.Errorf("resend acked %+v, want the original %+v", again, m)
	}

	// Events reach a connection in publish order: once b's next message is
	// there, a1 would have had its own message.new and the others a second
	// copy of the first.
	n.post(b, conv.ID, "barrier")
	_, before := a1.waitFor(isMessageNew("barrier"))
	none(t, before, isMessageNew("hello"), "message.new on the sending connection")
	for _, c := range []*client{a2, b1} {
		_, before := c.waitFor(isMessageNew("barrier"))
		none(t, before, isMessageNew("hello"), "a second message.new for a resend")
	}
	var hist struct {
		Messages []parley.Message `json:"messages"`
	}
	n.api("GET", "/api/conversations/"+conv.ID+"/messages", a.Access, nil, http.StatusOK, &hist)
	if len(hist.Messages) != 2 {
		t.Errorf("history has %d messages, want 2", len(hist.Messages))
	}
}

func TestRequestErrors(t *testing.T) {
	n := startNode(t)
	a, b, outsider := n.register(), n.register(), n.register()
	conv := n.group(a, b)
	c := n.connect(outsider)
	mine := n.connect(a)
	tests := []struct {
		name    string
		c       *client
		typ     string
		payload any
		code    parley.Code
	}{
		{"send to a conversation of others", c, wire.TypeMessageSend,
			wire.MessageSend{ConversationID: conv.ID, ClientMessageID: "x", Text: "hi"}, parley.CodeNotFound},
		{"send without client_message_id", mine, wire.TypeMessageSend,
			wire.MessageSend{ConversationID: conv.ID, Text: "hi"}, parley.CodeInvalidArgument},
		{"send system", mine, wire.TypeMessageSend,
			wire.MessageSend{ConversationID: conv.ID, ClientMessageID: "s", Kind: parley.KindSystem, Text: "hi"}, parley.CodeInvalidArgument},
		{"send too large", mine, wire.TypeMessageSend,
			wire.MessageSend{ConversationID: conv.ID, ClientMessageID: "big", Text: strings.Repeat("x", 16<<10+1)}, parley.CodePayloadTooLarge},
		{"send with a wrong field type", mine, wire.TypeMessageSend,
			map[string]any{"conversation_id": 5}, parley.CodeInvalidArgument},
		{"join a conversation of others", c, wire.TypeRoomJoin, wire.Room{ConversationID: conv.ID}, parley.CodeNotFound},
		{"join an unknown conversation", mine, wire.TypeRoomJoin, wire.Room{ConversationID: "nope"}, parley.CodeNotFound},
		{"receipt of another kind", mine, wire.TypeReceipt,
			wire.ReceiptSend{ConversationID: conv.ID, Kind: "seen", Seq: 1}, parley.CodeInvalidArgument},
		{"receipt in a conversation of others", c, wire.TypeReceipt,
			wire.ReceiptSend{ConversationID: conv.ID, Kind: parley.Read, Seq: 1}, parley.CodeNotFound},
		{"typing with a bad state", mine, wire.TypeTyping,
			wire.TypingSend{ConversationID: conv.ID, State: "thinking"}, parley.CodeInvalidArgument},
		{"sync with a negative limit", mine, wire.TypeSync, wire.Sync{Limit: -1}, parley.CodeInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := tt.c.send(tt.typ, tt.payload)
			f, _ := tt.c.waitFor(hasID(id))
			wantError(t, f, tt.code, id)
		})
	}
	// Typing in a conversation the user is not in is dropped: no reply.
	c.send(wire.TypeTyping, wire.TypingSend{ConversationID: conv.ID, State: parley.TypingStarted})
	id := c.send(wire.TypeSync, wire.Sync{})
	_, before := c.waitFor(hasID(id))
	none(t, before, isType(wire.TypeError), "an error for typing elsewhere")
}

func TestRateLimited(t *testing.T) {
	n := startNode(t, func(c *server.Config) {
		c.Limits = chat.Limits{SendBurst: 1, SendPerSecond: 0.01, RequestBurst: 1, RequestPerSecond: 0.01}
	})
	a, b := n.register(), n.register()
	var conv parley.Conversation
	n.api("POST", "/api/conversations", a.Access, map[string]any{"type": "direct", "member_ids": []string{b.ID}}, http.StatusCreated, &conv)
	c := n.connect(a)
	if f := c.request(wire.TypeMessageSend, wire.MessageSend{ConversationID: conv.ID, ClientMessageID: "1", Text: "a"}); f.Type != wire.TypeMessageAck {
		t.Fatalf("first send answered %v", f)
	}
	id := c.send(wire.TypeMessageSend, wire.MessageSend{ConversationID: conv.ID, ClientMessageID: "2", Text: "b"})
	f, _ := c.waitFor(hasID(id))
	if e := wantError(t, f, parley.CodeRateLimited, id); e.RetryAfterMS <= 0 {
		t.Errorf("rate_limited without retry_after_ms: %+v", e)
	}
	// room.join and room.leave are charged to the request limit, which the
	// conversation creation above used up.
	id = c.send(wire.TypeRoomJoin, wire.Room{ConversationID: conv.ID})
	f, _ = c.waitFor(hasID(id))
	wantError(t, f, parley.CodeRateLimited, id)
	if got := n.metric("parley_rate_limited_total"); got < 2 {
		t.Errorf("parley_rate_limited_total %v, want at least 2", got)
	}
}

func TestReceipts(t *testing.T) {
	n := startNode(t)
	a, b := n.register(), n.register()
	conv := n.group(a, b)
	a1, b1 := n.connect(a), n.connect(b)
	n.post(a, conv.ID, "one")
	n.post(a, conv.ID, "two")

	// A seq beyond last_seq is clamped to it; read moves delivered too.
	f := b1.request(wire.TypeReceipt, wire.ReceiptSend{ConversationID: conv.ID, Kind: parley.Read, Seq: 100})
	if f.Type != wire.TypeOK || len(f.Payload) != 0 {
		t.Fatalf("receipt answered %v, want ok", f)
	}
	want := parley.Receipt{ConversationID: conv.ID, UserID: b.ID, Kind: parley.Read, Seq: 2}
	for name, c := range map[string]*client{"other member": a1, "sender himself": b1} {
		f, _ := c.waitFor(isType(wire.TypeReceipt))
		if got := decode[parley.Receipt](t, f); got != want {
			t.Errorf("%s: receipt %+v, want %+v", name, got, want)
		}
	}

	// A receipt that moves nothing is answered ok and not broadcast.
	for _, kind := range []parley.ReceiptKind{parley.Read, parley.Delivered} {
		if f := b1.request(wire.TypeReceipt, wire.ReceiptSend{ConversationID: conv.ID, Kind: kind, Seq: 1}); f.Type != wire.TypeOK {
			t.Fatalf("receipt answered %v", f)
		}
	}
	n.post(b, conv.ID, "barrier")
	_, before := a1.waitFor(isMessageNew("barrier"))
	none(t, before, isType(wire.TypeReceipt), "a receipt that moved nothing")

	var got parley.Conversation
	n.api("GET", "/api/conversations/"+conv.ID, b.Access, nil, http.StatusOK, &got)
	if m, _ := got.Member(b.ID); m.ReadSeq != 2 || m.DeliveredSeq != 2 {
		t.Errorf("b's watermarks %+v, want read 2 and delivered 2", m)
	}
}

func TestTyping(t *testing.T) {
	n := startNode(t)
	a, b, c := n.register(), n.register(), n.register()
	conv := n.group(a, b, c)
	a1, a2 := n.connect(a), n.connect(a)
	b1, c1 := n.connect(b), n.connect(c)
	for _, cl := range []*client{a2, b1} {
		if f := cl.request(wire.TypeRoomJoin, wire.Room{ConversationID: conv.ID}); f.Type != wire.TypeOK {
			t.Fatalf("room.join answered %v", f)
		}
	}

	a1.send(wire.TypeTyping, wire.TypingSend{ConversationID: conv.ID, State: parley.TypingStarted})
	f, _ := b1.waitFor(isType(wire.TypeTyping))
	if got, want := decode[parley.Typing](t, f), (parley.Typing{ConversationID: conv.ID, UserID: a.ID, State: parley.TypingStarted}); got != want {
		t.Errorf("typing %+v, want %+v", got, want)
	}

	// Not to the typist's own connections, joined or not, nor to
	// connections that did not join the room.
	n.post(b, conv.ID, "barrier")
	for name, cl := range map[string]*client{"typist's other connection": a2, "typist's connection": a1, "not joined": c1} {
		_, before := cl.waitFor(isMessageNew("barrier"))
		none(t, before, isType(wire.TypeTyping), "typing on the "+name)
	}

	// Who is typing now comes with room.join.
	f = c1.request(wire.TypeRoomJoin, wire.Room{ConversationID: conv.ID})
	if st := decode[wire.RoomState](t, f); len(st.Typing) != 1 || st.Typing[0] != a.ID {
		t.Errorf("room.join typing %v, want [%s]", st.Typing, a.ID)
	}
	a1.send(wire.TypeTyping, wire.TypingSend{ConversationID: conv.ID, State: parley.TypingStopped})
	for _, cl := range []*client{b1, c1} {
		f, _ := cl.waitFor(isType(wire.TypeTyping))
		if st := decode[parley.Typing](t, f).State; st != parley.TypingStopped {
			t.Errorf("typing state %s, want stopped", st)
		}
	}
	f = c1.request(wire.TypeRoomJoin, wire.Room{ConversationID: conv.ID})
	if st := decode[wire.RoomState](t, f); st.Typing == nil || len(st.Typing) != 0 {
		t.Errorf("room.join typing %v after stopped, want []", st.Typing)
	}

	// After room.leave, typing no longer comes.
	if f := b1.request(wire.TypeRoomLeave, wire.Room{ConversationID: conv.ID}); f.Type != wire.TypeOK {
		t.Fatalf("room.leave answered %v", f)
	}
	c1.send(wire.TypeTyping, wire.TypingSend{ConversationID: conv.ID, State: parley.TypingStarted})
	a2.waitFor(isEvent(wire.TypeTyping, "user_id", c.ID))
	n.post(a, conv.ID, "barrier 2")
	_, before := b1.waitFor(isMessageNew("barrier 2"))
	none(t, before, isEvent(wire.TypeTyping, "user_id", c.ID), "typing after room.leave")
}

func TestPresence(t *testing.T) {
	n := startNode(t)
	a, b, c := n.register(), n.register(), n.register()
	conv := n.group(a, b, c)
	a1 := n.connect(a)
	f := a1.request(wire.TypeRoomJoin, wire.Room{ConversationID: conv.ID})
	st := decode[wire.RoomState](t, f)
	want := map[string]parley.PresenceStatus{a.ID: parley.Online, b.ID: parley.Offline, c.ID: parley.Offline}
	if len(st.Presence) != 3 {
		t.Fatalf("presence %+v, want 3 members", st.Presence)
	}
	for _, p := range st.Presence {
		if p.Status != want[p.UserID] {
			t.Errorf("presence of %s: %s, want %s", p.UserID, p.Status, want[p.UserID])
		}
		// A user who never connected was last seen registering: clients
		// always get a time they can decode.
		if p.LastSeenAt.IsZero() {
			t.Errorf("%s has no last_seen_at", p.UserID)
		}
	}
	if st.Typing == nil {
		t.Error("room.join typing is null, want []")
	}

	// b's first connection: online, to the room a joined.
	aOther := n.connect(a) // a connection that did not join the room
	b1 := n.connect(b)
	f, _ = a1.waitFor(isEvent(wire.TypePresence, "user_id", b.ID))
	p := decode[parley.Presence](t, f)
	if p.Status != parley.Online || time.Since(p.LastSeenAt.Time) > time.Minute {
		t.Errorf("presence %+v, want online now", p)
	}
	// A second connection changes nothing, and closing it neither.
	b2 := n.connect(b)
	if err := b2.ws.Close(1000, ""); err != nil {
		t.Fatalf("close: %v", err)
	}
	eventually(t, "the server to release b's second connection", func() bool { return n.metric("parley_connections") == 3 })
	n.post(c, conv.ID, "barrier 1")
	_, before := a1.waitFor(isMessageNew("barrier 1"))
	none(t, before, isEvent(wire.TypePresence, "user_id", b.ID), "presence for b's second connection")

	// b's last connection closes: offline.
	if err := b1.ws.Close(1000, ""); err != nil {
		t.Fatalf("close: %v", err)
	}
	f, _ = a1.waitFor(isEvent(wire.TypePresence, "user_id", b.ID))
	if p := decode[parley.Presence](t, f); p.Status != parley.Offline || p.LastSeenAt.IsZero() {
		t.Errorf("presence %+v, want offline with last_seen_at", p)
	}
	n.post(c, conv.ID, "barrier 2")
	_, before = aOther.waitFor(isMessageNew("barrier 2"))
	none(t, before, isType(wire.TypePresence), "presence on a connection that joined no room")

	// Later joins see b offline, last seen when b left.
	f = a1.request(wire.TypeRoomJoin, wire.Room{ConversationID: conv.ID})
	for _, p := range decode[wire.RoomState](t, f).Presence {
		if p.UserID == b.ID && (p.Status != parley.Offline || p.LastSeenAt.IsZero()) {
			t.Errorf("presence of b %+v, want offline with last_seen_at", p)
		}
	}
}

func TestConversationUpdated(t *testing.T) {
	n := startNode(t)
	a, b, c := n.register(), n.register(), n.register()
	a1, b1, c1 := n.connect(a), n.connect(b), n.connect(c)
	direct := n.direct(a, b)
	conv := n.group(a, b)

	// On creation, to every member, live.
	for _, cl := range []*client{a1, b1} {
		cl.waitFor(isConversationUpdated(conv.ID))
	}
	if f := b1.request(wire.TypeRoomJoin, wire.Room{ConversationID: conv.ID}); f.Type != wire.TypeOK {
		t.Fatalf("room.join answered %v", f)
	}
	n.post(a, conv.ID, "one")
	n.post(a, conv.ID, "two")

	// Adding c: c hears of it, and each recipient sees its own unread count.
	n.api("POST", "/api/conversations/"+conv.ID+"/members", a.Access, map[string]string{"user_id": c.ID}, http.StatusOK, nil)
	for _, cl := range []*client{a1, b1, c1} {
		f, _ := cl.waitFor(isConversationUpdated(conv.ID))
		got := decode[wire.ConversationUpdated](t, f).Conversation
		if len(got.Members) != 3 {
			t.Errorf("members %+v, want 3", got.Members)
		}
		// a sent both messages; b has read none.
		if want := map[*client]int64{a1: 0, b1: 2}[cl]; cl != c1 && got.UnreadCount != want {
			t.Errorf("unread_count %d, want %d", got.UnreadCount, want)
		}
	}

	// Typing reaches b while b is in the room.
	a1.send(wire.TypeTyping, wire.TypingSend{ConversationID: conv.ID, State: parley.TypingStarted})
	b1.waitFor(isType(wire.TypeTyping))

	// Removing b: b hears of it, and leaves the room.
	n.api("DELETE", "/api/conversations/"+conv.ID+"/members/"+b.ID, a.Access, nil, http.StatusNoContent, nil)
	f, _ := b1.waitFor(isConversationUpdated(conv.ID))
	updated := decode[wire.ConversationUpdated](t, f).Conversation
	if _, still := updated.Member(b.ID); still {
		t.Error("b is still a member in the update b received")
	}
	a1.send(wire.TypeTyping, wire.TypingSend{ConversationID: conv.ID, State: parley.TypingStopped})
	n.post(a, conv.ID, "after removal")
	n.post(a, direct.ID, "barrier")
	_, before := b1.waitFor(isMessageNew("barrier"))
	none(t, before, isType(wire.TypeTyping), "typing after removal")
	none(t, before, isMessageNew("after removal"), "a message after removal")
}

func TestSync(t *testing.T) {
	n := startNode(t)
	a, b := n.register(), n.register()
	kept := n.group(a, b)
	for _, s := range []string{"k1", "k2", "k3"} {
		n.post(a, kept.ID, s)
	}
	fresh := n.direct(a, b)
	n.post(a, fresh.ID, "f1")
	n.post(b, fresh.ID, "f2")
	left := n.group(a, b)
	n.post(a, left.ID, "l1")
	n.api("DELETE", "/api/conversations/"+left.ID+"/members/"+b.ID, a.Access, nil, http.StatusNoContent, nil)

	b1 := n.connect(b)
	f := b1.request(wire.TypeSync, wire.Sync{Conversations: map[string]int64{kept.ID: 1, left.ID: 1}})
	if f.Type != wire.TypeSyncResult {
		t.Fatalf("sync answered %v", f)
	}
	res := decode[wire.SyncResult](t, f)
	if res.Next != nil {
		t.Errorf("next %q, want null", *res.Next)
	}
	got := map[string]wire.SyncConversation{}
	for _, sc := range res.Conversations {
		got[sc.Conversation.ID] = sc
	}
	texts := func(ms []parley.Message) string {
		var s []string
		for _, m := range ms {
			s = append(s, m.Text)
		}
		return strings.Join(s, ",")
	}
	if sc := got[kept.ID]; texts(sc.Messages) != "k2,k3" || sc.HasMore || sc.Removed {
		t.Errorf("after seq 1: %s has_more %v removed %v, want k2,k3", texts(sc.Messages), sc.HasMore, sc.Removed)
	}
	if sc := got[fresh.ID]; texts(sc.Messages) != "f1,f2" || sc.HasMore || sc.Removed {
		t.Errorf("new conversation: %s has_more %v, want f1,f2", texts(sc.Messages), sc.HasMore)
	}
	if sc := got[left.ID]; !sc.Removed || len(sc.Messages) != 0 {
		t.Errorf("removed conversation: %+v, want removed without messages", sc)
	}

	// A limit: the newest messages of a conversation the client lacks.
	f = b1.request(wire.TypeSync, wire.Sync{Limit: 2})
	for _, sc := range decode[wire.SyncResult](t, f).Conversations {
		if sc.Conversation.ID == kept.ID && (texts(sc.Messages) != "k2,k3" || !sc.HasMore) {
			t.Errorf("limit 2: %s has_more %v, want k2,k3 and more", texts(sc.Messages), sc.HasMore)
		}
	}
}
