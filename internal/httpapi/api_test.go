package httpapi_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/httpapi"
	"github.com/parley-chat/parley/internal/localbus"
	"github.com/parley-chat/parley/internal/sqlstore"
)

func TestOperationalEndpoints(t *testing.T) {
	n := startNode(t)

	for _, path := range []string{"/healthz", "/readyz"} {
		t.Run(path, func(t *testing.T) {
			r := n.do("GET", path, "", nil)
			r.want(t, http.StatusOK, nil)
			if string(r.Body) != "ok" {
				t.Errorf("body %q, want ok", r.Body)
			}
		})
	}
	t.Run("/metrics", func(t *testing.T) {
		r := n.do("GET", "/metrics", "", nil)
		r.want(t, http.StatusOK, nil)
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("Content-Type %q, want the Prometheus text format", ct)
		}
		for _, want := range []string{
			"parley_messages_stored_total",
			`parley_http_requests_total{route="GET /healthz",status="200"} 1`,
			`parley_http_requests_total{route="GET /readyz",status="200"} 1`,
		} {
			if !strings.Contains(string(r.Body), want) {
				t.Errorf("metrics lack %q", want)
			}
		}
	})
	t.Run("messages stored are counted", func(t *testing.T) {
		us := n.users("alice", "bob")
		c := n.direct(us[0], us[1])
		n.sendText(us[0], c.ID, "one")
		n.sendText(us[1], c.ID, "two")
		// The counter follows the bus, which is asynchronous: poll.
		waitFor(t, func() bool {
			return strings.Contains(string(n.do("GET", "/metrics", "", nil).Body), "parley_messages_stored_total 2")
		})
	})
}

func TestReadyzUnavailable(t *testing.T) {
	n := startNode(t)
	// With the store closed, the node is up but not ready.
	if err := n.srv.Close(); err != nil {
		t.Fatal(err)
	}
	n.do("GET", "/healthz", "", nil).want(t, http.StatusOK, nil)
	p := n.do("GET", "/readyz", "", nil).wantProblem(t, parley.CodeUnavailable)
	if strings.Contains(p.Detail, "closed") {
		t.Errorf("detail %q leaks the cause", p.Detail)
	}
	if !strings.Contains(n.log.String(), `route="GET /readyz"`) {
		t.Errorf("the cause was not logged; logs:\n%s", n.log)
	}
}

func TestRouting(t *testing.T) {
	n := startNode(t)
	alice := n.register("alice")

	// "/" and the browser client's own files belong to package web in
	// the assembled node; every other unknown path is the API's 404.
	notFound := []struct{ method, path string }{
		{"GET", "/no-such-page"},
		{"GET", "/no-such-file.html"},
		{"GET", "/api"},
		{"GET", "/api/"},
		{"GET", "/api/nope"},
		{"POST", "/api/auth/nope"},
		{"GET", "/api/conversations/x/nope"},
		{"GET", "/api/users/me/extra"},
	}
	for _, c := range notFound {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			p := n.do(c.method, c.path, alice.AccessToken, nil).wantProblem(t, parley.CodeNotFound)
			if strings.Contains(p.Detail, "<") {
				t.Errorf("detail %q looks like HTML", p.Detail)
			}
		})
	}

	wrongMethod := []struct{ method, path, allow string }{
		{"PUT", "/api/conversations", "GET, HEAD, POST"},
		{"GET", "/api/auth/login", "POST"},
		{"PUT", "/api/users/me", "DELETE, GET, HEAD"},
		{"POST", "/healthz", "GET, HEAD"},
		{"PATCH", "/api/conversations/x/messages", "GET, HEAD, POST"},
	}
	for _, c := range wrongMethod {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			r := n.do(c.method, c.path, alice.AccessToken, nil)
			r.wantProblemStatus(t, parley.CodeInvalidArgument, http.StatusMethodNotAllowed)
			if got := r.Header.Get("Allow"); got != c.allow {
				t.Errorf("Allow %q, want %q", got, c.allow)
			}
		})
	}

	t.Run("every answer says nosniff and no-store", func(t *testing.T) {
		for _, r := range []*response{
			n.do("GET", "/healthz", "", nil),
			n.do("GET", "/nope", "", nil),
			n.do("GET", "/api/users/me", alice.AccessToken, nil),
			n.do("GET", "/api/users/me", "", nil),
		} {
			if r.Header.Get("X-Content-Type-Options") != "nosniff" || r.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("headers %v", r.Header)
			}
		}
	})
}

func TestRequestBodies(t *testing.T) {
	n := startNode(t)
	login := func(body any) *response { return n.do("POST", "/api/auth/login", "", body) }
	n.register("alice")

	cases := []struct {
		name string
		body any
		code parley.Code
		// detail, if set, is a part of the problem's detail.
		detail string
	}{
		{"empty", raw(""), parley.CodeInvalidArgument, "empty"},
		{"malformed", raw(`{"username": "alice",`), parley.CodeInvalidArgument, ""},
		{"syntax error", raw(`{"username" "alice"}`), parley.CodeInvalidArgument, "malformed JSON"},
		{"wrong type", raw(`{"username": 5, "password": "x"}`), parley.CodeInvalidArgument, `"username" must be a string`},
		{"array", raw(`[{"username":"alice"}]`), parley.CodeInvalidArgument, "JSON object"},
		{"string", raw(`"alice"`), parley.CodeInvalidArgument, "JSON object"},
		{"null", raw(`null`), parley.CodeInvalidArgument, "JSON object"},
		{"trailing garbage", raw(`{"username":"alice","password":"` + password + `"} x`), parley.CodeInvalidArgument, "after the JSON object"},
		{"two objects", raw(`{"username":"alice","password":"` + password + `"}{}`), parley.CodeInvalidArgument, "after the JSON object"},
		{"too large", raw(`{"username":"alice","password":"` + strings.Repeat("p", 70<<10) + `"}`), parley.CodePayloadTooLarge, "larger than"},
		{"too large after the object", raw(`{"username":"alice","password":"` + password + `"}` + strings.Repeat(" ", 70<<10)), parley.CodePayloadTooLarge, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := login(c.body).wantProblem(t, c.code)
			if !strings.Contains(p.Detail, c.detail) {
				t.Errorf("detail %q, want it to mention %q", p.Detail, c.detail)
			}
		})
	}

	ok := []struct {
		name string
		body any
	}{
		{"unknown fields ignored", raw(`{"username":"alice","password":"` + password + `","device":{"name":"phone"}}`)},
		{"trailing whitespace", raw(`{"username":"alice","password":"` + password + "\"}\n\t ")},
	}
	for _, c := range ok {
		t.Run(c.name, func(t *testing.T) {
			login(c.body).want(t, http.StatusOK, nil)
		})
	}

	t.Run("no Content-Type", func(t *testing.T) {
		req, err := http.NewRequestWithContext(context.Background(), "POST", n.url+"/api/auth/login",
			strings.NewReader(`{"username":"alice","password":"`+password+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		n.send(req).want(t, http.StatusOK, nil)
	})
}

// TestHandler exercises the handler on its own, wired by hand to the real
// services, for what a whole node hides: the outer mux of the server cleans
// paths before the API sees them, the server always passes metrics and a
// readiness probe, and the services do not fail inside on demand.
func TestHandler(t *testing.T) {
	ctx := context.Background()
	bus := localbus.New(64)
	t.Cleanup(func() { bus.Close() })
	store, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "parley.db"), bus, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	keyPEM, err := auth.NewSigningKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	key, err := auth.ParseSigningKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	authSvc, err := auth.New(store, key, auth.Options{Argon2: auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	chatSvc := chat.New(store, bus, chat.Options{})
	logs := &syncBuffer{}
	h := httpapi.New(authSvc, faultyChat{chatSvc}, httpapi.Options{
		Ready:  func(context.Context) error { return errors.New("disk on fire") },
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})

	serve := func(method, target string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
		return rec
	}
	asResponse := func(rec *httptest.ResponseRecorder) *response {
		return &response{Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
	}

	t.Run("unclean path redirects without a body", func(t *testing.T) {
		rec := serve("GET", "/api//users/me")
		if rec.Code/100 != 3 || rec.Header().Get("Location") != "/api/users/me" {
			t.Errorf("status %d Location %q", rec.Code, rec.Header().Get("Location"))
		}
		if ct := rec.Header().Get("Content-Type"); ct != "" || rec.Body.Len() != 0 {
			t.Errorf("redirect with Content-Type %q and body %q", ct, rec.Body)
		}
	})
	t.Run("not ready", func(t *testing.T) {
		p := asResponse(serve("GET", "/readyz")).wantProblem(t, parley.CodeUnavailable)
		if strings.Contains(p.Detail, "fire") {
			t.Errorf("detail %q leaks the cause", p.Detail)
		}
		if !strings.Contains(logs.String(), "disk on fire") {
			t.Errorf("cause not logged: %s", logs)
		}
	})
	t.Run("no metrics", func(t *testing.T) {
		asResponse(serve("GET", "/metrics")).wantProblem(t, parley.CodeNotFound)
	})
	t.Run("healthz", func(t *testing.T) {
		asResponse(serve("GET", "/healthz")).want(t, http.StatusOK, nil)
	})
	t.Run("internal error", func(t *testing.T) {
		tok := registerVia(t, h, "alice")
		p := asResponse(serveAs(h, "GET", "/api/users/"+tok.User.ID, tok)).wantProblem(t, parley.CodeInternal)
		if p.Detail != "internal error" {
			t.Errorf("detail %q, want a generic one", p.Detail)
		}
		logged := logs.String()
		if !strings.Contains(logged, `route="GET /api/users/{id}"`) || !strings.Contains(logged, "method=GET") || !strings.Contains(logged, "exploded") {
			t.Errorf("internal error not logged with its cause, method and route:\n%s", logged)
		}
		if strings.Contains(logged, tok.AccessToken) || strings.Contains(logged, password) || strings.Contains(logged, tok.User.ID) {
			t.Errorf("logs carry a secret or a path value:\n%s", logged)
		}
	})
	t.Run("panic", func(t *testing.T) {
		tok := registerVia(t, h, "bob")
		p := asResponse(serveAs(h, "GET", "/api/conversations", tok)).wantProblem(t, parley.CodeInternal)
		if p.Detail != "internal error" {
			t.Errorf("detail %q, want a generic one", p.Detail)
		}
		if !strings.Contains(logs.String(), "panic: conversations are cursed") {
			t.Errorf("panic not logged:\n%s", logs)
		}
	})
	t.Run("unavailable", func(t *testing.T) {
		tok := registerVia(t, h, "carol")
		// With the store gone, authenticating the token fails.
		if err := store.Close(); err != nil {
			t.Fatal(err)
		}
		asResponse(serveAs(h, "GET", "/api/users/me", tok)).wantProblem(t, parley.CodeUnavailable)
		if !strings.Contains(logs.String(), `route="GET /api/users/me"`) {
			t.Errorf("unavailable not logged:\n%s", logs)
		}
	})
}

// faultyChat is the real chat service with two faults: User fails inside,
// and Conversations panics.
type faultyChat struct{ *chat.Service }

func (c faultyChat) User(ctx context.Context, id string) (parley.User, error) {
	return parley.User{}, errors.New("database exploded")
}

func (c faultyChat) Conversations(ctx context.Context, callerID string) ([]parley.Conversation, error) {
	panic("conversations are cursed")
}

// registerVia registers an account through h.
func registerVia(t *testing.T, h http.Handler, username string) tokens {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/api/auth/register", strings.NewReader(`{"username":"`+username+`","password":"`+password+`"}`)))
	var tok tokens
	(&response{Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}).want(t, http.StatusCreated, &tok)
	return tok
}

// serveAs serves a request without a body through h as the holder of tok.
func serveAs(h http.Handler, method, target string, tok tokens) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}
