package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/auth"
)

// unroutedPattern labels, in logs and metrics, requests that no route
// matched, so that scanners cannot grow the metric's label set.
const unroutedPattern = "unmatched"

// handlerFunc is a route's handler. It writes a success answer itself, or
// returns an error that its route answers as a problem.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// authedFunc is the handler of a route that needs a caller: callerID is the
// user id of the verified access token.
type authedFunc func(w http.ResponseWriter, r *http.Request, callerID string) error

// route serves one mux pattern: it turns returned errors into problems,
// recovers panics, and counts the answer.
type route struct {
	api     *api
	pattern string
	fn      handlerFunc
}

// handle registers fn for pattern.
func (h *api) handle(pattern string, fn handlerFunc) {
	h.mux.Handle(pattern, &route{api: h, pattern: pattern, fn: fn})
}

func (rt *route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if u, ok := w.(*unroutedWriter); ok {
		u.routed = true
		w = u.ResponseWriter
	}
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			// A bug, not bad input: log it with its stack and answer 500
			// rather than drop the connection.
			err := fmt.Errorf("panic: %v\n%s", v, debug.Stack())
			if sw.status == 0 {
				rt.api.fail(sw, r, err)
			} else {
				rt.api.logInternal(r, err)
			}
		}
		rt.api.count(rt.pattern, sw.statusOrOK())
	}()
	if err := rt.fn(sw, r); err != nil {
		if sw.status != 0 {
			// The answer has started; all that is left is to log.
			rt.api.logInternal(r, fmt.Errorf("after answering %d: %w", sw.status, err))
			return
		}
		rt.api.fail(sw, r, err)
	}
}

// authed wraps fn so that it runs only for a request with a valid
// "Authorization: Bearer" access token; any other gets 401.
func (h *api) authed(fn authedFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		tok, err := auth.BearerToken(r.Header.Get("Authorization"))
		if err != nil {
			return parley.Errorf(parley.CodeUnauthenticated, "this request needs an Authorization: Bearer access token")
		}
		claims, err := h.auth.Authenticate(r.Context(), tok)
		if err != nil {
			if parley.ErrorCode(err) == parley.CodeUnauthenticated {
				return &tokenError{err}
			}
			return fmt.Errorf("authenticate: %w", err)
		}
		// The device (login) rides in the context for the few handlers
		// that need it (device tokens, receipts); the caller is explicit.
		return fn(w, r.WithContext(context.WithValue(r.Context(), deviceKey{}, claims.FamilyID)), claims.UserID)
	}
}

// deviceKey is the context key of the caller's device in an authed request.
type deviceKey struct{}

// deviceOf returns the device (login) of an authed request's access token.
func deviceOf(r *http.Request) string {
	d, _ := r.Context().Value(deviceKey{}).(string)
	return d
}

// count records one answered request in the metrics, if there are any.
func (h *api) count(pattern string, status int) {
	if h.metrics == nil {
		return
	}
	h.metrics.HTTPRequests.WithLabelValues(pattern, strconv.Itoa(status)).Inc()
}

// routeOf names the route of r for logs: its mux pattern, which never
// contains the values in the path.
func routeOf(r *http.Request) string {
	if r.Pattern == "" {
		return unroutedPattern
	}
	return r.Pattern
}

// statusWriter remembers the status of the answer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 && status >= 200 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) statusOrOK() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// unroutedWriter is what the mux writes to. A route unwraps it and writes
// to the real writer; when no route matched, it has caught the mux's own
// answer (404, 405 or redirect), whose status and headers ServeHTTP turns
// into a problem, and whose plain-text or HTML body it drops.
type unroutedWriter struct {
	http.ResponseWriter
	header http.Header
	status int
	routed bool
}

func (w *unroutedWriter) Header() http.Header { return w.header }

func (w *unroutedWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *unroutedWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(b), nil
}
