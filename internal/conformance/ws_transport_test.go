package conformance

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/internal/server"
)

// upgrade sends a bare WebSocket upgrade request with the given Host and
// Origin and returns the status of the answer.
func (n *node) upgrade(t *testing.T, host, origin, token string) int {
	t.Helper()
	key := make([]byte, 16)
	rand.Read(key)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", n.url+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(key))
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := n.hc.Do(req)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		io.Copy(io.Discard, res.Body)
	}
	res.Body.Close()
	return res.StatusCode
}

func TestWSOriginDefaultPorts(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	u := n.register(t, "origin")
	cases := []struct {
		host, origin string
		want         int
	}{
		{"chat.example", "https://chat.example", 101},
		{"chat.example", "https://chat.example:443", 101},
		{"chat.example", "wss://chat.example:443", 101},
		{"chat.example", "http://chat.example:80", 101},
		{"chat.example", "ws://chat.example", 101},
		{"chat.example:443", "https://chat.example", 101},
		{"chat.example:80", "https://chat.example", 101},
		{"chat.example:8443", "https://chat.example:8443", 101},
		{"chat.example:8443", "wss://chat.example:8443", 101},
		{"Chat.Example", "https://chat.example", 101},
		{"chat.example", "https://chat.example:8443", 403},
		{"chat.example:8443", "https://chat.example", 403},
		{"chat.example", "https://other.example", 403},
		{"chat.example", "https://chat.example.other.example", 403},
	}
	for _, c := range cases {
		if got := n.upgrade(t, c.host, c.origin, u.access); got != c.want {
			t.Errorf("Host %q, Origin %q: %d, want %d", c.host, c.origin, got, c.want)
		}
	}
}

func TestExpiredAccessToken(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *server.Config) { c.AccessTTL = time.Second })
	u := n.register(t, "expired")
	me := n.do(t, "GET", "/api/users/me", u.access, nil)
	if me.status != http.StatusOK {
		t.Fatalf("fresh token refused: %v", me)
	}
	// expires_in is 1: exp has whole seconds and is rounded up, so the
	// token lives at least 1 s and has expired 2.1 s later.
	time.Sleep(2100 * time.Millisecond)
	n.do(t, "GET", "/api/users/me", u.access, nil).wantProblem(t, 401, "unauthenticated")
	_, res, err := n.dialRaw(t, dialOpts{token: u.access})
	if err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
		t.Errorf("upgrade with an expired token: %v, want HTTP 401 and no upgrade", res)
	}
	// As the first frame: closed with 4001, no hello.
	c, _, err := n.dialRaw(t, dialOpts{})
	if err != nil {
		t.Fatal(err)
	}
	w := wrap(t, "expired first frame", c)
	w.request("auth", "x", obj{"token": u.access})
	if code := w.closed(); code != 4001 {
		t.Errorf("close code %d, want 4001", code)
	}
	none(t, "expired first frame", "hello", w.remaining(), ofType("hello"))
}

func TestWSHeartbeat(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *server.Config) { c.Heartbeat = 200 * time.Millisecond })
	u := n.register(t, "beat")
	var pings atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	c, _, err := websocket.Dial(ctx, n.wsURL, &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + u.access}},
		HTTPClient: n.hc,
		OnPingReceived: func(context.Context, []byte) bool {
			pings.Add(1)
			return true
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	w := wrap(t, "beat", c)
	hello := checkHello(t, w.next(), u.id, "")
	if hs := intOf(hello["heartbeat_s"]); hs != 1 {
		t.Errorf("heartbeat_s %d for a 200 ms heartbeat, want 1 (whole seconds, rounded up)", hs)
	}
	// Pings come, and a client that answers them stays connected well past
	// two heartbeats without sending anything.
	end := time.Now().Add(deadline)
	for pings.Load() < 5 {
		if time.Now().After(end) {
			t.Fatalf("%d pings within %v at a 200 ms heartbeat", pings.Load(), deadline)
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.request("room.leave", "alive", obj{"conversation_id": unknownID})
	if f := w.reply("alive"); f.typ != "ok" {
		t.Errorf("after idling: %v", f)
	}
}

func TestWSShutdown(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	u := n.register(t, "bye")
	w, _ := n.connect(t, u, "bye")
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	for _, nd := range n.set.Nodes { // whichever the client was given
		if err := nd.Server.Gateway().Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if code := w.closed(); code != websocket.StatusGoingAway {
		t.Errorf("close code %d on shutdown, want 1001", code)
	}
}

// TestWSMessageOrder checks that message.new for a conversation arrives in
// increasing seq on each connection, with concurrent senders.
func TestWSMessageOrder(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	us := n.users(t, "oa", "ob", "oc")
	a, b, c := us[0], us[1], us[2]
	id := n.createGroup(t, a, "order", b, c)["id"].(string)
	wa, _ := n.connect(t, a, "a")
	wb, _ := n.connect(t, b, "b")
	wc, _ := n.connect(t, c, "c")
	const each = 40
	for i := 0; i < each; i++ {
		wa.request("message.send", fmt.Sprint("a", i), obj{"conversation_id": id, "client_message_id": fmt.Sprint("a", i), "kind": "text", "text": "a"})
		wb.request("message.send", fmt.Sprint("b", i), obj{"conversation_id": id, "client_message_id": fmt.Sprint("b", i), "kind": "text", "text": "b"})
	}
	var last int64
	for got := 0; got < 2*each; got++ {
		f, _ := wc.event("message.new", nil)
		seq := intOf(f.payload["message"].(obj)["seq"])
		if seq != last+1 {
			t.Fatalf("message.new seq %d after %d: not increasing without gaps", seq, last)
		}
		last = seq
	}
	// Each sender sees the other's messages in increasing seq too.
	for _, w := range []*wsClient{wa, wb} {
		var prev int64
		for got := 0; got < each; got++ {
			f, _ := w.event("message.new", nil)
			seq := intOf(f.payload["message"].(obj)["seq"])
			if seq <= prev {
				t.Fatalf("%s: message.new seq %d after %d", w.name, seq, prev)
			}
			prev = seq
		}
	}
}

// TestWSFrameLimit checks that no server frame exceeds 1 MiB: a sync whose
// messages do not fit returns fewer, with has_more.
func TestWSFrameLimit(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	us := n.users(t, "fl", "fl")
	a, b := us[0], us[1]
	id := n.createDirect(t, a, b)["id"].(string)
	// Every byte of this text takes 6 in JSON (\u003c), so 16 KiB of it
	// take 96 KiB: 14 of them are over 1 MiB.
	text := strings.Repeat("<", 16<<10)
	const total = 14
	for i := 0; i < total; i++ {
		n.do(t, "POST", "/api/conversations/"+id+"/messages", a.access, obj{"client_message_id": newCMID(), "kind": "text", "text": text}).want(t, http.StatusCreated)
	}
	w, _ := n.connect(t, b, "b")
	for name, conversations := range map[string]obj{"new": {}, "listed": {id: 0}} {
		rid := "sync-" + name
		w.request("sync", rid, obj{"conversations": conversations, "limit": 200})
		f := w.reply(rid) // checkFrame checks the 1 MiB
		if f.typ != "sync.result" {
			t.Fatalf("%s: sync answered %v", name, f)
		}
		entries := wantObjects(t, "sync.result", f.payload, "conversations")
		if len(entries) != 1 {
			t.Fatalf("%s: %d conversations", name, len(entries))
		}
		ms := seqs(wantObjects(t, "sync", entries[0], "messages"))
		if len(ms) == 0 || len(ms) >= total || !wantBool(t, "sync", entries[0], "has_more") {
			t.Errorf("%s: %d of %d messages, has_more %v; want fewer, and has_more true", name, len(ms), total, entries[0]["has_more"])
			continue
		}
		for i := 1; i < len(ms); i++ {
			if ms[i] != ms[i-1]+1 {
				t.Errorf("%s: seqs %v not ascending", name, ms)
			}
		}
		switch name {
		case "new": // the newest that fit
			if ms[len(ms)-1] != total {
				t.Errorf("new: seqs %v, want the newest", ms)
			}
		case "listed": // the oldest after the seq
			if ms[0] != 1 {
				t.Errorf("listed: seqs %v, want from 1", ms)
			}
		}
	}
}
