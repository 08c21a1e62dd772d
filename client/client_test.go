package client

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/server"
	"github.com/parley-chat/parley/wire"
)

// pair registers alice and bob on their own clients and opens their
// direct conversation; both have synced it when pair returns.
func pair(t *testing.T, alice, bob *Client) string {
	t.Helper()
	register(t, alice, "alice")
	register(t, bob, "bob")
	conv, err := alice.CreateDirect(ctxT(t, 10*time.Second), "bob")
	if err != nil {
		t.Fatalf("create direct: %v", err)
	}
	waitSynced(t, alice)
	waitSynced(t, bob)
	eventually(t, 10*time.Second, func() error {
		_, err := bob.Conversation(context.Background(), conv.ID)
		return err
	})
	return conv.ID
}

func send(t *testing.T, c *Client, convID, text string) string {
	t.Helper()
	id, err := c.Send(context.Background(), convID, text)
	if err != nil {
		t.Fatalf("send %q: %v", text, err)
	}
	return id
}

func TestRegisterLoginLogout(t *testing.T) {
	ts := startServer(t, server.Config{})
	dir := filepath.Join(t.TempDir(), "alice")
	c := openClient(t, dir, ts.URL)
	if st := c.State(); st != StateSignedOut {
		t.Fatalf("state before login %s, want %s", st, StateSignedOut)
	}
	if _, err := c.Send(context.Background(), "x", "hi"); parley.ErrorCode(err) != parley.CodeUnauthenticated {
		t.Fatalf("send signed out: %v, want unauthenticated", err)
	}
	u, err := c.Register(ctxT(t, 10*time.Second), "Alice", "correct horse", "Alice A.")
	if err != nil {
		t.Fatal(err)
	}
	if u.Username != "alice" || u.DisplayName != "Alice A." {
		t.Fatalf("registered %+v", u)
	}
	waitSynced(t, c)

	// The profile is private: folder 0700, credentials 0600.
	for name, want := range map[string]os.FileMode{"": 0o700, credentialsFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("mode of %q is %v, want %v", name, got, want)
		}
	}

	// A taken name is conflict, a wrong password unauthenticated.
	other := openClient(t, "", ts.URL)
	if _, err := other.Register(ctxT(t, 10*time.Second), "ALICE", "another password", ""); parley.ErrorCode(err) != parley.CodeConflict {
		t.Fatalf("register taken name: %v, want conflict", err)
	}
	if _, err := other.Login(ctxT(t, 10*time.Second), "alice", "wrong password"); parley.ErrorCode(err) != parley.CodeUnauthenticated {
		t.Fatalf("login with a wrong password: %v, want unauthenticated", err)
	}
	if _, err := other.Login(ctxT(t, 10*time.Second), "ALICE", "correct horse"); err != nil {
		t.Fatalf("login: %v", err)
	}
	waitSynced(t, other)

	// Reopening the profile keeps the login.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = openClient(t, dir, ts.URL)
	if u2, ok := c.User(); !ok || u2.ID != u.ID {
		t.Fatalf("user after reopen %+v %v", u2, ok)
	}
	waitSynced(t, c)

	// Logout revokes this login only: the other device stays online.
	if err := c.Logout(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("logout: %v", err)
	}
	if st := c.State(); st != StateSignedOut {
		t.Fatalf("state after logout %s", st)
	}
	if _, err := os.Stat(filepath.Join(dir, credentialsFile)); !os.IsNotExist(err) {
		t.Fatalf("credentials after logout: %v", err)
	}
	if _, err := other.SearchUsers(ctxT(t, 10*time.Second), "ali"); err != nil {
		t.Fatalf("the other login after logout: %v", err)
	}
}

func TestLiveExchange(t *testing.T) {
	ts := startServer(t, server.Config{})
	alice, bob := openClient(t, "", ts.URL), openClient(t, "", ts.URL)
	conv := pair(t, alice, bob)

	if users, err := alice.SearchUsers(ctxT(t, 10*time.Second), "bo"); err != nil || len(users) != 1 || users[0].Username != "bob" {
		t.Fatalf("search: %v %v", users, err)
	}
	// Opening the direct conversation again answers the same one.
	if again, err := bob.CreateDirect(ctxT(t, 10*time.Second), "alice"); err != nil || again.ID != conv {
		t.Fatalf("create direct again: %v %v", again.ID, err)
	}

	send(t, alice, conv, "hi bob")
	eventually(t, 10*time.Second, wantTexts(bob, conv, "hi bob"))
	send(t, bob, conv, "hi alice")
	send(t, bob, conv, "how are you?")
	eventually(t, 10*time.Second, wantTexts(alice, conv, "hi bob", "hi alice", "how are you?"))
	eventually(t, 10*time.Second, wantTexts(bob, conv, "hi bob", "hi alice", "how are you?"))

	convs, err := alice.Conversations(context.Background())
	if err != nil || len(convs) != 1 {
		t.Fatalf("conversations %v %v", convs, err)
	}
	if c := convs[0]; c.UnreadCount != 2 || c.LastMessage == nil || c.LastMessage.Text != "how are you?" {
		t.Fatalf("alice's conversation: unread %d, last %+v", c.UnreadCount, c.LastMessage)
	}

	// A group shows up live for its members.
	group, err := alice.CreateGroup(ctxT(t, 10*time.Second), "plans", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	send(t, bob, group.ID, "group hello")
	eventually(t, 10*time.Second, wantTexts(alice, group.ID, "group hello"))

	// History pages come from the server.
	msgs, more, err := bob.History(ctxT(t, 10*time.Second), conv, parley.HistoryQuery{BeforeSeq: 3, Limit: 1})
	if err != nil || len(msgs) != 1 || msgs[0].Text != "hi alice" || !more {
		t.Fatalf("history: %v %v %v", msgs, more, err)
	}
	// after_seq=0 is a bound: the oldest page, from the start.
	msgs, more, err = bob.History(ctxT(t, 10*time.Second), conv, parley.HistoryQuery{HasAfter: true, Limit: 2})
	if err != nil || len(msgs) != 2 || msgs[0].Seq != 1 || msgs[1].Seq != 2 || !more {
		t.Fatalf("history from the start: %v %v %v", msgs, more, err)
	}
}

func TestSendWhileDisconnected(t *testing.T) {
	ts := startServer(t, server.Config{})
	px := startProxy(t, ts.URL)
	alice, bob := openClient(t, "", px.URL), openClient(t, "", ts.URL)
	conv := pair(t, alice, bob)

	px.setDown(true)
	eventually(t, 10*time.Second, func() error {
		if st := alice.State(); st == StateOnline {
			return fmt.Errorf("still %s", st)
		}
		return nil
	})
	ids := []string{send(t, alice, conv, "one"), send(t, alice, conv, "two"), send(t, alice, conv, "three")}
	msgs, err := alice.Messages(context.Background(), conv, MessageQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 {
		t.Fatalf("%d messages while offline, want 3 pending", len(msgs))
	}
	for i, m := range msgs {
		if m.Status != StatusPending || m.ClientMessageID != ids[i] || m.ID != "" {
			t.Fatalf("message %d offline: %+v", i, m)
		}
	}

	px.setDown(false)
	alice.Reconnect()
	eventually(t, 10*time.Second, wantTexts(alice, conv, "one", "two", "three"))
	eventually(t, 10*time.Second, wantTexts(bob, conv, "one", "two", "three"))
	m, err := alice.WaitSent(ctxT(t, 5*time.Second), ids[2])
	if err != nil || m.Seq != 3 || m.ClientMessageID != ids[2] {
		t.Fatalf("wait sent: %+v %v", m, err)
	}
}

// TestLostAck loses the ack of a message (and everything else) in a black
// hole: the client notices the dead link by the missing heartbeats,
// reconnects, and the message ends up stored and shown exactly once.
func TestLostAck(t *testing.T) {
	ts := startServer(t, server.Config{Heartbeat: time.Second})
	px := startProxy(t, ts.URL)
	alice, bob := openClient(t, "", px.URL), openClient(t, "", ts.URL)
	conv := pair(t, alice, bob)

	// Only the server-to-client direction must be lost for the ack to be,
	// but a black hole in both is what a dead mobile link looks like; the
	// message then reaches the server only after the reconnect, or, if it
	// was already on its way, is deduplicated by its client_message_id.
	px.setBlackhole(true)
	send(t, alice, conv, "through the storm")
	start := time.Now()
	eventually(t, 10*time.Second, func() error {
		if st := alice.State(); st == StateOnline {
			return fmt.Errorf("still %s", st)
		}
		return nil
	})
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("dead link noticed after %v, want about two heartbeats", d)
	}
	px.setBlackhole(false)
	// A reconnect that started inside the black hole lost its upgrade
	// request too; the client gives it up after dialTimeout and dials again.
	eventually(t, dialTimeout+15*time.Second, wantTexts(alice, conv, "through the storm"))
	eventually(t, 10*time.Second, wantTexts(bob, conv, "through the storm"))
}

// TestOutboxSurvivesRestart queues messages on a client that cannot reach
// the server, closes it as a crash would leave it (nothing sent), and
// opens the profile again: the messages go out, once, in order.
func TestOutboxSurvivesRestart(t *testing.T) {
	ts := startServer(t, server.Config{})
	px := startProxy(t, ts.URL)
	dir := filepath.Join(t.TempDir(), "alice")
	alice, bob := openClient(t, dir, px.URL), openClient(t, "", ts.URL)
	conv := pair(t, alice, bob)

	px.setDown(true)
	var want []string
	for i := range 5 {
		want = append(want, fmt.Sprintf("queued %d", i))
		send(t, alice, conv, want[i])
	}
	if err := alice.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := storedTexts(bob, conv); len(got) != 0 {
		t.Fatalf("bob got %q before alice reconnected", got)
	}

	alice = openClient(t, dir, ts.URL)
	eventually(t, 10*time.Second, wantTexts(alice, conv, want...))
	eventually(t, 10*time.Second, wantTexts(bob, conv, want...))
	items, err := alice.store.outbox(context.Background(), "")
	if err != nil || len(items) != 0 {
		t.Fatalf("outbox after sending: %v %v", items, err)
	}
}

// TestGapFill loses two message.new frames on bob's connection: the next
// one shows a gap, which is filled from the REST history.
func TestGapFill(t *testing.T) {
	ts := startServer(t, server.Config{})
	alice := openClient(t, "", ts.URL)
	bob := openClientConfig(t, Config{
		Servers: []string{ts.URL},
		dropFrame: func(f wire.Frame) bool {
			if f.Type != wire.TypeMessageNew {
				return false
			}
			var p wire.MessageNew
			return wire.DecodePayload(f, &p) == nil && p.Message != nil && (p.Message.Seq == 2 || p.Message.Seq == 3)
		},
	})
	conv := pair(t, alice, bob)
	want := []string{"m1", "m2", "m3", "m4"}
	for _, text := range want {
		id := send(t, alice, conv, text)
		// One at a time, so that bob sees them live and in order.
		if _, err := alice.WaitSent(ctxT(t, 10*time.Second), id); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, wantTexts(bob, conv, want...))
	row, err := bob.store.conv(context.Background(), conv)
	if err != nil || row.HaveSeq != 4 || row.FloorSeq != 1 {
		t.Fatalf("bob's run after filling: have %d floor %d (%v)", row.HaveSeq, row.FloorSeq, err)
	}
}

// TestSyncAfterOffline: messages sent while bob was away come with the
// sync on his reconnect, including a conversation created meanwhile.
func TestSyncAfterOffline(t *testing.T) {
	ts := startServer(t, server.Config{})
	px := startProxy(t, ts.URL)
	alice, bob := openClient(t, "", ts.URL), openClient(t, "", px.URL)
	conv := pair(t, alice, bob)
	send(t, alice, conv, "before")
	eventually(t, 10*time.Second, wantTexts(bob, conv, "before"))

	px.setDown(true)
	var want []string
	want = append(want, "before")
	for i := range 120 { // more than one sync page
		want = append(want, fmt.Sprintf("while away %d", i))
		send(t, alice, conv, want[len(want)-1])
	}
	group, err := alice.CreateGroup(ctxT(t, 10*time.Second), "new while away", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	send(t, alice, group.ID, "in the group")
	eventually(t, 20*time.Second, wantTexts(alice, conv, want...))

	px.setDown(false)
	bob.Reconnect()
	eventually(t, 20*time.Second, wantTexts(bob, conv, want...))
	eventually(t, 10*time.Second, wantTexts(bob, group.ID, "in the group"))
	eventually(t, 10*time.Second, func() error {
		c, err := bob.Conversation(context.Background(), conv)
		if err != nil {
			return err
		}
		if c.UnreadCount != int64(len(want)) {
			return fmt.Errorf("unread %d, want %d", c.UnreadCount, len(want))
		}
		return nil
	})
}

// TestTokenRefresh runs with access tokens that live 2 s: the client keeps
// its connection (renewing the token on it) and its REST calls working
// across several expiries, and a profile reopened after its token expired
// refreshes before it connects.
func TestTokenRefresh(t *testing.T) {
	ts := startServer(t, server.Config{AccessTTL: 2 * time.Second})
	dir := filepath.Join(t.TempDir(), "alice")
	alice, bob := openClient(t, dir, ts.URL), openClient(t, "", ts.URL)
	conv := pair(t, alice, bob)
	first, err := alice.profile.loadCredentials()
	if err != nil {
		t.Fatal(err)
	}

	var want []string
	end := time.Now().Add(7 * time.Second)
	for i := 0; time.Now().Before(end); i++ {
		want = append(want, fmt.Sprintf("tick %d", i))
		send(t, alice, conv, want[i])
		if _, err := bob.SearchUsers(ctxT(t, 5*time.Second), "ali"); err != nil {
			t.Fatalf("REST after %d expiries: %v", i/4, err)
		}
		time.Sleep(500 * time.Millisecond) // pacing, not an assertion
	}
	eventually(t, 10*time.Second, wantTexts(bob, conv, want...))
	if st := alice.State(); st != StateOnline {
		t.Fatalf("alice is %s", st)
	}
	now, err := alice.profile.loadCredentials()
	if err != nil {
		t.Fatal(err)
	}
	if now.RefreshToken == first.RefreshToken {
		t.Fatal("the refresh token never rotated")
	}

	if err := alice.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // let the stored access token expire
	alice = openClient(t, dir, ts.URL)
	waitSynced(t, alice)
	send(t, alice, conv, "after the expiry")
	eventually(t, 10*time.Second, wantTexts(bob, conv, append(want, "after the expiry")...))
}

// TestReceipts follows a message from pending to read.
func TestReceipts(t *testing.T) {
	ts := startServer(t, server.Config{})
	px := startProxy(t, ts.URL)
	alice, bob := openClient(t, "", ts.URL), openClient(t, "", px.URL)
	conv := pair(t, alice, bob)

	status := func(id string) func() (Status, error) {
		return func() (Status, error) {
			msgs, err := alice.Messages(context.Background(), conv, MessageQuery{})
			if err != nil {
				return "", err
			}
			for _, m := range msgs {
				if m.ClientMessageID == id {
					return m.Status, nil
				}
			}
			return "", fmt.Errorf("no message %s", id)
		}
	}
	wantStatus := func(id string, want Status) func() error {
		return func() error {
			got, err := status(id)()
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("status %s, want %s", got, want)
			}
			return nil
		}
	}

	// Bob is away: the message is sent, not delivered.
	px.setDown(true)
	id := send(t, alice, conv, "are you there?")
	if st, _ := status(id)(); st != StatusPending {
		t.Fatalf("status right after Send %s, want pending", st)
	}
	eventually(t, 10*time.Second, wantStatus(id, StatusSent))

	// Bob comes back: his client says delivered by itself.
	px.setDown(false)
	bob.Reconnect()
	eventually(t, 10*time.Second, wantStatus(id, StatusDelivered))
	c, err := bob.Conversation(context.Background(), conv)
	if err != nil || c.UnreadCount != 1 {
		t.Fatalf("bob's unread %d (%v), want 1", c.UnreadCount, err)
	}

	// Read only when bob's app says so.
	m, err := alice.WaitSent(ctxT(t, 5*time.Second), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.MarkRead(context.Background(), conv, m.Seq); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, wantStatus(id, StatusRead))
	c, err = bob.Conversation(context.Background(), conv)
	if err != nil || c.UnreadCount != 0 || c.ReadSeq != m.Seq {
		t.Fatalf("bob after reading: unread %d read_seq %d (%v)", c.UnreadCount, c.ReadSeq, err)
	}
}

// TestFailedSend: a message the server refuses for good becomes failed
// with the reason, and does not hold back the next one.
func TestFailedSend(t *testing.T) {
	ts := startServer(t, server.Config{})
	alice, bob := openClient(t, "", ts.URL), openClient(t, "", ts.URL)
	conv := pair(t, alice, bob)

	big := make([]byte, 17<<10)
	for i := range big {
		big[i] = 'x'
	}
	bad := send(t, alice, conv, string(big))
	good := send(t, alice, conv, "small")
	m, err := alice.WaitSent(ctxT(t, 10*time.Second), bad)
	if parley.ErrorCode(err) != parley.CodePayloadTooLarge || m.Status != StatusFailed || m.Error == "" {
		t.Fatalf("oversized message: %+v %v, want failed with payload_too_large", m.Status, err)
	}
	if _, err := alice.WaitSent(ctxT(t, 10*time.Second), good); err != nil {
		t.Fatalf("the message after a failed one: %v", err)
	}
	unknown := send(t, alice, "0193a5c2-0000-7000-8000-0000000000ff", "nobody here")
	if _, err := alice.WaitSent(ctxT(t, 10*time.Second), unknown); parley.ErrorCode(err) != parley.CodeNotFound {
		t.Fatalf("send to an unknown conversation: %v, want not_found", err)
	}
	if err := alice.Discard(context.Background(), bad); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, wantTexts(bob, conv, "small"))
}

func TestTypingAndPresence(t *testing.T) {
	ts := startServer(t, server.Config{})
	alice, bob := openClient(t, "", ts.URL), openClient(t, "", ts.URL)
	conv := pair(t, alice, bob)
	drain(alice)

	st, err := alice.RoomJoin(ctxT(t, 10*time.Second), conv)
	if err != nil {
		t.Fatal(err)
	}
	bobID := mustUser(t, bob).ID
	if !slices.ContainsFunc(st.Presence, func(p parley.Presence) bool { return p.UserID == bobID && p.Status == parley.Online }) {
		t.Fatalf("room state %+v does not show bob online", st)
	}
	if _, err := bob.RoomJoin(ctxT(t, 10*time.Second), conv); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		bob.Typing(conv) // keystrokes: one "started"
	}
	waitEvent(t, alice, func(ev Event) bool {
		return ev.Type == EventTyping && ev.Typing.UserID == bobID && ev.Typing.State == parley.TypingStarted
	})
	send(t, bob, conv, "typed")
	waitEvent(t, alice, func(ev Event) bool {
		return ev.Type == EventTyping && ev.Typing.UserID == bobID && ev.Typing.State == parley.TypingStopped
	})

	if err := bob.Close(); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, alice, func(ev Event) bool {
		return ev.Type == EventPresence && ev.Presence.UserID == bobID && ev.Presence.Status == parley.Offline
	})
}

// TestServerFailover: the first server URL is dead; the client moves on
// to the next.
func TestServerFailover(t *testing.T) {
	ts := startServer(t, server.Config{})
	dead := startProxy(t, ts.URL)
	dead.setDown(true)
	dir := filepath.Join(t.TempDir(), "carol")
	c := openClient(t, dir, ts.URL)
	register(t, c, "carol")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = openClient(t, dir, dead.URL, ts.URL)
	waitSynced(t, c)
	if u := c.serverURL(); u.String() != ts.URL {
		t.Fatalf("connected through %s, want %s", u.String(), ts.URL)
	}
}

func TestEmitterOverflow(t *testing.T) {
	e := newEmitter(2)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.pump(ctx) }()
	for range 5 {
		e.emit(Event{Type: EventTyping})
	}
	var got []EventType
	for len(got) < 3 {
		got = append(got, (<-e.out).Type)
	}
	if want := []EventType{EventTyping, EventTyping, EventResync}; !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	e.emit(Event{Type: EventPresence})
	if ev := <-e.out; ev.Type != EventPresence {
		t.Fatalf("after the resync %v, want presence", ev.Type)
	}
	cancel()
	<-done
	if _, ok := <-e.out; ok {
		t.Fatal("events channel open after the pump stopped")
	}
	e.emit(Event{Type: EventTyping}) // after close: dropped, no panic
}

func TestBackoff(t *testing.T) {
	base, cap := 500*time.Millisecond, 30*time.Second
	for n, limit := range map[int]time.Duration{0: base, 1: 2 * base, 3: 8 * base, 10: cap, 100: cap} {
		for range 200 {
			if d := backoff(n, base, cap); d < 0 || d > limit {
				t.Fatalf("backoff(%d) = %v, want within [0, %v]", n, d, limit)
			}
		}
	}
}

func mustUser(t *testing.T, c *Client) parley.User {
	t.Helper()
	u, ok := c.User()
	if !ok {
		t.Fatal("not logged in")
	}
	return u
}

// drain discards the events queued so far.
func drain(c *Client) {
	for {
		select {
		case <-c.Events():
		default:
			return
		}
	}
}

// waitEvent reads events until one matches.
func waitEvent(t *testing.T, c *Client, match func(Event) bool) Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatal("events closed")
			}
			if match(ev) {
				return ev
			}
		case <-timeout:
			t.Fatal("no matching event within 10s")
		}
	}
}

// TestSharedProfileRefresh runs two clients on one profile (as the chat UI
// and a CLI command would) with 2 s access tokens: they refresh one at a
// time and adopt each other's tokens, so no refresh token is ever
// presented twice, which would revoke the login.
func TestSharedProfileRefresh(t *testing.T) {
	ts := startServer(t, server.Config{AccessTTL: 2 * time.Second})
	dir := filepath.Join(t.TempDir(), "alice")
	a1, bob := openClient(t, dir, ts.URL), openClient(t, "", ts.URL)
	conv := pair(t, a1, bob)
	a2 := openClient(t, dir, ts.URL)
	waitSynced(t, a2)

	var want []string
	end := time.Now().Add(6 * time.Second)
	for i := 0; time.Now().Before(end); i++ {
		c := a1
		if i%2 == 1 {
			c = a2
		}
		want = append(want, fmt.Sprintf("from device %d: %d", i%2+1, i))
		if _, err := c.WaitSent(ctxT(t, 10*time.Second), send(t, c, conv, want[i])); err != nil {
			t.Fatalf("message %d: %v (states %s %s)", i, err, a1.State(), a2.State())
		}
		time.Sleep(300 * time.Millisecond) // pacing, not an assertion
	}
	eventually(t, 10*time.Second, wantTexts(bob, conv, want...))
	for i, c := range []*Client{a1, a2} {
		if st := c.State(); st != StateOnline {
			t.Errorf("device %d is %s", i+1, st)
		}
	}
}

// TestRevokedLogin: a stolen refresh token used again after its
// successor was rotated too (beyond the server's grace for the token
// rotated last) revokes the login; the server closes the client's socket
// with 4001, the client's refresh is refused, and it signs out instead of
// reconnecting forever.
func TestRevokedLogin(t *testing.T) {
	ts := startServer(t, server.Config{})
	c := openClient(t, "", ts.URL)
	register(t, c, "alice")
	waitSynced(t, c)
	drain(c)

	cr, err := c.profile.loadCredentials()
	if err != nil {
		t.Fatal(err)
	}
	thief := openClient(t, "", ts.URL)
	token := cr.RefreshToken
	for range 2 { // rotated, and its successor rotated too
		var tk tokens
		if err := thief.call(ctxT(t, 5*time.Second), "POST", "/api/auth/refresh", nil,
			map[string]string{"refresh_token": token}, &tk, false); err != nil {
			t.Fatal(err)
		}
		token = tk.RefreshToken
	}
	// The first token again: not the one rotated last, so a reuse.
	if err := thief.call(ctxT(t, 5*time.Second), "POST", "/api/auth/refresh", nil,
		map[string]string{"refresh_token": cr.RefreshToken}, nil, false); !isUnauthenticated(err) {
		t.Fatalf("reuse: %v, want unauthenticated", err)
	}
	waitEvent(t, c, func(ev Event) bool { return ev.Type == EventConnection && ev.State == StateSignedOut })
	if _, ok := c.User(); ok {
		t.Fatal("still logged in")
	}
	if _, err := os.Stat(filepath.Join(c.profile.dir, credentialsFile)); !os.IsNotExist(err) {
		t.Fatalf("credentials kept: %v", err)
	}
	// Logging in again works on the same profile, and keeps its data.
	if _, err := c.Login(ctxT(t, 10*time.Second), "alice", "password-alice"); err != nil {
		t.Fatal(err)
	}
	waitSynced(t, c)
}
