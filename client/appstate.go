package client

import (
	"context"
	"errors"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/wire"
)

// AppState says whether the application is in the foreground (the user
// sees it) or in the background.
type AppState = wire.AppStateValue

// Application states.
const (
	AppForeground AppState = wire.AppForeground
	AppBackground AppState = wire.AppBackground
)

// SetAppState tells the server whether the application is in the
// foreground or the background (the app.state extension). While it is in
// the background, the connection does not count as one that shows new
// messages: the server sends the user push notifications as if it were
// closed, while the connection still gets every frame. Call it with
// AppBackground when the app goes to the background (it may keep its
// connection a few seconds, to flush the outbox) and with AppForeground
// when it becomes active again.
//
// The state is remembered: every new connection starts in the foreground
// on the server, so while the application is in the background the client
// sends it again right after hello, before any other frame. Offline,
// SetAppState only records the state; a connection lost before the
// server's answer is not an error either, since the next one sends it.
func (c *Client) SetAppState(ctx context.Context, st AppState) error {
	if st != AppForeground && st != AppBackground {
		return parley.Errorf(parley.CodeInvalidArgument, "app state %q is neither foreground nor background", st)
	}
	// appMu orders this write with the one a new connection makes, so that
	// the server ends up with the last state set.
	c.appMu.Lock()
	c.mu.Lock()
	c.appState = st
	s := c.sess
	c.mu.Unlock()
	if s == nil {
		c.appMu.Unlock()
		return nil
	}
	p, err := s.start(wire.TypeAppState, wire.AppState{State: st})
	c.appMu.Unlock()
	if err == nil {
		_, err = p.wait(ctx)
	}
	if errors.Is(err, errConnLost) {
		return nil
	}
	return err
}

// AppState returns the application state last set with SetAppState
// (AppForeground until then).
func (c *Client) AppState() AppState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.appState
}

// announceAppState sends a new connection's app state, if it is
// background, as its first frame. It is called with c.appMu held; the
// answer is waited for by a worker of the session.
func (c *Client) announceAppState(s *session, st AppState) {
	if st != AppBackground {
		return // a new connection is in the foreground
	}
	p, err := s.start(wire.TypeAppState, wire.AppState{State: st})
	if err != nil {
		return // the connection is lost; the next one tries again
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if _, err := p.wait(s.ctx); err != nil && s.ctx.Err() == nil {
			c.log.Warn("parley: app.state refused", "err", err)
		}
	}()
}
