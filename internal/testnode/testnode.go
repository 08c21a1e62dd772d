// Package testnode starts whole Parley nodes for tests, each behind a real
// HTTP server on loopback: one node on SQLite, or a cluster of nodes that
// share a PostgreSQL database (a fresh schema, package pgtest) and a real
// NATS server (in process, package natstest).
//
// Start gives what the environment asks for: one SQLite node by default,
// or, with PARLEY_TEST_CLUSTER=N, a cluster of N nodes, so that a test
// suite written against "a server" runs unchanged against a cluster with
// its clients spread over the nodes (the test command runs the wire
// contract's suite both ways). StartCluster always gives a cluster.
//
// A package whose tests may start a cluster calls pgtest.Main from its
// TestMain, which drops the test database at the end.
package testnode

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/natstest"
	"github.com/parley-chat/parley/internal/pgtest"
	"github.com/parley-chat/parley/internal/server"
)

// EnvCluster names the environment variable that makes Start start a
// cluster of that many nodes.
const EnvCluster = "PARLEY_TEST_CLUSTER"

// stopTimeout bounds a node's graceful stop at the end of a test.
const stopTimeout = 10 * time.Second

// Node is one running node.
type Node struct {
	Server *server.Server
	Config server.Config
	URL    string // http://127.0.0.1:PORT
	WSURL  string // ws://127.0.0.1:PORT/ws
	Host   string // 127.0.0.1:PORT
	HTTP   *http.Client

	ts       *httptest.Server
	stopOnce sync.Once
	t        testing.TB
}

// Nodes is the set a test started: one node, or a cluster.
type Nodes struct {
	Nodes []*Node
	// DB and NATS are the cluster's shared database URL and NATS server;
	// empty and nil for a single SQLite node.
	DB   string
	NATS *natstest.Server
}

// ClusterSize returns the cluster size PARLEY_TEST_CLUSTER asks for, or 0.
func ClusterSize(t testing.TB) int {
	v := os.Getenv(EnvCluster)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a number of nodes", EnvCluster, v)
	}
	return n
}

// Start starts one SQLite node, or the cluster that PARLEY_TEST_CLUSTER
// asks for, with the test configuration changed by change (applied to
// every node). Everything stops when the test ends.
func Start(t testing.TB, change ...func(*server.Config)) *Nodes {
	t.Helper()
	if n := ClusterSize(t); n > 0 {
		return StartCluster(t, n, change...)
	}
	cfg := Config(t)
	for _, f := range change {
		f(&cfg)
	}
	return &Nodes{Nodes: []*Node{StartNode(t, cfg)}}
}

// shared is what the clusters of one test share, so that a test that
// stops its cluster and starts another finds its data again (as a single
// node finds its data folder).
var shared = struct {
	mu  sync.Mutex
	env map[testing.TB]*clusterEnv
}{env: map[testing.TB]*clusterEnv{}}

type clusterEnv struct {
	db   string
	nats *natstest.Server
}

func envOf(t testing.TB) *clusterEnv {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if e := shared.env[t]; e != nil {
		return e
	}
	e := &clusterEnv{db: pgtest.DSN(t), nats: natstest.Start(t)}
	shared.env[t] = e
	t.Cleanup(func() {
		shared.mu.Lock()
		delete(shared.env, t)
		shared.mu.Unlock()
	})
	return e
}

// StartCluster starts n nodes sharing the test's PostgreSQL schema and
// NATS server (the same for every cluster of the test), all at once.
func StartCluster(t testing.TB, n int, change ...func(*server.Config)) *Nodes {
	t.Helper()
	env := envOf(t)
	out := &Nodes{DB: env.db, NATS: env.nats, Nodes: make([]*Node, n)}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		cfg := Config(t)
		cfg.DB, cfg.NATS = env.db, env.nats.URL()
		for _, f := range change {
			f(&cfg)
		}
		// Nodes start together, as in a real rollout: migrations and
		// keys must cope.
		wg.Go(func() { out.Nodes[i], errs[i] = startNode(t, cfg) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start node %d: %v", i+1, err)
		}
	}
	// Each node knows the others before the test begins: presence and
	// shared rate limits are the cluster's from the first request.
	deadline := time.Now().Add(10 * time.Second)
	for _, nd := range out.Nodes {
		for len(nd.Server.ClusterNodes()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("node %s knows %d nodes of %d", nd.Config.NodeID, len(nd.Server.ClusterNodes()), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return out
}

// Config is the test configuration of a node: a fresh data folder, the
// cheapest password hash, warnings and errors logged through t.
func Config(t testing.TB) server.Config {
	return server.Config{
		DataDir: t.TempDir(),
		Argon2:  auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1},
		Logger:  Logger(t),
	}
}

// StartNode starts one node with cfg; it stops when the test ends (the
// gateway first, then HTTP, then the store and the bus).
func StartNode(t testing.TB, cfg server.Config) *Node {
	t.Helper()
	n, err := startNode(t, cfg)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	return n
}

func startNode(t testing.TB, cfg server.Config) (*Node, error) {
	srv, err := server.Open(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("open server: %w", err)
	}
	ts := httptest.NewServer(srv.Handler())
	host := strings.TrimPrefix(ts.URL, "http://")
	n := &Node{
		Server: srv, Config: cfg, URL: ts.URL, WSURL: "ws://" + host + "/ws", Host: host,
		HTTP: ts.Client(), ts: ts, t: t,
	}
	t.Cleanup(n.Stop)
	return n, nil
}

// Stop stops the node gracefully: its sockets close with 1001, its
// stored writes and their events are finished. Later calls do nothing.
func (n *Node) Stop() {
	n.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		if err := n.Server.Gateway().Shutdown(ctx); err != nil {
			n.t.Errorf("gateway shutdown: %v", err)
		}
		n.ts.Close()
		if err := n.Server.Close(); err != nil {
			n.t.Errorf("close server: %v", err)
		}
	})
}

// Logger logs warnings and errors through t, which keeps the output of
// passing tests quiet.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
