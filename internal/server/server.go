// Package server assembles a whole Parley node from its parts: the store
// (SQLite, or PostgreSQL shared by a cluster), the event bus (in-process,
// or NATS in a cluster) with the directory of connections, the auth and
// chat services, the REST API, the WebSocket gateway, and the push worker
// with its senders. cmd/parley and the
// end-to-end tests both build a node through it, so that what is tested is
// what runs.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/gateway"
	"github.com/parley-chat/parley/internal/httpapi"
	"github.com/parley-chat/parley/internal/localbus"
	"github.com/parley-chat/parley/internal/media"
	"github.com/parley-chat/parley/internal/metrics"
	"github.com/parley-chat/parley/internal/natsbus"
	"github.com/parley-chat/parley/internal/presence"
	"github.com/parley-chat/parley/internal/push"
	"github.com/parley-chat/parley/internal/sqlstore"
	"github.com/parley-chat/parley/web"
	"github.com/parley-chat/parley/wire"
)

// Config is a node's configuration. Zero values take the defaults.
type Config struct {
	// DataDir holds the embedded database (default ./data). With a
	// PostgreSQL database it holds nothing shared: every node's keys live
	// in the database.
	DataDir string
	// DB is a PostgreSQL URL (postgres://user@host:port/db?sslmode=disable).
	// Empty: the embedded SQLite database in DataDir, for one node.
	DB string
	// NATS is the NATS URL (nats://host:port) of a cluster's event bus;
	// it needs DB. Empty: events stay in this process (one node).
	NATS string
	// NodeID names this node in the cluster (default: a fresh UUID at
	// every start).
	NodeID string
	// NATSPrefix starts every NATS subject (default "parley"): clusters
	// that share one NATS system use different prefixes.
	NATSPrefix string
	// ClusterHeartbeat and NodeDeadAfter tune the cluster's directory of
	// connections: how often a node says it is alive (default 2 s) and how
	// long a silent node's users stay online (default 10 s).
	ClusterHeartbeat, NodeDeadAfter time.Duration
	// Writers is the number of PostgreSQL writer connections (default 4).
	Writers int
	// Origins are extra allowed WebSocket origins.
	Origins []string
	// AccessTTL is the access-token lifetime (default 15 minutes).
	AccessTTL time.Duration
	// RefreshGrace is how long the refresh token rotated last may be
	// presented again for a new pair (default 30 s; negative: never).
	RefreshGrace time.Duration
	// PushConfirmDelay is how long a push held back because its device had
	// a foreground connection waits for that device's delivered receipt
	// before it is sent anyway (default 5 s).
	PushConfirmDelay time.Duration
	// BadgeInterval is the least time between two badge-only pushes to a
	// device (default 10 s).
	BadgeInterval time.Duration
	// Heartbeat is the WebSocket ping interval (default 25 s).
	Heartbeat time.Duration
	// MaxFrameBytes is the largest client frame (default 64 KiB).
	MaxFrameBytes int64
	// SendQueue is each connection's send queue length (default 256).
	SendQueue int
	// AuthTimeout is how long a WebSocket without an Authorization header
	// has to send its auth frame (default 10 s).
	AuthTimeout time.Duration
	// Limits are the chat rate and size limits.
	Limits chat.Limits
	// Argon2 overrides the password-hash cost (tests only).
	Argon2 auth.Argon2Params
	// ShutdownTimeout bounds a graceful stop (default 10 s).
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
	// APNs configures iOS push notifications; without a key they are off.
	APNs APNsConfig
	// WebPush configures browser push notifications.
	WebPush WebPushConfig
	// Media configures photos, videos and files.
	Media MediaConfig
}

// bus is what the node needs of its event bus: the in-process one, or
// NATS's in a cluster.
type bus interface {
	parley.Bus
	Close() error
}

// Server is one running node. Close it to release the store.
type Server struct {
	cfg     Config
	log     *slog.Logger
	store   *sqlstore.DB
	bus     bus
	ready   func() error // the bus's readiness; nil for the in-process bus
	auth    *auth.Service
	chat    *chat.Service
	gateway *gateway.Gateway
	metrics *metrics.Metrics
	handler http.Handler
	push    *pushRunner // nil without push senders
	dir     *presence.Directory
	// mediaJanitor deletes the uploads no message carries.
	mediaJanitor *mediaRunner
}

// Open builds the node: it opens the database (creating it, and the
// signing keys, on first start) and, in a cluster, connects to NATS. It
// starts no listener: see Serve.
func Open(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.DataDir == "" {
		cfg.DataDir = "./data"
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.NATS != "" && cfg.DB == "" {
		return nil, errors.New("--nats needs --db: the nodes of a cluster share one PostgreSQL database (PARLEY_DB)")
	}
	if cfg.NodeID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("node id: %w", err)
		}
		cfg.NodeID = id.String()
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.NATS != "" {
		log = log.With("node", cfg.NodeID)
	}
	if cfg.DB == "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data folder: %w", err)
		}
	}

	s := &Server{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	// The fan-out queue's depth is read at each scrape from whichever bus
	// is running.
	var queue atomic.Pointer[func() int]
	s.metrics = metrics.New(func() float64 {
		if f := queue.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	limiter := chat.NewLocalLimiter(cfg.Limits)

	// The bus and the directory start before the parts they report to
	// (the gateway, the chat service): what they report before those exist
	// concerns no connection of this node yet, and is dropped.
	var (
		gw     atomic.Pointer[gateway.Gateway]
		svc    atomic.Pointer[chat.Service]
		db     atomic.Pointer[sqlstore.DB]
		worker atomic.Pointer[push.Worker]
	)
	presenceOpts := presence.Options{
		Node:      cfg.NodeID,
		Heartbeat: cfg.ClusterHeartbeat,
		DeadAfter: cfg.NodeDeadAfter,
		OnChange: func(p parley.Presence) {
			if g := gw.Load(); g != nil {
				g.AnnouncePresence(p)
			}
		},
		OnNodeDead: func(users []string, at parley.Time) {
			c := svc.Load()
			if c == nil {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.MarkSeen(ctx, at, users...); err != nil {
				log.Warn("record last seen of a dead node's users", "err", err)
			}
		},
		Logger: log,
	}
	var (
		dir      *presence.Directory
		rl       chat.RateLimiter = limiter
		interest gateway.Interest
	)
	if cfg.NATS != "" {
		nb, err := natsbus.Connect(ctx, natsbus.Options{
			URL:    cfg.NATS,
			Node:   cfg.NodeID,
			Prefix: cfg.NATSPrefix,
			Fill: func(ctx context.Context, conversationID string, afterSeq, beforeSeq int64, limit int) ([]parley.Message, error) {
				st := db.Load()
				if st == nil {
					return nil, parley.Errorf(parley.CodeUnavailable, "storage is not open yet")
				}
				return st.MessageRange(ctx, conversationID, afterSeq, beforeSeq, limit)
			},
			Presence: presenceOpts,
			Limiter:  limiter,
			Metrics:  s.metrics,
			// The node may have missed events: its clients reconnect
			// (to another node, or here once NATS is back) and sync.
			OnDown: func() {
				if g := gw.Load(); g != nil {
					g.CloseAll(int(wire.CloseTryAgainLater), "event bus unavailable")
				}
			},
			Logger: log,
		})
		if err != nil {
			return nil, err
		}
		s.bus, s.ready, dir, rl, interest = nb, nb.Ready, nb.Directory(), nb.Limiter(), nb
		depth := nb.Len
		queue.Store(&depth)
	} else {
		lb := localbus.New(8192)
		s.bus = lb
		dir = presence.New(presenceOpts)
		depth := lb.Len
		queue.Store(&depth)
	}
	s.dir = dir

	platforms := pushPlatforms(cfg)
	// The store publishes from its first write (an outbox relay, say), before
	// the push worker exists.
	pub := &storePublisher{bus: s.bus, stored: s.metrics.MessagesStored, wake: func() {
		if w := worker.Load(); w != nil {
			w.Wake()
		}
	}}
	sopts := sqlstore.Options{
		Logger:         log,
		ObserveLatency: s.metrics.ObserveStore,
		PushPlatforms:  platforms,
		BadgeInterval:  cfg.BadgeInterval,
		Writers:        cfg.Writers,
		Outbox:         cfg.NATS != "",
	}
	if cfg.DB != "" {
		s.store, err = sqlstore.OpenPostgres(ctx, cfg.DB, pub, sopts)
	} else {
		s.store, err = sqlstore.Open(ctx, filepath.Join(cfg.DataDir, "parley.db"), pub, sopts)
	}
	if err != nil {
		return nil, err
	}
	db.Store(s.store) // a closed store answers unavailable

	keyPEM, err := s.secret(ctx, "access-token-key", "access-token.key", auth.NewSigningKeyPEM)
	if err != nil {
		return nil, err
	}
	key, err := auth.ParseSigningKey(keyPEM)
	if err != nil {
		return nil, err
	}
	senders, vapidKey, closeSenders, err := s.pushSenders(ctx)
	if err != nil {
		return nil, err
	}
	s.auth, err = auth.New(s.store, key, auth.Options{AccessTTL: cfg.AccessTTL, RefreshGrace: cfg.RefreshGrace, Argon2: cfg.Argon2})
	if err != nil {
		closeSenders()
		return nil, err
	}
	var mediaSvc *media.Service
	var uploads *media.Uploads
	allowUpload := func(ctx context.Context, userID string) error {
		if c := svc.Load(); c != nil {
			return c.AllowUpload(ctx, userID)
		}
		return nil
	}
	if mediaSvc, uploads, err = s.openMedia(ctx, allowUpload); err != nil {
		closeSenders()
		return nil, err
	}
	s.chat = chat.New(s.store, s.bus, chat.Options{Limits: cfg.Limits, Limiter: rl, Ready: s.ready, Media: mediaSvc.Signer(), Logger: log})
	svc.Store(s.chat)
	s.gateway = gateway.New(s.auth, s.chat, s.bus, gateway.Options{
		Origins:       cfg.Origins,
		Heartbeat:     cfg.Heartbeat,
		MaxFrameBytes: cfg.MaxFrameBytes,
		SendQueue:     cfg.SendQueue,
		AuthTimeout:   cfg.AuthTimeout,
		Logger:        log,
		Metrics:       s.metrics,
		Directory:     dir,
		Interest:      interest,
		Ready:         s.ready,
		Media:         mediaSvc.Signer(),
	})
	gw.Store(s.gateway)
	if len(senders) > 0 {
		popts := push.Options{Logger: log, Metrics: s.metrics, ConfirmDelay: cfg.PushConfirmDelay}
		if cfg.NATS != "" {
			// Another node may have queued jobs and died before sending.
			popts.PollEvery = pushPoll
		}
		w := push.NewWorker(s.store, dir, nil, senders, popts)
		worker.Store(w)
		s.push = runPush(w, closeSenders)
	} else {
		closeSenders()
	}
	api := httpapi.New(s.auth, s.chat, httpapi.Options{
		Ready:          readyz(s.store, s.ready),
		Logger:         log,
		Metrics:        s.metrics,
		VAPIDPublicKey: vapidKey,
		Media:          mediaSvc,
		Uploads:        uploads,
	})
	app := web.Handler()
	// Not a ServeMux: its path cleaning would answer unclean paths with an
	// HTML redirect before the API's own problem+json handling sees them.
	// The web app gets "/" and its own files only, so every other path
	// (unknown ones included) is still the API's to answer.
	s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/ws":
			s.gateway.ServeHTTP(w, r)
		case web.Serves(r.URL.Path):
			app.ServeHTTP(w, r)
		default:
			api.ServeHTTP(w, r)
		}
	})
	return s, nil
}

// pushPoll is how often a node of a cluster looks for due pushes unasked.
const pushPoll = 5 * time.Second

// readyz is /readyz: the database answers, and the bus is connected. It
// works on the store opened by Open even after Close (which makes it
// answer unavailable).
func readyz(store *sqlstore.DB, busReady func() error) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		if err := store.Ping(ctx); err != nil {
			return err
		}
		if busReady != nil {
			return busReady()
		}
		return nil
	}
}

// secret returns the key stored in the database under name, creating it
// with generate on the first start of the first node. A single node that
// kept the key in its data folder before (legacy file) keeps using it.
func (s *Server) secret(ctx context.Context, name, legacy string, generate func() ([]byte, error)) ([]byte, error) {
	return s.store.Secret(ctx, name, func() ([]byte, error) {
		if s.cfg.DB == "" {
			if b, err := os.ReadFile(filepath.Join(s.cfg.DataDir, legacy)); err == nil {
				return b, nil
			}
		}
		return generate()
	})
}

// storePublisher is what the store publishes to: the bus, with a count of
// the messages stored and a nudge to the push worker, which has their
// pushes to send, or badge updates after a read or a mute.
type storePublisher struct {
	bus    parley.Publisher
	stored prometheus.Counter
	wake   func()
}

func (p *storePublisher) Publish(ctx context.Context, ev *parley.Event) error {
	switch {
	case ev.Type == parley.EventMessageNew:
		p.stored.Inc()
		p.wake()
	case ev.Type == parley.EventReceipt && ev.Receipt.Kind == parley.Read,
		ev.Type == parley.EventConversationUpdated:
		p.wake()
	}
	return p.bus.Publish(ctx, ev)
}

// Flush passes the bus's Flush through, for the store's outbox.
func (p *storePublisher) Flush(ctx context.Context) error {
	if f, ok := p.bus.(interface{ Flush(context.Context) error }); ok {
		return f.Flush(ctx)
	}
	return nil
}

// Handler serves the node's HTTP surface: /api, /ws, /healthz, /readyz,
// /metrics, and the browser client at / (package web).
func (s *Server) Handler() http.Handler { return s.handler }

// Serve accepts connections on ln until ctx ends, then stops gracefully:
// it stops accepting, closes WebSockets with 1001, lets requests under way
// finish their stored writes, and closes the store. It returns nil after a
// clean stop.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	s.log.Info("listening on http://" + ln.Addr().String())

	select {
	case err := <-errc:
		s.Close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	// Shutdown stops the listener first; the gateway then says 1001 to every
	// socket (hijacked connections are not http.Server's to close).
	var errs []error
	shutdownDone := make(chan error, 1)
	go func() { shutdownDone <- hs.Shutdown(sctx) }()
	if err := s.gateway.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("gateway shutdown: %w", err))
	}
	if err := <-shutdownDone; err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, err)
	}
	if err := s.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Close stops the push worker (pushes not yet sent stay queued for the next
// start), closes the store (finishing queued writes and publishing their
// events) and then the bus. Open WebSockets are not closed: use Serve's
// graceful stop, or Gateway().Shutdown first.
func (s *Server) Close() error {
	var errs []error
	if s.mediaJanitor != nil {
		s.mediaJanitor.stop() // before the store, which it uses
		s.mediaJanitor = nil
	}
	if s.push != nil {
		s.push.stop() // before the store, which it writes to
		s.push = nil
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
		s.store = nil
	}
	if s.bus != nil {
		errs = append(errs, s.bus.Close())
		s.bus = nil
	}
	return errors.Join(errs...)
}

// ClusterNodes returns the ids of the nodes this node knows alive, itself
// included: only itself without NATS.
func (s *Server) ClusterNodes() []string { return s.dir.LiveNodes() }

// UserNodes returns the nodes where userID has connections, as this node
// knows it.
func (s *Server) UserNodes(userID string) []string { return s.dir.NodesOf(nil, userID) }

// Gateway returns the node's WebSocket gateway.
func (s *Server) Gateway() *gateway.Gateway { return s.gateway }
