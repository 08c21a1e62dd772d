package client

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/parley-chat/parley"
)

// EventType names what an Event reports.
type EventType string

// Event types.
const (
	// EventMessage: Message was added (received, or queued by Send) or
	// changed (acknowledged: pending → sent, or failed). Own messages are
	// keyed by ClientMessageID, which stays the same from pending to sent;
	// ID and Seq are set once the server acknowledged it.
	EventMessage EventType = "message"
	// EventReceipt: a member's watermark moved (Receipt), so the Status of
	// the user's own messages up to Receipt.Seq may have changed.
	EventReceipt EventType = "receipt"
	// EventConversation: Conversation was created, changed (members, title,
	// unread count) or removed (Conversation.Removed).
	EventConversation EventType = "conversation"
	// EventTyping: someone in a joined room started or stopped typing.
	// A UI should also let a "started" lapse after about 6 s without a
	// new one, in case the "stopped" was lost with a connection.
	EventTyping EventType = "typing"
	// EventPresence: someone in a joined room came online or went offline.
	EventPresence EventType = "presence"
	// EventConnection: the connection state changed (State, with Err
	// saying why when it went offline or stopped).
	EventConnection EventType = "connection"
	// EventResync: events were dropped because the application did not
	// drain Events fast enough. Everything is in the local store: re-read
	// Conversations and the Messages on screen.
	EventResync EventType = "resync"
)

// Event is one change for a UI. Type says which fields are set.
type Event struct {
	Type           EventType        `json:"type"`
	ConversationID string           `json:"conversation_id,omitempty"`
	Message        *Message         `json:"message,omitempty"`
	Receipt        *parley.Receipt  `json:"receipt,omitempty"`
	Conversation   *Conversation    `json:"conversation,omitempty"`
	Typing         *parley.Typing   `json:"typing,omitempty"`
	Presence       *parley.Presence `json:"presence,omitempty"`
	State          ConnState        `json:"state,omitempty"`
	// Err says why the connection went offline or stopped.
	Err error `json:"-"`
}

// MarshalJSON encodes the event with Err as an "error" string, for
// programs that print events as JSON lines.
func (ev Event) MarshalJSON() ([]byte, error) {
	type plain Event
	v := struct {
		plain
		Error string `json:"error,omitempty"`
	}{plain: plain(ev)}
	if ev.Err != nil {
		v.Error = ev.Err.Error()
	}
	return json.Marshal(v)
}

// emitter delivers events to the application through a bounded channel
// without ever blocking the caller (the connection's reader, the sender).
// When the channel is full the event is dropped and the emitter goes
// "lost": it drops every further event until its pump goroutine has put
// one EventResync into the channel, which tells the application to re-read
// its state from the store. Every event is emitted after its change was
// committed, and lost is cleared before the resync is queued, so a change
// whose event was dropped is always visible to the re-read the resync
// causes.
type emitter struct {
	out  chan Event
	wake chan struct{}

	mu     sync.Mutex // guards lost, closed and the sends on out
	lost   bool
	closed bool
}

func newEmitter(size int) *emitter {
	return &emitter{out: make(chan Event, size), wake: make(chan struct{}, 1)}
}

// emit queues ev, or drops it as described on emitter.
func (e *emitter) emit(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.lost {
		return
	}
	select {
	case e.out <- ev:
	default:
		e.lost = true
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
}

// pump delivers the resync events until ctx ends, then closes the channel.
func (e *emitter) pump(ctx context.Context) {
	defer func() {
		e.mu.Lock()
		e.closed = true
		close(e.out)
		e.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
		}
		e.mu.Lock()
		e.lost = false
		e.mu.Unlock()
		// A send on out blocks only here, in the pump: emit holds mu
		// for its non-blocking send alone, so close cannot race this one.
		select {
		case e.out <- Event{Type: EventResync}:
		case <-ctx.Done():
			return
		}
	}
}
