package client

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/server"
)

// TestChaos has two clients exchange messages in both directions through
// proxies that cut their connections at random moments, sometimes
// silently (a black hole: no FIN, no RST), while the server restarts once.
// Afterwards each side has every message exactly once, in seq order, and
// the outboxes are empty.
func TestChaos(t *testing.T) {
	// 500 each way: the issue asks for at least 1,000 messages in all.
	perSide := 500
	if testing.Short() {
		perSide = 60
	}
	if v := os.Getenv("PARLEY_CHAOS_PER_SIDE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("PARLEY_CHAOS_PER_SIDE=%q", v)
		}
		perSide = n
	}
	dataDir := t.TempDir()
	cfg := server.Config{
		DataDir:   dataDir,
		Heartbeat: time.Second,
		Argon2:    auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1},
		Logger:    slog.New(slog.DiscardHandler),
	}
	var (
		mu  sync.Mutex // guards srv and ts
		srv *server.Server
		ts  *httptest.Server
	)
	start := func() string {
		s, err := server.Open(context.Background(), cfg)
		if err != nil {
			t.Fatalf("open server: %v", err)
		}
		mu.Lock()
		srv, ts = s, httptest.NewServer(s.Handler())
		mu.Unlock()
		return ts.URL
	}
	stop := func() {
		mu.Lock()
		s, h := srv, ts
		mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Gateway().Shutdown(ctx) // every socket gets 1001
		h.Close()
		if err := s.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
	}
	url := start()
	t.Cleanup(stop)

	pa, pb := startProxy(t, url), startProxy(t, url)
	alice, bob := openClient(t, "", pa.URL), openClient(t, "", pb.URL)
	conv := pair(t, alice, bob)

	// The chaos monkey: every 50 to 400 ms one proxy cuts its connections,
	// or swallows everything for 2.5 s (more than two heartbeats) first.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(50+rand.IntN(350)) * time.Millisecond):
			}
			p := pa
			if rand.IntN(2) == 0 {
				p = pb
			}
			if rand.IntN(4) == 0 {
				p.setBlackhole(true)
				select {
				case <-ctx.Done():
				case <-time.After(2500 * time.Millisecond):
				}
				p.setBlackhole(false)
			}
			p.cut()
		}
	}()

	sendAll := func(c *Client, prefix string, restartAt int) {
		defer wg.Done()
		for i := range perSide {
			if i == restartAt {
				stop()
				u := start()
				pa.setTarget(u)
				pb.setTarget(u)
			}
			if _, err := c.Send(context.Background(), conv, fmt.Sprintf("%s %d", prefix, i)); err != nil {
				t.Errorf("send: %v", err)
				return
			}
			time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond) // typing speed
		}
	}
	wg.Add(2)
	go sendAll(alice, "alice", perSide/2)
	go sendAll(bob, "bob", -1)

	check := func(c *Client) func() error {
		return func() error {
			texts, err := storedTexts(c, conv)
			if err != nil {
				return err
			}
			if len(texts) != 2*perSide {
				return fmt.Errorf("%d messages, want %d", len(texts), 2*perSide)
			}
			items, err := c.store.outbox(context.Background(), "")
			if err != nil {
				return err
			}
			if len(items) != 0 {
				return fmt.Errorf("%d outbox items left", len(items))
			}
			return nil
		}
	}
	// Let the monkey run while the messages go out, then calm down.
	deadline := time.Now().Add(90*time.Second + time.Duration(perSide)*100*time.Millisecond)
	for time.Now().Before(deadline) && (check(alice)() != nil || check(bob)() != nil) {
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	pa.setBlackhole(false)
	pb.setBlackhole(false)
	eventually(t, 60*time.Second, check(alice))
	eventually(t, 60*time.Second, check(bob))

	// Both sides hold the same messages in the same order, and each
	// side's own messages are in the order they were sent.
	a, _ := storedTexts(alice, conv)
	b, _ := storedTexts(bob, conv)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatal("alice and bob disagree on the conversation")
	}
	next := map[string]int{}
	for _, text := range a {
		var who string
		var n int
		if _, err := fmt.Sscanf(text, "%s %d", &who, &n); err != nil {
			t.Fatalf("message %q: %v", text, err)
		}
		if n != next[who] {
			t.Fatalf("%s's message %d came where %d was due", who, n, next[who])
		}
		next[who]++
	}
}
