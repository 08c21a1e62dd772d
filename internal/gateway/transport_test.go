package gateway_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/server"
	"github.com/parley-chat/parley/wire"
)

func TestMalformedFrames(t *testing.T) {
	n := startNode(t)
	c := n.connect(n.register())
	tests := []struct {
		name  string
		frame string
		code  parley.Code
		id    string // the id the error must carry
	}{
		{name: "not JSON", frame: "hello", code: parley.CodeInvalidArgument},
		{name: "truncated", frame: `{"type":"sync","id":"t1"`, code: parley.CodeInvalidArgument},
		{name: "array", frame: `[{"type":"sync"}]`, code: parley.CodeInvalidArgument},
		{name: "no type", frame: `{"id":"t2","payload":{}}`, code: parley.CodeInvalidArgument},
		{name: "payload not an object", frame: `{"type":"sync","id":"t3","payload":[]}`, code: parley.CodeInvalidArgument},
		{name: "unknown type", frame: `{"type":"message.delete","id":"u1","payload":{}}`, code: parley.CodeInvalidArgument, id: "u1"},
		{name: "unknown type without id", frame: `{"type":"x"}`, code: parley.CodeInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.write(websocket.MessageText, []byte(tt.frame))
			f, _ := c.waitFor(isType(wire.TypeError))
			wantError(t, f, tt.code, tt.id)
			c.alive() // the connection stays open
		})
	}
}

func TestBinaryFrame(t *testing.T) {
	n := startNode(t)
	c := n.connect(n.register())
	b, _ := wire.Encode(wire.TypeSync, "bin-1", wire.Sync{})
	c.write(websocket.MessageBinary, b)
	if f, _ := c.waitFor(hasID("bin-1")); f.Type != wire.TypeSyncResult {
		t.Fatalf("binary sync answered %v", f)
	}
}

func TestInvalidUTF8(t *testing.T) {
	n := startNode(t)
	a := n.register()
	t.Run("text", func(t *testing.T) {
		c := n.connect(a)
		c.write(websocket.MessageText, []byte("{\"type\":\"sync\",\"id\":\"\xff\xfe\"}"))
		c.wantClose(websocket.StatusInvalidFramePayloadData)
	})
	t.Run("first frame", func(t *testing.T) {
		c, _, err := n.dialRaw(dialOptions{})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		c.write(websocket.MessageText, []byte("{\"type\":\"auth\",\"payload\":{\"token\":\"\xc3\"}}"))
		c.wantClose(websocket.StatusInvalidFramePayloadData)
	})
	t.Run("binary is not checked", func(t *testing.T) {
		c := n.connect(a)
		c.write(websocket.MessageBinary, []byte("{\"type\":\"sync\",\"id\":\"b1\",\"x\":\"\xff\"}"))
		if f, _ := c.waitFor(hasID("b1")); f.Type != wire.TypeSyncResult {
			t.Fatalf("answered %v", f)
		}
	})
}

func TestFrameSizeLimit(t *testing.T) {
	const limit = 1024
	n := startNode(t, func(c *server.Config) { c.MaxFrameBytes = limit })
	a := n.register()

	// pad returns a sync frame of exactly size bytes.
	pad := func(id string, size int) []byte {
		b, _ := wire.Encode(wire.TypeSync, id, wire.Sync{})
		head := string(b[:len(b)-1]) + `,"pad":"`
		return []byte(head + strings.Repeat("x", size-len(head)-2) + `"}`)
	}
	t.Run("at the limit", func(t *testing.T) {
		c := n.connect(a)
		c.write(websocket.MessageText, pad("edge", limit))
		if f, _ := c.waitFor(hasID("edge")); f.Type != wire.TypeSyncResult {
			t.Fatalf("answered %v", f)
		}
	})
	t.Run("fragments under the limit", func(t *testing.T) {
		c := n.connect(a)
		writeFragments(t, c, pad("frag", limit), 300)
		if f, _ := c.waitFor(hasID("frag")); f.Type != wire.TypeSyncResult {
			t.Fatalf("answered %v", f)
		}
	})
	for _, tc := range []struct {
		name      string
		size      int
		fragments int
	}{
		{"one byte over", limit + 1, 0},
		{"fragments over", 4 * limit, limit / 2},
		{"a megabyte", 1 << 20, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := n.connect(a)
			c.read()
			if tc.fragments > 0 {
				writeFragments(t, c, pad("big", tc.size), tc.fragments)
			} else {
				// The server may close before it has read it all, which the
				// write may notice: only the close code counts.
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				_ = c.ws.Write(ctx, websocket.MessageText, pad("big", tc.size))
				cancel()
			}
			c.wantClose(websocket.StatusMessageTooBig)
		})
	}
}

// writeFragments writes b as one message in fragments of size bytes.
func writeFragments(t *testing.T, c *client, b []byte, size int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	w, err := c.ws.Writer(ctx, websocket.MessageText)
	if err != nil {
		t.Fatalf("writer: %v", err)
	}
	for len(b) > 0 {
		k := min(size, len(b))
		if _, err := w.Write(b[:k]); err != nil {
			return // closed for being too big
		}
		b = b[k:]
	}
	_ = w.Close()
}

func TestHeartbeat(t *testing.T) {
	const hb = 200 * time.Millisecond
	n := startNode(t, func(c *server.Config) { c.Heartbeat = hb })
	a := n.register()

	t.Run("answered", func(t *testing.T) {
		c := n.connect(a)
		if c.hello.HeartbeatS != 1 {
			t.Errorf("heartbeat_s %d, want 1 (rounded up)", c.hello.HeartbeatS)
		}
		// Five pings answered, and nothing else sent, span more than two
		// heartbeats: the connection must still be open.
		eventually(t, "five pings", func() bool { return c.pings.Load() >= 5 })
		c.alive()
	})
	t.Run("dead client dropped", func(t *testing.T) {
		start := time.Now()
		c, _, err := n.dialRaw(dialOptions{token: a.Access, noPong: true})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		code, _ := c.closed()
		if code != -1 {
			t.Errorf("close code %d, want none (dropped)", code)
		}
		if d := time.Since(start); d < 2*hb {
			t.Errorf("dropped after %v, before two heartbeats", d)
		}
		if c.pings.Load() == 0 {
			t.Error("no ping before the drop")
		}
	})
}

func TestSlowConsumer(t *testing.T) {
	n := startNode(t, func(c *server.Config) {
		c.SendQueue = 4
		c.Limits = chat.Limits{SendBurst: 100000, SendPerSecond: 100000}
	})
	a, b := n.register(), n.register()
	conv := n.direct(a, b)
	sender := n.connect(a)
	slow, _, err := n.dialRaw(dialOptions{token: b.Access, rcvBuf: 256 << 10})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	// The slow client reads nothing while a sends until the server gives
	// up on it: its socket buffers fill, then its send queue.
	text := strings.Repeat("x", 16000)
	sent := 0
	for i := 0; n.metric("parley_slow_consumers_total") < 1; i++ {
		if i == 2000 {
			t.Fatal("2000 messages sent and no slow consumer")
		}
		for range 10 {
			sent++
			f := sender.request(wire.TypeMessageSend, wire.MessageSend{ConversationID: conv.ID, ClientMessageID: strconv.Itoa(sent), Text: text})
			if f.Type != wire.TypeMessageAck {
				t.Fatalf("send answered %v", f)
			}
		}
	}
	start := time.Now()
	frames := slow.wantClose(websocket.StatusTryAgainLater)
	t.Logf("%d messages sent, %d frames read in %v before the close", sent, len(frames), time.Since(start))
	if len(frames) == 0 || frames[0].Type != wire.TypeHello {
		t.Fatalf("frames before the close do not start with hello")
	}
	// What did arrive is in order, with no gap before the close.
	for i, f := range frames[1:] {
		if m := decode[wire.MessageNew](t, f).Message; m.Seq != int64(i+1) {
			t.Fatalf("message.new %d has seq %d", i+1, m.Seq)
		}
	}
	if len(frames)-1 >= sent {
		t.Errorf("all %d messages arrived, yet the connection was closed as slow", sent)
	}
	sender.alive()
}

func TestShutdown(t *testing.T) {
	n := startNode(t)
	a := n.register()
	c := n.connect(a)
	pending, _, err := n.dialRaw(dialOptions{}) // not yet authenticated
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, nd := range n.set.Nodes { // whichever the clients landed on
		if err := nd.Server.Gateway().Shutdown(ctx); err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	}
	c.wantClose(websocket.StatusGoingAway)
	pending.wantClose(websocket.StatusGoingAway)
	if got := n.metric("parley_connections"); got != 0 {
		t.Errorf("parley_connections %v after shutdown, want 0", got)
	}
	req := upgradeRequest(t, n, "/ws")
	req.Header.Set("Authorization", "Bearer "+a.Access)
	wantProblem(t, n, req, http.StatusServiceUnavailable, parley.CodeUnavailable)
}
