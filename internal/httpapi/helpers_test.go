package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/server"
)

// node is a whole Parley node behind a real HTTP server, as clients see it.
type node struct {
	t   *testing.T
	srv *server.Server
	url string
	hc  *http.Client
	log *syncBuffer
	// ids numbers client_message_ids.
	ids atomic.Int64
}

// config returns the test configuration of a node: a fresh data folder and
// the cheapest password hash.
func config(t *testing.T) server.Config {
	return server.Config{
		DataDir: t.TempDir(),
		Argon2:  auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1},
	}
}

// startNode starts a node with the default limits.
func startNode(t *testing.T) *node {
	t.Helper()
	return startNodeWith(t, config(t))
}

// startNodeWith starts a node with cfg; it is stopped when the test ends.
func startNodeWith(t *testing.T, cfg server.Config) *node {
	t.Helper()
	logs := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := server.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open server: %v", err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.Close()
		if err := srv.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
	})
	return &node{t: t, srv: srv, url: ts.URL, hc: ts.Client(), log: logs}
}

// limitsNode starts a node with the given chat limits.
func limitsNode(t *testing.T, l chat.Limits) *node {
	t.Helper()
	cfg := config(t)
	cfg.Limits = l
	return startNodeWith(t, cfg)
}

// response is an answer read in full.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// raw is a request body sent as is, not encoded as JSON.
type raw string

// do sends a request. body is nil (no body), a raw (sent as is) or any
// other value (encoded as JSON). token, if not empty, is sent as a bearer
// token.
func (n *node) do(method, path, token string, body any) *response {
	n.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case raw:
		rd = strings.NewReader(string(b))
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			n.t.Fatalf("encode body: %v", err)
		}
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequest(method, n.url+path, rd)
	if err != nil {
		n.t.Fatalf("new request: %v", err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return n.send(req)
}

// send sends req and reads the whole answer.
func (n *node) send(req *http.Request) *response {
	n.t.Helper()
	resp, err := n.hc.Do(req)
	if err != nil {
		n.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		n.t.Fatalf("%s %s: read body: %v", req.Method, req.URL.Path, err)
	}
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// want fails the test unless the answer has status; then, if v is not
// nil, it decodes the JSON body into v.
func (r *response) want(t *testing.T, status int, v any) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
	if got := r.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options %q, want nosniff", got)
	}
	if v == nil {
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// problemBody is an RFC 9457 problem as the contract extends it.
type problemBody struct {
	Type         string      `json:"type"`
	Title        string      `json:"title"`
	Status       int         `json:"status"`
	Detail       string      `json:"detail"`
	Code         parley.Code `json:"code"`
	RetryAfterMS *int64      `json:"retry_after_ms"`
}

// statusOf is the contract's table of error codes and statuses.
var statusOf = map[parley.Code]int{
	parley.CodeInvalidArgument: 400,
	parley.CodeUnauthenticated: 401,
	parley.CodeForbidden:       403,
	parley.CodeNotFound:        404,
	parley.CodeConflict:        409,
	parley.CodePayloadTooLarge: 413,
	parley.CodeRateLimited:     429,
	parley.CodeInternal:        500,
	parley.CodeUnavailable:     503,
}

// wantProblem fails the test unless the answer is a well-formed problem
// with code and the status of code; it returns the problem.
func (r *response) wantProblem(t *testing.T, code parley.Code) problemBody {
	t.Helper()
	return r.wantProblemStatus(t, code, statusOf[code])
}

// wantProblemStatus is wantProblem with an explicit status (for 405).
func (r *response) wantProblemStatus(t *testing.T, code parley.Code, status int) problemBody {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d (%s); body %s", r.Status, status, code, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	if got := r.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options %q, want nosniff", got)
	}
	var p problemBody
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("decode problem %s: %v", r.Body, err)
	}
	want := problemBody{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: p.Detail, Code: code, RetryAfterMS: p.RetryAfterMS}
	if p != want {
		t.Errorf("problem %+v, want %+v", p, want)
	}
	if p.Detail == "" {
		t.Errorf("problem has no detail: %s", r.Body)
	}
	if (code == parley.CodeRateLimited) != (p.RetryAfterMS != nil) {
		t.Errorf("retry_after_ms %v with code %s", p.RetryAfterMS, code)
	}
	if code == parley.CodeUnauthenticated && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("401 with WWW-Authenticate %q, want Bearer", r.Header.Get("WWW-Authenticate"))
	}
	return p
}

// tokens is the contract's Tokens object.
type tokens = auth.Tokens

const password = "correct horse battery"

// register creates an account and returns its tokens.
func (n *node) register(username string) tokens {
	n.t.Helper()
	var tok tokens
	n.do("POST", "/api/auth/register", "", map[string]string{"username": username, "password": password}).want(n.t, http.StatusCreated, &tok)
	return tok
}

// users registers one account per name.
func (n *node) users(names ...string) []tokens {
	n.t.Helper()
	out := make([]tokens, len(names))
	for i, name := range names {
		out[i] = n.register(name)
	}
	return out
}

// direct creates (or finds) the direct conversation of a and b.
func (n *node) direct(a, b tokens) parley.Conversation {
	n.t.Helper()
	var c parley.Conversation
	r := n.do("POST", "/api/conversations", a.AccessToken, map[string]any{"type": "direct", "member_ids": []string{b.User.ID}})
	if r.Status != http.StatusCreated && r.Status != http.StatusOK {
		n.t.Fatalf("create direct: status %d: %s", r.Status, r.Body)
	}
	r.want(n.t, r.Status, &c)
	return c
}

// group creates a group of the creator and others.
func (n *node) group(creator tokens, title string, others ...tokens) parley.Conversation {
	n.t.Helper()
	ids := make([]string, len(others))
	for i, o := range others {
		ids[i] = o.User.ID
	}
	var c parley.Conversation
	n.do("POST", "/api/conversations", creator.AccessToken, map[string]any{"type": "group", "title": title, "member_ids": ids}).want(n.t, http.StatusCreated, &c)
	return c
}

// sendText sends a text message with a fresh client_message_id.
func (n *node) sendText(from tokens, convID, text string) parley.Message {
	n.t.Helper()
	var m parley.Message
	n.do("POST", "/api/conversations/"+convID+"/messages", from.AccessToken, map[string]any{
		"client_message_id": fmt.Sprintf("%s-%d", text, n.ids.Add(1)), "kind": "text", "text": text,
	}).want(n.t, http.StatusCreated, &m)
	return m
}

// conversation reads a conversation as the holder of tok sees it.
func (n *node) conversation(tok tokens, id string) parley.Conversation {
	n.t.Helper()
	var c parley.Conversation
	n.do("GET", "/api/conversations/"+id, tok.AccessToken, nil).want(n.t, http.StatusOK, &c)
	return c
}

// history is the answer of GET .../messages.
type history struct {
	Messages []parley.Message `json:"messages"`
	HasMore  bool             `json:"has_more"`
}

// syncBuffer is a log sink that is safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls cond until it holds, failing the test after 5 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
