package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/server"
	"github.com/parley-chat/parley/internal/testnode"
	"github.com/parley-chat/parley/wire"
)

// wait bounds every wait of the tests for something that must happen.
const wait = 10 * time.Second

// node is the server under test: a whole Parley node (server.Open) behind
// a real HTTP server, or, with PARLEY_TEST_CLUSTER=N, a cluster of N nodes
// over which REST requests and WebSocket dials are spread in turn.
type node struct {
	t     *testing.T
	set   *testnode.Nodes
	srv   *server.Server // the first node's
	url   string         // the first node's http://127.0.0.1:PORT
	wsURL string         // ws://127.0.0.1:PORT/ws
	host  string         // 127.0.0.1:PORT
	hc    *http.Client
	names atomic.Int64
	turn  atomic.Uint64
}

// testConfig is the configuration of a test node: a fresh data folder and
// the cheapest password hash.
func testConfig(t *testing.T) server.Config { return testnode.Config(t) }

// startNode starts the server under test, with its configuration changed
// by the given functions; it is stopped when the test ends (gateway first,
// then HTTP, then the store).
func startNode(t *testing.T, change ...func(*server.Config)) *node {
	t.Helper()
	set := testnode.Start(t, change...)
	first := set.Nodes[0]
	return &node{t: t, set: set, srv: first.Server, url: first.URL, wsURL: first.WSURL, host: first.Host, hc: first.HTTP}
}

// base returns the base URL for the next request or dial: the next node
// in turn.
func (n *node) base() string {
	nodes := n.set.Nodes
	return nodes[int(n.turn.Add(1)%uint64(len(nodes)))].URL
}

// testLogger logs at warning level and above through t, which keeps the
// output of passing tests quiet.
func testLogger(t testing.TB) *slog.Logger { return testnode.Logger(t) }

// api sends a REST request and fails the test unless it answers status;
// then it decodes the body into out, if not nil.
func (n *node) api(method, path, token string, body any, status int, out any) {
	n.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			n.t.Fatalf("encode body: %v", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, n.base()+path, rd)
	if err != nil {
		n.t.Fatalf("new request: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := n.hc.Do(req)
	if err != nil {
		n.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		n.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, resp.StatusCode, status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			n.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

// user is a registered account with one login (token family).
type user struct {
	ID       string
	Name     string
	Access   string
	Refresh  string
	password string
}

type tokens struct {
	User         parley.User `json:"user"`
	AccessToken  string      `json:"access_token"`
	RefreshToken string      `json:"refresh_token"`
}

// register creates a user with a fresh name over REST.
func (n *node) register() user {
	n.t.Helper()
	name := fmt.Sprintf("user%d", n.names.Add(1))
	var tk tokens
	n.api("POST", "/api/auth/register", "", map[string]string{"username": name, "password": "correct horse"}, http.StatusCreated, &tk)
	return user{ID: tk.User.ID, Name: name, Access: tk.AccessToken, Refresh: tk.RefreshToken, password: "correct horse"}
}

// login starts another token family for u.
func (n *node) login(u user) user {
	n.t.Helper()
	var tk tokens
	n.api("POST", "/api/auth/login", "", map[string]string{"username": u.Name, "password": u.password}, http.StatusOK, &tk)
	u.Access, u.Refresh = tk.AccessToken, tk.RefreshToken
	return u
}

// group creates a group of owner and members.
func (n *node) group(owner user, members ...user) parley.Conversation {
	n.t.Helper()
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.ID
	}
	var c parley.Conversation
	n.api("POST", "/api/conversations", owner.Access, map[string]any{"type": "group", "title": "group", "member_ids": ids}, http.StatusCreated, &c)
	return c
}

// direct creates the direct conversation of a and b.
func (n *node) direct(a, b user) parley.Conversation {
	n.t.Helper()
	var c parley.Conversation
	n.api("POST", "/api/conversations", a.Access, map[string]any{"type": "direct", "member_ids": []string{b.ID}}, http.StatusCreated, &c)
	return c
}

// post stores a message over REST.
func (n *node) post(u user, conversationID, text string) parley.Message {
	n.t.Helper()
	var m parley.Message
	n.api("POST", "/api/conversations/"+conversationID+"/messages", u.Access,
		map[string]string{"client_message_id": "rest-" + strconv.FormatInt(n.names.Add(1), 10), "kind": "text", "text": text},
		http.StatusCreated, &m)
	return m
}

// metric returns the value of an unlabelled metric from /metrics, summed
// over the nodes.
func (n *node) metric(name string) float64 {
	n.t.Helper()
	total := 0.0
	for _, nd := range n.set.Nodes {
		resp, err := nd.HTTP.Get(nd.URL + "/metrics")
		if err != nil {
			n.t.Fatalf("get metrics: %v", err)
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					n.t.Fatalf("metric %s: %v", name, err)
				}
				total += f
			}
		}
		resp.Body.Close()
	}
	return total
}

// tokenExpiry reads the exp claim of an access token.
func tokenExpiry(t *testing.T, token string) time.Time {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("decode JWT claims: %v", err)
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatalf("decode JWT claims: %v", err)
	}
	return time.Unix(claims.Exp, 0)
}

// frame is a received frame.
type frame struct {
	Type    string          `json:"type"`
	ID      string          `json:"id"`
	Payload json.RawMessage `json:"payload"`
}

func (f frame) String() string { return fmt.Sprintf("%s#%s %s", f.Type, f.ID, f.Payload) }

// decode returns a frame's payload as a T.
func decode[T any](t *testing.T, f frame) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(f.Payload, &v); err != nil {
		t.Fatalf("decode %s payload %s: %v", f.Type, f.Payload, err)
	}
	return v
}

// client is a real WebSocket client (coder/websocket). Once reading, a
// goroutine reads every frame into frames (answering pings as it goes);
// the test takes them with waitFor, which keeps the ones it skips.
type client struct {
	t       *testing.T
	ws      *websocket.Conn
	frames  chan frame
	done    chan struct{}
	err     error // why reading ended; set before done is closed
	ids     atomic.Int64
	pings   atomic.Int64
	backlog []frame
	start   sync.Once
	hello   wire.Hello
}

// dialOptions are the knobs of a dial.
type dialOptions struct {
	token        string // sent as a Bearer header when not empty
	path         string // default /ws
	header       http.Header
	host         string
	subprotocols []string
	noPong       bool // do not answer pings (a dead client)
	rcvBuf       int  // the socket's receive buffer, when not zero
}

// dialRaw opens a WebSocket without reading anything. On a refused
// upgrade it returns the response.
func (n *node) dialRaw(o dialOptions) (*client, *http.Response, error) {
	n.t.Helper()
	base := n.url
	if o.host == "" && o.header.Get("Origin") == "" {
		base = n.base() // the Host and Origin tests are about the first node
	}
	return dialURL(n.t, base, o)
}

func dialURL(t *testing.T, base string, o dialOptions) (*client, *http.Response, error) {
	t.Helper()
	c := &client{t: t, frames: make(chan frame, 4096), done: make(chan struct{})}
	h := http.Header{}
	for k, v := range o.header {
		h[k] = v
	}
	if o.token != "" {
		h.Set("Authorization", "Bearer "+o.token)
	}
	if o.path == "" {
		o.path = "/ws"
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var hc *http.Client
	if o.rcvBuf > 0 {
		// A small fixed receive buffer (no autotuning), so that a client
		// that does not read fills up quickly. Below the loopback MSS
		// (64 KiB) the kernel stalls the stream; keep it above.
		hc = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var d net.Dialer
				nc, err := d.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				if tc, ok := nc.(*net.TCPConn); ok {
					if err := tc.SetReadBuffer(o.rcvBuf); err != nil {
						nc.Close()
						return nil, err
					}
				}
				return nc, nil
			},
		}}
	}
	ws, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+o.path, &websocket.DialOptions{
		HTTPClient:   hc,
		HTTPHeader:   h,
		Host:         o.host,
		Subprotocols: o.subprotocols,
		OnPingReceived: func(context.Context, []byte) bool {
			c.pings.Add(1)
			return !o.noPong
		},
	})
	if err != nil {
		return nil, resp, err
	}
	ws.SetReadLimit(4 << 20)
	c.ws = ws
	t.Cleanup(func() { _ = ws.CloseNow() })
	return c, resp, nil
}

// connect opens a header-authenticated connection for u and reads hello.
func (n *node) connect(u user) *client {
	n.t.Helper()
	c, resp, err := n.dialRaw(dialOptions{token: u.Access})
	if err != nil {
		n.t.Fatalf("dial as %s: %v (response %v)", u.Name, err, status(resp))
	}
	c.read()
	f, before := c.waitFor(isType(wire.TypeHello))
	if len(before) > 0 {
		n.t.Fatalf("frames before hello: %v", before)
	}
	c.hello = decode[wire.Hello](n.t, f)
	return c
}

func status(resp *http.Response) string {
	if resp == nil {
		return "none"
	}
	return resp.Status
}

// read starts the reading goroutine.
func (c *client) read() {
	c.start.Do(func() {
		go func() {
			defer close(c.done)
			for {
				_, data, err := c.ws.Read(context.Background())
				if err != nil {
					c.err = err
					return
				}
				var f frame
				if err := json.Unmarshal(data, &f); err != nil {
					c.err = fmt.Errorf("server sent a frame that is not JSON: %q", data)
					return
				}
				c.frames <- f
			}
		}()
	})
}

// send writes a frame with a fresh id and returns the id.
func (c *client) send(typ string, payload any) string {
	c.t.Helper()
	id := "r" + strconv.FormatInt(c.ids.Add(1), 10)
	c.sendID(typ, id, payload)
	return id
}

// sendID writes a frame with the given id.
func (c *client) sendID(typ, id string, payload any) {
	c.t.Helper()
	b, err := wire.Encode(typ, id, payload)
	if err != nil {
		c.t.Fatalf("encode: %v", err)
	}
	c.write(websocket.MessageText, b)
}

// write writes one message as is.
func (c *client) write(typ websocket.MessageType, b []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.ws.Write(ctx, typ, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// request sends a frame and returns the reply that carries its id.
func (c *client) request(typ string, payload any) frame {
	c.t.Helper()
	id := c.send(typ, payload)
	f, _ := c.waitFor(hasID(id))
	return f
}

// waitFor returns the first frame, old or new, that matches, and the frames
// before it that did not match. Those stay in the backlog for later waits.
func (c *client) waitFor(match func(frame) bool) (frame, []frame) {
	c.t.Helper()
	for i, f := range c.backlog {
		if match(f) {
			before := append([]frame(nil), c.backlog[:i]...)
			c.backlog = append(c.backlog[:i], c.backlog[i+1:]...)
			return f, before
		}
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case f := <-c.frames:
			if match(f) {
				before := append([]frame(nil), c.backlog...)
				return f, before
			}
			c.backlog = append(c.backlog, f)
		case <-c.done:
			// Frames read before the end are still in the channel.
			select {
			case f := <-c.frames:
				if match(f) {
					return f, append([]frame(nil), c.backlog...)
				}
				c.backlog = append(c.backlog, f)
				continue
			default:
			}
			c.t.Fatalf("connection ended (%v) while waiting; unmatched frames: %v", c.err, c.backlog)
		case <-timer.C:
			c.t.Fatalf("no matching frame within %v; unmatched frames: %v", wait, c.backlog)
		}
	}
}

// closed waits for the connection to end and returns the close code the
// server sent (-1 for none), with the frames that came before it.
func (c *client) closed() (websocket.StatusCode, []frame) {
	c.t.Helper()
	c.read()
	select {
	case <-c.done:
	case <-time.After(wait):
		c.t.Fatalf("connection still open after %v", wait)
	}
	frames := c.backlog
	c.backlog = nil
	for {
		select {
		case f := <-c.frames:
			frames = append(frames, f)
		default:
			return websocket.CloseStatus(c.err), frames
		}
	}
}

// wantClose fails the test unless the server closes with code.
func (c *client) wantClose(code websocket.StatusCode) []frame {
	c.t.Helper()
	got, frames := c.closed()
	if got != code {
		c.t.Fatalf("close code %d (%v), want %d; frames before: %v", got, c.err, code, frames)
	}
	return frames
}

// alive fails the test unless a request still gets its reply.
func (c *client) alive() {
	c.t.Helper()
	if f := c.request(wire.TypeSync, wire.Sync{}); f.Type != wire.TypeSyncResult {
		c.t.Fatalf("sync answered %v", f)
	}
}

func isType(typ string) func(frame) bool {
	return func(f frame) bool { return f.Type == typ }
}

func hasID(id string) func(frame) bool {
	return func(f frame) bool { return f.ID == id }
}

// isMessageNew matches message.new of the message with the given text.
func isMessageNew(text string) func(frame) bool {
	return func(f frame) bool {
		if f.Type != wire.TypeMessageNew {
			return false
		}
		var p struct {
			Message parley.Message `json:"message"`
		}
		return json.Unmarshal(f.Payload, &p) == nil && p.Message.Text == text
	}
}

// isEvent matches a frame of typ whose payload has the given string field.
func isEvent(typ, field, value string) func(frame) bool {
	return func(f frame) bool {
		if f.Type != typ {
			return false
		}
		var p map[string]any
		return json.Unmarshal(f.Payload, &p) == nil && p[field] == value
	}
}

// isConversationUpdated matches conversation.updated of a conversation.
func isConversationUpdated(id string) func(frame) bool {
	return func(f frame) bool {
		if f.Type != wire.TypeConversationUpdated {
			return false
		}
		var p wire.ConversationUpdated
		return json.Unmarshal(f.Payload, &p) == nil && p.Conversation.ID == id
	}
}

// none fails the test if any of frames matches.
func none(t *testing.T, frames []frame, match func(frame) bool, what string) {
	t.Helper()
	for _, f := range frames {
		if match(f) {
			t.Fatalf("got %s: %v", what, f)
		}
	}
}

// wantError fails the test unless f is an error frame with code and id.
func wantError(t *testing.T, f frame, code parley.Code, id string) wire.Error {
	t.Helper()
	if f.Type != wire.TypeError || f.ID != id {
		t.Fatalf("got %v, want error %s with id %q", f, code, id)
	}
	e := decode[wire.Error](t, f)
	if e.Code != code {
		t.Fatalf("error code %s (%s), want %s", e.Code, e.Message, code)
	}
	return e
}

// eventually polls cond until it holds or wait passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
