// Package natsbus is the parley.Bus of a cluster: the events of every
// node's writes reach the connections of every node through NATS, and the
// nodes keep a shared directory of who is connected (package presence) and
// shared rate limits over it.
//
// # Routing
//
// Users are spread over 64 shards by a hash of their id, and each shard has
// a subject (PREFIX.ev.u.N). A node subscribes to the shards of the users
// connected to it, and an event is published once per shard among its
// recipients, carrying only that shard's recipients: a node receives what
// concerns its users' shards, not every event of the cluster. An event whose
// recipients span more than 8 shards (a large group) is published once to
// PREFIX.ev.all, which every node receives, rather than as many copies.
// Typing goes to PREFIX.ev.all too: every node keeps who is typing where, so
// that its room.join answers are the cluster's. Presence does not travel as
// events: each node derives it from the directory.
//
// A node subscribes to a user's shard, and waits until NATS has confirmed
// the subscription (a flush), before the user's connection is served: an
// event committed after the client's first sync reaches it.
//
// # Order and duplicates
//
// All of a node's subscriptions feed one channel, read by one goroutine, so
// that what one node published reaches another in the order it was sent.
// Writes on different nodes commit in seq order (the store locks the
// conversation) but may be published in another order, and the store's
// outbox may publish an event again after a crash (at least once). So
// message.new is resequenced per subject and conversation: an event whose
// seq is not above the last one delivered is a duplicate and dropped; one
// that skips ahead waits (GapWait) for those before it, and if they do not
// come (their node died before publishing), they are read from the store
// (Options.Fill) and delivered first. Within one connection, message.new for
// a conversation therefore arrives in increasing seq, gap-free.
//
// # Failures
//
// While the connection to NATS is down, Ready answers unavailable, Publish
// fails (the store's outbox keeps the events), and OnDown is called: the
// node's clients may have missed events, so the server closes their
// sockets and they resync elsewhere. The connection is re-established by
// itself; OnUp is then called and the directory is exchanged again.
package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/localbus"
	"github.com/parley-chat/parley/internal/metrics"
	"github.com/parley-chat/parley/internal/presence"
)

// Shards is the number of user shards, each with a subject. Every node of
// a cluster must use the same number.
const Shards = 64

// maxShardCopies is the most per-shard copies of one event; an event for
// more shards goes once to the subject every node receives.
const maxShardCopies = 8

// Defaults of Options.
const (
	DefaultPrefix  = "parley"
	DefaultGapWait = 150 * time.Millisecond
	// linger is how long a shard stays subscribed after its last local
	// user left, so that a user who reconnects at once costs nothing and
	// the shard's order state stays warm.
	linger = 30 * time.Second
	// fillLimit bounds the messages read from the store to fill one gap.
	fillLimit = 500
	// fillTimeout bounds that read.
	fillTimeout = 5 * time.Second
	// staleAfter: a message.new older than this that finds no order state
	// is an old event published again (an outbox relay): it is delivered
	// without starting a state, which would make the next live event look
	// like a gap.
	staleAfter = 3 * time.Second
	// idleState is how long an order state is kept without events.
	idleState = 10 * time.Minute
	// queueLen is the length of the channels between NATS's reader and
	// the bus's goroutines.
	queueLen = 1 << 16
)

// Options configures a Bus.
type Options struct {
	// URL is the NATS server, nats://host:port (several comma-separated).
	URL string
	// Node is this node's id, unique in the cluster.
	Node string
	// Prefix starts every subject (default "parley"): clusters sharing a
	// NATS system use different prefixes.
	Prefix string
	// Fill reads the messages strictly between two seqs of a conversation,
	// ascending, at most limit (a store's MessageRange). It is called
	// when a gap in a conversation's events does not close by itself.
	Fill func(ctx context.Context, conversationID string, afterSeq, beforeSeq int64, limit int) ([]parley.Message, error)
	// GapWait is how long a message.new that skips ahead waits for the
	// ones before it before they are read from the store (default 150 ms).
	GapWait time.Duration
	// Presence configures the directory; Node and Send are set by the bus.
	Presence presence.Options
	// OnDown is called when the connection to NATS is lost, OnUp when it
	// is back. They must not block for long.
	OnDown, OnUp func()
	// Limiter is this node's own rate limiter (see Bus.Limiter). Required.
	Limiter Limiter
	// Metrics receives the bus's metrics; nil uses a private registry.
	Metrics *metrics.Metrics
	// ConnectTimeout bounds the first connection (default 5 s).
	ConnectTimeout time.Duration
	Logger         *slog.Logger
}

// Bus is a parley.Bus over NATS. It is safe for concurrent use. Close it to
// stop.
type Bus struct {
	opts    Options
	log     *slog.Logger
	nc      *nats.Conn
	dir     *presence.Directory
	subjAll string
	subjDir string
	subjMe  string

	up atomic.Bool
	// closing is set by Close: the disconnection that draining causes is
	// not a failure.
	closing atomic.Bool

	// events receives every routed event; dirMsgs every directory
	// message. Each is read by one goroutine, in order.
	events  chan *nats.Msg
	dirMsgs chan *nats.Msg
	// reset tells the event goroutine to forget its order states.
	reset chan struct{}

	handlers localbus.Handlers

	shards [Shards]shardSub

	stop chan struct{}
	wg   sync.WaitGroup

	closeOnce sync.Once
	closed    chan struct{} // closed by NATS's ClosedHandler
}

var _ parley.Bus = (*Bus)(nil)

// shardSub is this node's subscription to one shard's subject.
type shardSub struct {
	// mu guards the fields and is held while subscribing, so that other
	// watchers of the shard wait for the confirmation.
	mu   sync.Mutex
	refs int
	sub  *nats.Subscription
	idle *time.Timer
	// gen counts the subscriptions: events received under an earlier one
	// say nothing of what was missed since (order state is per generation).
	gen atomic.Uint64
}

// Connect connects to NATS and starts the bus's goroutines. ctx bounds
// only the connection.
func Connect(ctx context.Context, opts Options) (*Bus, error) {
	if opts.Node == "" {
		return nil, errors.New("natsbus: a node id is required")
	}
	if opts.Limiter == nil {
		return nil, errors.New("natsbus: a local rate limiter is required")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.GapWait <= 0 {
		opts.GapWait = DefaultGapWait
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New(nil)
	}
	b := &Bus{
		opts:    opts,
		log:     opts.Logger.With("component", "natsbus"),
		subjAll: opts.Prefix + ".ev.all",
		subjDir: opts.Prefix + ".dir",
		subjMe:  opts.Prefix + ".dir." + opts.Node,
		events:  make(chan *nats.Msg, queueLen),
		dirMsgs: make(chan *nats.Msg, queueLen),
		reset:   make(chan struct{}, 1),
		stop:    make(chan struct{}),
		closed:  make(chan struct{}),
	}
	popts := opts.Presence
	popts.Node = opts.Node
	popts.Send = b.sendDirectory
	if popts.Logger == nil {
		popts.Logger = opts.Logger
	}
	b.dir = presence.New(popts)

	nc, err := b.connect(ctx)
	if err != nil {
		return nil, err
	}
	b.nc = nc
	for _, subj := range []string{b.subjDir, b.subjMe} {
		if _, err := nc.ChanSubscribe(subj, b.dirMsgs); err != nil {
			nc.Close()
			return nil, fmt.Errorf("natsbus: subscribe %s: %w", subj, err)
		}
	}
	if _, err := nc.ChanSubscribe(b.subjAll, b.events); err != nil {
		nc.Close()
		return nil, fmt.Errorf("natsbus: subscribe %s: %w", b.subjAll, err)
	}
	if _, err := nc.Subscribe(b.limitSubject(opts.Node), b.serveLimit); err != nil {
		nc.Close()
		return nil, fmt.Errorf("natsbus: subscribe limits: %w", err)
	}
	if err := flush(ctx, nc); err != nil {
		nc.Close()
		return nil, fmt.Errorf("natsbus: %w", err)
	}
	b.up.Store(true)
	b.opts.Metrics.BusConnected.Set(1)

	b.wg.Add(3)
	go func() { defer b.wg.Done(); b.runEvents() }()
	go func() { defer b.wg.Done(); b.runDirectory() }()
	go func() { defer b.wg.Done(); b.dir.Run(b.stop) }()
	b.dir.Hello()
	return b, nil
}

// connect opens the NATS connection with the handlers that track its state.
func (b *Bus) connect(ctx context.Context) (*nats.Conn, error) {
	timeout := b.opts.ConnectTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	nc, err := nats.Connect(b.opts.URL,
		nats.Name("parley "+b.opts.Node),
		nats.Timeout(timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		// Publishing while disconnected fails at once instead of being
		// buffered: the store's outbox keeps what was not handed over.
		nats.ReconnectBufSize(-1),
		nats.PingInterval(5*time.Second),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { b.down(err) }),
		nats.ReconnectHandler(func(*nats.Conn) { b.reconnected() }),
		nats.ClosedHandler(func(*nats.Conn) {
			b.up.Store(false)
			b.closeOnce.Do(func() { close(b.closed) })
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) {
				// Events were dropped: as bad as a disconnection.
				b.log.Error("nats slow consumer: events lost", "subject", subjectOf(sub))
				b.down(err)
				b.reconnected()
				return
			}
			b.log.Warn("nats error", "err", err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("natsbus: connect %s: %w", b.opts.URL, err)
	}
	return nc, nil
}

func subjectOf(sub *nats.Subscription) string {
	if sub == nil {
		return ""
	}
	return sub.Subject
}

// down records that events may have been missed.
func (b *Bus) down(err error) {
	if !b.up.Swap(false) || b.closing.Load() {
		return
	}
	b.opts.Metrics.BusConnected.Set(0)
	b.log.Warn("lost the connection to NATS", "err", err)
	b.dir.Forget()
	if b.opts.OnDown != nil {
		b.opts.OnDown()
	}
}

// reconnected runs when NATS is back: the subscriptions are restored by the
// client; what the directory and the order states knew is stale.
func (b *Bus) reconnected() {
	select {
	case b.reset <- struct{}{}:
	default: // one is pending already
	}
	b.up.Store(true)
	b.opts.Metrics.BusConnected.Set(1)
	b.log.Info("connected to NATS again")
	b.dir.Hello()
	if b.opts.OnUp != nil {
		b.opts.OnUp()
	}
}

// Directory returns the cluster's directory of connections.
func (b *Bus) Directory() *presence.Directory { return b.dir }

// Len returns the number of events received and not yet handed to the
// subscribers.
func (b *Bus) Len() int { return len(b.events) }

// Ready reports whether the bus is connected: unavailable if not.
func (b *Bus) Ready() error {
	if b.up.Load() {
		return nil
	}
	return parley.Errorf(parley.CodeUnavailable, "the event bus is unavailable")
}

// Subscribe adds a handler for the events that reach this node. Handlers
// run on the bus's event goroutine, in order, and must not block.
func (b *Bus) Subscribe(handler func(*parley.Event)) (unsubscribe func()) {
	return b.handlers.Subscribe(handler)
}

// Watch makes the events of userID reach this node until release is
// called. It returns once NATS has confirmed the subscription, so that an
// event published after Watch returns is received. Watches are counted per
// shard; release may be called once.
func (b *Bus) Watch(ctx context.Context, userID string) (release func(), err error) {
	i := shardOf(userID)
	s := &b.shards[i]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.idle != nil {
		s.idle.Stop()
		s.idle = nil
	}
	if s.sub == nil {
		if !b.up.Load() {
			return nil, b.Ready()
		}
		sub, err := b.nc.ChanSubscribe(b.shardSubject(i), b.events)
		if err != nil {
			return nil, fmt.Errorf("natsbus: subscribe shard %d: %w", i, err)
		}
		if err := flush(ctx, b.nc); err != nil {
			_ = sub.Unsubscribe()
			return nil, fmt.Errorf("natsbus: confirm shard %d: %w", i, err)
		}
		s.gen.Add(1)
		s.sub = sub
	}
	s.refs++
	var once sync.Once
	return func() { once.Do(func() { b.unwatch(s) }) }, nil
}

// unwatch drops one watch of a shard; the last one lets the subscription
// go after linger.
func (b *Bus) unwatch(s *shardSub) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refs--
	if s.refs > 0 || s.sub == nil {
		return
	}
	s.idle = time.AfterFunc(linger, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.refs == 0 && s.sub != nil {
			_ = s.sub.Unsubscribe()
			s.sub = nil
			s.gen.Add(1)
		}
		s.idle = nil
	})
}

// shardOf is the shard of a user: a hash that every node computes alike.
func shardOf(userID string) int {
	h := fnv.New32a()
	h.Write([]byte(userID))
	return int(h.Sum32() % Shards)
}

func (b *Bus) shardSubject(i int) string {
	return b.opts.Prefix + ".ev.u." + strconv.Itoa(i)
}

// errUnavailable is Publish's answer while NATS is unreachable.
func errUnavailable(err error) error {
	return &parley.Error{Code: parley.CodeUnavailable, Message: "the event bus is unavailable", Err: err}
}

// Publish sends ev to the nodes of its recipients. It never blocks: NATS's
// client buffers. It fails while NATS is unreachable.
func (b *Bus) Publish(_ context.Context, ev *parley.Event) error {
	if !b.up.Load() {
		return errUnavailable(nil)
	}
	switch ev.Type {
	case parley.EventPresence:
		return nil // every node derives presence from the directory
	case parley.EventTyping:
		return b.publish(b.subjAll, ev)
	}
	var byShard [Shards][]string
	n := 0
	for _, r := range ev.Recipients {
		i := shardOf(r)
		if byShard[i] == nil {
			n++
		}
		byShard[i] = append(byShard[i], r)
	}
	if n > maxShardCopies {
		return b.publish(b.subjAll, ev)
	}
	var errs []error
	for i, rs := range byShard {
		if rs == nil {
			continue
		}
		cp := *ev
		cp.Recipients = rs
		if ev.Conversation != nil {
			cp.Conversation = trimViews(ev.Conversation, rs)
		}
		if err := b.publish(b.shardSubject(i), &cp); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// trimViews returns c with the member views of recipients only.
func trimViews(c *parley.ConversationChange, recipients []string) *parley.ConversationChange {
	views := make(map[string]parley.MemberView, len(recipients))
	for _, r := range recipients {
		if v, ok := c.Views[r]; ok {
			views[r] = v
		}
	}
	return &parley.ConversationChange{Conversation: c.Conversation, Views: views}
}

func (b *Bus) publish(subject string, ev *parley.Event) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("natsbus: encode %s: %w", ev.Type, err)
	}
	if err := b.nc.Publish(subject, data); err != nil {
		return errUnavailable(err)
	}
	return nil
}

// Flush returns once NATS has received everything published before: the
// store deletes outbox rows only then.
func (b *Bus) Flush(ctx context.Context) error {
	if err := flush(ctx, b.nc); err != nil {
		return errUnavailable(err)
	}
	return nil
}

// Close says goodbye to the other nodes, stops the goroutines, and closes
// the connection after handing NATS what was published.
func (b *Bus) Close() error {
	select {
	case <-b.stop:
		return nil
	default:
	}
	b.closing.Store(true)
	b.dir.Bye()
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		if s.idle != nil {
			s.idle.Stop()
			s.idle = nil
		}
		s.mu.Unlock()
	}
	close(b.stop)
	b.wg.Wait()
	// Drain sends what is buffered, then closes.
	err := b.nc.Drain()
	select {
	case <-b.closed:
	case <-time.After(10 * time.Second):
		b.nc.Close()
	}
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("natsbus: close: %w", err)
	}
	return nil
}

// sendDirectory is the directory's transport.
func (b *Bus) sendDirectory(m presence.Message) error {
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("natsbus: encode directory message: %w", err)
	}
	subj := b.subjDir
	if m.To != "" {
		subj = b.subjDir + "." + m.To
	}
	if err := b.nc.Publish(subj, data); err != nil {
		return errUnavailable(err)
	}
	return nil
}

// runDirectory hands directory messages to the directory, in order.
func (b *Bus) runDirectory() {
	for {
		select {
		case <-b.stop:
			return
		case m := <-b.dirMsgs:
			var msg presence.Message
			if err := json.Unmarshal(m.Data, &msg); err != nil {
				b.log.Warn("bad directory message", "subject", m.Subject, "err", err)
				continue
			}
			b.dir.Handle(msg)
		}
	}
}

// streamOf returns the order stream of a subject: its shard, or -1 for the
// subject of every node.
func (b *Bus) streamOf(subject string) (int, bool) {
	if subject == b.subjAll {
		return -1, true
	}
	rest, ok := strings.CutPrefix(subject, b.opts.Prefix+".ev.u.")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	if err != nil || i < 0 || i >= Shards {
		return 0, false
	}
	return i, true
}

// flushTimeout bounds a flush whose context has no deadline.
const flushTimeout = 5 * time.Second

// flush returns once the NATS server has processed everything sent on nc
// before (a round trip).
func flush(ctx context.Context, nc *nats.Conn) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, flushTimeout)
		defer cancel()
	}
	return nc.FlushWithContext(ctx)
}
