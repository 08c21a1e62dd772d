package natsbus

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/natstest"
)

const wait = 10 * time.Second

// sink records the events a bus hands to its subscribers.
type sink struct {
	mu  sync.Mutex
	evs []*parley.Event
}

func (s *sink) add(ev *parley.Event) {
	s.mu.Lock()
	s.evs = append(s.evs, ev)
	s.mu.Unlock()
}

func (s *sink) take() []*parley.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.evs
	s.evs = nil
	return out
}

// waitN waits until n events have arrived and returns them.
func (s *sink) waitN(t *testing.T, n int) []*parley.Event {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		s.mu.Lock()
		got := len(s.evs)
		s.mu.Unlock()
		if got >= n {
			return s.take()
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d events, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type testBus struct {
	*Bus
	sink  *sink
	downs atomic.Int32
	ups   atomic.Int32
}

func newBus(t *testing.T, url, node string, change ...func(*Options)) *testBus {
	t.Helper()
	tb := &testBus{sink: &sink{}}
	opts := Options{
		URL:     url,
		Node:    node,
		Prefix:  "test",
		Limiter: chat.NewLocalLimiter(chat.Limits{SendBurst: 5, SendPerSecond: 0.001}),
		OnDown:  func() { tb.downs.Add(1) },
		OnUp:    func() { tb.ups.Add(1) },
		GapWait: 50 * time.Millisecond,
	}
	for _, f := range change {
		f(&opts)
	}
	b, err := Connect(context.Background(), opts)
	if err != nil {
		t.Fatalf("connect %s: %v", node, err)
	}
	tb.Bus = b
	b.Subscribe(tb.sink.add)
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close %s: %v", node, err)
		}
	})
	return tb
}

// usersInShards returns n user ids in n different shards.
func usersInShards(n int) []string {
	var out []string
	seen := map[int]bool{}
	for i := 0; len(out) < n; i++ {
		id := fmt.Sprintf("0190a0a0-0000-7000-8000-%012d", i)
		if s := shardOf(id); !seen[s] {
			seen[s] = true
			out = append(out, id)
		}
	}
	return out
}

func watch(t *testing.T, b *testBus, user string) func() {
	t.Helper()
	release, err := b.Watch(context.Background(), user)
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	return release
}

func msgEvent(conv string, seq int64, recipients ...string) *parley.Event {
	return &parley.Event{
		Type:       parley.EventMessageNew,
		Recipients: recipients,
		Message: &parley.Message{
			ID: fmt.Sprintf("m-%s-%d", conv, seq), ConversationID: conv, Seq: seq,
			Kind: parley.KindText, Text: "hi", CreatedAt: parley.Now(),
		},
	}
}

func seqsOf(evs []*parley.Event) []int64 {
	var out []int64
	for _, ev := range evs {
		if ev.Message != nil {
			out = append(out, ev.Message.Seq)
		}
	}
	return out
}

func TestRoutesToWatchedShardsOnly(t *testing.T) {
	ns := natstest.Start(t)
	a, b := newBus(t, ns.URL(), "a"), newBus(t, ns.URL(), "b")
	us := usersInShards(2)
	u, v := us[0], us[1]
	watch(t, b, u)

	ctx := context.Background()
	if err := a.Publish(ctx, msgEvent("c1", 1, u, v)); err != nil {
		t.Fatal(err)
	}
	evs := b.sink.waitN(t, 1)
	if !slices.Equal(evs[0].Recipients, []string{u}) {
		t.Fatalf("b got recipients %v, want only its watched user %s", evs[0].Recipients, u)
	}
	// Nobody watches v: a, which watches nothing, gets nothing either.
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := a.sink.take(); len(got) != 0 {
		t.Fatalf("a received %d events for users it does not watch", len(got))
	}
}

func TestLargeFanoutGoesToEveryNode(t *testing.T) {
	ns := natstest.Start(t)
	a, b := newBus(t, ns.URL(), "a"), newBus(t, ns.URL(), "b")
	many := usersInShards(maxShardCopies + 1)
	if err := a.Publish(context.Background(), msgEvent("big", 1, many...)); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testBus{a, b} {
		evs := n.sink.waitN(t, 1)
		if len(evs[0].Recipients) != len(many) {
			t.Fatalf("%d recipients, want all %d", len(evs[0].Recipients), len(many))
		}
	}
}

func TestTypingReachesEveryNode(t *testing.T) {
	ns := natstest.Start(t)
	a, b := newBus(t, ns.URL(), "a"), newBus(t, ns.URL(), "b")
	ev := &parley.Event{Type: parley.EventTyping, Recipients: []string{"x"},
		Typing: &parley.Typing{ConversationID: "c", UserID: "x", State: parley.TypingStarted}}
	if err := a.Publish(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testBus{a, b} {
		if evs := n.sink.waitN(t, 1); evs[0].Typing == nil || evs[0].Typing.UserID != "x" {
			t.Fatalf("got %+v", evs[0])
		}
	}
}

// TestOrderAcrossPublishers publishes a conversation's seqs from two nodes
// out of order, with duplicates, and expects them in order, once each.
func TestOrderAcrossPublishers(t *testing.T) {
	ns := natstest.Start(t)
	// A gap waits long enough for the late publisher even on a loaded
	// machine: nothing may be given up as lost here.
	patient := func(o *Options) { o.GapWait = 3 * time.Second }
	a, b, c := newBus(t, ns.URL(), "a"), newBus(t, ns.URL(), "b"), newBus(t, ns.URL(), "c", patient)
	u := usersInShards(1)[0]
	watch(t, c, u)
	ctx := context.Background()
	pub := func(n *testBus, seq int64) {
		t.Helper()
		if err := n.Publish(ctx, msgEvent("conv", seq, u)); err != nil {
			t.Fatal(err)
		}
		if err := n.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	pub(a, 1)
	c.sink.waitN(t, 1)
	pub(b, 3)
	pub(a, 2)
	pub(b, 2) // the outbox publishing again
	pub(a, 4)
	pub(a, 1)
	evs := c.sink.waitN(t, 3)
	if got := seqsOf(evs); !slices.Equal(got, []int64{2, 3, 4}) {
		t.Fatalf("seqs %v, want [2 3 4]", got)
	}
	time.Sleep(100 * time.Millisecond) // nothing more may come
	if extra := c.sink.take(); len(extra) != 0 {
		t.Fatalf("duplicates delivered: %v", seqsOf(extra))
	}
}

// TestGapFilledFromStore: seq 2 is never published (its node died before
// publishing); the bus reads it from the store and delivers it in place.
func TestGapFilledFromStore(t *testing.T) {
	ns := natstest.Start(t)
	var calls atomic.Int32
	fill := func(_ context.Context, conv string, after, before int64, limit int) ([]parley.Message, error) {
		calls.Add(1)
		var out []parley.Message
		for s := after + 1; s < before; s++ {
			out = append(out, *msgEvent(conv, s).Message)
		}
		return out, nil
	}
	a := newBus(t, ns.URL(), "a")
	c := newBus(t, ns.URL(), "c", func(o *Options) { o.Fill = fill })
	u := usersInShards(1)[0]
	watch(t, c, u)
	ctx := context.Background()
	for _, seq := range []int64{1, 3, 4} {
		if err := a.Publish(ctx, msgEvent("conv", seq, u)); err != nil {
			t.Fatal(err)
		}
	}
	evs := c.sink.waitN(t, 4)
	if got := seqsOf(evs); !slices.Equal(got, []int64{1, 2, 3, 4}) {
		t.Fatalf("seqs %v, want [1 2 3 4]", got)
	}
	if !slices.Equal(evs[1].Recipients, []string{u}) {
		t.Fatalf("filled event recipients %v", evs[1].Recipients)
	}
	if calls.Load() != 1 {
		t.Fatalf("%d store reads, want 1", calls.Load())
	}
}

// TestWatchIsConfirmed: an event published by another node right after
// Watch returns is received.
func TestWatchIsConfirmed(t *testing.T) {
	ns := natstest.Start(t)
	a, b := newBus(t, ns.URL(), "a"), newBus(t, ns.URL(), "b")
	users := usersInShards(20)
	for i, u := range users {
		release := watch(t, b, u)
		if err := a.Publish(context.Background(), msgEvent(fmt.Sprint("c", i), 1, u)); err != nil {
			t.Fatal(err)
		}
		b.sink.waitN(t, 1)
		release()
	}
}

func TestNATSRestart(t *testing.T) {
	ns := natstest.Start(t)
	a, b := newBus(t, ns.URL(), "a"), newBus(t, ns.URL(), "b")
	u := usersInShards(1)[0]
	watch(t, b, u)
	ctx := context.Background()

	ns.Stop()
	eventually(t, "both see NATS down", func() bool { return a.downs.Load() == 1 && b.downs.Load() == 1 })
	if a.Ready() == nil {
		t.Fatal("ready without NATS")
	}
	if err := a.Publish(ctx, msgEvent("c", 1, u)); parley.ErrorCode(err) != parley.CodeUnavailable {
		t.Fatalf("publish without NATS: %v, want unavailable", err)
	}
	ns.Start()
	eventually(t, "both see NATS back", func() bool { return a.Ready() == nil && b.Ready() == nil })
	if a.ups.Load() != 1 || b.ups.Load() != 1 {
		t.Fatalf("OnUp called %d and %d times", a.ups.Load(), b.ups.Load())
	}
	// The watch was restored by the client.
	eventually(t, "an event after the restart arrives", func() bool {
		if err := a.Publish(ctx, msgEvent("c", 2, u)); err != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
		return len(b.sink.take()) > 0
	})
}

func TestPresenceAcrossNodes(t *testing.T) {
	ns := natstest.Start(t)
	var mu sync.Mutex
	var seen []string
	onChange := func(o *Options) {
		o.Presence.OnChange = func(p parley.Presence) {
			mu.Lock()
			seen = append(seen, p.UserID+" "+string(p.Status))
			mu.Unlock()
		}
	}
	a := newBus(t, ns.URL(), "a")
	b := newBus(t, ns.URL(), "b", onChange)
	eventually(t, "a and b know each other", func() bool { return len(a.Directory().LiveNodes()) == 2 && len(b.Directory().LiveNodes()) == 2 })
	a.Directory().Set("u", 1, 1, nil)
	eventually(t, "b sees u online", func() bool { return b.Directory().Online("u") && b.Directory().HasForegroundConnection("u", "") })
	a.Directory().Set("u", 0, 0, nil)
	eventually(t, "b sees u offline", func() bool { return !b.Directory().Online("u") })
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(seen, []string{"u online", "u offline"}) {
		t.Fatalf("b reported %q", seen)
	}
}

// TestSharedRateLimit: a user connected to two nodes has one budget.
func TestSharedRateLimit(t *testing.T) {
	ns := natstest.Start(t)
	a, b := newBus(t, ns.URL(), "a"), newBus(t, ns.URL(), "b")
	eventually(t, "a and b know each other", func() bool { return len(a.Directory().LiveNodes()) == 2 && len(b.Directory().LiveNodes()) == 2 })
	a.Directory().Set("u", 1, 1, nil)
	b.Directory().Set("u", 1, 1, nil)
	eventually(t, "both see u on both", func() bool {
		return len(a.Directory().NodesOf(nil, "u")) == 2 && len(b.Directory().NodesOf(nil, "u")) == 2
	})
	la, lb := a.Limiter(), b.Limiter()
	ctx := context.Background()
	allowed := 0
	for i := range 20 {
		l := la
		if i%2 == 1 {
			l = lb
		}
		err := l.Allow(ctx, chat.LimitSend, "u")
		switch parley.ErrorCode(err) {
		case "":
			allowed++
		case parley.CodeRateLimited:
			if parley.RetryAfter(err) <= 0 {
				t.Fatal("rate_limited without a retry time")
			}
		default:
			t.Fatal(err)
		}
	}
	if allowed != 5 {
		t.Fatalf("%d sends allowed across two nodes, want the one burst of 5", allowed)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
