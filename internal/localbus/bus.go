// Package localbus is the in-process parley.Bus: events published by the
// store reach the subscribers of the same process (the gateway, later the
// push sender) in publish order. A cluster replaces it with a bus over NATS.
package localbus

import (
	"context"
	"errors"
	"sync"

	"github.com/parley-chat/parley"
)

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("bus closed")

// Bus delivers events to subscribers from one goroutine, through a bounded
// queue. A full queue makes Publish wait (backpressure on the writer) rather
// than drop an event. The zero value is not usable; call New.
type Bus struct {
	queue chan *parley.Event
	done  chan struct{}

	handlers Handlers

	mu     sync.Mutex // guards closed
	closed bool

	stopped chan struct{}
}

var _ parley.Bus = (*Bus)(nil)

// New starts a bus whose queue holds up to size events. Close stops it.
func New(size int) *Bus {
	if size <= 0 {
		size = 4096
	}
	b := &Bus{
		queue:   make(chan *parley.Event, size),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go b.run()
	return b
}

// Publish queues ev for every subscriber. It waits while the queue is full,
// until ctx ends or the bus closes.
func (b *Bus) Publish(ctx context.Context, ev *parley.Event) error {
	select {
	case <-b.done:
		return ErrClosed
	default:
	}
	select {
	case b.queue <- ev:
		return nil
	case <-b.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Subscribe adds handler; it is called for every event published after it
// returns, on the bus goroutine, and must not block.
func (b *Bus) Subscribe(handler func(*parley.Event)) (unsubscribe func()) {
	return b.handlers.Subscribe(handler)
}

// Len returns the number of events waiting to be dispatched.
func (b *Bus) Len() int { return len(b.queue) }

// Close delivers the events already queued, then stops the bus.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	close(b.done)
	<-b.stopped
	return nil
}

func (b *Bus) run() {
	defer close(b.stopped)
	for {
		select {
		case ev := <-b.queue:
			b.dispatch(ev)
		case <-b.done:
			for {
				select {
				case ev := <-b.queue:
					b.dispatch(ev)
				default:
					return
				}
			}
		}
	}
}

func (b *Bus) dispatch(ev *parley.Event) { b.handlers.Dispatch(ev) }

// Handlers is a set of event handlers: a bus's subscribers. The zero value
// is an empty set, ready to use, and it is safe for concurrent use.
type Handlers struct {
	mu     sync.RWMutex // guards m and nextID
	m      map[int]func(*parley.Event)
	nextID int
}

// Subscribe adds handler until unsubscribe is called.
func (h *Handlers) Subscribe(handler func(*parley.Event)) (unsubscribe func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = make(map[int]func(*parley.Event))
	}
	id := h.nextID
	h.nextID++
	h.m[id] = handler
	return func() {
		h.mu.Lock()
		delete(h.m, id)
		h.mu.Unlock()
	}
}

// Dispatch calls every handler with ev, on the caller's goroutine.
func (h *Handlers) Dispatch(ev *parley.Event) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, f := range h.m {
		f(ev)
	}
}
