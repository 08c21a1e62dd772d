package web

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
)

func TestServesAppPathsOnly(t *testing.T) {
	for p, want := range map[string]bool{
		"/":                     true,
		"/index.html":           true,
		"/js/main.js":           true,
		"/app.css":              true,
		"/icon.svg":             true,
		"/manifest.webmanifest": true,
		"/sw.js":                true,
		"/js/push.js":           true,
		"/api/users/me":         false,
		"/ws":                   false,
		"/healthz":              false,
		"/metrics":              false,
		"/nope":                 false,
		"/js/":                  false,
		"/js":                   false,
		"/../web.go":            false,
	} {
		if got := Serves(p); got != want {
			t.Errorf("Serves(%q) = %v, want %v", p, got, want)
		}
	}
}

func get(t *testing.T, method, target string, hdr http.Header) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	Handler().ServeHTTP(w, r)
	return w
}

func TestHandlerHeaders(t *testing.T) {
	for target, ctype := range map[string]string{
		"/":                     "text/html; charset=utf-8",
		"/js/main.js":           "text/javascript; charset=utf-8",
		"/app.css":              "text/css; charset=utf-8",
		"/icon.svg":             "image/svg+xml",
		"/manifest.webmanifest": "application/manifest+json",
		"/sw.js":                "text/javascript; charset=utf-8",
	} {
		w := get(t, http.MethodGet, target, nil)
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d", target, w.Code)
		}
		h := w.Header()
		if got := h.Get("Content-Type"); got != ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", target, got, ctype)
		}
		if got := h.Get("Content-Security-Policy"); got != CSP {
			t.Errorf("GET %s: CSP %q", target, got)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", target)
		}
		if h.Get("ETag") == "" || h.Get("Cache-Control") != "no-cache" {
			t.Errorf("GET %s: ETag %q, Cache-Control %q", target, h.Get("ETag"), h.Get("Cache-Control"))
		}
	}
	for _, d := range []string{
		"default-src 'self'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
		"img-src 'self' data: blob:", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'",
	} {
		if !strings.Contains(CSP, d+";") && !strings.HasSuffix(CSP, d) {
			t.Errorf("CSP lacks %q", d)
		}
	}
	if strings.Contains(CSP, "unsafe") {
		t.Errorf("CSP allows something unsafe: %s", CSP)
	}
}

// The service worker is served from the root, so that its default scope is
// the whole app without a Service-Worker-Allowed header, and it is a
// classic script (no import statements: not every browser with Web Push
// runs module workers).
func TestServiceWorker(t *testing.T) {
	if ServiceWorker != "/sw.js" || path.Dir(ServiceWorker) != "/" {
		t.Fatalf("ServiceWorker = %q, want a file at the root", ServiceWorker)
	}
	w := get(t, http.MethodGet, ServiceWorker, nil)
	if w.Code != http.StatusOK {
		t.Fatalf("GET %s: %d", ServiceWorker, w.Code)
	}
	if h := w.Header().Get("Service-Worker-Allowed"); h != "" {
		t.Errorf("Service-Worker-Allowed %q: not needed at the root", h)
	}
	body := w.Body.String()
	if regexp.MustCompile(`(?m)^\s*(import|export)\s`).MatchString(body) {
		t.Error("sw.js has import/export statements: it must be a classic script")
	}
	for _, want := range []string{"'push'", "'notificationclick'", "showNotification"} {
		if !strings.Contains(body, want) {
			t.Errorf("sw.js lacks %s", want)
		}
	}
	// The page registers exactly that URL through the one Trusted Types
	// policy the CSP allows.
	src, err := files.ReadFile("app/js/push.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`'` + ServiceWorker + `'`, `'` + TrustedTypesPolicy + `'`} {
		if !strings.Contains(string(src), want) {
			t.Errorf("js/push.js lacks %s", want)
		}
	}
}

// Trusted Types: one named policy (for the worker's URL), never 'none'
// turned into a wildcard or duplicates.
func TestTrustedTypes(t *testing.T) {
	if !strings.Contains(CSP, "require-trusted-types-for 'script'") {
		t.Error("CSP does not require Trusted Types")
	}
	if !strings.HasSuffix(CSP, "trusted-types "+TrustedTypesPolicy) {
		t.Errorf("CSP trusted-types is not exactly the policy %q: %s", TrustedTypesPolicy, CSP)
	}
	if strings.Contains(CSP, "allow-duplicates") || strings.Contains(CSP, "trusted-types *") {
		t.Errorf("CSP trusted-types too broad: %s", CSP)
	}
	// The only policy made anywhere is the worker's.
	re := regexp.MustCompile(`createPolicy\(\s*([^,)]*)`)
	n := 0
	err := fs.WalkDir(files, "app", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".js" {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			n++
			if m[1] != "POLICY" || p != "app/js/push.js" {
				t.Errorf("%s creates a Trusted Types policy %s", p, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d Trusted Types policies made, want the worker's one", n)
	}
}

func TestHandlerRevalidates(t *testing.T) {
	etag := get(t, http.MethodGet, "/js/main.js", nil).Header().Get("ETag")
	w := get(t, http.MethodGet, "/js/main.js", http.Header{"If-None-Match": {etag}})
	if w.Code != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d, want 304", w.Code)
	}
}

func TestHandlerRefuses(t *testing.T) {
	if w := get(t, http.MethodGet, "/nope.js", nil); w.Code != http.StatusNotFound {
		t.Errorf("unknown file: %d", w.Code)
	}
	w := get(t, http.MethodPost, "/", nil)
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %d, Allow %q", w.Code, w.Header().Get("Allow"))
	}
	if w.Header().Get("Content-Security-Policy") == "" {
		t.Error("an error answer lacks the CSP")
	}
	if w := get(t, http.MethodHead, "/", nil); w.Code != http.StatusOK || w.Body.Len() != 0 {
		t.Errorf("HEAD /: %d with %d bytes", w.Code, w.Body.Len())
	}
}

// The app's own rules, checked on its source: no HTML from strings, no
// inline script or style, no eval. (The CSP enforces most of this in the
// browser; this catches it before a browser does.)
func TestSourceHasNoHTMLSinks(t *testing.T) {
	sinks := regexp.MustCompile(`\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setAttribute\(\s*['"](style|on[a-z]+)['"]|\.style\.`)
	inline := regexp.MustCompile(`(?i)<script(\s[^>]*)?>[^<\s]|\sstyle\s*=|\son[a-z]+\s*=|javascript:`)
	n := 0
	err := fs.WalkDir(files, "app", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		switch path.Ext(p) {
		case ".js":
			n++
			for i, line := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(strings.TrimSpace(line), "//") {
					continue
				}
				if m := sinks.FindString(line); m != "" {
					t.Errorf("%s:%d uses %s", p, i+1, m)
				}
			}
		case ".html":
			if m := inline.FindString(string(b)); m != "" {
				t.Errorf("%s has inline %q", p, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no JavaScript embedded")
	}
}
