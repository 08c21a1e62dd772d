package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/parley-chat/parley"
)

// problem is an RFC 9457 problem details object with the contract's extra
// members.
type problem struct {
	Type   string      `json:"type"`
	Title  string      `json:"title"`
	Status int         `json:"status"`
	Detail string      `json:"detail"`
	Code   parley.Code `json:"code"`
	// RetryAfterMS is set with rate_limited.
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}

// fail answers err as a problem, with the status of its code. Internal
// errors are logged with their cause and answered with a generic detail.
func (h *api) fail(w http.ResponseWriter, r *http.Request, err error) {
	h.writeProblem(w, r, err, 0)
}

// writeProblem answers err as a problem. status, if not 0, overrides the
// status of err's code (for 405, which has no code of its own).
func (h *api) writeProblem(w http.ResponseWriter, r *http.Request, err error, status int) {
	code := parley.ErrorCode(err)
	if code.HTTPStatus() == 0 {
		code = parley.CodeInternal
	}
	detail := parley.ErrorMessage(err)
	switch code {
	case parley.CodeInternal:
		detail = "internal error"
		h.logFailure(r, slog.LevelError, err)
	case parley.CodeUnavailable:
		h.logFailure(r, slog.LevelWarn, err)
	}
	if status == 0 {
		status = code.HTTPStatus()
	}
	p := problem{
		Type:   "about:blank",
		Title:  http.StatusText(status),
		Status: status,
		Detail: detail,
		Code:   code,
	}
	hdr := w.Header()
	switch code {
	case parley.CodeUnauthenticated:
		hdr.Set("WWW-Authenticate", "Bearer")
		var te *tokenError
		if errors.As(err, &te) {
			// RFC 6750: a token was presented and refused, so the client
			// should refresh rather than ask the user to log in again.
			hdr.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		}
	case parley.CodeRateLimited:
		wait := parley.RetryAfter(err)
		p.RetryAfterMS = max(1, ceilDiv(wait, time.Millisecond))
		hdr.Set("Retry-After", strconv.FormatInt(max(1, ceilDiv(wait, time.Second)), 10))
		if h.metrics != nil {
			h.metrics.RateLimited.Inc()
		}
	}
	h.writeJSONAs(w, r, "application/problem+json", status, p)
}

// logInternal logs the cause of an internal error.
func (h *api) logInternal(r *http.Request, err error) {
	h.logFailure(r, slog.LevelError, err)
}

// logFailure logs the cause of a failed request at level. Only the method
// and the route pattern describe the request: never its path values, query,
// headers or body, which may carry tokens and passwords.
func (h *api) logFailure(r *http.Request, level slog.Level, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; nothing is wrong with the server.
		level = slog.LevelInfo
	}
	h.log.Log(r.Context(), level, "request failed", "method", r.Method, "route", routeOf(r), "err", err)
}

// tokenError marks an unauthenticated error caused by a presented bearer
// token, as opposed to a missing one or a failed login.
type tokenError struct{ err error }

func (e *tokenError) Error() string { return e.err.Error() }
func (e *tokenError) Unwrap() error { return e.err }

// ceilDiv returns d / unit rounded up, for positive d; 0 otherwise.
func ceilDiv(d, unit time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + unit - 1) / unit)
}
