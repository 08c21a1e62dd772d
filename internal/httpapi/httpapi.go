// Package httpapi serves Parley's REST API (/api) and the operational
// endpoints (/healthz, /readyz, /metrics) over the auth and chat services.
//
// It is a thin translation layer: it decodes JSON requests, authenticates
// the caller's bearer token, calls one service method, and encodes the
// result or an RFC 9457 problem. Every rule of the domain (validation,
// membership, rate limits) lives in the services; what lives here is the
// HTTP side of the v1 wire contract: routes, status codes, the mapping from
// error codes to statuses, and the limits on request bodies.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/media"
	"github.com/parley-chat/parley/internal/metrics"
)

// Auth is what the API needs from the account and token service
// (*auth.Service).
type Auth interface {
	Register(ctx context.Context, username, password, displayName string) (auth.Tokens, error)
	Login(ctx context.Context, username, password string) (auth.Tokens, error)
	Refresh(ctx context.Context, refreshToken string) (auth.Tokens, error)
	Logout(ctx context.Context, refreshToken string) error
	Authenticate(ctx context.Context, accessToken string) (auth.Claims, error)
	DeleteAccount(ctx context.Context, userID, password string) error
}

// Chat is what the API needs from the chat service (*chat.Service).
type Chat interface {
	Limits() chat.Limits
	User(ctx context.Context, id string) (parley.User, error)
	SearchUsers(ctx context.Context, callerID, prefix string) ([]parley.User, error)
	CreateConversation(ctx context.Context, callerID string, typ parley.ConversationType, title *string, memberIDs []string) (parley.Conversation, bool, error)
	Conversation(ctx context.Context, callerID, id string) (parley.Conversation, error)
	Conversations(ctx context.Context, callerID string) ([]parley.Conversation, error)
	AddMember(ctx context.Context, callerID, conversationID, userID string) (parley.Conversation, error)
	RemoveMember(ctx context.Context, callerID, conversationID, userID string) error
	History(ctx context.Context, callerID, conversationID string, q parley.HistoryQuery) ([]parley.Message, bool, error)
	Send(ctx context.Context, senderID string, p chat.SendParams) (parley.Message, bool, error)
	Receipt(ctx context.Context, callerID, conversationID string, kind parley.ReceiptKind, seq int64, deviceID string) error
	RegisterDeviceToken(ctx context.Context, callerID string, platform parley.Platform, token, environment, deviceID string) (bool, error)
	DeleteDeviceToken(ctx context.Context, callerID, token string) error
	Mute(ctx context.Context, callerID, conversationID string, until *parley.Time) error
	Unmute(ctx context.Context, callerID, conversationID string) error
	MuteOf(ctx context.Context, callerID, conversationID string) (parley.Mute, error)
}

var (
	_ Auth = (*auth.Service)(nil)
	_ Chat = (*chat.Service)(nil)
)

// Options configures the API. The zero value works: always ready, the
// default logger, no metrics.
type Options struct {
	// Ready reports whether the storage is reachable; /readyz answers 503
	// while it returns an error. Nil means always ready.
	Ready func(ctx context.Context) error
	// Logger receives internal errors and recovered panics (default
	// slog.Default()).
	Logger *slog.Logger
	// Metrics, if not nil, counts requests and rate-limit refusals and is
	// served on /metrics; without it /metrics answers 404.
	Metrics *metrics.Metrics
	// VAPIDPublicKey is the Web Push application server key that browsers
	// subscribe with (base64url); empty when Web Push is off.
	VAPIDPublicKey string
	// Media serves uploads in one request, media records and the files
	// of signed URLs; nil: no media endpoints.
	Media Media
	// Uploads is the tus endpoint (media.Uploads), served at /api/uploads/
	// for authenticated callers (media.WithCaller); nil: none.
	Uploads http.Handler
}

// Request body limits. Most bodies are a few hundred bytes; the largest
// legitimate ones are a web push subscription (4 KiB) and a message.
const (
	maxBodyBytes = 64 << 10
	// minMessageBodyBytes is the least a message body may be: JSON may
	// escape a byte of text as six (\u001f), so a 16 KiB text can take up
	// to 96 KiB on the wire, plus the other fields.
	minMessageBodyBytes = 128 << 10
)

// readyTimeout bounds a readiness probe, so that a stuck store makes
// /readyz fail instead of hang.
const readyTimeout = 2 * time.Second

// api is the handler returned by New. It is safe for concurrent use; all of
// its fields are set by New and never change.
type api struct {
	auth    Auth
	chat    Chat
	ready   func(ctx context.Context) error
	log     *slog.Logger
	metrics *metrics.Metrics
	// metricsHandler serves metrics; nil without them.
	metricsHandler http.Handler
	// messageBodyBytes is the body limit of POST .../messages, derived from
	// the chat service's text limit.
	messageBodyBytes int64
	mux              *http.ServeMux
	vapid            string
	media            Media
	tus              http.Handler
}

// New returns the handler of the REST API and the operational endpoints.
// Mount it at "/": it answers every path it does not know with a 404
// problem, and every known path with the wrong method with a 405 problem.
// The handler is safe for concurrent use.
func New(a Auth, c Chat, opts Options) http.Handler {
	h := &api{
		auth:    a,
		chat:    c,
		ready:   opts.Ready,
		log:     opts.Logger,
		metrics: opts.Metrics,
		vapid:   opts.VAPIDPublicKey,
		media:   opts.Media,
		tus:     opts.Uploads,
		mux:     http.NewServeMux(),
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.metrics != nil {
		h.metricsHandler = h.metrics.Handler()
	}
	h.messageBodyBytes = max(minMessageBodyBytes, 6*int64(c.Limits().MaxTextBytes)+16<<10)
	h.routes()
	return h
}

// routes registers every endpoint: the contract's REST table, then the
// operational ones.
func (h *api) routes() {
	// Operational endpoints, outside /api and without authentication.
	h.handle("GET /healthz", h.healthz)
	h.handle("GET /readyz", h.readyz)
	h.handle("GET /metrics", h.serveMetrics)

	h.handle("POST /api/auth/register", h.register)
	h.handle("POST /api/auth/login", h.login)
	h.handle("POST /api/auth/refresh", h.refresh)
	h.handle("POST /api/auth/logout", h.logout)

	h.handle("GET /api/users/me", h.authed(h.me))
	h.handle("DELETE /api/users/me", h.authed(h.deleteAccount))
	h.handle("GET /api/users/{id}", h.authed(h.user))
	h.handle("GET /api/users", h.authed(h.searchUsers))

	h.handle("POST /api/conversations", h.authed(h.createConversation))
	h.handle("GET /api/conversations", h.authed(h.conversations))
	h.handle("GET /api/conversations/{id}", h.authed(h.conversation))
	h.handle("POST /api/conversations/{id}/members", h.authed(h.addMember))
	h.handle("DELETE /api/conversations/{id}/members/{user_id}", h.authed(h.removeMember))
	h.handle("GET /api/conversations/{id}/messages", h.authed(h.history))
	h.handle("POST /api/conversations/{id}/messages", h.authed(h.send))
	h.handle("POST /api/conversations/{id}/receipts", h.authed(h.receipt))
	// An extension of the contract (docs/protocol.md, "Extensions").
	h.handle("GET /api/conversations/{id}/mute", h.authed(h.getMute))
	h.handle("PUT /api/conversations/{id}/mute", h.authed(h.putMute))
	h.handle("DELETE /api/conversations/{id}/mute", h.authed(h.deleteMute))

	h.handle("GET /api/push/vapid-public-key", h.authed(h.vapidPublicKey))
	h.handle("POST /api/device-tokens", h.authed(h.registerDeviceToken))
	// The token is the rest of the path: a web token is a JSON string, so
	// even URL-encoded it is safest not to assume it is one segment.
	h.handle("DELETE /api/device-tokens/{token...}", h.authed(h.deleteDeviceToken))

	// Media, an extension (docs/protocol.md, "Media").
	if h.media != nil {
		h.handle("POST /api/media", h.authed(h.uploadMedia))
		h.handle("GET /api/media/{id}", h.authed(h.getMedia))
		h.handle("GET /media/{id}", h.downloadMedia(media.Original))
		h.handle("GET /media/{id}/thumbnail", h.downloadMedia(media.Thumbnail))
	}
	if h.tus != nil {
		h.handle("/api/uploads", h.authed(h.uploads))
		h.handle("/api/uploads/", h.authed(h.uploads))
	}
}

// ServeHTTP serves one request. Requests that no route matches get the
// mux's own answer (404, 405 or a redirect to the clean path), rewritten as
// a problem without the mux's text body.
func (h *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	// Every answer is private to its caller or live state: nothing may be
	// cached, least of all tokens.
	hdr.Set("Cache-Control", "no-store")

	u := &unroutedWriter{ResponseWriter: w, header: http.Header{}}
	h.mux.ServeHTTP(u, r)
	if u.routed {
		return
	}
	status := u.status
	switch {
	case status == http.StatusMethodNotAllowed:
		if allow := u.header.Get("Allow"); allow != "" {
			hdr.Set("Allow", allow)
		}
		// No code of the contract means 405; the request is wrong, so it is
		// invalid_argument with the status that says why.
		h.writeProblem(w, r, parley.Errorf(parley.CodeInvalidArgument, "method %s is not allowed here", r.Method), status)
	case status >= 300 && status < 400:
		// The mux redirects unclean paths (a//b, a/./b) to the clean one.
		if loc := u.header.Get("Location"); loc != "" {
			hdr.Set("Location", loc)
		}
		w.WriteHeader(status)
	default:
		status = http.StatusNotFound
		h.fail(w, r, parley.Errorf(parley.CodeNotFound, "no such endpoint"))
	}
	h.count(unroutedPattern, status)
}
