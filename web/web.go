// Package web is Parley's browser client: plain JavaScript modules, HTML and
// CSS under app/, embedded in the binary and served at "/" by parley serve.
// Nothing is built: what is in app/ is what the browser loads.
//
// Every answer carries a strict Content-Security-Policy (scripts, styles
// and connections from the same origin only, no inline script or style, no
// plugins, no framing, and Trusted Types so that no string can ever reach
// an HTML sink), X-Content-Type-Options: nosniff and no-referrer.
//
// app/sw.js, served at /sw.js, is the service worker that shows Web Push
// notifications; app/js/push.js registers it and the subscription.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

//go:embed app
var files embed.FS

// CSP is the Content-Security-Policy of every answer of the web app.
// 'self' in connect-src also admits ws: and wss: to the same host and port,
// which is where the app's WebSocket goes. Trusted Types admit a single
// policy, TrustedTypesPolicy, whose only use is the service worker's URL
// (navigator.serviceWorker.register takes a TrustedScriptURL); no policy
// makes TrustedHTML, so no string can reach an HTML sink.
//
// img-src admits blob: for the app's own previews of the photos a user is
// about to send (URL.createObjectURL of the picked file); photos, videos
// and files of messages come from the same origin (/media/..., signed).
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"font-src 'self'; connect-src 'self'; manifest-src 'self'; worker-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; " +
	"require-trusted-types-for 'script'; trusted-types " + TrustedTypesPolicy

// TrustedTypesPolicy is the one Trusted Types policy the CSP allows; the
// app (js/push.js) creates it once, to register ServiceWorker.
const TrustedTypesPolicy = "parley-sw"

// ServiceWorker is the path of the app's service worker. It is served
// from the root so that its scope is the whole app (no
// Service-Worker-Allowed header is needed), as JavaScript and with the
// same CSP as every file, which then applies inside the worker.
const ServiceWorker = "/sw.js"

// asset is one embedded file, ready to serve.
type asset struct {
	name  string
	body  []byte
	ctype string
	etag  string
}

// contentTypes names the types of the app's files; nothing else is served.
var contentTypes = map[string]string{
	".html":        "text/html; charset=utf-8",
	".js":          "text/javascript; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".ico":         "image/x-icon",
	".json":        "application/json",
	".webmanifest": "application/manifest+json",
	".txt":         "text/plain; charset=utf-8",
}

// assets maps URL paths ("/index.html", "/js/app.js") to their files.
var assets = sync.OnceValue(func() map[string]*asset {
	m := map[string]*asset{}
	err := fs.WalkDir(files, "app", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ctype, ok := contentTypes[path.Ext(p)]
		if !ok {
			return nil
		}
		body, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		m[strings.TrimPrefix(p, "app")] = &asset{
			name:  path.Base(p),
			body:  body,
			ctype: ctype,
			etag:  `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
		}
		return nil
	})
	if err != nil {
		panic("web: reading the embedded app: " + err.Error())
	}
	return m
})

// Serves reports whether urlPath is one of the app's: "/" or an embedded
// file. A server routes those to Handler and everything else (the API, the
// WebSocket, unknown paths) elsewhere.
func Serves(urlPath string) bool {
	if urlPath == "/" {
		return true
	}
	_, ok := assets()[urlPath]
	return ok
}

// Handler serves the app: "/" is index.html, every other embedded file is
// served under its own path, anything else is 404. Only GET and HEAD are
// allowed. Answers revalidate with an ETag (Cache-Control: no-cache), so
// a new binary is picked up on the next load.
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	setSecurityHeaders(h)
	p := r.URL.Path
	if p == "/" {
		p = "/index.html"
	}
	a, ok := assets()[p]
	if !ok {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h.Set("Content-Type", a.ctype)
	h.Set("ETag", a.etag)
	h.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}

// setSecurityHeaders sets the headers that every answer of the app carries.
func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
}
