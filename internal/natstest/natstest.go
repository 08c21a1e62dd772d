// Package natstest runs a real NATS server (nats-server v2, in process) for
// tests, on a loopback port that survives a restart, so that a test can
// take NATS away from its clients and give it back.
package natstest

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is a NATS server on 127.0.0.1. Stop and Start it as often as
// needed; it is stopped when the test ends.
type Server struct {
	t    testing.TB
	port int
	srv  *server.Server
}

// Start starts a NATS server on a free loopback port.
func Start(t testing.TB) *Server {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	s := &Server{t: t, port: port}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// URL is the server's nats:// URL.
func (s *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// Start starts the server again, on the same port, if it is stopped.
func (s *Server) Start() {
	s.t.Helper()
	if s.srv != nil {
		return
	}
	opts := &server.Options{
		Host:           "127.0.0.1",
		Port:           s.port,
		NoLog:          true,
		NoSigs:         true,
		MaxPayload:     8 << 20,
		MaxPending:     256 << 20,
		WriteDeadline:  10 * time.Second,
		MaxControlLine: 4096,
	}
	var srv *server.Server
	var err error
	// The port may still be held for a moment by the previous server.
	for i := range 50 {
		srv, err = server.NewServer(opts)
		if err == nil {
			go srv.Start()
			if srv.ReadyForConnections(5 * time.Second) {
				break
			}
			srv.Shutdown()
			err = fmt.Errorf("not ready")
		}
		if i == 49 {
			s.t.Fatalf("natstest: start on port %d: %v", s.port, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.srv = srv
}

// Stop shuts the server down; its clients see the connection drop.
func (s *Server) Stop() {
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
