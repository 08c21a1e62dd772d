package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/internal/pgtest"
	"github.com/parley-chat/parley/internal/s3test"
	"github.com/parley-chat/parley/internal/server"
	"github.com/parley-chat/parley/internal/testnode"
)

// TestMain drops the PostgreSQL test database that a cluster run creates,
// and stops the S3 server the media tests start.
func TestMain(m *testing.M) {
	os.Exit(pgtest.Wrap(func() int { return s3test.Wrap(m.Run) }))
}

// deadline bounds every wait for something the contract says must happen.
const deadline = 10 * time.Second

// obj is a JSON object as an outside client sees it.
type obj = map[string]any

// node is the server under test, as its clients see it: one real Parley
// node behind a real HTTP server on loopback, or, with
// PARLEY_TEST_CLUSTER=N, a cluster of N nodes (PostgreSQL and NATS) over
// which requests and WebSocket dials are spread in turn, as a load
// balancer would.
type node struct {
	set *testnode.Nodes
	// The first node's server and addresses, for the tests that need one
	// node in particular (a Host header to match, a node to stop).
	srv   *server.Server
	url   string // http://127.0.0.1:PORT
	wsURL string // ws://127.0.0.1:PORT/ws
	host  string // 127.0.0.1:PORT
	hc    *http.Client
	names *atomic.Int64
	turn  *atomic.Uint64
	// pinned, when not nil, takes every request and dial (see at).
	pinned *testnode.Node
}

// startNode starts the server under test with the default configuration,
// changed by the given functions, and stops it when the test ends.
func startNode(t *testing.T, change ...func(*server.Config)) *node {
	t.Helper()
	return wrapNodes(testnode.Start(t, change...))
}

func wrapNodes(set *testnode.Nodes) *node {
	first := set.Nodes[0]
	return &node{set: set, srv: first.Server, url: first.URL, wsURL: first.WSURL, host: first.Host, hc: first.HTTP,
		names: new(atomic.Int64), turn: new(atomic.Uint64)}
}

// at returns the same server as seen through its node number i alone: a
// client connected there, or a request sent there.
func (n *node) at(i int) *node {
	cp := *n
	cp.pinned = n.set.Nodes[i]
	return &cp
}

// pick returns the node for the next request or dial: the pinned one, or
// the next in turn.
func (n *node) pick() *testnode.Node {
	if n.pinned != nil {
		return n.pinned
	}
	nodes := n.set.Nodes
	return nodes[int(n.turn.Add(1)%uint64(len(nodes)))]
}

// stop stops every node gracefully.
func (n *node) stop() {
	for _, nd := range n.set.Nodes {
		nd.Stop()
	}
}

// ---------------------------------------------------------------- REST

// resp is one HTTP answer with its body decoded as raw JSON (nil if empty
// or not JSON).
type resp struct {
	method, path string
	status       int
	header       http.Header
	body         []byte
	v            any
}

func (r *resp) String() string {
	return fmt.Sprintf("%s %s: %d %s", r.method, r.path, r.status, truncate(string(r.body), 400))
}

// do sends a request. body is nil (no body), a string or []byte (sent as
// is) or anything else (sent as JSON).
func (n *node) do(t testing.TB, method, path, token string, body any) *resp {
	t.Helper()
	r, err := n.doErr(method, path, token, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// doErr is do for goroutines other than the test's: it returns its error.
func (n *node) doErr(method, path, token string, body any) (*resp, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("encode body: %w", err)
		}
		rd = bytes.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	nd := n.pick()
	req, err := http.NewRequestWithContext(ctx, method, nd.URL+path, rd)
	if err != nil {
		return nil, fmt.Errorf("new request: %w", err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := nd.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	r := &resp{method: method, path: path, status: res.StatusCode, header: res.Header, body: data}
	if len(bytes.TrimSpace(data)) > 0 {
		r.v, _ = decodeJSON(data)
	}
	return r, nil
}

// want checks the status and, for a JSON answer, that its body is JSON with
// snake_case names; it returns the body as an object (nil for no body).
func (r *resp) want(t testing.TB, status int) obj {
	t.Helper()
	if r.status != status {
		t.Fatalf("%v, want status %d", r, status)
	}
	if status == http.StatusNoContent {
		if len(r.body) != 0 {
			t.Errorf("%s %s: 204 with a body %q", r.method, r.path, r.body)
		}
		return nil
	}
	mt, _, _ := mime.ParseMediaType(r.header.Get("Content-Type"))
	if mt != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", r.method, r.path, r.header.Get("Content-Type"))
	}
	o, ok := r.v.(obj)
	if !ok {
		t.Fatalf("%v: body is not a JSON object", r)
	}
	checkSnake(t, r.method+" "+r.path, o)
	return o
}

// wantProblem checks an RFC 9457 problem with the contract's code member
// and the status that the code maps to; it returns the problem.
func (r *resp) wantProblem(t testing.TB, status int, code string) obj {
	t.Helper()
	if r.status != status {
		t.Fatalf("%v, want a %d %s problem", r, status, code)
	}
	checkProblem(t, r.method+" "+r.path, r.header, r.body, status, code)
	o, _ := r.v.(obj)
	return o
}

func checkProblem(t testing.TB, where string, h http.Header, body []byte, status int, code string) {
	t.Helper()
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt != "application/problem+json" {
		t.Errorf("%s: Content-Type %q, want application/problem+json", where, h.Get("Content-Type"))
	}
	v, err := decodeJSON(body)
	o, ok := v.(obj)
	if err != nil || !ok {
		t.Fatalf("%s: problem body %q is not a JSON object", where, body)
	}
	checkSnake(t, where, o)
	if s := wantString(t, where, o, "type"); s == "" {
		t.Errorf("%s: empty problem type", where)
	}
	if s := wantString(t, where, o, "title"); s == "" {
		t.Errorf("%s: empty problem title", where)
	}
	wantString(t, where, o, "detail")
	if got := wantInt(t, where, o, "status"); got != int64(status) {
		t.Errorf("%s: problem status %d, want %d", where, got, status)
	}
	if got := wantString(t, where, o, "code"); got != code {
		t.Errorf("%s: problem code %q, want %q", where, got, code)
	}
}

// user is a registered account.
type user struct {
	id, name        string
	access, refresh string
}

// register creates an account named prefix plus a number unique in the
// node, and checks the Tokens shape of the answer.
func (n *node) register(t testing.TB, prefix string) user {
	t.Helper()
	name := fmt.Sprintf("%s%d", prefix, n.names.Add(1))
	r := n.do(t, "POST", "/api/auth/register", "", obj{"username": name, "password": "correct horse"})
	toks := r.want(t, http.StatusCreated)
	checkTokens(t, "register", toks)
	u := toks["user"].(obj)
	return user{id: u["id"].(string), name: name, access: toks["access_token"].(string), refresh: toks["refresh_token"].(string)}
}

func (n *node) users(t testing.TB, prefixes ...string) []user {
	t.Helper()
	out := make([]user, len(prefixes))
	for i, p := range prefixes {
		out[i] = n.register(t, p)
	}
	return out
}

// conversation creates a conversation and returns it (201).
func (n *node) createGroup(t testing.TB, by user, title string, members ...user) obj {
	t.Helper()
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.id
	}
	c := n.do(t, "POST", "/api/conversations", by.access, obj{"type": "group", "title": title, "member_ids": ids}).want(t, http.StatusCreated)
	checkConversation(t, "created group", c)
	return c
}

func (n *node) createDirect(t testing.TB, by, other user) obj {
	t.Helper()
	c := n.do(t, "POST", "/api/conversations", by.access, obj{"type": "direct", "member_ids": []string{other.id}}).want(t, http.StatusCreated)
	checkConversation(t, "created direct", c)
	return c
}

func (n *node) getConversation(t testing.TB, by user, id string) obj {
	t.Helper()
	c := n.do(t, "GET", "/api/conversations/"+id, by.access, nil).want(t, http.StatusOK)
	checkConversation(t, "conversation", c)
	return c
}

var cmids atomic.Int64

// newCMID returns a client_message_id unique in the test binary.
func newCMID() string { return fmt.Sprintf("cmid-%d", cmids.Add(1)) }

// send posts a text message over REST and returns it (201).
func (n *node) send(t testing.TB, by user, convID, text string) obj {
	t.Helper()
	m := n.do(t, "POST", "/api/conversations/"+convID+"/messages", by.access,
		obj{"client_message_id": newCMID(), "kind": "text", "text": text}).want(t, http.StatusCreated)
	checkMessage(t, "sent message", m)
	return m
}

// history reads a page of history and checks its shape.
func (n *node) history(t testing.TB, by user, convID, query string) ([]obj, bool) {
	t.Helper()
	path := "/api/conversations/" + convID + "/messages"
	if query != "" {
		path += "?" + query
	}
	o := n.do(t, "GET", path, by.access, nil).want(t, http.StatusOK)
	msgs := wantObjects(t, "history", o, "messages")
	for i, m := range msgs {
		checkMessage(t, fmt.Sprintf("history[%d]", i), m)
	}
	return msgs, wantBool(t, "history", o, "has_more")
}

// ---------------------------------------------------------------- WebSocket

// frame is one server frame as raw JSON.
type frame struct {
	raw     []byte
	binary  bool
	typ, id string
	hasID   bool
	payload obj // nil when absent
	obj     obj
}

func (f frame) String() string { return truncate(string(f.raw), 400) }

// wsClient is a real WebSocket client. A goroutine reads every frame into
// a queue, so that reading never cancels the connection.
type wsClient struct {
	t      testing.TB
	name   string
	c      *websocket.Conn
	frames chan frame
	done   chan struct{} // closed when the reader stops
	err    error         // the read error, set before done is closed
	wmu    sync.Mutex
	// pending holds frames read past by reply, in order; only the test
	// goroutine uses it.
	pending []frame
}

// dialOpts describes a WebSocket dial.
type dialOpts struct {
	token     string // Authorization: Bearer token, if set
	origin    string
	subprotos []string
	query     string
}

// dialRaw dials /ws and returns the connection, or the HTTP answer of a
// refused upgrade.
func (n *node) dialRaw(t testing.TB, o dialOpts) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	h := http.Header{}
	if o.token != "" {
		h.Set("Authorization", "Bearer "+o.token)
	}
	if o.origin != "" {
		h.Set("Origin", o.origin)
	}
	// An Origin is compared with the Host of the node dialed, which the
	// tests take from the first node.
	nd := n.set.Nodes[0]
	if o.origin == "" || n.pinned != nil {
		nd = n.pick()
	}
	u := nd.WSURL
	if o.query != "" {
		u += "?" + o.query
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	return websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h, Subprotocols: o.subprotos, HTTPClient: nd.HTTP})
}

// wrap starts reading c.
func wrap(t testing.TB, name string, c *websocket.Conn) *wsClient {
	c.SetReadLimit(4 << 20)
	w := &wsClient{t: t, name: name, c: c, frames: make(chan frame, 8192), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			typ, data, err := c.Read(context.Background())
			if err != nil {
				w.err = err
				return
			}
			f := frame{raw: data, binary: typ == websocket.MessageBinary}
			v, jerr := decodeJSON(data)
			o, ok := v.(obj)
			if jerr != nil || !ok {
				f.typ = "<not a JSON object>"
			} else {
				f.obj = o
				f.typ, _ = o["type"].(string)
				if id, ok := o["id"]; ok {
					f.hasID = true
					f.id, _ = id.(string)
				}
				f.payload, _ = o["payload"].(obj)
			}
			select {
			case w.frames <- f:
			default:
				w.err = fmt.Errorf("test client queue overflow")
				c.CloseNow()
				return
			}
		}
	}()
	t.Cleanup(func() { c.CloseNow() })
	return w
}

// connect dials with the user's access token in the header, expects hello
// first and returns the client with the hello payload.
func (n *node) connect(t testing.TB, u user, name string) (*wsClient, obj) {
	t.Helper()
	c, res, err := n.dialRaw(t, dialOpts{token: u.access})
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", name, err, res)
	}
	w := wrap(t, name, c)
	f := w.next()
	hello := checkHello(t, f, u.id, "")
	return w, hello
}

// write sends v as a JSON text frame.
func (w *wsClient) write(v any) {
	w.t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		w.t.Fatalf("encode frame: %v", err)
	}
	w.writeRaw(websocket.MessageText, data)
}

func (w *wsClient) writeRaw(typ websocket.MessageType, data []byte) {
	w.t.Helper()
	w.wmu.Lock()
	defer w.wmu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := w.c.Write(ctx, typ, data); err != nil {
		w.t.Fatalf("%s: write: %v", w.name, err)
	}
}

// request sends a frame of type typ with an id and payload.
func (w *wsClient) request(typ, id string, payload any) {
	w.t.Helper()
	f := obj{"type": typ}
	if id != "" {
		f["id"] = id
	}
	if payload != nil {
		f["payload"] = payload
	}
	w.write(f)
}

// pull returns the next frame: one set aside by reply first, then the
// queue. It fails after the deadline, or when the connection has ended
// and nothing is left.
func (w *wsClient) pull(what string, timer <-chan time.Time) frame {
	w.t.Helper()
	if len(w.pending) > 0 {
		f := w.pending[0]
		w.pending = w.pending[1:]
		return f
	}
	select {
	case f := <-w.frames:
		checkFrame(w.t, w.name, f)
		return f
	case <-w.done:
		select {
		case f := <-w.frames:
			checkFrame(w.t, w.name, f)
			return f
		default:
		}
		w.t.Fatalf("%s: closed (%v) before %s", w.name, w.err, what)
	case <-timer:
		w.t.Fatalf("%s: no %s within %v", w.name, what, deadline)
	}
	return frame{}
}

// next returns the next frame.
func (w *wsClient) next() frame {
	w.t.Helper()
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	return w.pull("frame", timer.C)
}

// until reads frames until match accepts one and returns it with the
// frames skipped (consumed) before it.
func (w *wsClient) until(what string, match func(frame) bool) (frame, []frame) {
	w.t.Helper()
	var skipped []frame
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	for {
		f := w.pull(fmt.Sprintf("%s (skipped %v)", what, skipped), timer.C)
		if match(f) {
			return f, skipped
		}
		skipped = append(skipped, f)
	}
}

// reply picks out the frame answering the request id; the frames before
// it stay to be read.
func (w *wsClient) reply(id string) frame {
	w.t.Helper()
	for i, f := range w.pending {
		if f.hasID && f.id == id {
			w.pending = append(w.pending[:i:i], w.pending[i+1:]...)
			return f
		}
	}
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	for {
		var f frame
		select {
		case f = <-w.frames:
			checkFrame(w.t, w.name, f)
		case <-w.done:
			select {
			case f = <-w.frames:
				checkFrame(w.t, w.name, f)
			default:
				w.t.Fatalf("%s: closed (%v) before the reply to %s", w.name, w.err, id)
			}
		case <-timer.C:
			w.t.Fatalf("%s: no reply to %s within %v", w.name, id, deadline)
		}
		if f.hasID && f.id == id {
			return f
		}
		w.pending = append(w.pending, f)
	}
}

// event waits for the next frame of type typ (without an id) that match
// accepts (nil accepts any), and returns it with the frames skipped.
func (w *wsClient) event(typ string, match func(obj) bool) (frame, []frame) {
	w.t.Helper()
	return w.until(typ, func(f frame) bool {
		return f.typ == typ && !f.hasID && (match == nil || match(f.payload))
	})
}

// closed waits for the connection to end and returns the close code the
// server sent (-1 if none).
func (w *wsClient) closed() websocket.StatusCode {
	w.t.Helper()
	select {
	case <-w.done:
		return websocket.CloseStatus(w.err)
	case <-time.After(deadline):
		w.t.Fatalf("%s: still open after %v", w.name, deadline)
	}
	return -1
}

// remaining returns the frames queued so far without waiting.
func (w *wsClient) remaining() []frame {
	out := w.pending
	w.pending = nil
	for {
		select {
		case f := <-w.frames:
			out = append(out, f)
		default:
			return out
		}
	}
}

// none fails if any of frames matches bad.
func none(t testing.TB, who, what string, frames []frame, bad func(frame) bool) {
	t.Helper()
	for _, f := range frames {
		if bad(f) {
			t.Errorf("%s got %s, which the contract forbids: %v", who, what, f)
		}
	}
}

func ofType(typ string) func(frame) bool { return func(f frame) bool { return f.typ == typ } }

// wantError checks an error frame replying to id with code.
func wantError(t testing.TB, f frame, id, code string) obj {
	t.Helper()
	if f.typ != "error" {
		t.Fatalf("got %v, want an error %s", f, code)
	}
	if id == "" && f.hasID {
		t.Errorf("error %v carries an id, want none", f)
	}
	if id != "" && f.id != id {
		t.Errorf("error %v, want id %q", f, id)
	}
	p := f.payload
	if p == nil {
		t.Fatalf("error without payload: %v", f)
	}
	if got := wantString(t, "error payload", p, "code"); got != code {
		t.Errorf("error code %q, want %q: %v", got, code, f)
	}
	wantString(t, "error payload", p, "message")
	if v, ok := p["retry_after_ms"]; ok && code != "rate_limited" {
		t.Errorf("retry_after_ms %v on a %s error", v, code)
	}
	return p
}

// ---------------------------------------------------------------- shapes

var (
	uuidRE  = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	timeRE  = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$`)
	snakeRE = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
)

func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("data after the JSON value")
	}
	return v, nil
}

// checkSnake checks that every member name in v is snake_case.
func checkSnake(t testing.TB, where string, v any) {
	t.Helper()
	switch x := v.(type) {
	case obj:
		for k, e := range x {
			if !snakeRE.MatchString(k) {
				t.Errorf("%s: member name %q is not snake_case", where, k)
			}
			checkSnake(t, where+"."+k, e)
		}
	case []any:
		for i, e := range x {
			checkSnake(t, fmt.Sprintf("%s[%d]", where, i), e)
		}
	}
}

func member(t testing.TB, where string, o obj, key string) any {
	t.Helper()
	v, ok := o[key]
	if !ok {
		t.Fatalf("%s: no member %q in %v", where, key, o)
	}
	return v
}

func wantString(t testing.TB, where string, o obj, key string) string {
	t.Helper()
	s, ok := member(t, where, o, key).(string)
	if !ok {
		t.Fatalf("%s: %q is %#v, want a string", where, key, o[key])
	}
	return s
}

func wantInt(t testing.TB, where string, o obj, key string) int64 {
	t.Helper()
	n, ok := member(t, where, o, key).(json.Number)
	if !ok {
		t.Fatalf("%s: %q is %#v, want a number", where, key, o[key])
	}
	i, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		t.Fatalf("%s: %q is %s, want an integer", where, key, n)
	}
	return i
}

func wantBool(t testing.TB, where string, o obj, key string) bool {
	t.Helper()
	b, ok := member(t, where, o, key).(bool)
	if !ok {
		t.Fatalf("%s: %q is %#v, want a boolean", where, key, o[key])
	}
	return b
}

func wantNull(t testing.TB, where string, o obj, key string) {
	t.Helper()
	if v := member(t, where, o, key); v != nil {
		t.Errorf("%s: %q is %#v, want null", where, key, v)
	}
}

func wantObject(t testing.TB, where string, o obj, key string) obj {
	t.Helper()
	v, ok := member(t, where, o, key).(obj)
	if !ok {
		t.Fatalf("%s: %q is %#v, want an object", where, key, o[key])
	}
	return v
}

func wantArray(t testing.TB, where string, o obj, key string) []any {
	t.Helper()
	v, ok := member(t, where, o, key).([]any)
	if !ok {
		t.Fatalf("%s: %q is %#v, want an array", where, key, o[key])
	}
	return v
}

func wantObjects(t testing.TB, where string, o obj, key string) []obj {
	t.Helper()
	arr := wantArray(t, where, o, key)
	out := make([]obj, len(arr))
	for i, e := range arr {
		eo, ok := e.(obj)
		if !ok {
			t.Fatalf("%s: %s[%d] is %#v, want an object", where, key, i, e)
		}
		out[i] = eo
	}
	return out
}

func wantUUID(t testing.TB, where string, o obj, key string) string {
	t.Helper()
	s := wantString(t, where, o, key)
	if !uuidRE.MatchString(s) {
		t.Errorf("%s: %q is %q, want a UUID", where, key, s)
	}
	return s
}

// wantTime checks an RFC 3339 UTC time with exactly three fractional
// digits and Z.
func wantTime(t testing.TB, where string, o obj, key string) time.Time {
	t.Helper()
	s := wantString(t, where, o, key)
	if !timeRE.MatchString(s) {
		t.Errorf("%s: %q is %q, want RFC 3339 UTC with milliseconds (2026-11-22T01:30:00.123Z)", where, key, s)
	}
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Errorf("%s: %q is %q: %v", where, key, s, err)
	}
	return tm
}

func wantEnum(t testing.TB, where string, o obj, key string, allowed ...string) string {
	t.Helper()
	s := wantString(t, where, o, key)
	for _, a := range allowed {
		if s == a {
			return s
		}
	}
	t.Errorf("%s: %q is %q, want one of %v", where, key, s, allowed)
	return s
}

func checkUser(t testing.TB, where string, u obj) {
	t.Helper()
	wantUUID(t, where, u, "id")
	wantString(t, where, u, "username")
	wantString(t, where, u, "display_name")
	wantTime(t, where, u, "created_at")
}

func checkTokens(t testing.TB, where string, o obj) {
	t.Helper()
	checkSnake(t, where, o)
	checkUser(t, where+".user", wantObject(t, where, o, "user"))
	if wantString(t, where, o, "access_token") == "" {
		t.Errorf("%s: empty access_token", where)
	}
	if wantString(t, where, o, "refresh_token") == "" {
		t.Errorf("%s: empty refresh_token", where)
	}
	if tt := wantString(t, where, o, "token_type"); tt != "Bearer" {
		t.Errorf("%s: token_type %q, want Bearer", where, tt)
	}
	if wantInt(t, where, o, "expires_in") <= 0 {
		t.Errorf("%s: expires_in is not positive", where)
	}
}

func checkMember(t testing.TB, where string, m obj) {
	t.Helper()
	wantUUID(t, where, m, "user_id")
	wantEnum(t, where, m, "role", "admin", "member")
	wantTime(t, where, m, "joined_at")
	d := wantInt(t, where, m, "delivered_seq")
	r := wantInt(t, where, m, "read_seq")
	if r > d || r < 0 {
		t.Errorf("%s: read_seq %d, delivered_seq %d: read moves delivered", where, r, d)
	}
}

func checkMessage(t testing.TB, where string, m obj) {
	t.Helper()
	checkSnake(t, where, m)
	wantUUID(t, where, m, "id")
	wantUUID(t, where, m, "conversation_id")
	if wantInt(t, where, m, "seq") < 1 {
		t.Errorf("%s: seq below 1", where)
	}
	wantUUID(t, where, m, "sender_id")
	wantString(t, where, m, "client_message_id")
	wantEnum(t, where, m, "kind", "text", "image", "video", "file", "system")
	wantString(t, where, m, "text")
	wantTime(t, where, m, "created_at")
}

func checkConversation(t testing.TB, where string, c obj) {
	t.Helper()
	checkSnake(t, where, c)
	wantUUID(t, where, c, "id")
	typ := wantEnum(t, where, c, "type", "direct", "group")
	switch typ {
	case "direct":
		wantNull(t, where, c, "title")
	case "group":
		wantString(t, where, c, "title")
	}
	members := wantObjects(t, where, c, "members")
	for i, m := range members {
		checkMember(t, fmt.Sprintf("%s.members[%d]", where, i), m)
	}
	if typ == "direct" && len(members) != 2 {
		t.Errorf("%s: a direct conversation with %d members", where, len(members))
	}
	last := wantInt(t, where, c, "last_seq")
	lm := member(t, where, c, "last_message")
	switch {
	case last == 0 && lm != nil:
		t.Errorf("%s: last_message %v with last_seq 0, want null", where, lm)
	case last > 0:
		m, ok := lm.(obj)
		if !ok {
			t.Errorf("%s: last_message %#v with last_seq %d, want a Message", where, lm, last)
			break
		}
		checkMessage(t, where+".last_message", m)
		if s := wantInt(t, where, m, "seq"); s != last {
			t.Errorf("%s: last_message seq %d, last_seq %d", where, s, last)
		}
	}
	rs := wantInt(t, where, c, "read_seq")
	uc := wantInt(t, where, c, "unread_count")
	if rs < 0 || uc < 0 || uc > last-rs {
		t.Errorf("%s: read_seq %d unread_count %d last_seq %d", where, rs, uc, last)
	}
	created := wantTime(t, where, c, "created_at")
	updated := wantTime(t, where, c, "updated_at")
	if updated.Before(created) {
		t.Errorf("%s: updated_at %v before created_at %v", where, updated, created)
	}
}

// checkFrame checks what every server frame must be: a JSON object in a
// text frame, with a string type, an optional string id, an optional
// object payload and snake_case names.
func checkFrame(t testing.TB, who string, f frame) {
	t.Helper()
	if f.binary {
		t.Errorf("%s: binary frame from the server: %v", who, f)
	}
	if f.obj == nil {
		t.Fatalf("%s: frame is not a JSON object: %v", who, f)
	}
	if _, ok := f.obj["type"].(string); !ok {
		t.Errorf("%s: frame without a string type: %v", who, f)
	}
	if v, ok := f.obj["id"]; ok {
		if _, ok := v.(string); !ok {
			t.Errorf("%s: frame id is not a string: %v", who, f)
		}
	}
	if v, ok := f.obj["payload"]; ok {
		if _, ok := v.(obj); !ok {
			t.Errorf("%s: payload is not an object: %v", who, f)
		}
	}
	checkSnake(t, who+" "+f.typ, f.obj)
	if len(f.raw) > 1<<20 {
		t.Errorf("%s: frame of %d bytes, over 1 MiB", who, len(f.raw))
	}
}

// checkHello checks the hello frame of userID, replying to id.
func checkHello(t testing.TB, f frame, userID, id string) obj {
	t.Helper()
	if f.typ != "hello" {
		t.Fatalf("first frame %v, want hello", f)
	}
	if f.id != id || (id == "" && f.hasID) {
		t.Errorf("hello id %q (present %v), want %q", f.id, f.hasID, id)
	}
	p := f.payload
	if p == nil {
		t.Fatalf("hello without payload: %v", f)
	}
	if got := wantUUID(t, "hello", p, "user_id"); got != userID {
		t.Errorf("hello user_id %q, want %q", got, userID)
	}
	wantUUID(t, "hello", p, "session_id")
	wantTime(t, "hello", p, "server_time")
	wantInt(t, "hello", p, "heartbeat_s")
	return p
}

func checkPresence(t testing.TB, where string, p obj) string {
	t.Helper()
	wantUUID(t, where, p, "user_id")
	st := wantEnum(t, where, p, "status", "online", "offline")
	wantTime(t, where, p, "last_seen_at")
	return st
}

// ---------------------------------------------------------------- misc

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func ids(os []obj, key string) []string {
	out := make([]string, len(os))
	for i, o := range os {
		out[i], _ = o[key].(string)
	}
	return out
}

func seqs(msgs []obj) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		n, _ := m["seq"].(json.Number)
		out[i], _ = n.Int64()
	}
	return out
}

func intOf(v any) int64 {
	n, _ := v.(json.Number)
	i, _ := n.Int64()
	return i
}

// memberOf returns the member object of userID in a conversation.
func memberOf(t testing.TB, c obj, userID string) obj {
	t.Helper()
	for _, m := range wantObjects(t, "conversation", c, "members") {
		if m["user_id"] == userID {
			return m
		}
	}
	t.Fatalf("%s is not a member of %v", userID, c["id"])
	return nil
}

func hasMember(c obj, userID string) bool {
	ms, _ := c["members"].([]any)
	for _, m := range ms {
		if mo, ok := m.(obj); ok && mo["user_id"] == userID {
			return true
		}
	}
	return false
}

// tick waits until the millisecond clock has moved on, so that a time
// assigned next is later than any assigned before. It is not an assertion.
func tick() { time.Sleep(3 * time.Millisecond) }
