package sqlstore

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley"
)

// proxy is a TCP proxy on 127.0.0.1 between a store and PostgreSQL, which
// a test can cut (every connection is reset, new ones are closed at once)
// or stall (nothing goes through, as in a network partition), and
// restore.
type proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex // guards cut, stalled and conns
	flowing sync.Cond  // signalled when stalled ends; uses mu
	cut     bool
	stalled bool
	conns   map[net.Conn]bool
	wg      sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.flowing.L = &p.mu
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.setStalled(false)
		p.setCut(true)
		p.wg.Wait()
	})
	return p
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			c.Close()
			continue
		}
		p.wg.Go(func() {
			defer p.untrack(c)
			s, err := net.DialTimeout("tcp", p.target, 2*time.Second)
			if err != nil || !p.track(s) {
				if s != nil {
					s.Close()
				}
				return
			}
			defer p.untrack(s)
			done := make(chan struct{}, 2)
			go func() { p.copy(s, c); done <- struct{}{} }()
			go func() { p.copy(c, s); done <- struct{}{} }()
			<-done
			// One side ended: end both, then wait for the other copy.
			c.Close()
			s.Close()
			<-done
		})
	}
}

// copy copies from src to dst, holding what it read while stalled.
func (p *proxy) copy(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.stalled {
				p.flowing.Wait()
			}
			p.mu.Unlock()
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// setStalled stalls or resumes the traffic.
func (p *proxy) setStalled(stalled bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = stalled
	p.flowing.Broadcast()
}

// track registers c, unless the proxy is cut.
func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	p.conns[c] = true
	return true
}

func (p *proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
	c.Close()
}

// setCut cuts (resetting every connection) or restores the proxy.
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // a reset, as when a server dies
			}
			c.Close()
		}
	}
}

// TestUnavailable puts a proxy between the store and PostgreSQL, cuts it,
// and checks that writes, reads and Ping answer unavailable within a few
// seconds; then restores it and checks that the same DB works again.
func TestUnavailable(t *testing.T) {
	ctx := context.Background()
	u, err := url.Parse(newLocation(t, "postgres").where)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, u.Host)
	u.Host = p.ln.Addr().String()
	loc := location{engine: "postgres", where: u.String()}
	// One writer: in the stall, it is the one that had a live connection.
	db := loc.mustOpen(t, nil, Options{Timeout: 2 * time.Second, Writers: 1})
	alice, bob := newUser(t, db, "alice"), newUser(t, db, "bob")
	d := newDirect(t, db, alice.ID, bob.ID)
	send(t, db, d.ID, alice.ID, "before")

	// unavailable answers within a few seconds, with the cause in Err.
	within := func(what string, f func() error) {
		t.Helper()
		start := time.Now()
		err := f()
		wantCode(t, err, parley.CodeUnavailable)
		var pe *parley.Error
		if errors.As(err, &pe) && pe.Err == nil {
			t.Errorf("%s: unavailable without a cause", what)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%s answered after %v", what, took)
		}
	}
	sent := 1
	for _, mode := range []string{"cut", "stall"} {
		if mode == "cut" {
			p.setCut(true)
		} else {
			p.setStalled(true)
		}
		within(mode+": SendMessage", func() error {
			_, _, err := db.SendMessage(ctx, parley.NewMessage{ConversationID: d.ID, SenderID: alice.ID, ClientMessageID: "lost-" + mode, Kind: parley.KindText})
			return err
		})
		within(mode+": Ping", func() error { return db.Ping(ctx) })
		within(mode+": Messages", func() error {
			_, _, err := db.Messages(ctx, d.ID, alice.ID, parley.HistoryQuery{Limit: 10})
			return err
		})
		// Known down: writes fail at once, without waiting for a timeout.
		start := time.Now()
		wantCode(t, db.SetLastSeen(ctx, alice.ID, parley.Now()), parley.CodeUnavailable)
		if took := time.Since(start); took > time.Second {
			t.Errorf("%s: a write while down answered after %v", mode, took)
		}

		if mode == "cut" {
			p.setCut(false)
		} else {
			p.setStalled(false)
		}
		waitFor(t, mode+": writes to work again", func() bool {
			_, _, err := db.SendMessage(ctx, parley.NewMessage{ConversationID: d.ID, SenderID: alice.ID, ClientMessageID: "after-" + mode, Kind: parley.KindText})
			return err == nil
		})
		sent++
		if err := db.Ping(ctx); err != nil {
			t.Errorf("%s: Ping after restoring: %v", mode, err)
		}
		msgs, _, err := db.Messages(ctx, d.ID, bob.ID, parley.HistoryQuery{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		// The write that timed out in the stall may have committed when
		// the traffic resumed: unavailable does not say it did not.
		var got []string
		for _, m := range msgs {
			if m.ClientMessageID != "lost-stall" {
				got = append(got, m.ClientMessageID)
			}
		}
		if len(got) != sent || got[len(got)-1] != "after-"+mode {
			t.Errorf("%s: history %v, want %d messages ending with after-%s", mode, got, sent, mode)
		}
	}
}
