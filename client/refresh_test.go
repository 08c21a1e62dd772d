package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/server"
)

// loseAnswers is an HTTP transport that forwards refresh requests to the
// server and then, while lose is above 0, drops the answer: the server
// has rotated the token, the client never hears of it.
type loseAnswers struct {
	base      http.RoundTripper
	mu        sync.Mutex
	lose      int
	refreshes int
	lost      int
}

func (l *loseAnswers) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Path != "/api/auth/refresh" {
		return l.base.RoundTrip(req)
	}
	l.mu.Lock()
	l.refreshes++
	lose := l.lose > 0
	if lose {
		l.lose--
	}
	l.mu.Unlock()
	resp, err := l.base.RoundTrip(req)
	if err != nil || !lose {
		return resp, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	l.mu.Lock()
	l.lost++
	l.mu.Unlock()
	return nil, errors.New("connection reset by peer (the test lost the answer)")
}

func (l *loseAnswers) counts() (refreshes, lost, toLose int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refreshes, l.lost, l.lose
}

// refreshStatus presents a refresh token and returns the answer's status
// and the new refresh token.
func refreshStatus(t *testing.T, url, token string) (int, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"refresh_token": token})
	resp, err := http.Post(url+"/api/auth/refresh", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tk tokens
	_ = json.NewDecoder(resp.Body).Decode(&tk)
	return resp.StatusCode, tk.RefreshToken
}

// TestRefreshLostAnswer: the answer of a refresh is lost after the server
// rotated the token; the client retries with the same token, which the
// server accepts again within its grace, and the session goes on.
func TestRefreshLostAnswer(t *testing.T) {
	ts := startServer(t, server.Config{AccessTTL: 2 * time.Second})

	// The grace is the server's: a token presented twice at once is fine.
	probe := openClient(t, "", ts.URL)
	register(t, probe, "probe")
	cr, err := probe.profile.loadCredentials()
	if err != nil {
		t.Fatal(err)
	}
	probe.Close()
	if st, _ := refreshStatus(t, ts.URL, cr.RefreshToken); st != http.StatusOK {
		t.Fatalf("refresh answered %d", st)
	}
	if st, _ := refreshStatus(t, ts.URL, cr.RefreshToken); st != http.StatusOK {
		t.Fatalf("the server refuses the token it rotated last at once (%d): no refresh grace", st)
	}

	tr := &loseAnswers{base: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(tr.base.(*http.Transport).CloseIdleConnections)
	alice := openClientConfig(t, Config{Servers: []string{ts.URL}, HTTPClient: &http.Client{Transport: tr}})
	bob := openClient(t, "", ts.URL)
	conv := pair(t, alice, bob)
	before, err := alice.profile.loadCredentials()
	if err != nil {
		t.Fatal(err)
	}

	// The next refresh (the token renewer's, within a second) loses its
	// answer; the retry with the same token must succeed.
	tr.mu.Lock()
	tr.lose = 1
	tr.mu.Unlock()
	eventually(t, 10*time.Second, func() error {
		if refreshes, lost, _ := tr.counts(); lost != 1 || refreshes < 2 {
			return fmt.Errorf("%d refreshes, %d answers lost", refreshes, lost)
		}
		return nil
	})
	var want []string
	for i := range 6 { // over more than two token lifetimes
		want = append(want, fmt.Sprintf("after the lost answer %d", i))
		if _, err := alice.WaitSent(ctxT(t, 10*time.Second), send(t, alice, conv, want[i])); err != nil {
			t.Fatalf("message %d: %v (state %s)", i, err, alice.State())
		}
		time.Sleep(500 * time.Millisecond) // pacing, not an assertion
	}
	eventually(t, 10*time.Second, wantTexts(bob, conv, want...))
	if st := alice.State(); st != StateOnline {
		t.Fatalf("alice is %s", st)
	}
	now, err := alice.profile.loadCredentials()
	if err != nil || now == nil || now.RefreshToken == before.RefreshToken {
		t.Fatalf("credentials after the lost answer: %v (%v)", now, err)
	}
	if refreshes, _, _ := tr.counts(); refreshes < 3 {
		t.Fatalf("only %d refreshes", refreshes)
	}
}

// TestRefreshRetries: a refresh that gets no answer (the connection
// dropped, a 503) is retried with the same refresh token until an answer
// comes; the new pair is then stored. (TestRefreshLostAnswer does it
// against the real server's grace.)
func TestRefreshRetries(t *testing.T) {
	var (
		mu        sync.Mutex
		presented []string
	)
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/auth/refresh" {
			http.NotFound(w, r) // the WebSocket upgrade fails: no matter
			return
		}
		var body struct {
			RefreshToken string `json:"refresh_token"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		presented = append(presented, body.RefreshToken)
		n := len(presented)
		mu.Unlock()
		switch n {
		case 1: // the answer is lost: the connection drops
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		case 2:
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
		default:
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(tokens{User: parley.User{ID: "u1", Username: "alice"},
				AccessToken: "access-2", RefreshToken: "refresh-2", TokenType: "Bearer", ExpiresIn: 3600})
		}
	}))
	t.Cleanup(fake.Close)

	dir := filepath.Join(t.TempDir(), "alice")
	p, err := openProfile(dir)
	if err != nil {
		t.Fatal(err)
	}
	stale := time.Now().Add(-2 * time.Hour)
	if err := p.saveCredentials(&credentials{User: parley.User{ID: "u1", Username: "alice"},
		AccessToken: "access-1", RefreshToken: "refresh-1", IssuedAt: stale, ExpiresAt: stale.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	c := openClient(t, dir, fake.URL)
	eventually(t, 15*time.Second, func() error {
		cr, err := p.loadCredentials()
		if err != nil || cr == nil || cr.RefreshToken != "refresh-2" {
			return fmt.Errorf("credentials %+v (%v)", cr, err)
		}
		return nil
	})
	mu.Lock()
	got := fmt.Sprint(presented)
	mu.Unlock()
	if got != "[refresh-1 refresh-1 refresh-1]" {
		t.Fatalf("refresh tokens presented %s", got)
	}
	if _, ok := c.User(); !ok {
		t.Fatal("signed out")
	}
}
