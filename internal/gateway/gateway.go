// Package gateway is Parley's WebSocket endpoint (GET /ws), implementing
// the "WebSocket" section of the v1 wire contract.
//
// A Gateway authenticates and upgrades connections, answers the frames that
// clients send by calling the chat service, and fans the events of the bus
// (message.new, receipt, typing, presence, conversation.updated,
// session.revoked) out to the connections of this process.
//
// Each connection has one reader goroutine, one writer goroutine (the one
// that served the upgrade) and a bounded send queue. Publishers never block:
// a connection whose queue is full is closed with 1013, so that a client
// never misses an event silently; it reconnects and calls sync. The indexes
// that fan-out reads (user → connections, room → joined connections) are
// sharded maps, each shard under its own mutex.
//
// Presence is not an event of the bus: the gateway tells a Directory of
// connections (package presence) how many connections each user has here,
// and the directory reports the changes of a user's status in the whole
// cluster to AnnouncePresence, which tells the connections here that
// watch the user.
//
// Beyond the contract, a client may say that its app went to the background
// (app.state, docs/protocol.md "Extensions"); HasForegroundConnection, which
// the push worker asks before sending a push, leaves such connections out.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/metrics"
	"github.com/parley-chat/parley/internal/presence"
	"github.com/parley-chat/parley/wire"
)

// Defaults of Options.
const (
	DefaultHeartbeat     = 25 * time.Second
	DefaultMaxFrameBytes = 64 << 10
	DefaultSendQueue     = 256
	DefaultAuthTimeout   = 10 * time.Second
)

const (
	// maxServerFrame is the largest frame the server sends: the default
	// maximumMessageSize of URLSessionWebSocketTask.
	maxServerFrame = 1 << 20
	// writeTimeout bounds one batch of writes to a socket.
	writeTimeout = 10 * time.Second
	// closeGrace is how long a closing connection waits for the peer's
	// close frame (or keeps discarding its input) before dropping TCP.
	closeGrace = time.Second
	// presenceTimeout bounds the store write and publish of a presence change.
	presenceTimeout = 5 * time.Second
	// typingTTL is how long a "started" counts when no "stopped" follows.
	typingTTL = 6 * time.Second
)

// Authenticator verifies access tokens. *auth.Service implements it.
type Authenticator interface {
	// Authenticate returns the claims of a valid access token, or an error
	// with code unauthenticated for a bad, expired or revoked one.
	Authenticate(ctx context.Context, token string) (auth.Claims, error)
}

// Chat is the part of the chat service that the gateway calls.
// *chat.Service implements it.
type Chat interface {
	Send(ctx context.Context, senderID string, p chat.SendParams) (parley.Message, bool, error)
	Receipt(ctx context.Context, callerID, conversationID string, kind parley.ReceiptKind, seq int64, deviceID string) error
	Typing(ctx context.Context, callerID, conversationID string, state parley.TypingState) error
	MemberIDs(ctx context.Context, callerID, conversationID string) ([]string, error)
	Sync(ctx context.Context, callerID string, req wire.Sync) (wire.SyncResult, error)
	Allow(ctx context.Context, callerID string) error
	MarkSeen(ctx context.Context, at parley.Time, userIDs ...string) error
	LastSeen(ctx context.Context, userIDs []string) (map[string]parley.Time, error)
}

// Directory is the cluster's directory of connections: the gateway tells
// it its own, and asks it about everyone's. *presence.Directory
// implements it.
type Directory interface {
	// Set records the user's connections on this node, how many of them
	// are in the foreground, and the devices of those (sorted; the
	// directory keeps the slice).
	Set(userID string, conns, foreground int, devices []string)
	// Online reports whether the user has a connection on any node.
	Online(userID string) bool
	// HasForegroundConnection reports whether the user's device has, on
	// any node, a connection whose app is in the foreground ("": any
	// device).
	HasForegroundConnection(userID, deviceID string) bool
}

// Interest makes the bus deliver a user's events to this node.
// *natsbus.Bus implements it; an in-process bus needs none.
type Interest interface {
	// Watch returns once the bus will deliver every event for userID
	// published from now on, until release is called.
	Watch(ctx context.Context, userID string) (release func(), err error)
}

var (
	_ Authenticator = (*auth.Service)(nil)
	_ Chat          = (*chat.Service)(nil)
	_ Directory     = (*presence.Directory)(nil)
)

// Options configures a Gateway. Zero values take the defaults.
type Options struct {
	// Origins are the browser origins allowed besides the request's own
	// host, such as "https://app.example.com".
	Origins []string
	// Heartbeat is the ping interval (default 25 s); a connection that sends
	// nothing, not even a pong, for two heartbeats is dropped.
	Heartbeat time.Duration
	// MaxFrameBytes is the largest client message after reassembly of
	// fragments (default 64 KiB); a larger one closes with 1009.
	MaxFrameBytes int64
	// SendQueue is the number of frames queued per connection (default
	// 256); a connection whose queue is full is closed with 1013.
	SendQueue int
	// AuthTimeout is how long a connection without an Authorization header
	// has to send its auth frame (default 10 s) before it is closed with 4001.
	AuthTimeout time.Duration
	// Media signs the URLs of media in the events sent; nil leaves them
	// empty.
	Media parley.MediaSigner
	// Logger receives the gateway's logs (default slog.Default()).
	Logger *slog.Logger
	// Metrics receives the gateway's metrics; nil uses a private registry.
	Metrics *metrics.Metrics
	// Directory is the directory of connections, whose changes of status
	// must be passed to AnnouncePresence. Nil: a directory of this node
	// alone, made and wired by New.
	Directory Directory
	// Interest, if set, is asked to deliver a user's events to this node
	// before their connection is served.
	Interest Interest
	// Ready, if set, is asked before every upgrade: while it answers an
	// error (the event bus is down), upgrades answer 503 unavailable.
	Ready func() error
}

func (o Options) withDefaults() Options {
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if o.SendQueue <= 0 {
		o.SendQueue = DefaultSendQueue
	}
	if o.AuthTimeout <= 0 {
		o.AuthTimeout = DefaultAuthTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New(nil)
	}
	return o
}

// Gateway serves WebSocket connections on /ws. Create it with New; it is an
// http.Handler and is safe for concurrent use. Shutdown closes every
// connection and must be called before the bus and the store are closed.
type Gateway struct {
	auth       Authenticator
	chat       Chat
	dir        Directory
	opts       Options
	log        *slog.Logger
	m          *metrics.Metrics
	upgrader   websocket.Upgrader
	origins    map[string]bool
	heartbeatS int

	seed     maphash.Seed
	users    [shards]userShard
	rooms    [shards]roomShard
	watch    [shards]watchShard
	typing   [shards]typingShard
	sessions [shards]sessionShard
	// scratch holds *[]string buffers for presence fan-out.
	scratch sync.Pool

	// eventSeq numbers fanned-out events, so that a connection reached
	// twice by one event (through two rooms, say) gets it once.
	eventSeq atomic.Uint64

	framesSent     map[string]prometheus.Counter
	framesReceived map[string]prometheus.Counter
	closedByCode   sync.Map // close code → prometheus.Counter

	unsubscribe func()
	// base is the context of work that outlives a connection (publishing
	// its offline presence); it ends when Shutdown is done.
	base       context.Context
	cancelBase context.CancelFunc

	mu     sync.RWMutex // guards closed; orders conns.Add against Shutdown's conns.Wait
	closed bool
	// conns counts the upgrade requests being served, each until its
	// connection's goroutines have ended.
	conns sync.WaitGroup
}

// New returns a Gateway that authenticates with a, serves requests with c,
// and fans out the events of bus, to which it subscribes at once.
func New(a Authenticator, c Chat, bus parley.Bus, opts Options) *Gateway {
	opts = opts.withDefaults()
	g := &Gateway{
		auth:       a,
		chat:       c,
		opts:       opts,
		log:        opts.Logger.With("component", "gateway"),
		m:          opts.Metrics,
		origins:    make(map[string]bool, len(opts.Origins)),
		heartbeatS: int(math.Ceil(opts.Heartbeat.Seconds())),
		seed:       maphash.MakeSeed(),
		scratch:    sync.Pool{New: func() any { return new([]string) }},
	}
	for _, o := range opts.Origins {
		if o = normalizeOrigin(o); o != "" {
			g.origins[o] = true
		}
	}
	g.upgrader = websocket.Upgrader{
		Subprotocols: []string{wire.Subprotocol},
		// Idle connections hold no write buffer: one is taken from the pool
		// for each frame.
		WriteBufferPool: &sync.Pool{},
		// The origin is checked before authentication, in ServeHTTP.
		CheckOrigin: func(*http.Request) bool { return true },
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			code := parley.CodeInvalidArgument
			if status >= 500 {
				code = parley.CodeInternal
			}
			w.Header().Set("Sec-WebSocket-Version", "13")
			writeProblem(w, status, code, reason.Error())
		},
	}
	g.framesSent = counters(g.m.FramesSent, wire.TypeHello, wire.TypeAuthOK, wire.TypeMessageAck, wire.TypeOK,
		wire.TypeSyncResult, wire.TypeError, wire.TypeMessageNew, wire.TypeReceipt, wire.TypeTyping,
		wire.TypePresence, wire.TypeConversationUpdated)
	g.framesReceived = counters(g.m.FramesReceived, wire.TypeAuth, wire.TypeMessageSend, wire.TypeReceipt,
		wire.TypeTyping, wire.TypeRoomJoin, wire.TypeRoomLeave, wire.TypeSync, wire.TypeAppState, typeUnknown, typeMalformed)
	for i := range shards {
		g.users[i].users = make(map[string]*userEntry)
		g.rooms[i].rooms = make(map[string]*room)
		g.watch[i].rooms = make(map[string]map[string]struct{})
		g.typing[i].users = make(map[string]map[string]time.Time)
		g.sessions[i].conns = make(map[*conn]struct{})
	}
	g.dir = opts.Directory
	if g.dir == nil {
		g.dir = presence.New(presence.Options{Node: "local", OnChange: g.AnnouncePresence, Logger: opts.Logger})
	}
	g.base, g.cancelBase = context.WithCancel(context.Background())
	g.unsubscribe = bus.Subscribe(g.dispatch)
	return g
}

// Labels of frames received that are not one of the contract's types.
const (
	typeUnknown   = "unknown"
	typeMalformed = "malformed"
)

func counters(vec *prometheus.CounterVec, types ...string) map[string]prometheus.Counter {
	m := make(map[string]prometheus.Counter, len(types))
	for _, t := range types {
		m[t] = vec.WithLabelValues(t)
	}
	return m
}

// ServeHTTP checks the origin and the Authorization header, upgrades the
// request, and serves the connection until it closes.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !g.acquire() {
		writeProblem(w, http.StatusServiceUnavailable, parley.CodeUnavailable, "the server is shutting down")
		return
	}
	defer g.conns.Done()

	if g.opts.Ready != nil {
		if err := g.opts.Ready(); err != nil {
			w.Header().Set("Retry-After", "1")
			writeProblem(w, http.StatusServiceUnavailable, parley.CodeUnavailable, parley.ErrorMessage(err))
			return
		}
	}
	if !g.originAllowed(r) {
		writeProblem(w, http.StatusForbidden, parley.CodeForbidden, "origin not allowed")
		return
	}
	// Header authentication happens before the upgrade, so that a bad token
	// is an HTTP 401; without a header the first frame must be auth. A token
	// in the query string is ignored like any other query parameter.
	var (
		claims *auth.Claims
		token  string
	)
	if h := r.Header.Get("Authorization"); h != "" {
		tok, err := auth.BearerToken(h)
		if err != nil {
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeProblem(w, http.StatusUnauthorized, parley.CodeUnauthenticated, "the Authorization header must be a Bearer token")
			return
		}
		cl, err := g.auth.Authenticate(r.Context(), tok)
		if err != nil {
			if parley.ErrorCode(err) != parley.CodeUnauthenticated {
				g.log.Error("authenticate upgrade", "err", err)
				writeProblem(w, http.StatusInternalServerError, parley.CodeInternal, "internal error")
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			writeProblem(w, http.StatusUnauthorized, parley.CodeUnauthenticated, parley.ErrorMessage(err))
			return
		}
		claims, token = &cl, tok
	}
	ws, err := g.upgrader.Upgrade(w, r, nil)
	if err != nil {
		// The upgrader has answered the request.
		g.log.Debug("upgrade failed", "err", err)
		return
	}
	c, err := newConn(g, ws)
	if err != nil {
		g.log.Error("new connection", "err", err)
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(closeInternal, ""), time.Now().Add(closeGrace))
		_ = ws.Close()
		return
	}
	c.serve(claims, token)
}

// acquire counts one more connection being served, unless the gateway is
// shutting down.
func (g *Gateway) acquire() bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return false
	}
	g.conns.Add(1)
	return true
}

func (g *Gateway) isClosed() bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.closed
}

// Shutdown stops accepting upgrades (they answer 503 unavailable), closes
// every connection with 1001 and waits for their goroutines. When ctx ends
// first, it drops the remaining sockets and returns the context's error.
// It unsubscribes from the bus; calling it again only waits again.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	first := !g.closed
	g.closed = true
	g.mu.Unlock()
	if first {
		g.unsubscribe()
	}
	g.eachConn(func(c *conn) { c.shut(closeGoingAway, "server shutting down", true) })

	done := make(chan struct{})
	go func() {
		g.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
		g.cancelBase()
		return nil
	case <-ctx.Done():
		// Out of time: drop the sockets; the goroutines then end at once,
		// and so does the waiter above.
		g.cancelBase()
		g.eachConn(func(c *conn) { _ = c.ws.NetConn().Close() })
		return fmt.Errorf("gateway shutdown: %w", ctx.Err())
	}
}

// CloseAll closes every connection with code, as when the node may have
// missed events (its bus was down): the clients reconnect and sync.
func (g *Gateway) CloseAll(code int, reason string) {
	g.eachConn(func(c *conn) { c.shut(code, reason, true) })
}

// originAllowed applies the contract's origin rule: no Origin passes; a
// listed one passes; otherwise the origin's host, without its scheme's
// default port, must equal the Host header without :80 or :443. The scheme
// is not compared (Starscream sends wss://host).
func (g *Gateway) originAllowed(r *http.Request) bool {
	values := r.Header.Values("Origin")
	switch len(values) {
	case 0:
		return true
	case 1:
	default:
		return false
	}
	origin := values[0]
	if g.origins[normalizeOrigin(origin)] {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	host := strings.ToLower(u.Host)
	switch strings.ToLower(u.Scheme) {
	case "http", "ws":
		host = strings.TrimSuffix(host, ":80")
	case "https", "wss":
		host = strings.TrimSuffix(host, ":443")
	}
	reqHost := strings.ToLower(r.Host)
	reqHost = strings.TrimSuffix(strings.TrimSuffix(reqHost, ":80"), ":443")
	return host == reqHost
}

func normalizeOrigin(o string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(o)), "/")
}

// problem is an RFC 9457 problem details object with the contract's code.
type problem struct {
	Type   string      `json:"type"`
	Title  string      `json:"title"`
	Status int         `json:"status"`
	Detail string      `json:"detail,omitempty"`
	Code   parley.Code `json:"code"`
}

func writeProblem(w http.ResponseWriter, status int, code parley.Code, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(problem{
		Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail, Code: code,
	})
}

// errFrameTooLarge is returned when a server frame would exceed 1 MiB.
var errFrameTooLarge = errors.New("frame larger than 1 MiB")
