package gateway

import (
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/wire"
)

// dispatch is the bus handler. It never blocks: it encodes the event once,
// finds the connections it goes to in the sharded indexes, and queues the
// shared frame to each without waiting. It is safe to call from several
// goroutines at once (a cluster bus may); what one connection receives is
// in order as long as the events of one user come from one goroutine.
func (g *Gateway) dispatch(ev *parley.Event) {
	switch ev.Type {
	case parley.EventMessageNew:
		if ev.Message == nil {
			return
		}
		// Media URLs are signed once per event: every recipient gets
		// the same frame.
		msg := parley.SignedMessage(g.opts.Media, ev.Message)
		f := g.encodeEvent(wire.TypeMessageNew, wire.MessageNew{Message: msg}, len(ev.Recipients))
		n := g.toUsers(ev.Recipients, f, ev.Origin)
		g.m.MessagesDelivered.Add(float64(n))
		g.countSent(wire.TypeMessageNew, n)
	case parley.EventReceipt:
		if ev.Receipt == nil {
			return
		}
		f := g.encodeEvent(wire.TypeReceipt, ev.Receipt, len(ev.Recipients))
		g.countSent(wire.TypeReceipt, g.toUsers(ev.Recipients, f, ""))
	case parley.EventTyping:
		if ev.Typing == nil {
			return
		}
		g.noteTyping(ev.Typing, time.Now())
		f := g.encodeEvent(wire.TypeTyping, ev.Typing, 0)
		g.countSent(wire.TypeTyping, g.toRoom(ev.Typing.ConversationID, ev.Typing.UserID, f))
	case parley.EventConversationUpdated:
		if ev.Conversation == nil {
			return
		}
		g.updateRoom(&ev.Conversation.Conversation)
		g.countSent(wire.TypeConversationUpdated, g.conversationUpdated(ev))
	case parley.EventSessionRevoked:
		if ev.Session != nil {
			g.revoke(ev.Session)
		}
	case parley.EventAccountClosed:
		if ev.Session != nil {
			g.closeAccount(ev.Session.UserID)
		}
	}
}

// preparedFrom is the number of recipient users from which an event is
// also framed once (websocket.PreparedMessage) rather than by each writer:
// preparing costs about 5 KB once, a plain write one small allocation and a
// copy per connection.
const preparedFrom = 16

// encodeEvent encodes an event frame once for all its recipients, of which
// there are about fanout users. A frame that cannot be sent (over 1 MiB) is
// returned as nil, which makes its recipients close with 1011: they resync
// rather than miss it silently.
func (g *Gateway) encodeEvent(typ string, payload any, fanout int) *outFrame {
	data, err := wire.Encode(typ, "", payload)
	if err == nil && len(data) > maxServerFrame {
		err = errFrameTooLarge
	}
	if err != nil {
		g.log.Error("encode event", "type", typ, "err", err)
		return nil
	}
	f := &outFrame{data: data}
	if fanout >= preparedFrom {
		if f.pm, err = websocket.NewPreparedMessage(websocket.TextMessage, data); err != nil {
			g.log.Error("prepare event", "type", typ, "err", err)
			f.pm = nil // the plain write still works
		}
	}
	return f
}

// deliver queues f to c unless c already got this event; a nil f closes c.
func deliver(c *conn, f *outFrame, seq uint64) bool {
	if c.lastEvent.Swap(seq) == seq {
		return false
	}
	if f == nil {
		c.shut(closeInternal, "event too large", true)
		return false
	}
	return c.enqueue(f)
}

// toUsers queues f to every connection of the users, except the one whose
// session is origin. It returns the number of frames queued.
func (g *Gateway) toUsers(userIDs []string, f *outFrame, origin string) int {
	seq := g.eventSeq.Add(1)
	n := 0
	for _, u := range userIDs {
		sh := &g.users[g.shard(u)]
		sh.mu.RLock()
		if e := sh.users[u]; e != nil {
			for _, c := range e.conns {
				if c.id != origin && deliver(c, f, seq) {
					n++
				}
			}
		}
		sh.mu.RUnlock()
	}
	return n
}

// toRoom queues f to the connections that joined a conversation's room,
// except those of the user skip.
func (g *Gateway) toRoom(conversationID, skip string, f *outFrame) int {
	seq := g.eventSeq.Add(1)
	n := 0
	sh := &g.rooms[g.shard(conversationID)]
	sh.mu.RLock()
	if r := sh.rooms[conversationID]; r != nil {
		for _, c := range r.conns {
			if c.userID != skip && deliver(c, f, seq) {
				n++
			}
		}
	}
	sh.mu.RUnlock()
	return n
}

// toWatchers queues f to the connections that joined a room of which
// userID is a member, once each.
func (g *Gateway) toWatchers(userID string, f *outFrame) int {
	seq := g.eventSeq.Add(1)
	// Copy the room ids out, so that no watch lock is held while a room
	// lock is taken (the lock order is room, then watch).
	buf := g.scratch.Get().(*[]string)
	ids := (*buf)[:0]
	wsh := &g.watch[g.shard(userID)]
	wsh.mu.RLock()
	for id := range wsh.rooms[userID] {
		ids = append(ids, id)
	}
	wsh.mu.RUnlock()

	n := 0
	for _, id := range ids {
		sh := &g.rooms[g.shard(id)]
		sh.mu.RLock()
		if r := sh.rooms[id]; r != nil {
			for _, c := range r.conns {
				if deliver(c, f, seq) {
					n++
				}
			}
		}
		sh.mu.RUnlock()
	}
	clear(ids)
	*buf = ids[:0]
	g.scratch.Put(buf)
	return n
}

// conversationUpdated queues conversation.updated to every connection of
// every recipient. It is encoded once per recipient user, because read_seq
// and unread_count are each recipient's own.
func (g *Gateway) conversationUpdated(ev *parley.Event) int {
	n := 0
	for _, u := range ev.Recipients {
		if !g.localOnline(u) {
			continue
		}
		c := ev.Conversation.For(u)
		parley.SignConversation(g.opts.Media, &c)
		f := g.encodeEvent(wire.TypeConversationUpdated, wire.ConversationUpdated{Conversation: c}, 0)
		n += g.toUsers([]string{u}, f, "")
	}
	return n
}

// revoke closes the connections authenticated by a revoked family.
func (g *Gateway) revoke(s *parley.SessionRevoked) {
	g.closeWhere(s.UserID, closeUnauthenticated, "session revoked", func(c *conn) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.familyID == s.FamilyID
	})
}

// closeAccount closes every connection of a deleted account with 4003:
// the client must not reconnect.
func (g *Gateway) closeAccount(userID string) {
	g.closeWhere(userID, closeDisabled, "account deleted", func(*conn) bool { return true })
}

// closeWhere closes with code the connections of userID here that match.
func (g *Gateway) closeWhere(userID string, code int, reason string, match func(*conn) bool) {
	sh := &g.users[g.shard(userID)]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if e := sh.users[userID]; e != nil {
		for _, c := range e.conns {
			if match(c) {
				c.shut(code, reason, true)
			}
		}
	}
}

func (g *Gateway) countSent(typ string, n int) {
	if n > 0 {
		g.framesSent[typ].Add(float64(n))
	}
}
