package gateway_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/server"
	"github.com/parley-chat/parley/wire"
)

func TestHeaderAuthHello(t *testing.T) {
	n := startNode(t)
	a := n.register()
	c := n.connect(a)
	h := c.hello
	if h.UserID != a.ID {
		t.Errorf("hello user_id %q, want %q", h.UserID, a.ID)
	}
	if _, err := uuid.Parse(h.SessionID); err != nil {
		t.Errorf("hello session_id %q is not a UUID", h.SessionID)
	}
	if h.HeartbeatS != 25 {
		t.Errorf("hello heartbeat_s %d, want 25", h.HeartbeatS)
	}
	if d := time.Since(h.ServerTime.Time); d < -time.Minute || d > time.Minute {
		t.Errorf("hello server_time %v is not now", h.ServerTime)
	}
	if other := n.connect(a); other.hello.SessionID == h.SessionID {
		t.Errorf("two connections share session_id %q", h.SessionID)
	}
}

func TestFirstFrameAuth(t *testing.T) {
	n := startNode(t)
	a := n.register()
	for _, typ := range []websocket.MessageType{websocket.MessageText, websocket.MessageBinary} {
		t.Run(typ.String(), func(t *testing.T) {
			c, _, err := n.dialRaw(dialOptions{})
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			c.read()
			b, _ := wire.Encode(wire.TypeAuth, "auth-1", wire.Auth{Token: a.Access})
			c.write(typ, b)
			f, before := c.waitFor(isType(wire.TypeHello))
			if len(before) > 0 {
				t.Fatalf("frames before hello: %v", before)
			}
			if f.ID != "auth-1" {
				t.Errorf("hello id %q, want the auth frame's auth-1", f.ID)
			}
			if h := decode[wire.Hello](t, f); h.UserID != a.ID {
				t.Errorf("hello user_id %q, want %q", h.UserID, a.ID)
			}
			// hello alone answers it: the next reply is the sync's.
			id := c.send(wire.TypeSync, wire.Sync{})
			_, before = c.waitFor(hasID(id))
			none(t, before, isType(wire.TypeAuthOK), "auth.ok after a first-frame auth")
		})
	}
}

func TestFirstFrameRefused(t *testing.T) {
	n := startNode(t)
	a := n.register()
	tests := []struct {
		name  string
		frame string
	}{
		{"bad token", `{"type":"auth","payload":{"token":"not-a-token"}}`},
		{"empty token", `{"type":"auth","payload":{}}`},
		{"no payload", `{"type":"auth"}`},
		{"another type first", `{"type":"sync","id":"1","payload":{}}`},
		{"malformed JSON", `{"type":`},
		{"refresh token", `{"type":"auth","payload":{"token":"` + a.Refresh + `"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := n.dialRaw(dialOptions{})
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			c.write(websocket.MessageText, []byte(tt.frame))
			if frames := c.wantClose(4001); len(frames) > 0 {
				t.Errorf("frames before the close: %v", frames)
			}
		})
	}
}

// TestQueryTokenRefused checks that a token in the query string is ignored:
// no hello comes, and the connection still has to send auth first.
func TestQueryTokenRefused(t *testing.T) {
	n := startNode(t)
	a := n.register()
	for _, param := range []string{"access_token", "token"} {
		t.Run(param, func(t *testing.T) {
			c, _, err := n.dialRaw(dialOptions{path: "/ws?" + param + "=" + url.QueryEscape(a.Access)})
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			c.send(wire.TypeSync, wire.Sync{})
			if frames := c.wantClose(4001); len(frames) > 0 {
				t.Errorf("frames before the close: %v", frames)
			}
		})
	}
}

func TestAuthTimeout(t *testing.T) {
	// server.Config has no auth timeout yet: this one test builds the
	// stack by hand with a short one.
	s := newStack(t, 200*time.Millisecond)
	c, _, err := dialURL(t, s.url, dialOptions{})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	start := time.Now()
	if frames := c.wantClose(4001); len(frames) > 0 {
		t.Errorf("frames before the close: %v", frames)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("closed after %v, before the auth timeout", d)
	}
}

// upgradeRequest returns a WebSocket handshake request for the raw checks
// of refused upgrades.
func upgradeRequest(t *testing.T, n *node, path string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("GET", n.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	return req
}

type problem struct {
	Type   string      `json:"type"`
	Title  string      `json:"title"`
	Status int         `json:"status"`
	Detail string      `json:"detail"`
	Code   parley.Code `json:"code"`
}

// wantProblem sends req and fails unless it is refused with status and a
// problem+json body of code.
func wantProblem(t *testing.T, n *node, req *http.Request, status int, code parley.Code) {
	t.Helper()
	resp, err := n.hc.Do(req)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var p problem
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("decode problem %s: %v", body, err)
	}
	want := problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: p.Detail, Code: code}
	if p != want || p.Detail == "" {
		t.Errorf("problem %+v, want %+v with a detail", p, want)
	}
}

func TestHeaderAuthRefused(t *testing.T) {
	n := startNode(t)
	a := n.register()
	loggedOut := n.login(a)
	n.api("POST", "/api/auth/logout", "", map[string]string{"refresh_token": loggedOut.Refresh}, http.StatusNoContent, nil)
	tests := []struct {
		name   string
		header string
	}{
		{"garbage", "Bearer not-a-token"},
		{"tampered", "Bearer " + a.Access + "x"},
		{"revoked family", "Bearer " + loggedOut.Access},
		{"refresh token", "Bearer " + a.Refresh},
		{"not bearer", "Basic " + a.Access},
		{"empty bearer", "Bearer "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := upgradeRequest(t, n, "/ws")
			req.Header.Set("Authorization", tt.header)
			wantProblem(t, n, req, http.StatusUnauthorized, parley.CodeUnauthenticated)
		})
	}
	t.Run("coder client", func(t *testing.T) {
		_, resp, err := n.dialRaw(dialOptions{token: "not-a-token"})
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("dial: err %v, response %s; want 401", err, status(resp))
		}
	})
}

func TestOrigin(t *testing.T) {
	n := startNode(t, func(c *server.Config) { c.Origins = []string{"https://app.example.com"} })
	a := n.register()
	tests := []struct {
		name   string
		origin string // none when empty
		host   string // the request's Host; the server's address when empty
		ok     bool
	}{
		{name: "no origin", ok: true},
		{name: "same host wss", origin: "wss://" + n.host, ok: true},
		{name: "same host https", origin: "https://" + n.host, ok: true},
		{name: "same host http", origin: "http://" + n.host, ok: true},
		{name: "same host upper case", origin: "HTTPS://" + n.host, ok: true},
		{name: "listed", origin: "https://app.example.com", ok: true},
		{name: "default port of the origin's scheme", origin: "https://chat.example.com:443", host: "chat.example.com", ok: true},
		{name: "default port on the host", origin: "wss://chat.example.com", host: "chat.example.com:443", ok: true},
		{name: "port 80 on the host", origin: "ws://chat.example.com", host: "chat.example.com:80", ok: true},
		{name: "foreign", origin: "https://evil.example.com"},
		{name: "listed origin's other scheme", origin: "http://app.example.com"},
		{name: "same name other port", origin: "https://127.0.0.1:1"},
		{name: "null", origin: "null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.origin != "" {
				h.Set("Origin", tt.origin)
			}
			c, resp, err := n.dialRaw(dialOptions{token: a.Access, header: h, host: tt.host})
			if !tt.ok {
				if err == nil {
					t.Fatal("upgraded, want 403")
				}
				if resp == nil || resp.StatusCode != http.StatusForbidden {
					t.Fatalf("response %s, want 403", status(resp))
				}
				req := upgradeRequest(t, n, "/ws")
				req.Header.Set("Origin", tt.origin)
				req.Header.Set("Authorization", "Bearer "+a.Access)
				if tt.host != "" {
					req.Host = tt.host
				}
				wantProblem(t, n, req, http.StatusForbidden, parley.CodeForbidden)
				return
			}
			if err != nil {
				t.Fatalf("dial: %v (response %s)", err, status(resp))
			}
			c.read()
			c.waitFor(isType(wire.TypeHello))
		})
	}
}

func TestSubprotocol(t *testing.T) {
	n := startNode(t)
	a := n.register()
	tests := []struct {
		offered []string
		want    string
	}{
		{[]string{"parley.v1"}, "parley.v1"},
		{[]string{"chat.v9", "parley.v1"}, "parley.v1"},
		{[]string{"chat.v9"}, ""},
		{nil, ""},
	}
	for _, tt := range tests {
		t.Run(fmtList(tt.offered), func(t *testing.T) {
			c, _, err := n.dialRaw(dialOptions{token: a.Access, subprotocols: tt.offered})
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			if got := c.ws.Subprotocol(); got != tt.want {
				t.Errorf("subprotocol %q, want %q", got, tt.want)
			}
		})
	}
}

func fmtList(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	b, _ := json.Marshal(s)
	return string(b)
}

func TestReauth(t *testing.T) {
	n := startNode(t)
	a, b := n.register(), n.register()
	c := n.connect(a)

	// A fresh token of the same user, from another login: auth.ok, and the
	// connection now belongs to that login.
	a2 := n.login(a)
	f := c.request(wire.TypeAuth, wire.Auth{Token: a2.Access})
	if f.Type != wire.TypeAuthOK {
		t.Fatalf("re-auth answered %v, want auth.ok", f)
	}
	ok := decode[wire.AuthOK](t, f)
	if ok.UserID != a.ID || !ok.ExpiresAt.Equal(tokenExpiry(t, a2.Access)) {
		t.Errorf("auth.ok %+v, want user %s expiring at %v", ok, a.ID, tokenExpiry(t, a2.Access))
	}
	// Logging out the first login leaves it open; the second closes it.
	n.api("POST", "/api/auth/logout", "", map[string]string{"refresh_token": a.Refresh}, http.StatusNoContent, nil)
	c.alive()
	n.api("POST", "/api/auth/logout", "", map[string]string{"refresh_token": a2.Refresh}, http.StatusNoContent, nil)
	c.wantClose(4001)

	t.Run("another user", func(t *testing.T) {
		a3 := n.login(a)
		c := n.connect(a3)
		id := c.send(wire.TypeAuth, wire.Auth{Token: b.Access})
		frames := c.wantClose(4001)
		if len(frames) == 0 {
			t.Fatal("no error frame before the close")
		}
		wantError(t, frames[len(frames)-1], parley.CodeUnauthenticated, id)
	})
	t.Run("bad token", func(t *testing.T) {
		a3 := n.login(a)
		c := n.connect(a3)
		id := c.send(wire.TypeAuth, wire.Auth{Token: "nope"})
		frames := c.wantClose(4001)
		if len(frames) == 0 {
			t.Fatal("no error frame before the close")
		}
		wantError(t, frames[len(frames)-1], parley.CodeUnauthenticated, id)
	})
}

// TestTokenExpiry checks that a connection closes with 4001 when its token
// expires, and that a re-auth moves the expiry.
func TestTokenExpiry(t *testing.T) {
	n := startNode(t, func(c *server.Config) { c.AccessTTL = 2 * time.Second })
	a := n.register()

	t.Run("expires", func(t *testing.T) {
		c := n.connect(n.login(a))
		c.wantClose(4001)
	})

	t.Run("re-auth moves it", func(t *testing.T) {
		first := n.login(a)
		c := n.connect(first)
		exp1 := tokenExpiry(t, first.Access)
		// Tokens expire on whole seconds: log in until one expires later.
		var second user
		eventually(t, "a token that expires later", func() bool {
			second = n.login(a)
			return tokenExpiry(t, second.Access).After(exp1)
		})
		if f := c.request(wire.TypeAuth, wire.Auth{Token: second.Access}); f.Type != wire.TypeAuthOK {
			t.Fatalf("re-auth answered %v", f)
		}
		eventually(t, "the first token's expiry", func() bool { return time.Now().After(exp1.Add(300 * time.Millisecond)) })
		c.alive()
		c.wantClose(4001)
		if late := time.Until(tokenExpiry(t, second.Access)); late > 0 {
			t.Errorf("closed %v before the second token expired", late)
		}
	})
}

func TestLogoutClosesFamily(t *testing.T) {
	n := startNode(t)
	a := n.register()
	other := n.login(a)
	c1, c2 := n.connect(a), n.connect(a)
	c3 := n.connect(other)
	n.api("POST", "/api/auth/logout", "", map[string]string{"refresh_token": a.Refresh}, http.StatusNoContent, nil)
	c1.wantClose(4001)
	c2.wantClose(4001)
	c3.alive()
}
