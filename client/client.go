package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/wire"
)

// Config configures a Client. Profile and Servers are required; every
// other zero value takes its default.
type Config struct {
	// Profile is the folder of this login: credentials and the local
	// database. It is created with mode 0700. Several users on one machine
	// use several profiles.
	Profile string
	// Servers are the base URLs of the server's nodes
	// ("http://127.0.0.1:8080", "https://chat.example.com"). The client
	// uses one at a time and moves to the next when it fails.
	Servers []string
	// HTTPClient makes the REST calls and the WebSocket upgrades (default:
	// a client with its own transport, so that tests can point it at a
	// proxy).
	HTTPClient *http.Client
	// Logger receives what has no caller to return to (default: nothing).
	Logger *slog.Logger
	// EventBuffer is the length of the Events channel (default 256).
	EventBuffer int
	// ReconnectBase and ReconnectCap bound the reconnect backoff (default
	// 500 ms and 30 s); StableAfter is how long a connection must have
	// stayed up for the backoff to start over (default 1 minute).
	ReconnectBase, ReconnectCap, StableAfter time.Duration

	// dropFrame, if set, makes the reader ignore the server frames it
	// returns true for: tests use it to lose a message.new.
	dropFrame func(wire.Frame) bool
	// sentFrame, if set, is told of every frame written to the server:
	// tests use it to watch what goes out on the wire.
	sentFrame func(typ string, payload any)
}

// ConnState is the state of the client's connection.
type ConnState string

// Connection states.
const (
	// StateOffline: not connected; waiting to reconnect.
	StateOffline ConnState = "offline"
	// StateConnecting: dialing, or waiting for hello.
	StateConnecting ConnState = "connecting"
	// StateOnline: connected and authenticated. Sync runs right after;
	// WaitSynced says when it is done.
	StateOnline ConnState = "online"
	// StateSignedOut: no valid login (never logged in, logged out, or the
	// login was revoked). Register or Login to go on.
	StateSignedOut ConnState = "signed_out"
	// StateDisabled: the server closed with 4003 (account deleted or
	// disabled). The client does not reconnect until the next Login.
	StateDisabled ConnState = "disabled"
)

// Client is a Parley account on one device: the local store, the
// connection and its workers. It is safe for concurrent use. Close it to
// stop every goroutine it started.
type Client struct {
	cfg        Config
	log        *slog.Logger
	profile    *profile
	store      *store
	httpClient *http.Client
	ownHTTP    bool // httpClient was made by Open, which closes its connections
	servers    []*url.URL
	events     *emitter
	typist     *typist
	progress   progressFuncs

	// ctx ends with Close; every goroutine of the client watches it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// authMu serializes Register, Login and Logout.
	authMu sync.Mutex
	// refreshMu makes refreshes happen one at a time in this process (the
	// profile lock does it across processes).
	refreshMu sync.Mutex
	// appMu orders the app.state writes (SetAppState, a new connection's);
	// it is taken before mu.
	appMu sync.Mutex

	// kick wakes the connection loop (a login, Reconnect); sendKick the
	// outbox sender; receiptKick the receipt sender.
	kick, sendKick, receiptKick chan struct{}

	mu sync.Mutex // guards the fields below
	// creds is the login; nil when signed out.
	creds *credentials
	state ConnState
	// paused stops the connection loop from starting a session while a
	// login or logout replaces the account under it.
	paused   bool
	disabled bool
	sess     *session
	// synced is the session whose initial sync is complete.
	synced *session
	// server is the index in servers of the node in use.
	server int
	// rooms are the conversations the application joined; they are joined
	// again on every connection.
	rooms map[string]bool
	// appState is the application's state (SetAppState); a background one
	// is sent again on every connection.
	appState AppState
	// changed is closed and replaced whenever the state, the sync or the
	// outbox changed: waiters (WaitSynced, WaitSent) re-check then.
	changed chan struct{}
	closed  bool
}

// Open opens the profile (creating it if needed) and starts the client. If
// the profile holds a login, the client starts connecting at once;
// otherwise it waits for Register or Login. Local reads work either way.
// ctx bounds only the opening of the database.
func Open(ctx context.Context, cfg Config) (*Client, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("client: no server URL")
	}
	c := &Client{
		cfg:         cfg,
		log:         cfg.Logger,
		httpClient:  cfg.HTTPClient,
		kick:        make(chan struct{}, 1),
		sendKick:    make(chan struct{}, 1),
		receiptKick: make(chan struct{}, 1),
		state:       StateSignedOut,
		rooms:       map[string]bool{},
		appState:    AppForeground,
		changed:     make(chan struct{}),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.httpClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		// A server that accepts a request and then says nothing is as
		// good as down.
		tr.ResponseHeaderTimeout = requestTimeout
		c.httpClient = &http.Client{Transport: tr}
		c.ownHTTP = true
	}
	if c.cfg.EventBuffer <= 0 {
		c.cfg.EventBuffer = 256
	}
	if c.cfg.ReconnectBase <= 0 {
		c.cfg.ReconnectBase = 500 * time.Millisecond
	}
	if c.cfg.ReconnectCap <= 0 {
		c.cfg.ReconnectCap = 30 * time.Second
	}
	if c.cfg.StableAfter <= 0 {
		c.cfg.StableAfter = time.Minute
	}
	for _, s := range cfg.Servers {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("client: server URL %q must be http:// or https:// with a host", s)
		}
		c.servers = append(c.servers, u)
	}
	var err error
	if c.profile, err = openProfile(cfg.Profile); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if c.creds, err = c.profile.loadCredentials(); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if c.store, err = openStore(ctx, c.profile.path(databaseFile)); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if c.creds != nil {
		// A crash between a login's two writes can leave the database of
		// another user than the credentials: setUser wipes it then.
		if err := c.store.setUser(ctx, c.creds.User); err != nil {
			c.store.close()
			return nil, fmt.Errorf("client: %w", err)
		}
		c.state = StateOffline
	}
	if err := c.sweepUploads(ctx, orphanAge); err != nil {
		c.log.Warn("parley: delete orphaned uploads", "err", err)
	}
	c.events = newEmitter(c.cfg.EventBuffer)
	c.typist = newTypist()
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(3)
	go func() { defer c.wg.Done(); c.events.pump(c.ctx) }()
	go func() { defer c.wg.Done(); c.typist.run(c.ctx, c) }()
	go func() { defer c.wg.Done(); c.connectLoop() }()
	return c, nil
}

// Close stops the client: it closes the connection (with 1000 when the
// link is healthy), stops every goroutine, closes the Events channel and
// the local database. Unsent messages stay in the outbox for the next
// Open. Calling Close again does nothing.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	sess := c.sess
	c.mu.Unlock()
	if sess != nil {
		sess.goodbye()
	}
	c.cancel()
	c.wg.Wait()
	if c.ownHTTP {
		c.httpClient.CloseIdleConnections()
	}
	return c.store.close()
}

// Events returns the channel of events for a UI. It is bounded (Config.
// EventBuffer): an application that does not drain it loses events and
// then gets one EventResync, never blocking the client. It is closed by
// Close.
func (c *Client) Events() <-chan Event { return c.events.out }

// State returns the connection state.
func (c *Client) State() ConnState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// User returns the logged-in user, if any.
func (c *Client) User() (parley.User, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.creds == nil {
		return parley.User{}, false
	}
	return c.creds.User, true
}

// Hello is what the server said when a connection opened: the user, the
// connection's session id, its device id (the login, that is the
// refresh-token family, which the server counts as one device for push
// notifications; empty from a server without that extension), the
// server's clock and the heartbeat.
type Hello = wire.Hello

// Hello returns the hello of the current connection; false while not
// connected.
func (c *Client) Hello() (Hello, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		return Hello{}, false
	}
	return c.sess.hello, true
}

// me returns the logged-in user's id, or "" when signed out.
func (c *Client) me() string {
	u, _ := c.User()
	return u.ID
}

// Reconnect drops the connection, if any, and connects again at once with
// the backoff reset: call it when the device's network changed.
func (c *Client) Reconnect() {
	c.mu.Lock()
	sess := c.sess
	c.mu.Unlock()
	if sess != nil {
		sess.cancel(errRestart) // the loop reconnects at once
		return
	}
	c.wake()
}

// WaitSynced waits until the client is online and its first sync on the
// current connection is complete: the local store then holds everything
// the server had when the sync ran (gaps are still being filled).
func (c *Client) WaitSynced(ctx context.Context) error {
	for {
		c.mu.Lock()
		ok := c.synced != nil && c.synced == c.sess
		ch := c.changed
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// notifyLocked wakes the waiters of changed. c.mu must be held.
func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Client) notify() {
	c.mu.Lock()
	c.notifyLocked()
	c.mu.Unlock()
}

// setState records a connection state and emits it when it changed.
func (c *Client) setState(st ConnState, err error) {
	c.mu.Lock()
	if c.state == st {
		c.mu.Unlock()
		return
	}
	c.state = st
	c.notifyLocked()
	// Emitted under mu so that state events come in the order of the
	// changes; emit never blocks and never takes mu.
	c.events.emit(Event{Type: EventConnection, State: st, Err: err})
	c.mu.Unlock()
}

func (c *Client) wake() { signal(c.kick) }

// signal does a non-blocking send on a wake-up channel of length 1.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (c *Client) serverURL() url.URL {
	c.mu.Lock()
	defer c.mu.Unlock()
	return *c.servers[c.server]
}

// connectLoop keeps a session running while there is a login: it
// connects, runs the session until it ends, and reconnects after a
// backoff with full jitter, moving to the next server after a failed dial
// or a 1001.
func (c *Client) connectLoop() {
	attempt := 0
	authRetried := false
	for {
		c.mu.Lock()
		cr, idle := c.creds, c.paused || c.disabled || c.closed
		c.mu.Unlock()
		if cr == nil || idle {
			select {
			case <-c.ctx.Done():
				return
			case <-c.kick:
				attempt = 0
				continue
			}
		}
		c.setState(StateConnecting, nil)
		started := time.Now()
		established, err := c.runSession()
		if c.ctx.Err() != nil {
			return
		}
		if established && time.Since(started) >= c.cfg.StableAfter {
			// A stable connection starts the backoff over, and earns
			// another immediate reconnect after a 4001.
			attempt, authRetried = 0, false
		}
		var (
			unauth   *unauthorizedError
			disabled *disabledError
		)
		switch {
		case errors.Is(err, errRestart):
			attempt, authRetried = 0, false
			continue
		case errors.As(err, &disabled):
			c.disable(cr, err)
			continue
		case errors.As(err, &unauth):
			// The token expired or was revoked under the connection:
			// refresh, then reconnect at once; a second refusal in a row
			// goes through the backoff.
			if _, rerr := c.refresh(c.ctx, unauth.token); rerr != nil {
				if isUnauthenticated(rerr) {
					continue // signed out; wait for a login
				}
				err = rerr
			} else if !authRetried {
				authRetried = true
				continue
			}
		case errors.Is(err, errSignedOut):
			continue
		default:
			authRetried = false
			if !established || isGoingAway(err) {
				c.nextServer()
			}
		}
		c.setState(StateOffline, err)
		c.log.Info("parley: disconnected", "err", err)
		delay := backoff(attempt, c.cfg.ReconnectBase, c.cfg.ReconnectCap)
		attempt++
		t := time.NewTimer(delay)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return
		case <-c.kick:
			t.Stop()
			attempt = 0
		case <-t.C:
		}
	}
}

// backoff returns the wait before reconnect attempt n (from 0): a uniform
// random duration between 0 and min(cap, base·2ⁿ) ("full jitter"), so
// that clients cut off together do not come back together.
func backoff(n int, base, cap time.Duration) time.Duration {
	d := cap
	if n < 32 && base<<n > 0 && base<<n < cap {
		d = base << n
	}
	return rand.N(d + 1)
}

// nextServer moves to the next server URL.
func (c *Client) nextServer() {
	c.mu.Lock()
	c.server = (c.server + 1) % len(c.servers)
	c.mu.Unlock()
}

// isGoingAway reports whether the server closed with a code that sends the
// client to another node if there is one (1001: restart or drain).
func isGoingAway(err error) bool {
	return wire.CloseThen(int(closeStatus(err))) == wire.ThenReconnectElsewhere
}

// runSession connects and serves one session until it ends. established
// says whether the connection got as far as hello.
func (c *Client) runSession() (established bool, err error) {
	cr, err := c.freshCredentials(c.ctx)
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	idx := c.server
	c.mu.Unlock()
	s, err := c.dial(c.ctx, idx, cr)
	if err != nil {
		return false, err
	}
	c.appMu.Lock()
	c.mu.Lock()
	if c.closed || c.paused || c.creds == nil || c.creds.User.ID != s.me {
		c.mu.Unlock()
		c.appMu.Unlock()
		s.cancel(errRestart)
		s.ws.CloseNow()
		return true, errRestart
	}
	c.sess = s
	app := c.appState
	c.mu.Unlock()
	// Before any other frame: the connection counts as showing messages
	// (no pushes) until the server hears that the app is in the background.
	c.announceAppState(s, app)
	c.appMu.Unlock()
	c.setState(StateOnline, nil)
	c.log.Info("parley: connected", "server", c.servers[idx].Redacted(), "session", s.hello.SessionID,
		"device", s.hello.DeviceID)

	s.wg.Add(5)
	go s.watchdog()
	go s.renewer()
	go c.syncLoop(s)
	go c.sendLoop(s)
	go c.receiptLoop(s)
	err = s.read()
	s.cancel(err)
	s.ws.CloseNow()
	s.wg.Wait()

	c.mu.Lock()
	c.sess = nil
	if c.synced == s {
		c.synced = nil
	}
	c.notifyLocked()
	c.mu.Unlock()
	return true, err
}

// goodbye closes the connection with 1000 when the link looks healthy,
// waiting at most a second for the server's answer, then ends the session.
func (s *session) goodbye() {
	if s.sinceRecv() < s.heartbeat {
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = s.ws.Close(1000, "bye") // the session ends either way
		}()
		t := time.NewTimer(time.Second)
		select {
		case <-done:
		case <-t.C:
		}
		t.Stop()
		s.cancel(errClosing)
		<-done
		return
	}
	s.cancel(errClosing)
}
