package client

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/wire"
)

// TestDisabledClose: a 4003 close (the account was deleted or disabled)
// signs the client out for good: the credentials are deleted, the state is
// disabled, and it does not reconnect.
func TestDisabledClose(t *testing.T) {
	var dials atomic.Int32
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ws" {
			http.NotFound(w, r)
			return
		}
		dials.Add(1)
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{wire.Subprotocol}})
		if err != nil {
			return
		}
		b, _ := wire.Encode(wire.TypeHello, "", wire.Hello{UserID: "u1", SessionID: "s1", HeartbeatS: 25})
		_ = ws.Write(r.Context(), websocket.MessageText, b)
		_ = ws.Close(websocket.StatusCode(wire.CloseDisabled), "account disabled")
	}))
	t.Cleanup(fake.Close)

	dir := filepath.Join(t.TempDir(), "alice")
	p, err := openProfile(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := p.saveCredentials(&credentials{User: parley.User{ID: "u1", Username: "alice"},
		AccessToken: "access", RefreshToken: "refresh", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	c := openClient(t, dir, fake.URL)
	eventually(t, 10*time.Second, func() error {
		if st := c.State(); st != StateDisabled {
			return fmt.Errorf("state %s", st)
		}
		return nil
	})
	if _, ok := c.User(); ok {
		t.Fatal("still logged in")
	}
	if _, err := os.Stat(filepath.Join(dir, credentialsFile)); !os.IsNotExist(err) {
		t.Fatalf("credentials kept: %v", err)
	}
	c.Reconnect()
	time.Sleep(500 * time.Millisecond) // reconnects would come every few ms
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
	if st := c.State(); st != StateDisabled {
		t.Fatalf("state %s after waiting", st)
	}
}
