package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/internal/natstest"
	"github.com/parley-chat/parley/internal/pgtest"
)

// Cluster test settings: a quick heartbeat, so that a killed node's users
// go offline within a few seconds in the test (the defaults are 2 s and
// 10 s).
const (
	clusterHeartbeat = 500 * time.Millisecond
	clusterDeadAfter = 3 * time.Second
)

// cluster is three `parley serve` processes sharing one PostgreSQL
// database and one NATS server, each on a fixed loopback port so that a
// node restarts where the load balancer expects it.
type cluster struct {
	t     *testing.T
	db    string
	nats  string
	nodes []*clusterNode
}

type clusterNode struct {
	id   string
	port int
	data string
	mu   sync.Mutex
	proc *process
}

func (n *clusterNode) base() string { return "http://127.0.0.1:" + strconv.Itoa(n.port) }

func startCluster(t *testing.T, db, natsURL string, size int) *cluster {
	t.Helper()
	c := &cluster{t: t, db: db, nats: natsURL}
	var wg sync.WaitGroup
	errs := make([]error, size)
	for i := range size {
		n := &clusterNode{id: fmt.Sprintf("n%d", i+1), port: freePort(t), data: t.TempDir()}
		c.nodes = append(c.nodes, n)
		// Three nodes start at the same moment: migrations and keys must
		// cope.
		wg.Go(func() { errs[i] = c.startErr(n) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.nodes {
		waitReady(t, n.base())
	}
	return c
}

// start starts node n's process (again).
func (c *cluster) start(n *clusterNode) {
	c.t.Helper()
	if err := c.startErr(n); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) startErr(n *clusterNode) error {
	p, err := startServerErr(c.t, n.data,
		"--addr", "127.0.0.1:"+strconv.Itoa(n.port),
		"--db", c.db, "--nats", c.nats, "--node-id", n.id,
		"--cluster-heartbeat", clusterHeartbeat.String(), "--node-dead-after", clusterDeadAfter.String(),
		"--heartbeat", "2s",
		"--send-burst", "100000", "--send-rate", "100000",
		"--request-burst", "100000", "--request-rate", "100000")
	if err != nil {
		return fmt.Errorf("node %s: %w", n.id, err)
	}
	n.mu.Lock()
	n.proc = p
	n.mu.Unlock()
	return nil
}

func (c *cluster) kill(n *clusterNode) {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.t.Fatalf("kill %s: %v", n.id, err)
	}
	_ = p.wait(c.t)
}

// stop sends SIGTERM and expects a clean exit (status 0) after the drain.
func (c *cluster) stop(n *clusterNode) {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		c.t.Fatalf("stop %s: %v", n.id, err)
	}
	if err := p.wait(c.t); err != nil {
		c.t.Fatalf("%s did not exit cleanly after SIGTERM: %v\n%s", n.id, err, p.logs)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitReady waits until base answers /readyz with 200.
func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready: %v", base, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// haproxyConfig is the load balancer of the test, and of docs/cluster.md:
// round robin over the nodes that answer /readyz, no stickiness, and a
// tunnel timeout long enough for WebSockets.
const haproxyConfig = `global
    maxconn 4000

defaults
    mode http
    option forwardfor
    option redispatch
    retries 2
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
    timeout http-keep-alive 10s

frontend parley
    bind 127.0.0.1:%d
    default_backend nodes

backend nodes
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2
%s`

// startHAProxy runs Debian's haproxy in front of the cluster and returns
// its base URL. The test command installs haproxy; without it the test
// fails, saying so.
func startHAProxy(t *testing.T, c *cluster) string {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if _, statErr := os.Stat("/usr/sbin/haproxy"); statErr != nil {
			t.Fatal("haproxy is not installed: run ./test.sh, which installs it, or apt-get install haproxy")
		}
		bin = "/usr/sbin/haproxy"
	}
	port := freePort(t)
	var servers strings.Builder
	for _, n := range c.nodes {
		fmt.Fprintf(&servers, "    server %s 127.0.0.1:%d check\n", n.id, n.port)
	}
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(haproxyConfig, port, servers.String())), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	cmd := exec.Command(bin, "-f", cfg, "-db")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start haproxy: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy not serving: %v\n%s", err, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// member is one user of the test with their SDK client.
type member struct {
	name    string
	profile string
	c       *client.Client
	user    parley.User

	mu       sync.Mutex
	presence []presenceSeen // the presence events the client reported
	states   []stateSeen    // and its connection states
}

type stateSeen struct {
	state client.ConnState
	at    time.Time
}

type presenceSeen struct {
	p  parley.Presence
	at time.Time
}

func openMember(t *testing.T, name string, servers []string) *member {
	t.Helper()
	profile := filepath.Join(t.TempDir(), name)
	c, err := client.Open(context.Background(), client.Config{
		Profile:       profile,
		Servers:       servers,
		ReconnectBase: 50 * time.Millisecond,
		ReconnectCap:  time.Second,
		Logger:        slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("open client %s: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	u, err := c.Register(ctx, name, "password-"+name, "")
	if err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	m := &member{name: name, profile: profile, c: c, user: u}
	// Drain the events, keeping the presence ones: a UI that falls behind
	// gets a resync, and a presence event would be lost with it.
	go func() {
		for ev := range c.Events() {
			switch {
			case ev.Presence != nil:
				m.mu.Lock()
				m.presence = append(m.presence, presenceSeen{*ev.Presence, time.Now()})
				m.mu.Unlock()
			case ev.Type == client.EventConnection:
				m.mu.Lock()
				m.states = append(m.states, stateSeen{ev.State, time.Now()})
				m.mu.Unlock()
			}
		}
	}()
	return m
}

// sent is one message the test asked a client to send.
type sent struct {
	conv, text string
}

// TestClusterLosesNothing runs a steady send load from clients spread over
// a three-node cluster (some connected to the nodes directly with all
// three URLs, some through HAProxy), and meanwhile: kills one node with
// SIGKILL (its clients reconnect to the others, resend their outboxes and
// sync), restarts NATS, and restarts the three nodes one by one with
// SIGTERM. In the end every message is in the history exactly once, with
// no seq gap, and every member's client has every message of its
// conversations: 0 lost, 0 duplicated, 0 unexpected. A user whose only
// node was killed goes offline for the others within the documented bound.
func TestClusterLosesNothing(t *testing.T) {
	db := pgtest.DSN(t)
	ns := natstest.Start(t)
	cl := startCluster(t, db, ns.URL(), 3)
	lb := startHAProxy(t, cl)
	urls := make([]string, len(cl.nodes))
	for i, n := range cl.nodes {
		urls[i] = n.base()
	}
	rotate := func(i int) []string {
		out := slices.Clone(urls[i%len(urls):])
		return append(out, urls[:i%len(urls)]...)
	}

	// Six users: two start on each node through its URL list, two go
	// through the load balancer only.
	names := []string{"ann", "ben", "cat", "dan", "eve", "fay"}
	var members []*member
	for i, name := range names {
		servers := rotate(i % 3)
		if i >= 4 {
			servers = []string{lb}
		}
		members = append(members, openMember(t, name, servers))
	}
	ctx := context.Background()
	for _, m := range members {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		if err := m.c.WaitSynced(wctx); err != nil {
			t.Fatalf("%s never synced: %v", m.name, err)
		}
		cancel()
	}

	// A user connected to node 1 alone, with a raw socket that will not
	// reconnect: when node 1 dies, the others must see them go offline.
	ghost := openMember(t, "ghost", []string{urls[0]})
	ghostTok := accessTokenOf(t, ghost)
	ghost.c.Close()

	ann := members[0]
	var names2 []string
	for _, m := range members[1:] {
		names2 = append(names2, m.name)
	}
	group, err := ann.c.CreateGroup(ctx, "everyone", append(names2, "ghost"))
	if err != nil {
		t.Fatalf("create group: %v", err)
	}
	convs := map[string][]*member{group.ID: members}
	// Direct chats across nodes.
	for _, p := range [][2]int{{0, 1}, {2, 3}, {4, 5}, {1, 4}} {
		a, b := members[p[0]], members[p[1]]
		d, err := a.c.CreateDirect(ctx, b.name)
		if err != nil {
			t.Fatalf("create direct: %v", err)
		}
		convs[d.ID] = []*member{a, b}
	}

	// ben (on node 2) watches the group's room: he gets ghost's presence.
	ben := members[1]
	if _, err := ben.c.RoomJoin(ctx, group.ID); err != nil {
		t.Fatalf("room join: %v", err)
	}
	dialed := time.Now()
	ghostConn := dialRaw(t, urls[0], ghostTok)
	defer ghostConn.CloseNow()
	waitPresence(t, ben, ghost.user.ID, parley.Online, dialed, 10*time.Second)

	// The load: every member sends into each of its conversations, one
	// message every 150-250 ms.
	var (
		mu       sync.Mutex
		sentMsgs = map[string][]sent{} // member → sends
		total    atomic.Int64
	)
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, m := range members {
		var mine []string
		for id, ms := range convs {
			if slices.Contains(ms, m) {
				mine = append(mine, id)
			}
		}
		wg.Go(func() {
			for i := 0; loadCtx.Err() == nil; i++ {
				conv := mine[i%len(mine)]
				text := fmt.Sprintf("%s %d", m.name, i)
				if _, err := m.c.Send(ctx, conv, text); err != nil {
					t.Errorf("%s send: %v", m.name, err)
					return
				}
				mu.Lock()
				sentMsgs[m.name] = append(sentMsgs[m.name], sent{conv, text})
				mu.Unlock()
				total.Add(1)
				select {
				case <-loadCtx.Done():
				case <-time.After(time.Duration(150+rand.IntN(100)) * time.Millisecond):
				}
			}
		})
	}
	t.Cleanup(func() { stopLoad(); wg.Wait() })
	pause := func(d time.Duration) {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}

	// 1. kill -9 node 1 under load.
	pause(3 * time.Second)
	killedAt := time.Now()
	cl.kill(cl.nodes[0])
	offlineAfter := waitPresence(t, ben, ghost.user.ID, parley.Offline, killedAt, clusterDeadAfter+5*time.Second).Sub(killedAt)
	t.Logf("kill -9: ghost offline for ben after %v (dead-after %v, heartbeat %v)", offlineAfter.Round(time.Millisecond), clusterDeadAfter, clusterHeartbeat)
	logOutage(t, "kill -9", members, killedAt)
	pause(2 * time.Second)
	cl.start(cl.nodes[0])
	waitReady(t, urls[0])
	pause(2 * time.Second)

	// 2. NATS goes away for a second and comes back.
	natsDown := time.Now()
	ns.Stop()
	pause(time.Second)
	ns.Start()
	for _, u := range urls {
		waitReady(t, u)
	}
	t.Logf("NATS restart: every node ready again %v after NATS went away (1 s of it down)", time.Since(natsDown).Round(time.Millisecond))
	logOutage(t, "NATS restart", members, natsDown)
	pause(3 * time.Second)

	// 3. A rolling restart: each node drains (SIGTERM, exit 0) and starts.
	for _, n := range cl.nodes {
		stopped := time.Now()
		cl.stop(n)
		drained := time.Since(stopped)
		cl.start(n)
		waitReady(t, n.base())
		t.Logf("rolling restart of %s: drained and exited 0 in %v, ready again after %v", n.id, drained.Round(time.Millisecond), time.Since(stopped).Round(time.Millisecond))
		logOutage(t, "rolling restart of "+n.id, members, stopped)
		pause(2 * time.Second)
	}

	stopLoad()
	wg.Wait()
	t.Logf("%d messages sent during the test", total.Load())

	// Everything converges: outboxes empty, every client holds its
	// conversations' whole history, as the server does.
	deadline := time.Now().Add(90 * time.Second)
	for {
		err := converged(ctx, lb, members, convs, sentMsgs)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not converged: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// outages returns, for each member whose connection went offline after
// since, how long it took to be online again (measured by the client's
// own connection events), and how many never came back.
func outages(members []*member, since time.Time) (took []time.Duration, notBack int) {
	for _, m := range members {
		m.mu.Lock()
		var down time.Time
		back := false
		for _, st := range m.states {
			if st.at.Before(since) {
				continue
			}
			if down.IsZero() && st.state != client.StateOnline {
				down = st.at
			}
			if !down.IsZero() && st.state == client.StateOnline {
				took = append(took, st.at.Sub(since))
				back = true
				break
			}
		}
		m.mu.Unlock()
		if !down.IsZero() && !back {
			notBack++
		}
	}
	slices.Sort(took)
	return took, notBack
}

// logOutage waits until every member that lost its connection since
// since is back, and logs how long that took.
func logOutage(t *testing.T, what string, members []*member, since time.Time) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		took, notBack := outages(members, since)
		if notBack == 0 {
			var parts []string
			for _, d := range took {
				parts = append(parts, d.Round(time.Millisecond).String())
			}
			t.Logf("%s: %d of %d clients were cut off; back online after %s", what, len(took), len(members), strings.Join(parts, ", "))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d clients not back online after 60 s", what, notBack)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// converged checks the end state: for each conversation, the server's
// history has seqs 1..N and each text sent into it exactly once and
// nothing else; each member's client has exactly that history and an
// empty outbox.
func converged(ctx context.Context, base string, members []*member, convs map[string][]*member, sentMsgs map[string][]sent) error {
	want := map[string]map[string]bool{} // conv → texts
	for _, ss := range sentMsgs {
		for _, s := range ss {
			if want[s.conv] == nil {
				want[s.conv] = map[string]bool{}
			}
			want[s.conv][s.text] = true
		}
	}
	for _, m := range members {
		out, err := m.c.Outbox(ctx)
		if err != nil {
			return err
		}
		if len(out) > 0 {
			return fmt.Errorf("%s: %d messages still in the outbox", m.name, len(out))
		}
	}
	for conv, ms := range convs {
		history, err := fullHistory(ctx, base, ms[0], conv)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for i, msg := range history {
			if msg.Seq != int64(i+1) {
				return fmt.Errorf("conversation %s: seq %d at position %d (gap or repeat)", conv, msg.Seq, i+1)
			}
			if seen[msg.Text] {
				return fmt.Errorf("conversation %s: %q stored twice", conv, msg.Text)
			}
			seen[msg.Text] = true
			if !want[conv][msg.Text] {
				return fmt.Errorf("conversation %s: unexpected message %q", conv, msg.Text)
			}
		}
		for text := range want[conv] {
			if !seen[text] {
				return fmt.Errorf("conversation %s: %q lost", conv, text)
			}
		}
		for _, m := range ms {
			local, err := m.c.Messages(ctx, conv, client.MessageQuery{Limit: 1 << 20})
			if err != nil {
				return err
			}
			if len(local) != len(history) {
				return fmt.Errorf("%s has %d messages of conversation %s, the server %d", m.name, len(local), conv, len(history))
			}
			for i := range local {
				if local[i].ID != history[i].ID {
					return fmt.Errorf("%s: message %d of %s is %q, the server's %q", m.name, i+1, conv, local[i].Text, history[i].Text)
				}
			}
		}
	}
	return nil
}

// fullHistory pages through a conversation's whole history over REST.
func fullHistory(ctx context.Context, base string, m *member, conv string) ([]parley.Message, error) {
	var all []parley.Message
	after := int64(0)
	for {
		page, more, err := m.c.History(ctx, conv, parley.HistoryQuery{AfterSeq: after, HasAfter: true, Limit: 200})
		if err != nil {
			return nil, fmt.Errorf("history of %s: %w", conv, err)
		}
		for _, msg := range page {
			all = append(all, msg.Message)
		}
		if !more || len(page) == 0 {
			return all, nil
		}
		after = page[len(page)-1].Seq
	}
}

// accessTokenOf reads the access token from a client's profile.
func accessTokenOf(t *testing.T, m *member) string {
	t.Helper()
	return accessToken(t, m.profile)
}

// dialRaw opens a plain WebSocket that never reconnects.
func dialRaw(t *testing.T, base, token string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + token}},
	})
	if err != nil {
		t.Fatalf("dial %s: %v", base, err)
	}
	// Read (and drop) what comes, so that pings are answered.
	go func() {
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	return c
}

// waitPresence waits until m's client has reported userID's status, later
// than since, and returns when it did.
func waitPresence(t *testing.T, m *member, userID string, status parley.PresenceStatus, since time.Time, within time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		m.mu.Lock()
		for _, ps := range m.presence {
			if ps.p.UserID == userID && ps.p.Status == status && !ps.at.Before(since) {
				m.mu.Unlock()
				return ps.at
			}
		}
		m.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("%s did not see %s go %s within %v", m.name, userID, status, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
