package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/wire"
)

// The contract's close codes (wire.CloseCodes) as the socket library takes
// them.
const (
	closeGoingAway       = int(wire.CloseGoingAway)
	closeInvalidUTF8     = int(wire.CloseInvalidUTF8)
	closeTooBig          = int(wire.CloseTooBig)
	closeInternal        = int(wire.CloseInternal)
	closeTryAgainLater   = int(wire.CloseTryAgainLater)
	closeUnauthenticated = int(wire.CloseUnauthenticated)
	closeDisabled        = int(wire.CloseDisabled)
	// closeAbnormal is recorded (never sent) when the transport failed or
	// the peer stopped answering.
	closeAbnormal = websocket.CloseAbnormalClosure
)

// outFrame is one text frame waiting in a send queue. Event frames are
// shared by every recipient and must not be modified.
type outFrame struct {
	data []byte
	// pm, when set, is data framed once for many recipients: writing it
	// neither copies nor allocates, where WriteMessage copies data into a
	// pooled buffer and allocates a little to return it.
	pm *websocket.PreparedMessage
}

func (f *outFrame) writeTo(ws *websocket.Conn) error {
	if f.pm != nil {
		return ws.WritePreparedMessage(f.pm)
	}
	return ws.WriteMessage(websocket.TextMessage, f.data)
}

// conn is one WebSocket connection. The goroutine that served the upgrade
// owns it: it runs the writer, starts the reader, and releases everything
// when both have ended.
type conn struct {
	g   *Gateway
	ws  *websocket.Conn
	id  string // session id, sent in hello and used as the events' Origin
	log *slog.Logger

	// send is the bounded queue of frames for the writer. Anyone may
	// enqueue without blocking; only the writer receives.
	send chan *outFrame
	// ready is closed once hello is queued and the connection is indexed.
	ready chan struct{}
	// quit is closed by shut: the connection is closing.
	quit chan struct{}
	// readerDone is closed when the reader goroutine returns.
	readerDone chan struct{}

	// ctx is the context of the connection's requests; shut cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	closeOnce sync.Once
	// Set once by shut, before quit is closed.
	closeCode   int
	closeReason string
	closeFrame  bool // whether the close frame is still to be sent

	// userID is set once, before the connection is indexed or ready is
	// closed, and never changes: a re-auth must be of the same user.
	userID string

	// lastEvent is the number of the last event queued to this
	// connection, to skip duplicates within one fan-out.
	lastEvent atomic.Uint64

	// background is set while the client says its app is in the
	// background (app.state): the connection then does not count as live
	// for push notifications. A new connection is in the foreground.
	background atomic.Bool

	// unwatch releases the bus's delivery of the user's events here; set
	// by begin before the connection is ready, called by release.
	unwatch func()

	// deviceID is the login (refresh-token family) of the token in force:
	// the device the connection belongs to, for push notifications. Set
	// before the connection is indexed, and by a re-auth.
	deviceID atomic.Pointer[string]

	mu         sync.Mutex // guards familyID, expiry, rooms and registered
	familyID   string
	expiry     *time.Timer
	rooms      map[string]struct{} // conversations joined
	registered bool                // in the user index (counted in Connections)
}

// device returns the login the connection belongs to ("" before
// authentication).
func (c *conn) device() string {
	if d := c.deviceID.Load(); d != nil {
		return *d
	}
	return ""
}

func newConn(g *Gateway, ws *websocket.Conn) (*conn, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("session id: %w", err)
	}
	ctx, cancel := context.WithCancel(g.base)
	c := &conn{
		g:          g,
		ws:         ws,
		id:         id.String(),
		send:       make(chan *outFrame, g.opts.SendQueue),
		ready:      make(chan struct{}),
		quit:       make(chan struct{}),
		readerDone: make(chan struct{}),
		ctx:        ctx,
		cancel:     cancel,
	}
	c.log = g.log.With("session", c.id)
	ws.SetReadLimit(g.opts.MaxFrameBytes)
	return c, nil
}

// serve runs the connection to its end: the reader in a goroutine of its
// own, the writer in this one, then the release of everything it held.
// claims is nil when the first frame must authenticate.
func (c *conn) serve(claims *auth.Claims, token string) {
	c.g.track(c)
	if c.g.isClosed() {
		// Shutdown began after this upgrade was accepted and may have
		// missed it while closing the others.
		c.shut(closeGoingAway, "server shutting down", true)
	}
	go c.readLoop(claims, token)
	c.writeLoop()
	c.finish()
	c.g.release(c)
}

// shut starts closing the connection with code; only the first call counts,
// and it reports whether it was the first. sendFrame is false when no close
// frame must be sent: the peer closed first (gorilla answered it), or the
// transport is gone. It never blocks.
func (c *conn) shut(code int, reason string, sendFrame bool) bool {
	first := false
	c.closeOnce.Do(func() {
		first = true
		c.closeCode, c.closeReason, c.closeFrame = code, reason, sendFrame
		c.cancel()
		close(c.quit)
	})
	return first
}

func (c *conn) closing() bool {
	select {
	case <-c.quit:
		return true
	default:
		return false
	}
}

// enqueue queues f for the writer without blocking. A full queue closes the
// connection with 1013: skipping the frame would leave a silent gap.
func (c *conn) enqueue(f *outFrame) bool {
	if c.closing() {
		return false
	}
	select {
	case c.send <- f:
		return true
	default:
		if c.shut(closeTryAgainLater, "too slow", true) {
			c.g.m.SlowConsumers.Inc()
			c.log.Info("slow consumer: send queue full", "user", c.userID)
		}
		return false
	}
}

// writeLoop is the only writer of data frames: it writes what is queued and
// pings every heartbeat, until the connection starts closing or a write
// fails.
func (c *conn) writeLoop() {
	select {
	case <-c.ready:
	case <-c.quit:
		return
	}
	ping := time.NewTicker(c.g.opts.Heartbeat)
	defer ping.Stop()
	for {
		select {
		case f := <-c.send:
			if err := c.writeBatch(f, time.Now().Add(writeTimeout)); err != nil {
				c.shut(closeAbnormal, "", false)
				return
			}
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeTimeout)); err != nil {
				c.shut(closeAbnormal, "", false)
				return
			}
		case <-c.quit:
			return
		}
	}
}

// writeBatch writes f and whatever else is queued at the moment, under one
// deadline, stopping early when the connection starts closing.
func (c *conn) writeBatch(f *outFrame, deadline time.Time) error {
	if err := c.ws.SetWriteDeadline(deadline); err != nil {
		return err
	}
	if err := f.writeTo(c.ws); err != nil {
		return err
	}
	for n := len(c.send); n > 0 && !c.closing(); n-- {
		if err := (<-c.send).writeTo(c.ws); err != nil {
			return err
		}
	}
	return nil
}

// finish completes the close after the writer stopped: it flushes what is
// queued (except for a slow consumer), sends the close frame, waits a
// little for the peer's answer, and closes the socket.
func (c *conn) finish() {
	<-c.quit // the writer only stops once shut was called
	if c.closeFrame {
		deadline := time.Now().Add(closeGrace)
		if c.closeCode != closeTryAgainLater {
			_ = c.ws.SetWriteDeadline(deadline)
		flush:
			for {
				select {
				case f := <-c.send:
					if f.writeTo(c.ws) != nil {
						break flush
					}
				default:
					break flush
				}
			}
		}
		// Fails harmlessly when gorilla already sent one (1002, 1009).
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(c.closeCode, c.closeReason), deadline)
	}
	t := time.NewTimer(closeGrace)
	select {
	case <-c.readerDone:
	case <-t.C:
	}
	t.Stop()
	_ = c.ws.Close()
	<-c.readerDone
}

// readLoop reads frames until the connection closes. Without claims it
// first waits for the auth frame.
func (c *conn) readLoop(claims *auth.Claims, token string) {
	defer close(c.readerDone)
	var helloID string
	if claims == nil {
		var ok bool
		claims, token, helloID, ok = c.readAuth()
		if !ok {
			return
		}
	}
	// When begin fails it has started the close; the loop below then only
	// waits for the peer's close frame.
	c.begin(*claims, token, helloID)

	hb := 2 * c.g.opts.Heartbeat
	pushDeadline := func(string) error { return c.ws.SetReadDeadline(time.Now().Add(hb)) }
	c.ws.SetPongHandler(pushDeadline)
	defaultPing := c.ws.PingHandler()
	c.ws.SetPingHandler(func(data string) error {
		_ = pushDeadline(data)
		return defaultPing(data)
	})
	for {
		if err := pushDeadline(""); err != nil {
			c.shut(closeAbnormal, "", false)
			return
		}
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			c.readFailed(err)
			return
		}
		if typ == websocket.TextMessage && !utf8.Valid(data) {
			c.g.received(typeMalformed)
			c.shut(closeInvalidUTF8, "invalid UTF-8", true)
			c.discard()
			return
		}
		if c.closing() {
			continue // wait for the peer's close frame; requests are over
		}
		c.handle(data)
	}
}

// readAuth reads the first frame, which must be a valid auth, within the
// auth timeout. It closes the connection and returns false otherwise.
func (c *conn) readAuth() (claims *auth.Claims, token, id string, ok bool) {
	if err := c.ws.SetReadDeadline(time.Now().Add(c.g.opts.AuthTimeout)); err != nil {
		c.shut(closeAbnormal, "", false)
		return nil, "", "", false
	}
	typ, data, err := c.ws.ReadMessage()
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.shut(closeUnauthenticated, "authentication timeout", true)
			c.discard()
			return nil, "", "", false
		}
		c.readFailed(err)
		return nil, "", "", false
	}
	if typ == websocket.TextMessage && !utf8.Valid(data) {
		c.g.received(typeMalformed)
		c.shut(closeInvalidUTF8, "invalid UTF-8", true)
		c.discard()
		return nil, "", "", false
	}
	bad := func(reason string) (*auth.Claims, string, string, bool) {
		c.shut(closeUnauthenticated, reason, true)
		c.discard()
		return nil, "", "", false
	}
	f, err := wire.Decode(data)
	if err != nil {
		c.g.received(typeMalformed)
		return bad("the first frame must be auth")
	}
	c.g.received(f.Type)
	if f.Type != wire.TypeAuth {
		return bad("the first frame must be auth")
	}
	var a wire.Auth
	if err := wire.DecodePayload(f, &a); err != nil || a.Token == "" {
		return bad("auth needs a token")
	}
	cl, err := c.g.auth.Authenticate(c.ctx, a.Token)
	if err != nil {
		if parley.ErrorCode(err) != parley.CodeUnauthenticated {
			c.log.Error("authenticate first frame", "err", err)
			c.shut(closeInternal, "internal error", true)
			c.discard()
			return nil, "", "", false
		}
		return bad("invalid or expired access token")
	}
	return &cl, a.Token, f.ID, true
}

// begin makes an authenticated connection live: hello first in the queue,
// then the connection in the user index (from then on events reach it),
// then presence. It reports false when the connection must close.
func (c *conn) begin(claims auth.Claims, token, helloID string) bool {
	if c.closing() {
		return false
	}
	c.userID = claims.UserID
	if c.g.opts.Interest != nil {
		// Before hello: the client syncs after hello, and every event
		// committed after that sync must reach this node.
		release, err := c.g.opts.Interest.Watch(c.ctx, c.userID)
		if err != nil {
			if c.ctx.Err() == nil {
				c.log.Warn("cannot receive the user's events", "user", c.userID, "err", err)
				c.shut(closeTryAgainLater, "service unavailable", true)
			}
			return false
		}
		c.unwatch = release
	}
	c.deviceID.Store(&claims.FamilyID)
	hello, err := wire.Encode(wire.TypeHello, helloID, wire.Hello{
		UserID:     c.userID,
		SessionID:  c.id,
		DeviceID:   claims.FamilyID,
		ServerTime: parley.Now(),
		HeartbeatS: c.g.heartbeatS,
	})
	if err != nil {
		c.log.Error("encode hello", "err", err)
		c.shut(closeInternal, "internal error", true)
		return false
	}
	c.send <- &outFrame{data: hello} // the queue is empty: this never waits
	c.g.framesSent[wire.TypeHello].Inc()

	c.mu.Lock()
	c.familyID = claims.FamilyID
	c.expiry = time.AfterFunc(time.Until(claims.ExpiresAt), c.expired)
	c.registered = true
	c.mu.Unlock()
	entry := c.g.addUserConn(c)
	c.g.m.Connections.Inc()
	// The directory knows the connection before the client hears hello:
	// from then on the user is online and, for pushes, in the foreground.
	first := c.g.syncPresence(c.userID, entry)
	close(c.ready)
	c.log.Debug("connected", "user", c.userID)
	if first {
		c.g.markSeen(c.userID)
	}

	// The family may have been revoked between the token check and the
	// indexing, when the revocation event could not find this connection.
	return c.confirm(token)
}

// confirm checks again that token is valid, closing with 4001 if not. It
// closes the window in which a revocation event finds no connection yet.
func (c *conn) confirm(token string) bool {
	_, err := c.g.auth.Authenticate(c.ctx, token)
	switch {
	case err == nil:
		return true
	case c.ctx.Err() != nil:
		return false
	case parley.ErrorCode(err) == parley.CodeUnauthenticated:
		c.shut(closeUnauthenticated, "session revoked", true)
	default:
		c.log.Error("confirm authentication", "err", err)
		c.shut(closeInternal, "internal error", true)
	}
	return false
}

// expired runs when the token in force expires.
func (c *conn) expired() {
	c.shut(closeUnauthenticated, "token expired", true)
}

// readFailed closes the connection after a read error.
func (c *conn) readFailed(err error) {
	var (
		ce *websocket.CloseError
		ne net.Error
	)
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		// gorilla has sent the 1009 close frame.
		c.shut(closeTooBig, "message too big", true)
		c.discard()
	case errors.As(err, &ce) && ce.Code != closeAbnormal:
		// The peer closed; gorilla answered with the same code.
		c.shut(ce.Code, "", false)
	case errors.As(err, &ce), errors.Is(err, io.EOF), errors.As(err, &ne):
		// Transport gone, or no frame nor pong for two heartbeats.
		c.shut(closeAbnormal, "", false)
	default:
		// A protocol error: gorilla has sent a 1002 close frame.
		c.shut(websocket.CloseProtocolError, "", false)
		c.discard()
	}
}

// discard keeps reading and dropping the peer's bytes for up to closeGrace,
// so that unread input does not make the kernel reset the connection before
// the close frame reaches the peer.
func (c *conn) discard() {
	nc := c.ws.NetConn()
	if err := nc.SetReadDeadline(time.Now().Add(closeGrace)); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, nc)
}

// closeCounter returns the ConnectionsClosed counter for code.
func (g *Gateway) closeCounter(code int) prometheus.Counter {
	if v, ok := g.closedByCode.Load(code); ok {
		return v.(prometheus.Counter)
	}
	ctr := g.m.ConnectionsClosed.WithLabelValues(strconv.Itoa(code))
	g.closedByCode.Store(code, ctr)
	return ctr
}

// release drops everything the connection held: its rooms, its place in
// the indexes, and, for a user's last connection, their presence.
func (g *Gateway) release(c *conn) {
	c.mu.Lock()
	if c.expiry != nil {
		c.expiry.Stop()
	}
	rooms := c.rooms
	c.rooms = nil
	registered := c.registered
	c.registered = false
	c.mu.Unlock()

	for id := range rooms {
		g.leave(c, id)
	}
	if registered {
		entry := g.removeUserConn(c)
		g.m.Connections.Dec()
		if g.syncPresence(c.userID, entry) {
			g.markSeen(c.userID)
		}
	}
	if c.unwatch != nil {
		c.unwatch()
	}
	g.untrack(c)
	g.closeCounter(c.closeCode).Inc()
	c.log.Debug("closed", "user", c.userID, "code", c.closeCode)
}

// received counts a frame received from a client by type.
func (g *Gateway) received(typ string) {
	ctr, ok := g.framesReceived[typ]
	if !ok {
		ctr = g.framesReceived[typeUnknown]
	}
	ctr.Inc()
}
