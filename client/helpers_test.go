package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/server"
)

// testServer is a real Parley node in this process.
type testServer struct {
	srv *server.Server
	ts  *httptest.Server
	URL string
}

// startServer starts a node on a temporary data folder. cfg may override
// anything; the password hash is made cheap.
func startServer(t *testing.T, cfg server.Config) *testServer {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Argon2 == (auth.Argon2Params{}) {
		cfg.Argon2 = auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	srv, err := server.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open server: %v", err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Gateway().Shutdown(ctx)
		ts.Close()
		srv.Close()
	})
	return &testServer{srv: srv, ts: ts, URL: ts.URL}
}

// testLogger logs to the test when PARLEY_TEST_LOG is set.
func testLogger(t *testing.T, name string) *slog.Logger {
	if os.Getenv("PARLEY_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("client", name)
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// openClient opens a client on a profile folder (a new one if dir is "")
// with fast reconnects, and closes it at the end of the test.
func openClient(t *testing.T, dir string, servers ...string) *Client {
	t.Helper()
	return openClientConfig(t, Config{Profile: dir, Servers: servers})
}

func openClientConfig(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.Profile == "" {
		cfg.Profile = filepath.Join(t.TempDir(), "profile")
	}
	if cfg.ReconnectBase == 0 {
		cfg.ReconnectBase = 20 * time.Millisecond
	}
	if cfg.ReconnectCap == 0 {
		cfg.ReconnectCap = 300 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t, filepath.Base(filepath.Dir(cfg.Profile)))
	}
	c, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open client: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close client: %v", err)
		}
	})
	return c
}

// ctxT returns a context that ends with the test or after d.
func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it returns nil or the deadline passes, then
// fails with cond's last error.
func eventually(t *testing.T, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", d, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// register makes a client for a new user.
func register(t *testing.T, c *Client, username string) {
	t.Helper()
	if _, err := c.Register(ctxT(t, 10*time.Second), username, "password-"+username, ""); err != nil {
		t.Fatalf("register %s: %v", username, err)
	}
}

// waitSynced waits for the client's first sync.
func waitSynced(t *testing.T, c *Client) {
	t.Helper()
	if err := c.WaitSynced(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("wait synced: %v (state %s)", err, c.State())
	}
}

// storedTexts returns the seq-ordered texts of a conversation's messages
// in the local store, and an error on a duplicate id or seq or on a
// message still pending or failed.
func storedTexts(c *Client, convID string) ([]string, error) {
	msgs, err := c.Messages(context.Background(), convID, MessageQuery{Limit: 100000})
	if err != nil {
		return nil, err
	}
	var out []string
	ids := map[string]bool{}
	var last int64
	for _, m := range msgs {
		if m.Status == StatusPending || m.Status == StatusFailed {
			return out, fmt.Errorf("message %q is still %s", m.Text, m.Status)
		}
		if ids[m.ID] {
			return out, fmt.Errorf("message %s twice", m.ID)
		}
		ids[m.ID] = true
		if m.Seq <= last {
			return out, fmt.Errorf("seq %d after %d", m.Seq, last)
		}
		last = m.Seq
		out = append(out, m.Text)
	}
	return out, nil
}

// wantTexts returns a condition: the conversation holds exactly want, in
// order, each once, none pending.
func wantTexts(c *Client, convID string, want ...string) func() error {
	return func() error {
		got, err := storedTexts(c, convID)
		if err != nil {
			return err
		}
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
			return fmt.Errorf("texts %q, want %q", got, want)
		}
		return nil
	}
}

// proxy is a TCP proxy in front of a server that a test can take down,
// cut, or turn into a black hole (bytes accepted, nothing forwarded, no
// FIN, no RST), as a broken mobile link does.
type proxy struct {
	ln     net.Listener
	target string
	URL    string

	mu        sync.Mutex // guards the fields below
	down      bool
	blackhole bool
	closed    bool
	conns     map[net.Conn]bool
	wg        sync.WaitGroup
}

func startProxy(t *testing.T, targetURL string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: targetURL[len("http://"):], URL: "http://" + ln.Addr().String(), conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		up, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			hole := p.blackhole
			p.mu.Unlock()
			if !hole {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					err = werr
				}
			}
		}
		if err != nil {
			// A black hole also swallows the other side's FIN or RST:
			// the peer learns nothing until the hole closes.
			p.waitNoBlackhole()
			if !errors.Is(err, io.EOF) {
				src.Close()
			}
			dst.Close()
			p.mu.Lock()
			delete(p.conns, src)
			delete(p.conns, dst)
			p.mu.Unlock()
			return
		}
	}
}

// waitNoBlackhole waits until the black hole is off or the proxy closed.
func (p *proxy) waitNoBlackhole() {
	for {
		p.mu.Lock()
		hole, closed := p.blackhole, p.closed
		p.mu.Unlock()
		if !hole || closed {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// setTarget points new connections at another server.
func (p *proxy) setTarget(targetURL string) {
	p.mu.Lock()
	p.target = targetURL[len("http://"):]
	p.mu.Unlock()
}

// setDown refuses (accepts and closes) new connections and cuts the
// current ones when down is true.
func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
	if down {
		p.cut()
	}
}

// setBlackhole stops forwarding in both directions without closing.
func (p *proxy) setBlackhole(on bool) {
	p.mu.Lock()
	p.blackhole = on
	p.mu.Unlock()
}

// cut closes every connection.
func (p *proxy) cut() {
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
	p.mu.Unlock()
}

func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.cut()
	p.wg.Wait()
}
