package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/wire"
)

// Connection timings that the server does not dictate.
const (
	// dialTimeout bounds the TCP and TLS handshakes and the upgrade.
	dialTimeout = 15 * time.Second
	// helloTimeout bounds the wait for hello after the upgrade.
	helloTimeout = 10 * time.Second
	// writeTimeout bounds one frame write; a write that cannot finish in
	// it means the link is dead, and the connection is dropped.
	writeTimeout = 10 * time.Second
	// requestTimeout bounds the wait for a reply.
	requestTimeout = 30 * time.Second
	// defaultHeartbeat is assumed when hello names none.
	defaultHeartbeat = 25 * time.Second
	// maxServerFrame is the largest frame the client reads: the contract
	// promises no server frame exceeds 1 MiB.
	maxServerFrame = 1<<20 + 64<<10
)

// Causes of a session's end.
var (
	errClosing  = errors.New("client closing")
	errRestart  = errors.New("reconnect requested")
	errDeadLink = errors.New("dead link: nothing received for two heartbeats")
	errConnLost = parley.Errorf(parley.CodeUnavailable, "connection lost")
)

// unauthorizedError says the server refused the access token: HTTP 401 on
// the upgrade or close code 4001. The client refreshes and reconnects.
type unauthorizedError struct {
	token string
	err   error
}

func (e *unauthorizedError) Error() string { return "unauthenticated: " + e.err.Error() }
func (e *unauthorizedError) Unwrap() error { return e.err }

// disabledError says the account was deleted or disabled (close 4003): the
// client does not reconnect.
type disabledError struct{ err error }

func (e *disabledError) Error() string { return "account disabled: " + e.err.Error() }
func (e *disabledError) Unwrap() error { return e.err }

// session is one authenticated WebSocket connection and the goroutines that
// work on it: the reader (the goroutine of Client.runSession), the dead-link
// watchdog, the syncer (sync, then gap filling), the outbox sender, the
// receipt sender and the token renewer. All of them end with ctx, and
// runSession waits for them before it returns.
type session struct {
	c         *Client
	ws        *websocket.Conn
	me        string
	hello     wire.Hello
	heartbeat time.Duration
	ctx       context.Context
	cancel    context.CancelCauseFunc
	wg        sync.WaitGroup
	// lastRecv is when anything (a frame, a ping, a pong) last arrived, in
	// Unix nanoseconds.
	lastRecv atomic.Int64
	// fillKick wakes the syncer's gap filler.
	fillKick chan struct{}

	mu sync.Mutex // guards the fields below
	// token and renewAt are the access token the server holds for this
	// connection and when to replace it.
	token   string
	renewAt time.Time
	nextID  uint64
	waiters map[string]chan wire.Frame
	// dirty are conversations the gap filler must look at, with what it
	// must do.
	dirty map[string]fillNeed
}

// fillNeed says what the gap filler must do for a conversation.
type fillNeed uint8

const (
	// fillMessages: fetch the messages between the contiguous run and the
	// last seq known.
	fillMessages fillNeed = 1 << iota
	// fillObject: fetch the conversation itself (a stub, or one sync did
	// not mention).
	fillObject
)

func (s *session) touch() { s.lastRecv.Store(time.Now().UnixNano()) }

func (s *session) sinceRecv() time.Duration {
	return time.Since(time.Unix(0, s.lastRecv.Load()))
}

// dial opens the WebSocket to server number idx with token and waits for
// hello. The session it returns has not started its goroutines.
func (c *Client) dial(ctx context.Context, idx int, cr credentials) (*session, error) {
	s := &session{
		c:        c,
		me:       cr.User.ID,
		token:    cr.AccessToken,
		renewAt:  cr.renewAt(),
		waiters:  map[string]chan wire.Frame{},
		dirty:    map[string]fillNeed{},
		fillKick: make(chan struct{}, 1),
	}
	s.touch()
	u := *c.servers[idx]
	u.Path = strings.TrimRight(u.Path, "/") + "/ws"
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	ws, resp, err := websocket.Dial(dctx, u.String(), &websocket.DialOptions{
		HTTPClient:   c.httpClient,
		HTTPHeader:   http.Header{"Authorization": {"Bearer " + cr.AccessToken}},
		Subprotocols: []string{wire.Subprotocol},
		// coder/websocket answers pings while a reader runs; these hooks
		// only feed the dead-link watchdog.
		OnPingReceived: func(context.Context, []byte) bool { s.touch(); return true },
		OnPongReceived: func(context.Context, []byte) { s.touch() },
	})
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusUnauthorized {
			return nil, &unauthorizedError{token: cr.AccessToken, err: fmt.Errorf("dial %s: %w", u.Redacted(), err)}
		}
		return nil, fmt.Errorf("dial %s: %w", u.Redacted(), err)
	}
	ws.SetReadLimit(maxServerFrame)
	s.ws = ws
	s.ctx, s.cancel = context.WithCancelCause(ctx)

	hctx, hcancel := context.WithTimeout(s.ctx, helloTimeout)
	defer hcancel()
	_, data, err := ws.Read(hctx)
	if err != nil {
		s.cancel(err)
		ws.CloseNow()
		return nil, closeError(fmt.Errorf("wait for hello: %w", err), cr.AccessToken)
	}
	s.touch()
	f, err := wire.Decode(data)
	if err == nil && f.Type != wire.TypeHello {
		err = fmt.Errorf("first frame is %q", f.Type)
	}
	if err == nil {
		err = wire.DecodePayload(f, &s.hello)
	}
	if err != nil {
		s.cancel(err)
		ws.CloseNow()
		return nil, fmt.Errorf("wait for hello: %w", err)
	}
	s.heartbeat = time.Duration(s.hello.HeartbeatS) * time.Second
	if s.heartbeat <= 0 {
		s.heartbeat = defaultHeartbeat
	}
	return s, nil
}

// closeError classifies an error that ended a connection by its close
// code, as the contract's table says (wire.CloseCodes): 4001 asks for a
// refresh, 4003 for stopping.
func closeError(err error, token string) error {
	switch wire.CloseThen(int(websocket.CloseStatus(err))) {
	case wire.ThenRefresh:
		return &unauthorizedError{token: token, err: err}
	case wire.ThenStop:
		return &disabledError{err: err}
	}
	return err
}

// read is the reader loop. It returns why the connection ended.
func (s *session) read() error {
	for {
		_, data, err := s.ws.Read(s.ctx)
		if err != nil {
			// The server's close code says more than a write that failed
			// meanwhile because the server closed (a 4003 must not look
			// like a lost link); the client's own reasons to end win.
			cause := context.Cause(s.ctx)
			if cause != nil && (closeStatus(err) == -1 || errors.Is(cause, errRestart) ||
				errors.Is(cause, errClosing) || errors.Is(cause, errSignedOut)) {
				return cause
			}
			s.mu.Lock()
			token := s.token
			s.mu.Unlock()
			return closeError(fmt.Errorf("read: %w", err), token)
		}
		s.touch()
		f, err := wire.Decode(data)
		if err != nil {
			s.c.log.Warn("parley: malformed frame from server", "err", err)
			continue
		}
		if drop := s.c.cfg.dropFrame; drop != nil && drop(f) {
			continue
		}
		if f.ID != "" && s.deliver(f) {
			continue
		}
		s.c.handleFrame(s, f)
	}
}

// deliver hands a reply to the request waiting for it.
func (s *session) deliver(f wire.Frame) bool {
	s.mu.Lock()
	ch, ok := s.waiters[f.ID]
	delete(s.waiters, f.ID)
	s.mu.Unlock()
	if ok {
		ch <- f // buffered for exactly this one reply
	}
	return ok
}

// watchdog drops the connection when nothing arrived for two heartbeats:
// the server pings every heartbeat, so silence means the link is dead
// even if TCP has not noticed (no FIN, no RST).
func (s *session) watchdog() {
	defer s.wg.Done()
	t := time.NewTicker(max(s.heartbeat/4, 50*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			if s.sinceRecv() > 2*s.heartbeat {
				s.cancel(errDeadLink)
				return
			}
		}
	}
}

// write sends one frame. A write that fails or times out ends the session:
// the link is broken. The caller's context is not used for the write
// itself, because a cancelled write kills the whole connection.
func (s *session) write(typ, id string, payload any) error {
	b, err := wire.Encode(typ, id, payload)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(s.ctx, writeTimeout)
	defer cancel()
	if err := s.ws.Write(ctx, websocket.MessageText, b); err != nil {
		err = fmt.Errorf("write %s: %w", typ, err)
		s.cancel(err)
		return errConnLost
	}
	if hook := s.c.cfg.sentFrame; hook != nil {
		hook(typ, payload)
	}
	return nil
}

// request sends a frame with a fresh id and waits for the reply with that
// id. An error frame comes back as a *parley.Error; a lost connection as
// errConnLost.
func (s *session) request(ctx context.Context, typ string, payload any) (wire.Frame, error) {
	p, err := s.start(typ, payload)
	if err != nil {
		return wire.Frame{}, err
	}
	return p.wait(ctx)
}

// pending is a request on the wire whose reply has not been taken yet.
type pending struct {
	s   *session
	id  string
	typ string
	ch  chan wire.Frame
}

// start sends a frame with a fresh id; wait takes its reply. Splitting the
// two lets a caller order its writes under a lock without waiting for the
// answers under it.
func (s *session) start(typ string, payload any) (*pending, error) {
	p := &pending{s: s, typ: typ, ch: make(chan wire.Frame, 1)}
	s.mu.Lock()
	s.nextID++
	p.id = strconv.FormatUint(s.nextID, 10)
	s.waiters[p.id] = p.ch
	s.mu.Unlock()
	if err := s.write(typ, p.id, payload); err != nil {
		s.forget(p.id)
		return nil, err
	}
	return p, nil
}

// forget drops the waiter of a request.
func (s *session) forget(id string) {
	s.mu.Lock()
	delete(s.waiters, id)
	s.mu.Unlock()
}

// wait waits for the reply of a request started with start.
func (p *pending) wait(ctx context.Context) (wire.Frame, error) {
	defer p.s.forget(p.id)
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	select {
	case f := <-p.ch:
		if f.Type == wire.TypeError {
			return f, frameError(f)
		}
		return f, nil
	case <-p.s.ctx.Done():
		return wire.Frame{}, errConnLost
	case <-ctx.Done():
		if p.s.ctx.Err() == nil && ctx.Err() == context.DeadlineExceeded {
			return wire.Frame{}, parley.Errorf(parley.CodeUnavailable, "no reply to %s", p.typ)
		}
		return wire.Frame{}, ctx.Err()
	}
}

// frameError turns an error frame into a *parley.Error.
func frameError(f wire.Frame) error {
	var p wire.Error
	if err := wire.DecodePayload(f, &p); err != nil || p.Code == "" {
		return parley.Errorf(parley.CodeInternal, "malformed error frame")
	}
	e := parley.Errorf(p.Code, "%s", p.Message)
	if p.Code == parley.CodeRateLimited {
		e.RetryAfter = time.Duration(p.RetryAfterMS) * time.Millisecond
	}
	return e
}

// markDirty asks the gap filler to look at a conversation.
func (s *session) markDirty(convID string, need fillNeed) {
	s.mu.Lock()
	s.dirty[convID] |= need
	s.mu.Unlock()
	select {
	case s.fillKick <- struct{}{}:
	default:
	}
}

// takeDirty returns and clears the conversations to fill.
func (s *session) takeDirty() map[string]fillNeed {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dirty
	s.dirty = map[string]fillNeed{}
	return d
}

// renewer keeps the connection's token fresh: at 80% of its lifetime it
// gets a fresh access token (refreshing if no one else did) and sends it
// in an auth frame, so that the server does not close with 4001.
func (s *session) renewer() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		at := s.renewAt
		s.mu.Unlock()
		t := time.NewTimer(time.Until(at))
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		cr, err := s.c.freshCredentials(s.ctx)
		if err == nil {
			_, err = s.request(s.ctx, wire.TypeAuth, wire.Auth{Token: cr.AccessToken})
		}
		if err != nil {
			if s.ctx.Err() != nil || isUnauthenticated(err) {
				// Signed out, or the server refused the token and is
				// closing with 4001: the connection loop takes over.
				return
			}
			s.c.log.Warn("parley: token renewal failed, retrying", "err", err)
			s.mu.Lock()
			s.renewAt = time.Now().Add(time.Second)
			s.mu.Unlock()
			continue
		}
		s.mu.Lock()
		s.token, s.renewAt = cr.AccessToken, cr.renewAt()
		s.mu.Unlock()
	}
}
