// Package pgtest gives tests PostgreSQL databases of their own on the
// machine's server: a fresh schema (DSN) in a database created once per
// test process. Everything it creates is dropped with the process's
// database when the tests end (Main).
//
// The server is the one at PARLEY_TEST_PG_URL, by default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable (a user that
// may create databases). If it does not answer, pgtest tries once to start
// the machine's cluster (pg_ctlcluster, when running as root), and
// otherwise fails the test saying how to start it.
//
// A test package that uses it calls Main from its TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the environment variable that overrides the server's URL.
const EnvURL = "PARLEY_TEST_PG_URL"

const defaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// connectTimeout bounds each connection attempt to the server.
const connectTimeout = 3 * time.Second

// process is the state of this test process. It is the package's one
// variable: DSN, called with nothing but a test, must find the database
// that this process created and that Main drops at the end.
var process struct {
	mu sync.Mutex // guards the fields below
	// running is set while Main runs the tests.
	running bool
	// started is set once pgtest tried to start the server.
	started bool
	// setUp is set once the shared database was created, or failed to be
	// (err).
	setUp bool
	err   error
	// server is the server's URL; dbName and conn the shared database
	// and a connection to it.
	server *url.URL
	dbName string
	conn   *pgx.Conn
	// n numbers the schemas and databases handed out.
	n int
}

// Main runs the tests of m and then drops what pgtest created, and exits
// with m.Run's code. Call it from TestMain.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main without the exit: it runs the tests, drops what pgtest
// created, and returns m.Run's code, for a TestMain that does more.
func Run(m *testing.M) int { return Wrap(m.Run) }

// Wrap runs run (m.Run, or another package's wrapper around it, such as
// s3test.Wrap), then drops what pgtest created, and returns run's code.
func Wrap(run func() int) int {
	process.mu.Lock()
	process.running = true
	process.mu.Unlock()
	code := run()

	process.mu.Lock()
	defer process.mu.Unlock()
	process.running = false
	if process.conn != nil {
		process.conn.Close(context.Background())
		process.conn = nil
	}
	if process.dbName != "" {
		if err := dropDatabase(process.server, process.dbName); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
		process.dbName = ""
	}
	return code
}

// DSN returns the URL of a fresh, empty schema (the first of its
// search_path) in this process's test database. Several stores opened on
// it share the schema, like the nodes of a cluster. The schema is dropped
// with the database when the tests end.
func DSN(t testing.TB) string {
	t.Helper()
	process.mu.Lock()
	defer process.mu.Unlock()
	if err := setUpLocked(); err != nil {
		t.Fatal(err)
	}
	process.n++
	schema := fmt.Sprintf("t%d", process.n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := process.conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("pgtest: create schema %s: %v", schema, err)
	}
	u := withDatabase(process.server, process.dbName)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// setUpLocked creates the shared database and connects to it, once.
func setUpLocked() error {
	if !process.running {
		return errors.New("pgtest: call pgtest.Main from the package's TestMain, which drops the test database at the end")
	}
	if process.setUp {
		return process.err
	}
	process.setUp = true
	process.err = func() error {
		raw := os.Getenv(EnvURL)
		if raw == "" {
			raw = defaultURL
		}
		u, err := url.Parse(raw)
		if err != nil {
			return fmt.Errorf("pgtest: %s: %w", EnvURL, err)
		}
		process.server = u
		sweepStale(u)
		// One name per process: parallel test binaries do not meet.
		name := fmt.Sprintf("parley_test_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
		if err := createDatabase(u, name); err != nil {
			return err
		}
		process.dbName = name
		ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
		defer cancel()
		conn, err := pgx.Connect(ctx, withDatabase(u, name).String())
		if err != nil {
			return fmt.Errorf("pgtest: connect to %s: %w", name, err)
		}
		process.conn = conn
		return nil
	}()
	return process.err
}

// withDatabase returns server's URL with the database name set.
func withDatabase(server *url.URL, name string) *url.URL {
	u := *server
	u.Path = "/" + name
	return &u
}

// admin connects to the server's own database, starting the server once if
// it does not answer.
func admin(server *url.URL) (*pgx.Conn, error) {
	connect := func() (*pgx.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
		defer cancel()
		return pgx.Connect(ctx, server.String())
	}
	conn, err := connect()
	if err == nil {
		return conn, nil
	}
	if !process.started && os.Geteuid() == 0 {
		process.started = true
		if startErr := startServer(); startErr == nil {
			deadline := time.Now().Add(15 * time.Second)
			for time.Now().Before(deadline) {
				if conn, err = connect(); err == nil {
					return conn, nil
				}
				time.Sleep(200 * time.Millisecond)
			}
		} else {
			err = fmt.Errorf("%w; starting it failed: %v", err, startErr)
		}
	}
	return nil, fmt.Errorf("pgtest: PostgreSQL does not answer at %s: %v\n"+
		"Start it (as root: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start),\n"+
		"or point %s at a server where the user may create databases", redacted(server), err, EnvURL)
}

// startServer starts the machine's PostgreSQL cluster "main".
func startServer() error {
	entries, err := os.ReadDir("/etc/postgresql")
	if err != nil || len(entries) == 0 {
		return fmt.Errorf("no cluster in /etc/postgresql: %v", err)
	}
	version := entries[len(entries)-1].Name()
	out, err := exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctlcluster %s main start: %v: %s", version, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// sweepStale drops the test databases left by test processes of this
// machine that are gone (killed before Main could drop them), so that they
// do not pile up on a machine that runs the tests again and again. It only
// looks at a server on loopback, whose test databases are this machine's,
// and leaves alone any name whose process still runs.
func sweepStale(server *url.URL) {
	host := server.Hostname()
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return
	}
	conn, err := admin(server)
	if err != nil {
		return
	}
	defer conn.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 'parley\_test\_%'`)
	if err != nil {
		return
	}
	var stale []string
	for rows.Next() {
		var name string
		if rows.Scan(&name) != nil {
			continue
		}
		pidText, _, _ := strings.Cut(strings.TrimPrefix(name, "parley_test_"), "_")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue // not ours, or its process still runs
		}
		stale = append(stale, name)
	}
	rows.Close()
	for _, name := range stale {
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}
}

func createDatabase(server *url.URL, name string) error {
	conn, err := admin(server)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	return nil
}

func dropDatabase(server *url.URL, name string) error {
	conn, err := admin(server)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// FORCE: a store a test forgot to close does not keep it.
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("pgtest: drop database %s: %w", name, err)
	}
	return nil
}

// redacted is u without its password, for messages.
func redacted(u *url.URL) string { return u.Redacted() }
