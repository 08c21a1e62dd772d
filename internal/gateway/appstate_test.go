package gateway_test

import (
	"testing"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/wire"
)

// TestAppState checks the app.state extension: a connection whose app is in
// the background does not count as a foreground connection (the push
// worker's "is the user live"), until it says foreground or reconnects.
func TestAppState(t *testing.T) {
	n := startNode(t)
	g := n.srv.Gateway()
	alice, bob := n.register(), n.register()
	if g.HasForegroundConnection(alice.ID, "") {
		t.Fatal("alice is live before connecting")
	}

	phone := n.connect(alice)
	// At once on one node (the directory knows a connection before its
	// hello); as soon as the directory says so on another node of a
	// cluster.
	eventually(t, "a new connection in the foreground", func() bool { return g.HasForegroundConnection(alice.ID, "") })
	if len(n.set.Nodes) == 1 && !g.HasForegroundConnection(alice.ID, "") {
		t.Fatal("a new connection is not in the foreground")
	}
	if g.HasForegroundConnection(bob.ID, "") {
		t.Fatal("bob is live without a connection")
	}

	state := func(c *client, s string) frame {
		t.Helper()
		return c.request(wire.TypeAppState, map[string]string{"state": s})
	}
	if f := state(phone, "background"); f.Type != wire.TypeOK {
		t.Fatalf("app.state background answered %v", f)
	}
	eventually(t, "a background connection not to count as live", func() bool { return !g.HasForegroundConnection(alice.ID, "") })
	// Still a connection: it gets messages and answers requests.
	phone.alive()

	laptop := n.connect(alice)
	eventually(t, "a second, foreground connection to count", func() bool { return g.HasForegroundConnection(alice.ID, "") })
	laptop.ws.Close(websocket.StatusNormalClosure, "")
	eventually(t, "the laptop's close", func() bool { return !g.HasForegroundConnection(alice.ID, "") })

	if f := state(phone, "foreground"); f.Type != wire.TypeOK {
		t.Fatalf("app.state foreground answered %v", f)
	}
	eventually(t, "foreground again to count", func() bool { return g.HasForegroundConnection(alice.ID, "") })

	// Bad states are errors; the connection stays open and unchanged.
	for _, bad := range []any{map[string]string{"state": "asleep"}, map[string]string{}, map[string]int{"state": 1}} {
		id := phone.send(wire.TypeAppState, bad)
		f, _ := phone.waitFor(hasID(id))
		wantError(t, f, parley.CodeInvalidArgument, id)
	}
	if !g.HasForegroundConnection(alice.ID, "") {
		t.Fatal("a bad app.state changed the state")
	}

	// A reconnect is in the foreground.
	state(phone, "background")
	phone.ws.Close(websocket.StatusNormalClosure, "")
	eventually(t, "the phone's close", func() bool { return !g.HasForegroundConnection(alice.ID, "") })
	n.connect(alice)
	// (At once on one node; as soon as the directory tells it, when the
	// connection landed on another node of a cluster.)
	eventually(t, "a reconnection in the foreground", func() bool { return g.HasForegroundConnection(alice.ID, "") })
}
