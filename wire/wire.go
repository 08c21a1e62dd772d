// Package wire defines the frames of the Parley v1 WebSocket protocol and
// their JSON codec. It is shared by the server's gateway and the Go client,
// so that both read and write exactly the shapes of the contract.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/parley-chat/parley"
)

// Subprotocol is the WebSocket subprotocol of version 1.
const Subprotocol = "parley.v1"

// Frame types sent by clients.
const (
	TypeAuth        = "auth"
	TypeMessageSend = "message.send"
	TypeReceipt     = "receipt"
	TypeTyping      = "typing"
	TypeRoomJoin    = "room.join"
	TypeRoomLeave   = "room.leave"
	TypeSync        = "sync"
	// TypeAppState is an extension of the contract (docs/protocol.md,
	// "Extensions"): the app went to the background or came back.
	TypeAppState = "app.state"
)

// Frame types sent by the server (receipt and typing are shared).
const (
	TypeHello               = "hello"
	TypeAuthOK              = "auth.ok"
	TypeMessageAck          = "message.ack"
	TypeOK                  = "ok"
	TypeSyncResult          = "sync.result"
	TypeError               = "error"
	TypeMessageNew          = "message.new"
	TypePresence            = "presence"
	TypeConversationUpdated = "conversation.updated"
)

// Frame is one WebSocket message: a JSON object with a type, an optional
// client-chosen id echoed in the reply, and a payload.
type Frame struct {
	Type    string          `json:"type"`
	ID      string          `json:"id,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// MaxIDLen bounds a frame's id, which every reply echoes: an unbounded id
// could push a reply past the 1 MiB frame limit.
const MaxIDLen = 128

// ErrMalformed is returned by Decode for input that is not a frame.
var ErrMalformed = errors.New("malformed frame")

// Decode parses one frame. Input that is not a JSON object with a string
// type gives an error wrapping ErrMalformed.
func Decode(data []byte) (Frame, error) {
	var f Frame
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		return Frame{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return Frame{}, fmt.Errorf("%w: trailing data after the object", ErrMalformed)
	}
	if f.Type == "" {
		return Frame{}, fmt.Errorf("%w: missing type", ErrMalformed)
	}
	if len(f.ID) > MaxIDLen {
		return Frame{}, fmt.Errorf("%w: id longer than %d bytes", ErrMalformed, MaxIDLen)
	}
	if len(f.Payload) > 0 && f.Payload[0] != '{' && string(f.Payload) != "null" {
		return Frame{}, fmt.Errorf("%w: payload must be an object", ErrMalformed)
	}
	return f, nil
}

// DecodePayload unmarshals a frame's payload into v; a missing payload
// leaves v as it is. Type mismatches are invalid_argument errors.
func DecodePayload(f Frame, v any) error {
	if len(f.Payload) == 0 || string(f.Payload) == "null" {
		return nil
	}
	if err := json.Unmarshal(f.Payload, v); err != nil {
		return parley.Errorf(parley.CodeInvalidArgument, "invalid %s payload: %v", f.Type, jsonReason(err))
	}
	return nil
}

func jsonReason(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %q must be %s", te.Field, te.Type)
	}
	return "malformed JSON"
}

// Encode returns the JSON of a frame with the given type, id and payload.
// A nil payload is left out.
func Encode(typ, id string, payload any) ([]byte, error) {
	type frame struct {
		Type    string `json:"type"`
		ID      string `json:"id,omitempty"`
		Payload any    `json:"payload,omitempty"`
	}
	// No HTML escaping: frames are never embedded in HTML, and escaping
	// makes a text of <, > and & six times longer on the wire.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(frame{Type: typ, ID: id, Payload: payload}); err != nil {
		return nil, fmt.Errorf("encode %s frame: %w", typ, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Client-to-server payloads.

// Auth is the payload of auth.
type Auth struct {
	Token string `json:"token"`
}

// MessageSend is the payload of message.send.
type MessageSend struct {
	ConversationID  string             `json:"conversation_id"`
	ClientMessageID string             `json:"client_message_id"`
	Kind            parley.MessageKind `json:"kind"`
	Text            string             `json:"text"`
	// MediaID is the upload an image, video or file message carries (an
	// extension, docs/protocol.md "Media").
	MediaID string `json:"media_id,omitempty"`
}

// ReceiptSend is the payload of a client's receipt.
type ReceiptSend struct {
	ConversationID string             `json:"conversation_id"`
	Kind           parley.ReceiptKind `json:"kind"`
	Seq            int64              `json:"seq"`
}

// TypingSend is the payload of a client's typing.
type TypingSend struct {
	ConversationID string             `json:"conversation_id"`
	State          parley.TypingState `json:"state"`
}

// Room is the payload of room.join and room.leave.
type Room struct {
	ConversationID string `json:"conversation_id"`
}

// Sync is the payload of sync: the last seq the client has per conversation.
type Sync struct {
	Conversations map[string]int64 `json:"conversations"`
	Limit         int              `json:"limit,omitempty"`
	Cursor        string           `json:"cursor,omitempty"`
}

// AppState is the payload of app.state.
type AppState struct {
	State AppStateValue `json:"state"`
}

// AppStateValue is background or foreground.
type AppStateValue string

// App states. A new connection is in the foreground.
const (
	AppBackground AppStateValue = "background"
	AppForeground AppStateValue = "foreground"
)

// Server-to-client payloads.

// Hello is the first frame after authentication.
type Hello struct {
	UserID    string `json:"user_id"`
	SessionID string `json:"session_id"`
	// DeviceID is the login (refresh-token family) the connection's token
	// belongs to: the device, for push notifications. An extension.
	DeviceID   string      `json:"device_id,omitempty"`
	ServerTime parley.Time `json:"server_time"`
	HeartbeatS int         `json:"heartbeat_s"`
}

// AuthOK answers a repeated auth.
type AuthOK struct {
	UserID    string      `json:"user_id"`
	ExpiresAt parley.Time `json:"expires_at"`
}

// MessageAck answers message.send once the message is durable.
type MessageAck struct {
	ClientMessageID string         `json:"client_message_id"`
	Message         parley.Message `json:"message"`
}

// MessageNew carries a new message to members.
type MessageNew struct {
	Message *parley.Message `json:"message"`
}

// RoomState answers room.join: who is online and who is typing now.
type RoomState struct {
	Presence []parley.Presence `json:"presence"`
	Typing   []string          `json:"typing"`
}

// SyncResult answers sync.
type SyncResult struct {
	Conversations []SyncConversation `json:"conversations"`
	Next          *string            `json:"next"`
}

// SyncConversation is one conversation in a sync.result.
type SyncConversation struct {
	Conversation parley.Conversation `json:"conversation"`
	Messages     []parley.Message    `json:"messages"`
	HasMore      bool                `json:"has_more"`
	Removed      bool                `json:"removed,omitempty"`
}

// MarshalJSON encodes a removed conversation with its id alone: the server
// no longer shows a former member anything else about it.
func (s SyncConversation) MarshalJSON() ([]byte, error) {
	if s.Removed {
		type removed struct {
			Conversation struct {
				ID string `json:"id"`
			} `json:"conversation"`
			Messages []parley.Message `json:"messages"`
			HasMore  bool             `json:"has_more"`
			Removed  bool             `json:"removed"`
		}
		var r removed
		r.Conversation.ID, r.Messages, r.Removed = s.Conversation.ID, []parley.Message{}, true
		return json.Marshal(r)
	}
	type plain SyncConversation
	return json.Marshal(plain(s))
}

// ConversationUpdated carries a conversation after a change.
type ConversationUpdated struct {
	Conversation parley.Conversation `json:"conversation"`
}

// Error is the payload of an error frame.
type Error struct {
	Code         parley.Code `json:"code"`
	Message      string      `json:"message"`
	RetryAfterMS int64       `json:"retry_after_ms,omitempty"`
}

// ErrorFrom builds the error payload for err, using only client-safe text.
func ErrorFrom(err error) Error {
	e := Error{Code: parley.ErrorCode(err), Message: parley.ErrorMessage(err)}
	if d := parley.RetryAfter(err); d > 0 {
		e.RetryAfterMS = d.Milliseconds()
		if e.RetryAfterMS == 0 {
			e.RetryAfterMS = 1
		}
	}
	return e
}
