package tui

import (
	"context"
	"time"

	"github.com/parley-chat/parley/client"
)

// settlePoll is how often Settle looks at the outbox and the state again
// when no event woke it.
const settlePoll = 100 * time.Millisecond

// Settle waits until the outbox holds no pending message, or the client
// cannot reach the server, or ctx ends, and returns the messages still
// pending. "Cannot reach" means that a connection attempt failed (the
// state went offline after connecting), or that the client is signed out
// or disabled: a one-shot command then returns at once and leaves the
// messages queued for the next one.
//
// One-shot commands call it before they close the client, so that
// messages queued by an earlier command go out with the next one that
// gets online. Settle reads the client's Events: nothing else may read
// them meanwhile.
func Settle(ctx context.Context, c *client.Client) ([]client.Message, error) {
	tick := time.NewTicker(settlePoll)
	defer tick.Stop()
	attempted := false
	for {
		pending, err := pendingMessages(context.WithoutCancel(ctx), c)
		if err != nil || len(pending) == 0 {
			return pending, err
		}
		switch c.State() {
		case client.StateSignedOut, client.StateDisabled:
			return pending, nil
		case client.StateOffline:
			// Before the first attempt the state is offline too: only
			// an offline that follows a connecting counts.
			if attempted {
				return pending, nil
			}
		}
		select {
		case <-ctx.Done():
			return pending, nil
		case <-tick.C:
		case ev, ok := <-c.Events():
			if !ok {
				return pending, nil
			}
			if ev.Type == client.EventConnection {
				switch ev.State {
				case client.StateConnecting, client.StateOnline:
					attempted = true
				case client.StateOffline:
					if attempted {
						return pendingMessages(context.WithoutCancel(ctx), c)
					}
				}
			}
		}
	}
}

// pendingMessages returns the outbox messages that still wait to be sent
// (failed ones wait for the user, not for the network).
func pendingMessages(ctx context.Context, c *client.Client) ([]client.Message, error) {
	all, err := c.Outbox(ctx)
	if err != nil {
		return nil, err
	}
	pending := all[:0]
	for _, m := range all {
		if m.Status == client.StatusPending {
			pending = append(pending, m)
		}
	}
	return pending, nil
}
