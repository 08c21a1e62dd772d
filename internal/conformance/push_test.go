package conformance

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/apns/apnstest"
	"github.com/parley-chat/parley/internal/server"
)

// The contract's Push section, checked end to end: a real node sends to an
// APNs stand-in (a local HTTP/2 TLS server that verifies the provider
// token's signature against the public half of its test key, the headers
// and the payload).

// startPushNode starts a node whose iOS pushes go to the stand-in s.
func startPushNode(t *testing.T, s *apnstest.Server, change ...func(*server.Config)) *node {
	t.Helper()
	apns := func(c *server.Config) {
		c.APNs = server.APNsConfig{
			KeyFile: s.KeyFile, KeyID: apnstest.KeyID, TeamID: apnstest.TeamID, Topic: apnstest.Topic,
			URL: s.URL, RootCAs: s.RootCAs(),
		}
	}
	return startNode(t, append([]func(*server.Config){apns}, change...)...)
}

var apnsTokens atomic.Int64

// newAPNsToken returns a device token (64 hex digits) unique in the binary.
func newAPNsToken() string { return fmt.Sprintf("%064x", 0xabc000+apnsTokens.Add(1)) }

// registerIOS registers an iOS device token for u and returns the status.
func (n *node) registerIOS(t *testing.T, u user, token string) int {
	t.Helper()
	r := n.do(t, "POST", "/api/device-tokens", u.access, obj{"platform": "ios", "token": token, "environment": "sandbox"})
	if r.status != http.StatusCreated && r.status != http.StatusOK {
		t.Fatalf("register device token: %v", r)
	}
	return r.status
}

// displayName reads u's display name.
func (n *node) displayName(t *testing.T, u user) string {
	t.Helper()
	return wantString(t, "me", n.do(t, "GET", "/api/users/me", u.access, nil).want(t, http.StatusOK), "display_name")
}

// metric reads one sample of /metrics, e.g. `parley_push_sent_total{platform="ios"}`,
// summed over the nodes; 0 when absent.
func (n *node) metric(t *testing.T, sample string) float64 {
	t.Helper()
	total := 0.0
	for range n.set.Nodes {
		r := n.do(t, "GET", "/metrics", "", nil) // each node in turn
		sc := bufio.NewScanner(bytes.NewReader(r.body))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("metric %s: %v", sample, err)
				}
				total += f
			}
		}
	}
	return total
}

// poll waits until cond holds, failing after the deadline.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitPushes waits until the stand-in accepted count alert pushes (badge
// updates left out) for token and returns them in seq order.
func waitPushes(t *testing.T, s *apnstest.Server, token string, count int) []apnstest.Push {
	t.Helper()
	poll(t, fmt.Sprintf("%d pushes", count), func() bool { return len(alerts(s.PushesTo(token))) >= count })
	ps := alerts(s.PushesTo(token))
	slices.SortFunc(ps, func(a, b apnstest.Push) int { return int(a.Payload.Seq - b.Payload.Seq) })
	return ps
}

// waitBadges waits until the stand-in accepted count badge updates for
// token and returns them in the order they came.
func waitBadges(t *testing.T, s *apnstest.Server, token string, count int) []apnstest.Push {
	t.Helper()
	var bs []apnstest.Push
	poll(t, fmt.Sprintf("%d badge updates", count), func() bool {
		bs = slices.DeleteFunc(s.PushesTo(token), func(p apnstest.Push) bool { return !p.BadgeOnly })
		return len(bs) >= count
	})
	return bs
}

// alerts leaves the badge updates out of ps.
func alerts(ps []apnstest.Push) []apnstest.Push {
	return slices.DeleteFunc(ps, func(p apnstest.Push) bool { return p.BadgeOnly })
}

func noProblems(t *testing.T, s *apnstest.Server) {
	t.Helper()
	if p := s.Problems(); len(p) > 0 {
		t.Errorf("the APNs stand-in refused requests: %v", p)
	}
}

const iosSent = `parley_push_sent_total{platform="ios"}`

func TestPushOfflineRecipient(t *testing.T) {
	s := apnstest.New(t)
	n := startPushNode(t, s)
	us := n.users(t, "alice", "bob")
	alice, bob := us[0], us[1]
	conv := wantString(t, "direct", n.createDirect(t, alice, bob), "id")
	tokA, tokB := newAPNsToken(), newAPNsToken()
	n.registerIOS(t, alice, tokA)
	n.registerIOS(t, bob, tokB)
	aliceName := n.displayName(t, alice)

	// The sender is online and makes noise that is not a message: typing,
	// a receipt, presence. None of it is pushed.
	ws, _ := n.connect(t, alice, "alice")
	ws.request("typing", "", obj{"conversation_id": conv, "state": "started"})

	var latencies []time.Duration
	var sent []obj
	for i := range 3 {
		start := time.Now()
		m := n.send(t, alice, conv, fmt.Sprintf("message %d", i+1))
		sent = append(sent, m)
		waitPushes(t, s, tokB, i+1)
		latencies = append(latencies, time.Since(start))
	}
	ps := waitPushes(t, s, tokB, 3)
	for i, p := range ps {
		m := sent[i]
		aps := p.Payload.APS
		if aps.Badge != i+1 {
			t.Errorf("push %d: badge %d, want %d", i+1, aps.Badge, i+1)
		}
		if aps.Alert.Title != aliceName || aps.Alert.Subtitle != "" || aps.Alert.Body != m["text"] {
			t.Errorf("push %d: alert %+v, want title %q, no subtitle, body %q", i+1, aps.Alert, aliceName, m["text"])
		}
		if p.Payload.ConversationID != conv || aps.ThreadID != conv || p.Payload.SenderID != alice.id ||
			p.Payload.MessageID != m["id"] || p.Payload.Seq != wantInt(t, "sent", m, "seq") {
			t.Errorf("push %d: ids %+v, want message %v", i+1, p.Payload, m)
		}
	}
	for i, d := range latencies {
		t.Logf("message %d: push accepted %v after the send returned", i+1, d)
		if d > time.Second {
			t.Errorf("message %d: push %v after the message was stored, want within a second", i+1, d)
		}
	}

	// A read receipt lowers the badge of the next push.
	n.do(t, "POST", "/api/conversations/"+conv+"/receipts", bob.access, obj{"kind": "read", "seq": 2}).want(t, http.StatusNoContent)
	m4 := n.send(t, alice, conv, "message 4")
	ps = waitPushes(t, s, tokB, 4)
	if p := ps[3]; p.Payload.MessageID != m4["id"] || p.Payload.APS.Badge != 2 {
		t.Errorf("after reading up to 2: push %+v, want message 4 with badge 2", p.Payload)
	}

	// Bob answers: alice (offline now) gets his message; nobody gets a
	// push for their own message.
	ws.c.CloseNow()
	reply := n.send(t, bob, conv, "reply")
	pa := waitPushes(t, s, tokA, 1)
	if len(pa) != 1 || pa[0].Payload.MessageID != reply["id"] || pa[0].Payload.APS.Badge != 1 {
		t.Errorf("alice's pushes %+v, want one for bob's reply with badge 1", pa)
	}
	if got := len(alerts(s.PushesTo(tokB))); got != 4 {
		t.Errorf("bob got %d pushes for 4 messages (his own reply included?)", got)
	}
	ids := map[string]bool{}
	for _, p := range alerts(s.PushesTo(tokB)) {
		if ids[p.Payload.MessageID] {
			t.Errorf("two pushes for message %s", p.Payload.MessageID)
		}
		ids[p.Payload.MessageID] = true
	}
	// The worker counts a push once APNs's answer is back, a moment after
	// the stand-in recorded it.
	poll(t, iosSent+" to reach 5", func() bool { return n.metric(t, iosSent) == 5 })
	noProblems(t, s)
}

func TestPushGroup(t *testing.T) {
	s := apnstest.New(t)
	n := startPushNode(t, s)
	us := n.users(t, "alice", "bob", "carol")
	alice, bob, carol := us[0], us[1], us[2]
	g := wantString(t, "group", n.createGroup(t, alice, "Trip planning", bob, carol), "id")
	tokB := newAPNsToken()
	n.registerIOS(t, bob, tokB)
	long := strings.Repeat("ça va? ", 40) // 280 characters
	n.send(t, carol, g, long)
	p := waitPushes(t, s, tokB, 1)[0]
	want := []rune(long)[:200]
	if a := p.Payload.APS.Alert; a.Title != "Trip planning" || a.Subtitle != n.displayName(t, carol) || a.Body != string(want)+"…" {
		t.Errorf("group alert %+v, want the group's title, carol as subtitle and 200 characters with …", a)
	}
	noProblems(t, s)
}

func TestPushOnlineAndBackground(t *testing.T) {
	s := apnstest.New(t)
	n := startPushNode(t, s)
	us := n.users(t, "alice", "bob")
	alice, bob := us[0], us[1]
	conv := wantString(t, "direct", n.createDirect(t, alice, bob), "id")
	tokB := newAPNsToken()
	n.registerIOS(t, bob, tokB)
	const skipped = `parley_push_skipped_total{platform="ios"}`

	ws, _ := n.connect(t, bob, "bob")
	first := n.send(t, alice, conv, "while online")
	ws.event("message.new", nil)
	ws.confirm(conv, wantInt(t, "first", first, "seq")) // as a client must
	poll(t, "the push to be skipped", func() bool { return n.metric(t, skipped) == 1 })
	if ps := s.PushesTo(tokB); len(ps) != 0 {
		t.Fatalf("an online recipient got pushes: %+v", ps)
	}

	// The app goes to the background: its socket still gets messages, and
	// pushes go out.
	ws.request("app.state", "bg", obj{"state": "background"})
	if f := ws.reply("bg"); f.typ != "ok" {
		t.Fatalf("app.state answered %v", f)
	}
	m := n.send(t, alice, conv, "in the background")
	ws.event("message.new", nil)
	if ps := waitPushes(t, s, tokB, 1); ps[0].Payload.MessageID != m["id"] {
		t.Errorf("background push %+v, want message %v", ps[0].Payload, m["id"])
	}

	// Back in the foreground: no pushes again.
	ws.request("app.state", "fg", obj{"state": "foreground"})
	if f := ws.reply("fg"); f.typ != "ok" {
		t.Fatalf("app.state answered %v", f)
	}
	again := n.send(t, alice, conv, "foreground again")
	ws.event("message.new", nil)
	ws.confirm(conv, wantInt(t, "again", again, "seq"))
	poll(t, "the push to be skipped", func() bool { return n.metric(t, skipped) == 2 })
	if got := len(s.PushesTo(tokB)); got != 1 {
		t.Errorf("%d pushes, want still 1", got)
	}

	// A bad state is an error; the connection stays.
	ws.request("app.state", "bad", obj{"state": "asleep"})
	wantError(t, ws.reply("bad"), "bad", "invalid_argument")
	noProblems(t, s)
}

func TestPushMuted(t *testing.T) {
	s := apnstest.New(t)
	n := startPushNode(t, s)
	us := n.users(t, "alice", "bob")
	alice, bob := us[0], us[1]
	g := wantString(t, "group", n.createGroup(t, alice, "Noisy", bob), "id")
	d := wantString(t, "direct", n.createDirect(t, alice, bob), "id")
	tokB := newAPNsToken()
	n.registerIOS(t, bob, tokB)

	n.do(t, "PUT", "/api/conversations/"+g+"/mute", bob.access, obj{"until": nil}).want(t, http.StatusNoContent)
	n.send(t, alice, g, "muted 1")
	n.send(t, alice, g, "muted 2")
	n.send(t, alice, d, "direct")
	ps := waitPushes(t, s, tokB, 1)
	if p := ps[0].Payload; p.ConversationID != d || p.APS.Badge != 1 {
		t.Errorf("push %+v, want the direct message with badge 1 (the muted group left out)", p)
	}

	// A mute until a later time mutes too; unmuting counts the group again.
	until := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	n.do(t, "PUT", "/api/conversations/"+g+"/mute", bob.access, obj{"until": until}).want(t, http.StatusNoContent)
	n.send(t, alice, g, "muted 3")
	n.do(t, "DELETE", "/api/conversations/"+g+"/mute", bob.access, nil).want(t, http.StatusNoContent)
	n.send(t, alice, g, "heard")
	ps = waitPushes(t, s, tokB, 2)
	if p := ps[len(ps)-1].Payload; p.ConversationID != g || p.APS.Alert.Body != "heard" || p.APS.Badge != 5 {
		t.Errorf("push %+v, want \"heard\" with badge 5", p)
	}
	for _, p := range s.PushesTo(tokB) {
		if strings.HasPrefix(p.Payload.APS.Alert.Body, "muted") {
			t.Errorf("a push for a muted conversation: %+v", p.Payload)
		}
	}
	noProblems(t, s)
}

func TestPushTokenGone(t *testing.T) {
	s := apnstest.New(t)
	n := startPushNode(t, s)
	us := n.users(t, "alice", "bob", "carol")
	alice, bob, carol := us[0], us[1], us[2]
	g := wantString(t, "group", n.createGroup(t, alice, "g", bob, carol), "id")
	tokB, tokC := newAPNsToken(), newAPNsToken()
	n.registerIOS(t, bob, tokB)
	n.registerIOS(t, carol, tokC)
	s.Script(tokB, apnstest.Unregistered)
	s.Script(tokC, apnstest.BadDeviceToken)

	n.send(t, alice, g, "to stale devices")
	const deleted = `parley_push_tokens_deleted_total{platform="ios"}`
	poll(t, "the tokens to be deleted", func() bool { return n.metric(t, deleted) == 2 })
	// Deleted: registering them again creates them anew.
	for _, r := range []struct {
		u   user
		tok string
	}{{bob, tokB}, {carol, tokC}} {
		if st := n.registerIOS(t, r.u, r.tok); st != http.StatusCreated {
			t.Errorf("registering %s's token again: %d, want 201 (it was deleted)", r.u.name, st)
		}
	}
	if ps := s.Pushes(); len(ps) != 0 {
		t.Errorf("accepted pushes %+v", ps)
	}
	noProblems(t, s)
}

func TestPushRetried(t *testing.T) {
	s := apnstest.New(t)
	n := startPushNode(t, s)
	us := n.users(t, "alice", "bob")
	alice, bob := us[0], us[1]
	conv := wantString(t, "direct", n.createDirect(t, alice, bob), "id")
	tokB := newAPNsToken()
	n.registerIOS(t, bob, tokB)
	s.Script(tokB, apnstest.TooMany, apnstest.Unavailable, apnstest.Unavailable)

	start := time.Now()
	m := n.send(t, alice, conv, "eventually")
	ps := waitPushes(t, s, tokB, 1)
	took := time.Since(start)
	if ps[0].Payload.MessageID != m["id"] {
		t.Errorf("push %+v", ps[0].Payload)
	}
	if r := s.Requests(); r != 4 {
		t.Errorf("%d requests, want 4 (429, 503, 503, 200)", r)
	}
	// 429 said Retry-After: 1.
	if took < time.Second {
		t.Errorf("delivered %v after the message, before the Retry-After of 1 s", took)
	}
	t.Logf("delivered after 429, 503, 503 in %v", took)
	if got := n.metric(t, `parley_push_retried_total{platform="ios"}`); got != 3 {
		t.Errorf("retried %v, want 3", got)
	}
	poll(t, iosSent+" to reach 1", func() bool { return n.metric(t, iosSent) == 1 })
	noProblems(t, s)
}

// TestPushAfterRestart stops a node while APNs refuses everything, and
// checks that the next node on the same data folder sends what was queued.
func TestPushAfterRestart(t *testing.T) {
	dir := t.TempDir()
	inDir := func(c *server.Config) { c.DataDir = dir }
	down := apnstest.New(t)
	down.Always(&apnstest.Unavailable)
	n1 := startPushNode(t, down, inDir)
	us := n1.users(t, "alice", "bob")
	alice, bob := us[0], us[1]
	conv := wantString(t, "direct", n1.createDirect(t, alice, bob), "id")
	tokB := newAPNsToken()
	n1.registerIOS(t, bob, tokB)
	m1 := n1.send(t, alice, conv, "before the restart 1")
	m2 := n1.send(t, alice, conv, "before the restart 2")
	poll(t, "APNs to refuse both", func() bool { return down.Requests() >= 2 })

	n1.stop()

	up := apnstest.New(t)
	n2 := startPushNode(t, up, inDir)
	ps := waitPushes(t, up, tokB, 2)
	if ps[0].Payload.MessageID != m1["id"] || ps[0].Payload.APS.Badge != 1 ||
		ps[1].Payload.MessageID != m2["id"] || ps[1].Payload.APS.Badge != 2 {
		t.Errorf("after the restart: %+v, %+v; want both messages with badges 1 and 2", ps[0].Payload, ps[1].Payload)
	}
	if len(down.Pushes()) != 0 {
		t.Error("the refusing stand-in accepted a push")
	}
	// And the new node goes on sending.
	n2.send(t, alice, conv, "after the restart")
	waitPushes(t, up, tokB, 3)
	noProblems(t, up)
}

func TestPushOffWithoutKey(t *testing.T) {
	n := startNode(t)
	us := n.users(t, "alice", "bob")
	alice, bob := us[0], us[1]
	conv := wantString(t, "direct", n.createDirect(t, alice, bob), "id")
	// Tokens register and messages send as ever.
	n.registerIOS(t, bob, newAPNsToken())
	n.send(t, alice, conv, "no push")
	if got := n.metric(t, `parley_push_failed_total{platform="ios"}`); got != 0 {
		t.Errorf("failed pushes %v without a key, want none (nothing queued)", got)
	}
}
