// Package server assembles a whole Parley node from its parts: the store,
// the event bus, the auth and chat services, the REST API, the WebSocket
// gateway, and the push worker with its senders. cmd/parley and the
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
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/gateway"
	"github.com/parley-chat/parley/internal/httpapi"
	"github.com/parley-chat/parley/internal/localbus"
	"github.com/parley-chat/parley/internal/metrics"
	"github.com/parley-chat/parley/internal/push"
	"github.com/parley-chat/parley/internal/sqlstore"
	"github.com/parley-chat/parley/web"
)

// Config is a node's configuration. Zero values take the defaults.
type Config struct {
	// DataDir holds the database and the signing key (default ./data).
	DataDir string
	// Origins are extra allowed WebSocket origins.
	Origins []string
	// AccessTTL is the access-token lifetime (default 15 minutes).
	AccessTTL time.Duration
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
}

// Server is one running node. Close it to release the store.
type Server struct {
	cfg     Config
	log     *slog.Logger
	store   *sqlstore.DB
	bus     *localbus.Bus
	auth    *auth.Service
	chat    *chat.Service
	gateway *gateway.Gateway
	metrics *metrics.Metrics
	handler http.Handler
	unsub   func()
	push    *pushRunner // nil without push senders
}

// Open opens the data folder (creating it and the signing key on first
// start) and builds the node. It starts no listener: see Serve.
func Open(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		cfg.DataDir = "./data"
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	key, err := auth.LoadOrCreateKey(filepath.Join(cfg.DataDir, "access-token.key"))
	if err != nil {
		return nil, err
	}

	senders, vapidKey, closeSenders, err := pushSenders(cfg, log)
	if err != nil {
		return nil, err
	}

	s := &Server{cfg: cfg, log: log}
	s.bus = localbus.New(8192)
	s.metrics = metrics.New(func() float64 { return float64(s.bus.Len()) })
	s.store, err = sqlstore.Open(ctx, filepath.Join(cfg.DataDir, "parley.db"), s.bus, sqlstore.Options{
		Logger:         log,
		ObserveLatency: s.metrics.ObserveStore,
		PushPlatforms:  platforms(senders),
	})
	if err != nil {
		s.bus.Close()
		closeSenders()
		return nil, err
	}
	s.unsub = s.bus.Subscribe(func(ev *parley.Event) {
		if ev.Type == parley.EventMessageNew {
			s.metrics.MessagesStored.Inc()
		}
	})
	s.auth, err = auth.New(s.store, key, auth.Options{AccessTTL: cfg.AccessTTL, Argon2: cfg.Argon2})
	if err != nil {
		s.Close()
		return nil, err
	}
	s.chat = chat.New(s.store, s.bus, cfg.Limits, log)
	s.gateway = gateway.New(s.auth, s.chat, s.bus, gateway.Options{
		Origins:       cfg.Origins,
		Heartbeat:     cfg.Heartbeat,
		MaxFrameBytes: cfg.MaxFrameBytes,
		SendQueue:     cfg.SendQueue,
		AuthTimeout:   cfg.AuthTimeout,
		Logger:        log,
		Metrics:       s.metrics,
	})
	if len(senders) > 0 {
		s.push = runPush(push.NewWorker(s.store, s.gateway, s.bus, senders, push.Options{
			Logger: log, Metrics: s.metrics,
		}), closeSenders)
	}
	api := httpapi.New(s.auth, s.chat, httpapi.Options{
		Ready:          s.store.Ping,
		Logger:         log,
		Metrics:        s.metrics,
		VAPIDPublicKey: vapidKey,
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
// start), closes the store (finishing queued writes) and the bus. Open
// WebSockets are not closed: use Serve's graceful stop, or
// Gateway().Shutdown first.
func (s *Server) Close() error {
	var err error
	if s.push != nil {
		s.push.stop() // before the store, which it writes to
		s.push = nil
	}
	if s.store != nil {
		err = s.store.Close()
		s.store = nil
	}
	if s.unsub != nil {
		s.unsub()
		s.unsub = nil
	}
	if s.bus != nil {
		s.bus.Close()
		s.bus = nil
	}
	return err
}

// Gateway returns the node's WebSocket gateway.
func (s *Server) Gateway() *gateway.Gateway { return s.gateway }
