package conformance

import (
	"net/http"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/apns/apnstest"
	"github.com/parley-chat/parley/internal/server"
)

// Pushes go to devices, not users (docs/push.md): a login is a device, a
// push token belongs to the login that registered it, a connection to the
// login whose token opened it. These tests run a real node against the
// APNs stand-in.

// confirmDelay is the --push-confirm-delay of these tests: short, but
// long enough for a client under the race detector to confirm in time.
const confirmDelay = 2 * time.Second

// startDeviceNode starts a push node with confirmDelay and a short badge
// interval.
func startDeviceNode(t *testing.T, s *apnstest.Server) *node {
	return startPushNode(t, s, func(c *server.Config) {
		c.PushConfirmDelay = confirmDelay
		c.BadgeInterval = time.Second
	})
}

// pushPair is a device node with alice and bob in a direct conversation,
// and an iOS token registered by bob's first login.
type pushPair struct {
	s          *apnstest.Server
	n          *node
	alice, bob user
	conv, tok  string
}

func newPushPair(t *testing.T) pushPair {
	t.Helper()
	p := pushPair{s: apnstest.New(t)}
	p.n = startDeviceNode(t, p.s)
	us := p.n.users(t, "alice", "bob")
	p.alice, p.bob = us[0], us[1]
	p.conv = wantString(t, "direct", p.n.createDirect(t, p.alice, p.bob), "id")
	p.tok = newAPNsToken()
	p.n.registerIOS(t, p.bob, p.tok)
	return p
}

// confirm sends a delivered receipt of seq on w and waits for its ok.
func (w *wsClient) confirm(conv string, seq int64) {
	w.t.Helper()
	w.request("receipt", "confirm", obj{"conversation_id": conv, "kind": "delivered", "seq": seq})
	if f := w.reply("confirm"); f.typ != "ok" {
		w.t.Fatalf("%s: receipt answered %v", w.name, f)
	}
}

// login signs u in again: another device of the same user.
func (n *node) login(t *testing.T, u user) user {
	t.Helper()
	toks := n.do(t, "POST", "/api/auth/login", "", obj{"username": u.name, "password": "correct horse"}).want(t, http.StatusOK)
	d := u
	d.access, d.refresh = toks["access_token"].(string), toks["refresh_token"].(string)
	return d
}

const (
	iosHeld    = `parley_push_held_total{platform="ios"}`
	iosSkipped = `parley_push_skipped_total{platform="ios"}`
	iosBadge   = `parley_push_badge_sent_total{platform="ios"}`
)

// TestPushBrowserTabDoesNotSilencePhone: bob has the web app open in the
// foreground and his iPhone in his pocket; the iPhone gets the push at
// once, and the hello of each login names its own device.
func TestPushBrowserTabDoesNotSilencePhone(t *testing.T) {
	p := newPushPair(t)
	s, n, alice, phone, conv, tok := p.s, p.n, p.alice, p.bob, p.conv, p.tok
	browser := n.login(t, phone)

	tab, hello := n.connect(t, browser, "bob's browser")
	pocket, phoneHello := n.connect(t, phone, "bob's phone")
	if d, p := wantUUID(t, "hello", hello, "device_id"), wantUUID(t, "hello", phoneHello, "device_id"); d == p {
		t.Fatalf("two logins share device_id %s", d)
	}
	// The phone goes into the pocket, its socket still open.
	pocket.request("app.state", "bg", obj{"state": "background"})
	if f := pocket.reply("bg"); f.typ != "ok" {
		t.Fatalf("app.state answered %v", f)
	}
	m := n.send(t, alice, conv, "for the phone")
	tab.event("message.new", nil)
	ps := waitPushes(t, s, tok, 1)
	if ps[0].Payload.MessageID != m["id"] || ps[0].BadgeOnly {
		t.Fatalf("push %+v, want an alert for %v", ps[0], m["id"])
	}
	if held := n.metric(t, iosHeld); held != 0 {
		t.Errorf("%s = %v: the phone's push waited for the browser tab", iosHeld, held)
	}
	noProblems(t, s)
}

// TestPushDeadSocket: the phone's socket stopped reading without closing
// (a phone that lost its network): the server still thinks it is
// connected in the foreground, holds the push, and sends it when the
// phone has not confirmed the message within the confirm delay.
func TestPushDeadSocket(t *testing.T) {
	p := newPushPair(t)
	s, n, alice, bob, conv, tok := p.s, p.n, p.alice, p.bob, p.conv, p.tok
	// Dialed, never read: no pong, no receipt, no close.
	c, res, err := n.dialRaw(t, dialOpts{token: bob.access})
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, res)
	}
	t.Cleanup(func() { c.CloseNow() })

	start := time.Now()
	m := n.send(t, alice, conv, "into the void")
	ps := waitPushes(t, s, tok, 1)
	took := time.Since(start)
	if ps[0].Payload.MessageID != m["id"] {
		t.Fatalf("push %+v, want %v", ps[0].Payload, m["id"])
	}
	if held := n.metric(t, iosHeld); held != 1 {
		t.Errorf("%s = %v, want 1: the push was not held for the connected device", iosHeld, held)
	}
	t.Logf("push accepted %v after the send (confirm delay %v)", took, confirmDelay)
	if took < confirmDelay-100*time.Millisecond {
		t.Errorf("push after %v, before the confirm delay %v", took, confirmDelay)
	}
	if margin := 5 * time.Second; took > confirmDelay+margin {
		t.Errorf("push after %v, want within the confirm delay %v plus %v", took, confirmDelay, margin)
	}
	noProblems(t, s)
}

// TestPushConfirmedDeviceGetsNone: the phone is open and confirms each
// message with a delivered receipt: it never gets a push, even when its
// user's watermark was moved by another device first.
func TestPushConfirmedDeviceGetsNone(t *testing.T) {
	p := newPushPair(t)
	s, n, alice, phone, conv, tok := p.s, p.n, p.alice, p.bob, p.conv, p.tok
	browser := n.login(t, phone)
	ws, _ := n.connect(t, phone, "bob's phone")
	for i, text := range []string{"first", "second"} {
		m := n.send(t, alice, conv, text)
		seq := wantInt(t, "sent", m, "seq")
		ws.event("message.new", nil)
		if i == 1 {
			// The browser confirms first: the user's watermark moves, and
			// the phone's own receipt moves nothing but still counts.
			n.do(t, "POST", "/api/conversations/"+conv+"/receipts", browser.access, obj{"kind": "delivered", "seq": seq}).want(t, http.StatusNoContent)
		}
		ws.confirm(conv, seq)
	}
	poll(t, "both pushes to be skipped", func() bool { return n.metric(t, iosSkipped) == 2 })
	time.Sleep(confirmDelay + 500*time.Millisecond) // a push would be out by now
	if ps := s.PushesTo(tok); len(ps) != 0 {
		t.Fatalf("a device that confirmed got pushes: %+v", ps)
	}
	noProblems(t, s)
}

// TestPushBadgeGoesDown: the iPhone got pushes with badges 1 and 2; bob
// reads on the web; the iPhone gets a badge-only push to 0 (no alert, no
// sound, priority 5). Badge updates to one device are at least the badge
// interval apart, and muting a conversation lowers the badge too.
func TestPushBadgeGoesDown(t *testing.T) {
	p := newPushPair(t)
	s, n, alice, phone, conv, tok := p.s, p.n, p.alice, p.bob, p.conv, p.tok
	web := n.login(t, phone)
	g := wantString(t, "group", n.createGroup(t, alice, "Noisy", phone), "id")

	n.send(t, alice, conv, "one")
	m2 := n.send(t, alice, conv, "two")
	if ps := waitPushes(t, s, tok, 2); ps[1].Payload.APS.Badge != 2 {
		t.Fatalf("second push badge %d, want 2", ps[1].Payload.APS.Badge)
	}
	read := func(convID string, seq int64) {
		t.Helper()
		n.do(t, "POST", "/api/conversations/"+convID+"/receipts", web.access, obj{"kind": "read", "seq": seq}).want(t, http.StatusNoContent)
	}
	read(conv, wantInt(t, "m2", m2, "seq"))
	b := waitBadges(t, s, tok, 1)[0]
	if b.Payload.APS.Badge != 0 {
		t.Fatalf("badge update %+v, want to 0", b.Payload)
	}
	if h := b.Header; h.Get("apns-priority") != "5" || h.Get("apns-push-type") != "alert" {
		t.Errorf("badge push headers priority %q push-type %q, want 5 and alert", h.Get("apns-priority"), h.Get("apns-push-type"))
	}
	first := time.Now()

	// Two more messages in the group, read at once: one badge update,
	// no sooner than the interval after the last.
	n.send(t, alice, g, "three")
	m4 := n.send(t, alice, g, "four")
	waitPushes(t, s, tok, 4)
	read(g, wantInt(t, "m4", m4, "seq"))
	if b := waitBadges(t, s, tok, 2)[1]; b.Payload.APS.Badge != 0 {
		t.Fatalf("second badge update %+v, want to 0", b.Payload)
	}
	if gap := time.Since(first); gap < time.Second-100*time.Millisecond {
		t.Errorf("two badge updates %v apart, want at least the 1 s interval", gap)
	}

	// A muted conversation does not count: muting lowers the badge.
	n.send(t, alice, g, "five")
	if ps := waitPushes(t, s, tok, 5); ps[4].Payload.APS.Badge != 1 {
		t.Fatalf("push badge %d, want 1", ps[4].Payload.APS.Badge)
	}
	n.do(t, "PUT", "/api/conversations/"+g+"/mute", web.access, obj{"until": nil}).want(t, http.StatusNoContent)
	if b := waitBadges(t, s, tok, 3)[2]; b.Payload.APS.Badge != 0 {
		t.Fatalf("after muting: %+v, want a badge update to 0", b.Payload)
	}
	// Nothing more: a muted conversation neither pushes nor counts.
	n.send(t, alice, g, "six, muted")
	n.send(t, alice, conv, "seven")
	if ps := waitPushes(t, s, tok, 6); ps[5].Payload.APS.Badge != 1 || ps[5].Payload.APS.Alert.Body != "seven" {
		t.Fatalf("push %+v, want seven with badge 1", ps[5].Payload)
	}
	// Counted once APNs's answer is back, a moment after the stand-in saw it.
	poll(t, iosBadge+" to reach 3", func() bool { return n.metric(t, iosBadge) == 3 })
	noProblems(t, s)
}

// TestMutedUntilVisible: the Conversation carries the caller's
// muted_until, in REST, in conversation.updated to the user's own
// connections, and in sync.
func TestMutedUntilVisible(t *testing.T) {
	n := startNode(t)
	us := n.users(t, "alice", "bob")
	alice, bob := us[0], us[1]
	conv := wantString(t, "direct", n.createDirect(t, alice, bob), "id")
	if c := n.getConversation(t, bob, conv); c["muted_until"] != nil {
		t.Fatalf("muted_until %v before any mute", c["muted_until"])
	}
	other, _ := n.connect(t, n.login(t, bob), "bob's other device")
	n.do(t, "PUT", "/api/conversations/"+conv+"/mute", bob.access, obj{"until": nil}).want(t, http.StatusNoContent)
	f, _ := other.event("conversation.updated", nil)
	c := wantObject(t, "conversation.updated", f.payload, "conversation")
	checkConversation(t, "conversation.updated", c)
	if c["muted_until"] != "9999-12-31T23:59:59.999Z" {
		t.Errorf("muted for ever: muted_until %v", c["muted_until"])
	}
	if c := n.getConversation(t, alice, conv); c["muted_until"] != nil {
		t.Errorf("bob's mute shows to alice: %v", c["muted_until"])
	}
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	n.do(t, "PUT", "/api/conversations/"+conv+"/mute", bob.access, obj{"until": until.Format(time.RFC3339Nano)}).want(t, http.StatusNoContent)
	other.event("conversation.updated", nil)
	other.request("sync", "s", obj{"conversations": obj{}})
	res := other.reply("s")
	entries := wantObjects(t, "sync", res.payload, "conversations")
	if len(entries) != 1 {
		t.Fatalf("sync: %d conversations", len(entries))
	}
	if got := wantTime(t, "sync", wantObject(t, "sync", entries[0], "conversation"), "muted_until"); !got.Equal(until) {
		t.Errorf("sync muted_until %v, want %v", got, until)
	}
	n.do(t, "DELETE", "/api/conversations/"+conv+"/mute", bob.access, nil).want(t, http.StatusNoContent)
	f, _ = other.event("conversation.updated", nil)
	if mu := wantObject(t, "conversation.updated", f.payload, "conversation")["muted_until"]; mu != nil {
		t.Errorf("after unmuting: muted_until %v", mu)
	}
}
