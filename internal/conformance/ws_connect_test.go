package conformance

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/internal/server"
)

func TestWSAuthentication(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *server.Config) {
		c.Origins = []string{"https://app.example.com"}
	})
	u := n.register(t, "wsauth")

	t.Run("header", func(t *testing.T) {
		_, hello := n.connect(t, u, "header")
		if hs := intOf(hello["heartbeat_s"]); hs != 25 {
			t.Errorf("heartbeat_s %d, want 25 by default", hs)
		}
	})

	t.Run("subprotocol", func(t *testing.T) {
		c, _, err := n.dialRaw(t, dialOpts{token: u.access, subprotos: []string{"parley.v1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		if c.Subprotocol() != "parley.v1" {
			t.Errorf("subprotocol %q, want parley.v1", c.Subprotocol())
		}
		w := wrap(t, "subprotocol", c)
		checkHello(t, w.next(), u.id, "")
	})

	t.Run("first frame", func(t *testing.T) {
		for _, id := range []string{"a1", ""} {
			c, _, err := n.dialRaw(t, dialOpts{})
			if err != nil {
				t.Fatal(err)
			}
			w := wrap(t, "first frame", c)
			w.request("auth", id, obj{"token": u.access})
			// Answered by hello alone, with the frame's id.
			checkHello(t, w.next(), u.id, id)
			w.request("room.leave", "after", obj{"conversation_id": unknownID})
			f, skipped := w.until("reply", func(f frame) bool { return f.id == "after" })
			if f.typ != "ok" {
				t.Errorf("reply %v", f)
			}
			none(t, "first-frame auth", "auth.ok", skipped, ofType("auth.ok"))
		}
	})

	t.Run("first frame as binary", func(t *testing.T) {
		c, _, err := n.dialRaw(t, dialOpts{})
		if err != nil {
			t.Fatal(err)
		}
		w := wrap(t, "binary auth", c)
		w.writeRaw(websocket.MessageBinary, []byte(`{"type":"auth","id":"bin","payload":{"token":"`+u.access+`"}}`))
		checkHello(t, w.next(), u.id, "bin")
	})

	closes4001 := []struct {
		name  string
		frame string
	}{
		{"bad token", `{"type":"auth","payload":{"token":"nope"}}`},
		{"no token", `{"type":"auth","payload":{}}`},
		{"not auth", `{"type":"sync","id":"s","payload":{}}`},
		{"malformed", `{"type":`},
	}
	for _, c := range closes4001 {
		t.Run("first frame "+c.name, func(t *testing.T) {
			conn, _, err := n.dialRaw(t, dialOpts{})
			if err != nil {
				t.Fatal(err)
			}
			w := wrap(t, c.name, conn)
			w.writeRaw(websocket.MessageText, []byte(c.frame))
			if code := w.closed(); code != 4001 {
				t.Errorf("close code %d, want 4001", code)
			}
			none(t, c.name, "hello", w.remaining(), ofType("hello"))
		})
	}

	t.Run("query token not accepted", func(t *testing.T) {
		for _, q := range []string{"access_token=" + u.access, "token=" + u.access} {
			conn, res, err := n.dialRaw(t, dialOpts{query: q})
			if err != nil {
				// Refusing the upgrade outright is fine too.
				if res == nil || res.StatusCode != http.StatusUnauthorized {
					t.Fatalf("dial with %s: %v", q[:strings.IndexByte(q, '=')], err)
				}
				continue
			}
			w := wrap(t, "query token", conn)
			w.request("sync", "s", obj{"conversations": obj{}})
			if code := w.closed(); code != 4001 {
				t.Errorf("close code %d, want 4001", code)
			}
			none(t, "query token", "hello", w.remaining(), ofType("hello"))
		}
	})

	t.Run("bad header token", func(t *testing.T) {
		for _, tok := range []string{"garbage", u.access + "x"} {
			_, res, err := n.dialRaw(t, dialOpts{token: tok})
			if err == nil {
				t.Fatal("upgraded with a bad token")
			}
			if res == nil || res.StatusCode != http.StatusUnauthorized {
				t.Fatalf("answer %v, want HTTP 401", res)
			}
			body, _ := io.ReadAll(res.Body)
			checkProblem(t, "ws 401", res.Header, body, 401, "unauthenticated")
		}
	})

	t.Run("origin", func(t *testing.T) {
		port := n.host[strings.LastIndexByte(n.host, ':'):]
		ok := []string{
			"http://" + n.host,
			"https://" + n.host,
			"wss://" + n.host,
			"ws://" + n.host,
			"HTTP://" + strings.ToUpper(n.host),
			"https://app.example.com",
		}
		refused := []string{
			"http://evil.example",
			"http://evil.example" + port,
			"https://app.example.com.evil.example",
			"http://localhost.evil" + port,
			"null",
		}
		for _, o := range ok {
			c, res, err := n.dialRaw(t, dialOpts{token: u.access, origin: o})
			if err != nil {
				t.Errorf("origin %q refused: %v %v", o, err, res)
				continue
			}
			c.CloseNow()
		}
		for _, o := range refused {
			_, res, err := n.dialRaw(t, dialOpts{token: u.access, origin: o})
			if err == nil {
				t.Errorf("origin %q allowed", o)
				continue
			}
			if res == nil || res.StatusCode != http.StatusForbidden {
				t.Errorf("origin %q: %v, want HTTP 403", o, res)
			}
		}
	})

	t.Run("reauth", func(t *testing.T) {
		w, _ := n.connect(t, u, "reauth")
		fresh := n.do(t, "POST", "/api/auth/login", "", obj{"username": u.name, "password": "correct horse"}).want(t, http.StatusOK)
		w.request("auth", "again", obj{"token": fresh["access_token"]})
		f := w.reply("again")
		if f.typ != "auth.ok" {
			t.Fatalf("reauth answered %v, want auth.ok", f)
		}
		if got := wantUUID(t, "auth.ok", f.payload, "user_id"); got != u.id {
			t.Errorf("auth.ok user_id %q", got)
		}
		exp := wantTime(t, "auth.ok", f.payload, "expires_at")
		if d := time.Until(exp); d < 14*time.Minute || d > 16*time.Minute {
			t.Errorf("expires_at %v is %v away, want about 15 minutes", exp, d)
		}
		// The connection works on.
		w.request("room.leave", "x", obj{"conversation_id": unknownID})
		if f := w.reply("x"); f.typ != "ok" {
			t.Errorf("after reauth: %v", f)
		}
	})

	t.Run("reauth refused", func(t *testing.T) {
		other := n.register(t, "otheruser")
		for name, tok := range map[string]string{"other user": other.access, "bad token": "nope"} {
			w, _ := n.connect(t, u, "reauth "+name)
			w.request("auth", "bad", obj{"token": tok})
			wantError(t, w.reply("bad"), "bad", "unauthenticated")
			if code := w.closed(); code != 4001 {
				t.Errorf("%s: close code %d, want 4001", name, code)
			}
		}
	})
}

func TestWSAuthTimeout(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *server.Config) { c.AuthTimeout = 300 * time.Millisecond })
	c, _, err := n.dialRaw(t, dialOpts{})
	if err != nil {
		t.Fatal(err)
	}
	w := wrap(t, "silent", c)
	if code := w.closed(); code != 4001 {
		t.Errorf("close code %d without an auth frame, want 4001", code)
	}
}

func TestWSFrames(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	u := n.register(t, "frames")

	t.Run("malformed JSON keeps the connection", func(t *testing.T) {
		w, _ := n.connect(t, u, "malformed")
		for _, bad := range []string{`{"type":`, `not json`, `[]`, `{"type":"sync"} trailing`} {
			w.writeRaw(websocket.MessageText, []byte(bad))
			wantError(t, w.next(), "", "invalid_argument")
		}
		w.request("room.leave", "alive", obj{"conversation_id": unknownID})
		if f := w.reply("alive"); f.typ != "ok" {
			t.Errorf("after malformed frames: %v", f)
		}
	})

	t.Run("unknown type answers with the id", func(t *testing.T) {
		w, _ := n.connect(t, u, "unknown")
		w.request("message.edit", "u1", obj{})
		f := w.next()
		if f.typ != "error" || f.id != "u1" {
			t.Fatalf("unknown type answered %v, want an error with id u1", f)
		}
		wantError(t, f, "u1", "invalid_argument")
		w.request("room.leave", "alive", obj{"conversation_id": unknownID})
		if f := w.reply("alive"); f.typ != "ok" {
			t.Errorf("after an unknown type: %v", f)
		}
	})

	t.Run("ok shape", func(t *testing.T) {
		w, _ := n.connect(t, u, "ok")
		w.request("room.leave", "r", obj{"conversation_id": unknownID})
		f := w.reply("r")
		if f.typ != "ok" {
			t.Fatalf("room.leave answered %v", f)
		}
	})

	t.Run("binary frames are read as text", func(t *testing.T) {
		w, _ := n.connect(t, u, "binary")
		w.writeRaw(websocket.MessageBinary, []byte(`{"type":"room.leave","id":"b","payload":{"conversation_id":"`+unknownID+`"}}`))
		f := w.reply("b")
		if f.typ != "ok" || f.binary {
			t.Errorf("binary request answered %v (binary %v), want a text ok", f, f.binary)
		}
	})

	t.Run("invalid UTF-8 closes with 1007", func(t *testing.T) {
		w, _ := n.connect(t, u, "utf8")
		w.writeRaw(websocket.MessageText, []byte("{\"type\":\"room.leave\",\"id\":\"\xff\xfe\"}"))
		if code := w.closed(); code != websocket.StatusInvalidFramePayloadData {
			t.Errorf("close code %d, want 1007", code)
		}
	})

	t.Run("64 KiB passes", func(t *testing.T) {
		w, _ := n.connect(t, u, "64k")
		data := padded(`{"type":"room.leave","id":"big","payload":{"conversation_id":"`+unknownID+`"}}`, 64<<10)
		w.writeRaw(websocket.MessageText, data)
		if f := w.reply("big"); f.typ != "ok" {
			t.Errorf("a 64 KiB frame answered %v", f)
		}
	})

	t.Run("64 KiB + 1 closes with 1009", func(t *testing.T) {
		w, _ := n.connect(t, u, "64k+1")
		data := padded(`{"type":"room.leave","id":"big","payload":{"conversation_id":"`+unknownID+`"}}`, 64<<10+1)
		w.writeRaw(websocket.MessageText, data)
		if code := w.closed(); code != websocket.StatusMessageTooBig {
			t.Errorf("close code %d, want 1009", code)
		}
	})
}

// padded returns s followed by spaces up to size bytes: still one JSON
// object.
func padded(s string, size int) []byte {
	return append([]byte(s), bytes.Repeat([]byte(" "), size-len(s))...)
}
