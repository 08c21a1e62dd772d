package client

import (
	"context"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/wire"
)

// closeStatus returns the WebSocket close code in err's chain, or -1.
func closeStatus(err error) websocket.StatusCode {
	return websocket.CloseStatus(err)
}

// handleFrame applies one server frame that is not a reply. It runs on
// the reader goroutine: it writes to the local store and emits events, but
// never waits for the network, so that the reader keeps answering pings.
// Work that needs the network (a gap, an unknown conversation) goes to the
// gap filler.
//
// Store writes use the client's context, not the session's: what arrived
// is stored even if the connection ends meanwhile.
func (c *Client) handleFrame(s *session, f wire.Frame) {
	ctx := c.ctx
	switch f.Type {
	case wire.TypeMessageNew:
		var p wire.MessageNew
		if err := wire.DecodePayload(f, &p); err != nil || p.Message == nil {
			c.log.Warn("parley: malformed message.new", "err", err)
			return
		}
		c.applyLive(s, *p.Message)
	case wire.TypeReceipt:
		var r parley.Receipt
		if err := wire.DecodePayload(f, &r); err != nil {
			c.log.Warn("parley: malformed receipt", "err", err)
			return
		}
		moved, err := c.store.applyReceipt(ctx, r, s.me)
		if err != nil {
			c.log.Warn("parley: store receipt", "err", err)
			return
		}
		if !moved {
			return
		}
		c.events.emit(Event{Type: EventReceipt, ConversationID: r.ConversationID, Receipt: &r})
		if r.UserID == s.me && r.Kind == parley.Read {
			// Read on another device: the unread count changed.
			if row, err := c.store.conv(ctx, r.ConversationID); err == nil {
				c.emitConversation(ctx, row)
			}
		}
	case wire.TypeTyping:
		var t parley.Typing
		if err := wire.DecodePayload(f, &t); err != nil {
			c.log.Warn("parley: malformed typing", "err", err)
			return
		}
		c.events.emit(Event{Type: EventTyping, ConversationID: t.ConversationID, Typing: &t})
	case wire.TypePresence:
		var p parley.Presence
		if err := wire.DecodePayload(f, &p); err != nil {
			c.log.Warn("parley: malformed presence", "err", err)
			return
		}
		c.events.emit(Event{Type: EventPresence, Presence: &p})
	case wire.TypeConversationUpdated:
		var p wire.ConversationUpdated
		if err := wire.DecodePayload(f, &p); err != nil || p.Conversation.ID == "" {
			c.log.Warn("parley: malformed conversation.updated", "err", err)
			return
		}
		row, changed, err := c.store.upsertConversation(ctx, p.Conversation, s.me)
		if err != nil {
			c.log.Warn("parley: store conversation", "err", err)
			return
		}
		if changed {
			c.emitConversation(ctx, row)
		}
		if !row.Removed && row.HaveSeq < row.LastSeq {
			s.markDirty(row.ID, fillMessages)
		}
	case wire.TypeError:
		// An error without a waiting request: a frame the server could
		// not parse. Nothing to retry.
		c.log.Warn("parley: error frame from server", "err", frameError(f))
	default:
		// hello, auth.ok and ok without a waiter, and types of later
		// versions: ignored, as the contract asks.
	}
}

// applyLive stores a message.new. A seq beyond the contiguous run, or an
// unknown conversation, goes to the gap filler.
func (c *Client) applyLive(s *session, m parley.Message) {
	res, err := c.store.applyMessages(c.ctx, m.ConversationID, s.me, []parley.Message{m}, false)
	if err != nil {
		c.log.Warn("parley: store message", "err", err)
		return
	}
	c.emitApplied(c.ctx, res)
	switch {
	case res.NewConversation:
		s.markDirty(m.ConversationID, fillObject|fillMessages)
	case res.Gap:
		s.markDirty(m.ConversationID, fillMessages)
	}
	if len(res.Added) > 0 && m.SenderID != s.me {
		signal(c.receiptKick)
	}
}

// RoomState is who is online and who is typing in a conversation, as
// room.join answers.
type RoomState = wire.RoomState

// RoomJoin says that the UI shows a conversation: the client then gets its
// typing and presence events. The room stays joined across reconnects
// until RoomLeave. Online, it returns the room's state (also emitted as
// presence and typing events); offline, it returns an empty state and
// joins on the next connection.
func (c *Client) RoomJoin(ctx context.Context, convID string) (RoomState, error) {
	c.mu.Lock()
	c.rooms[convID] = true
	s := c.sess
	c.mu.Unlock()
	if s == nil {
		return RoomState{}, nil
	}
	return c.join(ctx, s, convID)
}

func (c *Client) join(ctx context.Context, s *session, convID string) (RoomState, error) {
	f, err := s.request(ctx, wire.TypeRoomJoin, wire.Room{ConversationID: convID})
	if err != nil {
		return RoomState{}, err
	}
	var st RoomState
	if err := wire.DecodePayload(f, &st); err != nil {
		return RoomState{}, err
	}
	for i := range st.Presence {
		p := st.Presence[i]
		c.events.emit(Event{Type: EventPresence, ConversationID: convID, Presence: &p})
	}
	for _, uid := range st.Typing {
		c.events.emit(Event{Type: EventTyping, ConversationID: convID,
			Typing: &parley.Typing{ConversationID: convID, UserID: uid, State: parley.TypingStarted}})
	}
	return st, nil
}

// RoomLeave says that the UI no longer shows a conversation.
func (c *Client) RoomLeave(ctx context.Context, convID string) error {
	c.mu.Lock()
	delete(c.rooms, convID)
	s := c.sess
	c.mu.Unlock()
	if s == nil {
		return nil
	}
	_, err := s.request(ctx, wire.TypeRoomLeave, wire.Room{ConversationID: convID})
	return err
}

// rejoinRooms joins the application's rooms on a new connection.
func (c *Client) rejoinRooms(s *session) {
	c.mu.Lock()
	rooms := make([]string, 0, len(c.rooms))
	for id := range c.rooms {
		rooms = append(rooms, id)
	}
	c.mu.Unlock()
	for _, id := range rooms {
		if _, err := c.join(s.ctx, s, id); err != nil && s.ctx.Err() == nil {
			c.log.Warn("parley: join room", "conversation", id, "err", err)
		}
	}
}
