package client

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/server"
)

// TestAppState: SetAppState tells the server, and a reconnection made
// while the app is in the background says so before anything else.
func TestAppState(t *testing.T) {
	ts := startServer(t, server.Config{})
	px := startProxy(t, ts.URL)
	c := openClient(t, "", px.URL)
	register(t, c, "alice")
	waitSynced(t, c)
	me := mustUser(t, c).ID
	hello, _ := c.Hello()
	foreground := func(want bool) func() error {
		return func() error {
			if got := hasForeground(ts, me, hello.DeviceID); got != want {
				return fmt.Errorf("foreground connection %v, want %v", got, want)
			}
			return nil
		}
	}
	eventually(t, 10*time.Second, foreground(true))
	if c.AppState() != AppForeground {
		t.Fatalf("initial app state %s", c.AppState())
	}
	if err := c.SetAppState(ctxT(t, 5*time.Second), "asleep"); parley.ErrorCode(err) != parley.CodeInvalidArgument {
		t.Fatalf("a bad state: %v", err)
	}

	if err := c.SetAppState(ctxT(t, 5*time.Second), AppBackground); err != nil {
		t.Fatal(err)
	}
	if err := foreground(false)(); err != nil {
		t.Fatal(err) // answered ok, so applied
	}

	// A new connection starts in the foreground on the server: the client
	// says background again before its sync.
	reconnected := func() {
		t.Helper()
		old, _ := c.Hello()
		px.cut()
		eventually(t, 10*time.Second, func() error {
			h, ok := c.Hello()
			if !ok || h.SessionID == old.SessionID {
				return errors.New("not reconnected")
			}
			return nil
		})
		waitSynced(t, c)
	}
	reconnected()
	if err := foreground(false)(); err != nil {
		t.Fatalf("after the reconnection: %v", err)
	}

	if err := c.SetAppState(ctxT(t, 5*time.Second), AppForeground); err != nil {
		t.Fatal(err)
	}
	if err := foreground(true)(); err != nil {
		t.Fatal(err)
	}
	reconnected()
	if err := foreground(true)(); err != nil {
		t.Fatalf("after a reconnection in the foreground: %v", err)
	}

	// Set while offline: remembered for the next connection.
	px.setDown(true)
	eventually(t, 10*time.Second, func() error {
		if _, ok := c.Hello(); ok {
			return errors.New("still connected")
		}
		return nil
	})
	if err := c.SetAppState(ctxT(t, 5*time.Second), AppBackground); err != nil {
		t.Fatalf("offline: %v", err)
	}
	px.setDown(false)
	c.Reconnect()
	eventually(t, 10*time.Second, func() error {
		if _, ok := c.Hello(); !ok {
			return errors.New("not connected")
		}
		return nil
	})
	waitSynced(t, c)
	if err := foreground(false)(); err != nil {
		t.Fatalf("after reconnecting in the background: %v", err)
	}
}

// hasForeground asks the server whether the user's device has a
// connection in the foreground.
func hasForeground(ts *testServer, userID, deviceID string) bool {
	return ts.srv.Gateway().HasForegroundConnection(userID, deviceID)
}
