package gateway_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/gateway"
	"github.com/parley-chat/parley/internal/localbus"
	"github.com/parley-chat/parley/internal/sqlstore"
)

// stack is the real store, bus and services with a gateway built by hand,
// for what server.Config cannot set (the auth timeout) and for benchmarks
// that publish on the bus directly.
type stack struct {
	url   string
	bus   *localbus.Bus
	store *sqlstore.DB
	auth  *auth.Service
	chat  *chat.Service
	gw    *gateway.Gateway
}

func newStack(tb testing.TB, authTimeout time.Duration) *stack {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	keyPEM, err := auth.NewSigningKeyPEM()
	if err != nil {
		tb.Fatalf("key: %v", err)
	}
	key, err := auth.ParseSigningKey(keyPEM)
	if err != nil {
		tb.Fatalf("key: %v", err)
	}
	s := &stack{bus: localbus.New(8192)}
	s.store, err = sqlstore.Open(ctx, filepath.Join(dir, "parley.db"), s.bus, sqlstore.Options{})
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	s.auth, err = auth.New(s.store, key, auth.Options{Argon2: auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1}})
	if err != nil {
		tb.Fatalf("auth: %v", err)
	}
	log := testLogger(tb)
	// No rate limit gets in the way of a benchmark.
	s.chat = chat.New(s.store, s.bus, chat.Options{Limits: chat.Limits{SendBurst: 1 << 30, SendPerSecond: 1e9, RequestBurst: 1 << 30, RequestPerSecond: 1e9}, Logger: log})
	s.gw = gateway.New(s.auth, s.chat, s.bus, gateway.Options{AuthTimeout: authTimeout, Logger: log})
	ts := httptest.NewServer(s.gw)
	s.url = ts.URL
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := s.gw.Shutdown(ctx); err != nil {
			tb.Errorf("gateway shutdown: %v", err)
		}
		ts.Close()
		if err := s.store.Close(); err != nil {
			tb.Errorf("close store: %v", err)
		}
		s.bus.Close()
	})
	return s
}

// register creates n users and returns their ids and access tokens.
func (s *stack) register(tb testing.TB, n int) (ids, tokens []string) {
	tb.Helper()
	for i := range n {
		tk, err := s.auth.Register(context.Background(), fmt.Sprintf("bench%d", i), "correct horse", "")
		if err != nil {
			tb.Fatalf("register: %v", err)
		}
		ids = append(ids, tk.User.ID)
		tokens = append(tokens, tk.AccessToken)
	}
	return ids, tokens
}
