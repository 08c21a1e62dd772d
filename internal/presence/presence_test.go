package presence

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/parley-chat/parley"
)

// cluster connects directories through in-order queues, as a bus does,
// and can cut a node off or drop messages.
type cluster struct {
	t     *testing.T
	mu    sync.Mutex
	nodes map[string]*member
	// drop, if set, says whether to lose a message on its way to a node.
	drop func(to string, m Message) bool
}

type member struct {
	d       *Directory
	inbox   chan Message
	stop    chan struct{}
	mu      sync.Mutex
	changes []parley.Presence
	dead    [][]string
	cut     bool // sends nothing and receives nothing
}

func newCluster(t *testing.T) *cluster {
	return &cluster{t: t, nodes: map[string]*member{}}
}

// add starts a directory for node and its goroutines.
func (c *cluster) add(node string) *member {
	m := &member{inbox: make(chan Message, 1<<14), stop: make(chan struct{})}
	m.d = New(Options{
		Node:      node,
		Heartbeat: time.Second,
		DeadAfter: 5 * time.Second,
		Send:      func(msg Message) error { return c.send(node, msg) },
		OnChange: func(p parley.Presence) {
			m.mu.Lock()
			m.changes = append(m.changes, p)
			m.mu.Unlock()
		},
		OnNodeDead: func(users []string, _ parley.Time) {
			m.mu.Lock()
			slices.Sort(users)
			m.dead = append(m.dead, users)
			m.mu.Unlock()
		},
	})
	c.mu.Lock()
	c.nodes[node] = m
	c.mu.Unlock()
	go func() {
		for {
			select {
			case <-m.stop:
				return
			case msg := <-m.inbox:
				m.d.Handle(msg)
			}
		}
	}()
	go m.d.Run(m.stop)
	c.t.Cleanup(func() { m.halt() })
	m.d.Hello()
	return m
}

func (m *member) halt() {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
}

func (c *cluster) send(from string, msg Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if src := c.nodes[from]; src != nil && src.cut {
		return fmt.Errorf("cut off")
	}
	for id, m := range c.nodes {
		if id == from || m.cut || (msg.To != "" && msg.To != id) {
			continue
		}
		if c.drop != nil && c.drop(id, msg) {
			continue
		}
		m.inbox <- msg
	}
	return nil
}

func (m *member) took() []parley.Presence {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.changes
	m.changes = nil
	return out
}

func statuses(ps []parley.Presence) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.UserID+" "+string(p.Status))
	}
	return out
}

func wantChanges(t *testing.T, who string, m *member, want ...string) {
	t.Helper()
	got := statuses(m.took())
	if !slices.Equal(got, want) {
		t.Fatalf("%s saw %q, want %q", who, got, want)
	}
}

func TestSingleNode(t *testing.T) {
	var got []parley.Presence
	d := New(Options{Node: "a", OnChange: func(p parley.Presence) { got = append(got, p) }})
	d.Set("u", 1, 1, nil)
	if !d.Online("u") || !d.HasForegroundConnection("u", "") {
		t.Fatal("a user with a foreground connection is not online in the foreground")
	}
	d.Set("u", 2, 1, nil)
	d.Set("u", 2, 0, nil)
	if !d.Online("u") || d.HasForegroundConnection("u", "") {
		t.Fatal("a user whose connections are all in the background counts as foreground")
	}
	d.Set("u", 0, 0, nil)
	if d.Online("u") {
		t.Fatal("a user without connections is online")
	}
	if s := statuses(got); !slices.Equal(s, []string{"u online", "u offline"}) {
		t.Fatalf("changes %q", s)
	}
	if !got[1].LastSeenAt.After(got[0].LastSeenAt.Add(-time.Millisecond)) {
		t.Fatalf("offline last seen %v before online %v", got[1].LastSeenAt, got[0].LastSeenAt)
	}
}

func TestClusterWideStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t)
		a, b := c.add("a"), c.add("b")
		synctest.Wait()

		a.d.Set("u", 1, 1, nil)
		synctest.Wait()
		wantChanges(t, "a", a, "u online")
		wantChanges(t, "b", b, "u online")
		if !b.d.Online("u") || !b.d.HasForegroundConnection("u", "") {
			t.Fatal("b does not see u online in the foreground on a")
		}
		// A second connection on another node changes nothing visible.
		b.d.Set("u", 1, 0, nil)
		synctest.Wait()
		wantChanges(t, "a", a)
		wantChanges(t, "b", b)
		if got := b.d.NodesOf(nil, "u"); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("u is on %v, want [a b]", got)
		}
		// The last connection anywhere makes u offline everywhere.
		a.d.Set("u", 0, 0, nil)
		synctest.Wait()
		wantChanges(t, "a", a)
		if !a.d.Online("u") || a.d.HasForegroundConnection("u", "") {
			t.Fatal("a: u should be online in the background, on b")
		}
		b.d.Set("u", 0, 0, nil)
		synctest.Wait()
		wantChanges(t, "a", a, "u offline")
		wantChanges(t, "b", b, "u offline")
	})
}

func TestLateNodeGetsSnapshots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t)
		a := c.add("a")
		synctest.Wait()
		// More users than one snapshot part holds.
		for i := range snapshotPart + 10 {
			a.d.Set(fmt.Sprintf("u%d", i), 1, 1, nil)
		}
		a.took()
		b := c.add("b")
		synctest.Wait()
		if n := len(b.took()); n != snapshotPart+10 {
			t.Fatalf("b saw %d users come online, want %d", n, snapshotPart+10)
		}
		if !b.d.Online("u0") || !b.d.Online(fmt.Sprintf("u%d", snapshotPart+9)) {
			t.Fatal("b does not know a's users")
		}
		if got := b.d.LiveNodes(); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("b knows nodes %v", got)
		}
	})
}

func TestMissedMessageIsRepairedBySnapshot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t)
		a, b := c.add("a"), c.add("b")
		synctest.Wait()
		lost := false
		c.drop = func(to string, m Message) bool {
			if to == "b" && m.Kind == KindState && !lost {
				lost = true
				return true
			}
			return false
		}
		a.d.Set("u1", 1, 1, nil) // lost on its way to b
		synctest.Wait()
		if b.d.Online("u1") {
			t.Fatal("the lost message arrived")
		}
		// The next heartbeat (or message) tells b it missed one.
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		if !b.d.Online("u1") {
			t.Fatal("b did not repair what it missed")
		}
		wantChanges(t, "b", b, "u1 online")
	})
}

func TestDeadNodeUsersGoOffline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t)
		a, b, z := c.add("a"), c.add("b"), c.add("z")
		synctest.Wait()
		b.d.Set("u", 1, 1, nil)
		b.d.Set("shared", 1, 1, nil)
		a.d.Set("shared", 1, 1, nil)
		synctest.Wait()
		a.took()
		z.took()
		killedAt := time.Now()

		// b dies: it sends nothing more and hears nothing.
		c.mu.Lock()
		b.cut = true
		c.mu.Unlock()
		b.halt()
		time.Sleep(4 * time.Second)
		synctest.Wait()
		if !a.d.Online("u") {
			t.Fatal("u went offline before DeadAfter")
		}
		time.Sleep(3 * time.Second)
		synctest.Wait()
		wantChanges(t, "a", a, "u offline")
		wantChanges(t, "z", z, "u offline")
		if !a.d.Online("shared") {
			t.Fatal("a user also connected to a live node went offline")
		}
		// Only the live node with the least id records the last seen time.
		a.mu.Lock()
		dead := a.dead
		a.mu.Unlock()
		z.mu.Lock()
		zdead := z.dead
		z.mu.Unlock()
		if len(dead) != 1 || !slices.Equal(dead[0], []string{"u"}) || len(zdead) != 0 {
			t.Fatalf("dead-node users reported: a %v, z %v", dead, zdead)
		}
		if got := time.Since(killedAt); got > 7*time.Second {
			t.Fatalf("offline after %v", got)
		}
	})
}

func TestByeIsImmediate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t)
		a, b := c.add("a"), c.add("b")
		synctest.Wait()
		b.d.Set("u", 1, 0, nil)
		synctest.Wait()
		a.took()
		b.d.Bye()
		synctest.Wait()
		wantChanges(t, "a", a, "u offline")
		if got := a.d.LiveNodes(); !slices.Equal(got, []string{"a"}) {
			t.Fatalf("a still knows %v", got)
		}
	})
}

func TestForgetThenHello(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t)
		a, b := c.add("a"), c.add("b")
		synctest.Wait()
		b.d.Set("u", 1, 1, nil)
		synctest.Wait()
		a.took()
		// a lost the bus: it forgets the others, then says hello again.
		a.d.Forget()
		wantChanges(t, "a", a, "u offline")
		a.d.Hello()
		synctest.Wait()
		wantChanges(t, "a", a, "u online")
	})
}

// TestForegroundPerDevice checks that a foreground connection counts for
// its own device only, on every node: a browser tab does not silence the
// phone of the same user.
func TestForegroundPerDevice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t)
		a, b := c.add("a"), c.add("b")
		synctest.Wait()

		// The web tab on a is in the foreground; the phone, on b, is not.
		a.d.Set("u", 1, 1, []string{"web"})
		b.d.Set("u", 1, 0, nil)
		synctest.Wait()
		for name, n := range map[string]*member{"a": a, "b": b} {
			if !n.d.HasForegroundConnection("u", "web") {
				t.Fatalf("%s: the web tab is not in the foreground", name)
			}
			if n.d.HasForegroundConnection("u", "phone") {
				t.Fatalf("%s: the web tab silences the phone", name)
			}
			if !n.d.HasForegroundConnection("u", "") {
				t.Fatalf("%s: the user has no foreground connection", name)
			}
		}
		// The phone comes to the foreground on b.
		b.d.Set("u", 1, 1, []string{"phone"})
		synctest.Wait()
		if !a.d.HasForegroundConnection("u", "phone") {
			t.Fatal("a does not see the phone in the foreground on b")
		}
		// A node of an older version sends counts without devices: its
		// foreground stands for every device.
		a.d.Handle(Message{Kind: KindState, Node: "old", Seq: 1, Users: []UserState{{ID: "v", Conns: 1, Foreground: 1}}})
		if !a.d.HasForegroundConnection("v", "anything") {
			t.Fatal("an older node's foreground count does not count")
		}
	})
}
