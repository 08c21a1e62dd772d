package web_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/parley-chat/parley/internal/server"
	"github.com/parley-chat/parley/web"
)

// A whole node serves the app at / and its files, and leaves every other
// path to the API and the gateway as before.
func TestNodeRoutesAppAndAPI(t *testing.T) {
	srv, err := server.Open(context.Background(), server.Config{
		DataDir: t.TempDir(),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)

	for _, tc := range []struct {
		path, ctype string
		status      int
		app         bool
	}{
		{"/", "text/html", 200, true},
		{"/js/main.js", "text/javascript", 200, true},
		{"/app.css", "text/css", 200, true},
		{"/healthz", "", 200, false},
		{"/readyz", "", 200, false},
		{"/metrics", "", 200, false},
		{"/api/no-such-endpoint", "application/problem+json", 404, false},
		{"/api/users/me", "application/problem+json", 401, false},
		{"/no-such-page", "application/problem+json", 404, false},
		{"/js/no-such.js", "application/problem+json", 404, false},
	} {
		res, err := http.Get(ts.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.status {
			t.Errorf("GET %s: %d, want %d", tc.path, res.StatusCode, tc.status)
		}
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.ctype) {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, ct, tc.ctype)
		}
		if got := res.Header.Get("Content-Security-Policy") == web.CSP; got != tc.app {
			t.Errorf("GET %s: app CSP %v, want %v", tc.path, got, tc.app)
		}
	}

	// /ws is still the gateway's: a plain GET is not an upgrade.
	res, err := http.Get(ts.URL + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode == http.StatusOK || res.Header.Get("Content-Security-Policy") == web.CSP {
		t.Errorf("GET /ws answered like the app: %d", res.StatusCode)
	}
}
