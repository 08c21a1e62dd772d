package client

import (
	"context"
	"sync"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/wire"
)

// Typing timings.
const (
	// typingRepeat: while the user types, "started" goes out at most this
	// often, which also keeps the others' indicator alive.
	typingRepeat = 3 * time.Second
	// typingIdle: "stopped" goes out after this long without a keystroke.
	typingIdle = 5 * time.Second
)

// Typing reports a keystroke in a conversation's input; call it on every
// one. The client sends "started" at most every 3 s while keystrokes
// come, and "stopped" after 5 s without one or when the message is sent.
// It never blocks: typing frames are sent by the client's own goroutine
// and dropped while offline.
func (c *Client) Typing(convID string) {
	c.typist.keystroke(convID)
}

// typist throttles typing frames. Its run goroutine does all the sending,
// so that a keystroke never waits for the network.
type typist struct {
	wake chan struct{}

	mu     sync.Mutex // guards states
	states map[string]*typingState
}

// typingState is the typing of the user in one conversation.
type typingState struct {
	active      bool      // "started" sent (or due) and no "stopped" yet
	lastStarted time.Time // when the last "started" was due
	idleAt      time.Time // when to send "stopped"
	sendStart   bool      // a "started" is due
	sendStop    bool      // a "stopped" is due
}

func newTypist() *typist {
	return &typist{wake: make(chan struct{}, 1), states: map[string]*typingState{}}
}

func (t *typist) keystroke(convID string) {
	now := time.Now()
	t.mu.Lock()
	st := t.states[convID]
	if st == nil {
		st = &typingState{}
		t.states[convID] = st
	}
	if !st.active || now.Sub(st.lastStarted) >= typingRepeat {
		st.sendStart, st.sendStop, st.lastStarted = true, false, now
	}
	st.active = true
	st.idleAt = now.Add(typingIdle)
	t.mu.Unlock()
	signal(t.wake)
}

// sent ends the typing in a conversation whose message was just sent.
func (t *typist) sent(convID string) {
	t.mu.Lock()
	if st := t.states[convID]; st != nil && st.active {
		st.active, st.sendStart, st.sendStop = false, false, true
	}
	t.mu.Unlock()
	signal(t.wake)
}

// due collects the frames to send now and when to look again.
func (t *typist) due(now time.Time) (frames []wire.TypingSend, next time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, st := range t.states {
		if st.active && !now.Before(st.idleAt) {
			st.active, st.sendStart, st.sendStop = false, false, true
		}
		if st.sendStart {
			frames = append(frames, wire.TypingSend{ConversationID: id, State: parley.TypingStarted})
			st.sendStart = false
		}
		if st.sendStop {
			frames = append(frames, wire.TypingSend{ConversationID: id, State: parley.TypingStopped})
			st.sendStop = false
		}
		if !st.active {
			delete(t.states, id)
			continue
		}
		if next.IsZero() || st.idleAt.Before(next) {
			next = st.idleAt
		}
	}
	return frames, next
}

// run sends the typing frames until ctx ends.
func (t *typist) run(ctx context.Context, c *Client) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		frames, next := t.due(time.Now())
		if len(frames) > 0 {
			c.mu.Lock()
			s := c.sess
			c.mu.Unlock()
			for _, f := range frames {
				if s != nil {
					// No reply comes; a failed write ends the session,
					// which is the reader's business.
					_ = s.write(wire.TypeTyping, "", f)
				}
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.wake:
		case <-timer.C:
		}
	}
}
