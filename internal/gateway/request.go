package gateway

import (
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/wire"
)

// handle answers one client frame. It runs on the reader goroutine, so a
// connection's requests are answered in order.
func (c *conn) handle(data []byte) {
	f, err := wire.Decode(data)
	if err != nil {
		c.g.received(typeMalformed)
		c.replyError("", parley.Errorf(parley.CodeInvalidArgument, "malformed frame: expected a JSON object with a type"))
		return
	}
	c.g.received(f.Type)
	switch f.Type {
	case wire.TypeAuth:
		c.reauth(f)
	case wire.TypeMessageSend:
		c.messageSend(f)
	case wire.TypeReceipt:
		c.receipt(f)
	case wire.TypeTyping:
		c.typing(f)
	case wire.TypeRoomJoin:
		c.roomJoin(f)
	case wire.TypeRoomLeave:
		c.roomLeave(f)
	case wire.TypeSync:
		c.sync(f)
	case wire.TypeAppState:
		c.appState(f)
	default:
		c.replyError(f.ID, parley.Errorf(parley.CodeInvalidArgument, "unknown frame type %q", truncate(f.Type, 32)))
	}
}

// reauth extends the connection with a fresh token of the same user.
func (c *conn) reauth(f wire.Frame) {
	var p wire.Auth
	if err := wire.DecodePayload(f, &p); err != nil || p.Token == "" {
		c.refuse(f.ID, "auth needs a token")
		return
	}
	claims, err := c.g.auth.Authenticate(c.ctx, p.Token)
	if err != nil {
		if parley.ErrorCode(err) != parley.CodeUnauthenticated {
			c.replyError(f.ID, err)
			return
		}
		c.refuse(f.ID, parley.ErrorMessage(err))
		return
	}
	if claims.UserID != c.userID {
		c.refuse(f.ID, "the token is of another user")
		return
	}
	c.mu.Lock()
	c.familyID = claims.FamilyID
	if c.expiry != nil {
		c.expiry.Reset(time.Until(claims.ExpiresAt))
	}
	c.mu.Unlock()
	if c.device() != claims.FamilyID {
		// A token of another login of the same user: the connection is
		// now that device's.
		c.deviceID.Store(&claims.FamilyID)
		c.g.syncPresence(c.userID, c.g.entryOf(c.userID))
	}
	if !c.confirm(p.Token) {
		return
	}
	c.reply(wire.TypeAuthOK, f.ID, wire.AuthOK{UserID: c.userID, ExpiresAt: parley.NewTime(claims.ExpiresAt)})
}

// refuse answers a bad re-auth with error unauthenticated, then closes the
// connection with 4001 (the error frame is flushed before the close).
func (c *conn) refuse(id, msg string) {
	c.replyError(id, parley.Errorf(parley.CodeUnauthenticated, "%s", msg))
	c.shut(closeUnauthenticated, "unauthenticated", true)
}

func (c *conn) messageSend(f wire.Frame) {
	p, ok := decodePayload[wire.MessageSend](c, f)
	if !ok {
		return
	}
	m, _, err := c.g.chat.Send(c.ctx, c.userID, chat.SendParams{
		ConversationID:  p.ConversationID,
		ClientMessageID: p.ClientMessageID,
		Kind:            p.Kind,
		Text:            p.Text,
		MediaID:         p.MediaID,
		Origin:          c.id,
	})
	if err != nil {
		c.replyError(f.ID, err)
		return
	}
	c.reply(wire.TypeMessageAck, f.ID, wire.MessageAck{ClientMessageID: m.ClientMessageID, Message: m})
}

func (c *conn) receipt(f wire.Frame) {
	p, ok := decodePayload[wire.ReceiptSend](c, f)
	if !ok {
		return
	}
	if err := c.g.chat.Receipt(c.ctx, c.userID, p.ConversationID, p.Kind, p.Seq, c.device()); err != nil {
		c.replyError(f.ID, err)
		return
	}
	c.reply(wire.TypeOK, f.ID, nil)
}

// typing has no reply; only a malformed state is an error.
func (c *conn) typing(f wire.Frame) {
	p, ok := decodePayload[wire.TypingSend](c, f)
	if !ok {
		return
	}
	if err := c.g.chat.Typing(c.ctx, c.userID, p.ConversationID, p.State); err != nil {
		c.replyError(f.ID, err)
	}
}

func (c *conn) roomJoin(f wire.Frame) {
	p, ok := decodePayload[wire.Room](c, f)
	if !ok {
		return
	}
	if err := c.g.chat.Allow(c.ctx, c.userID); err != nil {
		c.replyError(f.ID, err)
		return
	}
	members, err := c.g.chat.MemberIDs(c.ctx, c.userID, p.ConversationID)
	if err != nil {
		c.replyError(f.ID, err)
		return
	}
	c.g.join(c, p.ConversationID, members)
	state, err := c.g.roomState(c.ctx, p.ConversationID, members)
	if err != nil {
		c.replyError(f.ID, err)
		return
	}
	c.reply(wire.TypeOK, f.ID, state)
}

func (c *conn) roomLeave(f wire.Frame) {
	p, ok := decodePayload[wire.Room](c, f)
	if !ok {
		return
	}
	if err := c.g.chat.Allow(c.ctx, c.userID); err != nil {
		c.replyError(f.ID, err)
		return
	}
	c.g.leave(c, p.ConversationID)
	c.reply(wire.TypeOK, f.ID, nil)
}

func (c *conn) sync(f wire.Frame) {
	p, ok := decodePayload[wire.Sync](c, f)
	if !ok {
		return
	}
	res, err := c.g.chat.Sync(c.ctx, c.userID, p)
	if err != nil {
		c.replyError(f.ID, err)
		return
	}
	c.reply(wire.TypeSyncResult, f.ID, res)
}

// appState records whether the client's app is in the background, where
// the connection does not count as live for push notifications.
func (c *conn) appState(f wire.Frame) {
	p, ok := decodePayload[wire.AppState](c, f)
	if !ok {
		return
	}
	switch p.State {
	case wire.AppBackground:
		c.background.Store(true)
	case wire.AppForeground:
		c.background.Store(false)
	default:
		c.replyError(f.ID, parley.Errorf(parley.CodeInvalidArgument, "state must be background or foreground"))
		return
	}
	c.g.syncPresence(c.userID, c.g.entryOf(c.userID)) // only the foreground count changes
	c.reply(wire.TypeOK, f.ID, nil)
}

// reply queues a frame for this connection alone.
func (c *conn) reply(typ, id string, payload any) {
	data, err := wire.Encode(typ, id, payload)
	if err == nil && len(data) > maxServerFrame {
		err = errFrameTooLarge
	}
	if err != nil {
		c.log.Error("encode reply", "type", typ, "err", err)
		if typ != wire.TypeError {
			c.replyError(id, parley.Errorf(parley.CodeInternal, "internal error"))
		}
		return
	}
	if c.enqueue(&outFrame{data: data}) {
		c.g.framesSent[typ].Inc()
	}
}

// replyError answers a failed request with the contract's error frame.
// Internal causes are logged, never sent.
func (c *conn) replyError(id string, err error) {
	if c.ctx.Err() != nil {
		return // closing: the request was cut short, and nobody listens
	}
	p := wire.ErrorFrom(err)
	switch p.Code {
	case parley.CodeInternal, parley.CodeUnavailable:
		c.log.Error("request failed", "user", c.userID, "err", err)
	case parley.CodeRateLimited:
		c.g.m.RateLimited.Inc()
	}
	c.reply(wire.TypeError, id, p)
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// decodePayload decodes f's payload as a T, answering the request with an
// error frame when it is malformed.
func decodePayload[T any](c *conn, f wire.Frame) (T, bool) {
	var p T
	if err := wire.DecodePayload(f, &p); err != nil {
		c.replyError(f.ID, err)
		return p, false
	}
	return p, true
}
