package conformance

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/internal/apns/apnstest"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/server"
	"github.com/parley-chat/parley/internal/testnode"
)

// The tests of this file are about a cluster: each starts three nodes on
// PostgreSQL and NATS whatever PARLEY_TEST_CLUSTER says, and talks to
// each node on purpose (n.at(i)).

func startCluster(t *testing.T, change ...func(*server.Config)) *node {
	t.Helper()
	return wrapNodes(testnode.StartCluster(t, 3, change...))
}

// waitUserOn waits until every node knows that userID is connected to
// count nodes.
func (n *node) waitUserOn(t *testing.T, userID string, count int) {
	t.Helper()
	poll(t, fmt.Sprintf("every node to see the user on %d nodes", count), func() bool {
		for _, nd := range n.set.Nodes {
			if len(nd.Server.UserNodes(userID)) != count {
				return false
			}
		}
		return true
	})
}

// TestClusterChat: members connected to three different nodes chat as on
// one node: messages, receipts, presence, typing and the room.join reply
// are the cluster's.
func TestClusterChat(t *testing.T) {
	t.Parallel()
	n := startCluster(t)
	us := n.users(t, "ca", "cb", "cc")
	a, b, c := us[0], us[1], us[2]
	conv := wantString(t, "group", n.at(0).createGroup(t, a, "cluster", b, c), "id")

	wa, _ := n.at(0).connect(t, a, "a@1")
	wb, _ := n.at(1).connect(t, b, "b@2")
	n.waitUserOn(t, a.id, 1)
	n.waitUserOn(t, b.id, 1)

	// a types on node 1: b, in the room on node 2, hears it.
	wb.request("room.join", "jb", obj{"conversation_id": conv})
	wb.reply("jb")
	wa.request("typing", "", obj{"conversation_id": conv, "state": "started"})
	wb.event("typing", func(p obj) bool { return p["user_id"] == a.id })

	// c joins on node 3, where nobody was in the room when a started:
	// a (node 1) and b (node 2) are online, and a is typing.
	wc, _ := n.at(2).connect(t, c, "c@3")
	var st obj
	joins := 0
	poll(t, "node 3 to know that a is typing", func() bool {
		joins++
		id := fmt.Sprint("jc", joins)
		wc.request("room.join", id, obj{"conversation_id": conv})
		st = wc.reply(id).payload
		return slices.Contains(wantArray(t, "room state", st, "typing"), any(a.id))
	})
	online := map[string]bool{}
	for _, p := range wantObjects(t, "room state", st, "presence") {
		online[wantString(t, "presence", p, "user_id")] = wantString(t, "presence", p, "status") == "online"
	}
	if !online[a.id] || !online[b.id] || !online[c.id] {
		t.Errorf("room.join on node 3: presence %v, want a, b and c online", st)
	}

	// A message sent on node 2 reaches node 1 and node 3, in order.
	wb.request("message.send", "s1", obj{"conversation_id": conv, "client_message_id": newCMID(), "kind": "text", "text": "from node 2"})
	ack := wb.reply("s1")
	seq := intOf(ack.payload["message"].(obj)["seq"])
	for _, w := range []*wsClient{wa, wc} {
		f, _ := w.event("message.new", func(p obj) bool { return p["message"].(obj)["text"] == "from node 2" })
		if got := intOf(f.payload["message"].(obj)["seq"]); got != seq {
			t.Errorf("%s: seq %d, want %d", w.name, got, seq)
		}
	}
	// A receipt from node 3 reaches node 2.
	wc.request("receipt", "r1", obj{"conversation_id": conv, "kind": "read", "seq": seq})
	wc.reply("r1")
	wb.event("receipt", func(p obj) bool { return p["user_id"] == c.id && intOf(p["seq"]) == seq })

	// a leaves node 1: b (node 2) and c (node 3) see a go offline.
	wb.request("room.join", "jb2", obj{"conversation_id": conv})
	wb.reply("jb2")
	wa.c.Close(websocket.StatusNormalClosure, "bye")
	for _, w := range []*wsClient{wb, wc} {
		f, _ := w.event("presence", func(p obj) bool { return p["user_id"] == a.id && p["status"] == "offline" })
		wantTime(t, "presence", f.payload, "last_seen_at")
	}
}

// TestClusterRevocation: a logout on one node closes the family's sockets
// on every node with 4001 and its access token is refused everywhere.
func TestClusterRevocation(t *testing.T) {
	t.Parallel()
	n := startCluster(t)
	u := n.register(t, "rev")
	var ws []*wsClient
	for i := range 3 {
		w, _ := n.at(i).connect(t, u, fmt.Sprintf("rev@%d", i+1))
		ws = append(ws, w)
	}
	n.at(0).do(t, "POST", "/api/auth/logout", "", obj{"refresh_token": u.refresh}).want(t, http.StatusNoContent)
	for _, w := range ws {
		if code := w.closed(); code != 4001 {
			t.Errorf("%s closed with %d, want 4001", w.name, code)
		}
	}
	for i := range 3 {
		n.at(i).do(t, "GET", "/api/users/me", u.access, nil).wantProblem(t, http.StatusUnauthorized, "unauthenticated")
	}
}

// TestClusterRateLimit: three connections of one user on three nodes share
// one budget.
func TestClusterRateLimit(t *testing.T) {
	t.Parallel()
	const burst = 10
	n := startCluster(t, func(c *server.Config) { c.Limits = chat.Limits{SendBurst: burst, SendPerSecond: 0.001} })
	us := n.users(t, "rl", "rlpeer")
	u, peer := us[0], us[1]
	conv := wantString(t, "direct", n.createDirect(t, u, peer), "id")
	var ws []*wsClient
	for i := range 3 {
		w, _ := n.at(i).connect(t, u, fmt.Sprintf("rl@%d", i+1))
		ws = append(ws, w)
	}
	n.waitUserOn(t, u.id, 3)
	acked, limited := 0, 0
	for i := range 3 * burst {
		w := ws[i%3]
		id := fmt.Sprint("s", i)
		w.request("message.send", id, obj{"conversation_id": conv, "client_message_id": newCMID(), "kind": "text", "text": "x"})
		switch f := w.reply(id); f.typ {
		case "message.ack":
			acked++
		case "error":
			wantError(t, f, id, "rate_limited")
			limited++
		default:
			t.Fatalf("reply %v", f)
		}
	}
	if acked != burst || limited != 2*burst {
		t.Errorf("%d acked and %d rate_limited over three nodes, want the one burst of %d", acked, limited, burst)
	}
}

// TestClusterOnePushPerDevice: with three push workers, each message
// reaches an offline device exactly once.
func TestClusterOnePushPerDevice(t *testing.T) {
	t.Parallel()
	s := apnstest.New(t)
	n := startCluster(t, func(c *server.Config) {
		c.APNs = server.APNsConfig{
			KeyFile: s.KeyFile, KeyID: apnstest.KeyID, TeamID: apnstest.TeamID, Topic: apnstest.Topic,
			URL: s.URL, RootCAs: s.RootCAs(),
		}
	})
	us := n.users(t, "pa", "pb")
	a, b := us[0], us[1]
	conv := wantString(t, "direct", n.createDirect(t, a, b), "id")
	tok := newAPNsToken()
	n.registerIOS(t, b, tok)
	const count = 30
	ids := map[string]bool{}
	for i := range count {
		m := n.at(i%3).send(t, a, conv, fmt.Sprint("push ", i))
		ids[m["id"].(string)] = true
	}
	ps := waitPushes(t, s, tok, count)
	seen := map[string]int{}
	for _, p := range ps {
		seen[p.Payload.MessageID]++
	}
	for id := range ids {
		if seen[id] != 1 {
			t.Errorf("message %s pushed %d times, want once", id, seen[id])
		}
	}
	// Every job is finished: no node holds one to send again.
	poll(t, "the push metrics to add up", func() bool { return n.metric(t, iosSent) == count })
	if got := len(s.PushesTo(tok)); got != count {
		t.Errorf("%d pushes for %d messages", got, count)
	}
	noProblems(t, s)
}

// TestClusterNATSLoss: without NATS the nodes say so on /readyz, close
// their sockets with 1013, refuse upgrades and writes with unavailable at
// once, and recover by themselves when NATS is back.
func TestClusterNATSLoss(t *testing.T) {
	t.Parallel()
	n := startCluster(t)
	us := n.users(t, "na", "nb")
	a, b := us[0], us[1]
	conv := wantString(t, "direct", n.createDirect(t, a, b), "id")
	w, _ := n.at(1).connect(t, a, "a@2")

	n.set.NATS.Stop()
	if code := w.closed(); code != websocket.StatusTryAgainLater {
		t.Errorf("socket closed with %d when NATS went away, want 1013", code)
	}
	for i := range 3 {
		poll(t, "/readyz to answer 503", func() bool { return n.at(i).do(t, "GET", "/readyz", "", nil).status == http.StatusServiceUnavailable })
	}
	start := time.Now()
	n.at(0).do(t, "POST", "/api/conversations/"+conv+"/messages", a.access,
		obj{"client_message_id": newCMID(), "kind": "text", "text": "no bus"}).wantProblem(t, http.StatusServiceUnavailable, "unavailable")
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a refused write took %v", took)
	}
	if _, res, err := n.at(2).dialRaw(t, dialOpts{token: a.access}); err == nil || res == nil || res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("upgrade without NATS: %v, %v; want 503", err, res)
	}
	// Nothing was stored.
	if msgs, _ := n.history(t, a, conv, ""); len(msgs) != 0 {
		t.Errorf("history has %d messages after the refused write", len(msgs))
	}

	n.set.NATS.Start()
	for i := range 3 {
		poll(t, "/readyz to answer 200 again", func() bool { return n.at(i).do(t, "GET", "/readyz", "", nil).status == http.StatusOK })
	}
	wb, _ := n.at(2).connect(t, b, "b@3")
	n.at(0).send(t, a, conv, "bus is back")
	wb.event("message.new", func(p obj) bool { return p["message"].(obj)["text"] == "bus is back" })
}

// TestClusterPostgresLoss: a node cut off from PostgreSQL says so on
// /readyz, refuses writes with unavailable within seconds instead of
// hanging, and works again by itself when the database is back; the
// other nodes go on.
func TestClusterPostgresLoss(t *testing.T) {
	t.Parallel()
	set := testnode.StartCluster(t, 2)
	proxy := startTCPProxy(t, hostPort(t, set.DB))
	cfg := testnode.Config(t)
	cfg.DB = withHost(t, set.DB, proxy.addr())
	cfg.NATS = set.NATS.URL()
	set.Nodes = append(set.Nodes, testnode.StartNode(t, cfg))
	n := wrapNodes(set)
	cut := n.at(2)

	us := n.users(t, "pga", "pgb")
	a, b := us[0], us[1]
	conv := wantString(t, "direct", n.createDirect(t, a, b), "id")
	cut.send(t, a, conv, "before")

	proxy.cut()
	start := time.Now()
	r := cut.do(t, "POST", "/api/conversations/"+conv+"/messages", a.access,
		obj{"client_message_id": newCMID(), "kind": "text", "text": "during"})
	took := time.Since(start)
	if r.status != http.StatusServiceUnavailable {
		// Authentication reads the database too: 503 either way.
		t.Errorf("write without the database: %v, want 503", r)
	}
	t.Logf("a write on a node cut off from PostgreSQL answered %d after %v", r.status, took.Round(time.Millisecond))
	if took > 15*time.Second {
		t.Errorf("the refusal took %v", took)
	}
	poll(t, "/readyz to answer 503", func() bool { return cut.do(t, "GET", "/readyz", "", nil).status == http.StatusServiceUnavailable })
	// The other nodes are not affected.
	n.at(0).send(t, a, conv, "elsewhere")

	proxy.restore()
	poll(t, "/readyz to answer 200 again", func() bool { return cut.do(t, "GET", "/readyz", "", nil).status == http.StatusOK })
	cut.send(t, a, conv, "after")
	msgs, _ := n.history(t, b, conv, "")
	var texts []string
	for _, m := range msgs {
		texts = append(texts, m["text"].(string))
	}
	if !slices.Equal(texts, []string{"before", "elsewhere", "after"}) {
		t.Errorf("history %q", texts)
	}
}

// TestNATSNeedsDB: a node refuses to start with NATS but no PostgreSQL.
func TestNATSNeedsDB(t *testing.T) {
	cfg := testnode.Config(t)
	cfg.NATS = "nats://127.0.0.1:4222"
	if _, err := server.Open(context.Background(), cfg); err == nil {
		t.Fatal("a node started with --nats and no --db")
	} else if !strings.Contains(err.Error(), "--db") {
		t.Errorf("error %q does not say what is missing", err)
	}
}

func hostPort(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func withHost(t *testing.T, dsn, host string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = host
	return u.String()
}

// tcpProxy forwards loopback connections to a target; cut makes it a
// black hole (connections stay open and carry nothing, as through a
// failed network), restore makes it forward again.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	holed  bool
}

func startTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns[c] = struct{}{}
		holed := p.holed
		p.mu.Unlock()
		if holed {
			continue // held open, never answered
		}
		go p.forward(c)
	}
}

func (p *tcpProxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	go func() { io.Copy(up, c); up.Close() }()
	io.Copy(c, up)
	c.Close()
}

// cut drops every connection and swallows the new ones.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holed = true
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *tcpProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holed = false
	for c := range p.conns {
		c.Close() // the held ones: their clients reconnect
		delete(p.conns, c)
	}
}
