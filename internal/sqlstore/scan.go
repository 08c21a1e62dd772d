package sqlstore

import (
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"

	"github.com/parley-chat/parley"
)

// Times are stored as INTEGER Unix milliseconds in UTC, the precision of
// parley.Time.

func nowMillis() int64 { return parley.Now().UnixMilli() }

func millis(t parley.Time) int64 { return t.UnixMilli() }

func fromMillis(ms int64) parley.Time { return parley.TimeFromMillis(ms) }

// newID returns a new UUID v7: time-ordered, so ids inserted together land
// together in the indexes.
func newID() (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("new id: %w", err)
	}
	return id.String(), nil
}

// jsonList encodes ids as a JSON array, bound as one parameter and expanded
// by the dialect's jsonEach: statements with a list stay constant and
// cacheable, and the argument is the same on both engines.
func jsonList(ids []string) (string, error) {
	if ids == nil {
		ids = []string{}
	}
	b, err := json.Marshal(ids)
	if err != nil {
		return "", fmt.Errorf("encode id list: %w", err)
	}
	return string(b), nil
}

// userCols are the columns scanUser reads, from a table aliased u.
const userCols = `u.id, u.username, u.display_name, u.created_at, u.deleted_at IS NOT NULL`

type scanner interface{ Scan(dest ...any) error }

func scanUser(s scanner, extra ...any) (parley.User, error) {
	var u parley.User
	var created int64
	if err := s.Scan(append([]any{&u.ID, &u.Username, &u.DisplayName, &created, &u.Deleted}, extra...)...); err != nil {
		return parley.User{}, err
	}
	u.CreatedAt = fromMillis(created)
	return u, nil
}

// msgCols are the columns scanMessage reads, from a table aliased m.
const msgCols = `m.id, m.conversation_id, m.seq, m.sender_id, m.client_message_id, m.kind, m.text, m.created_at, m.media`

func scanMessage(s scanner) (parley.Message, error) {
	var m parley.Message
	var created int64
	var media sql.NullString
	if err := s.Scan(&m.ID, &m.ConversationID, &m.Seq, &m.SenderID, &m.ClientMessageID, &m.Kind, &m.Text, &created, &media); err != nil {
		return parley.Message{}, err
	}
	m.CreatedAt = fromMillis(created)
	var err error
	m.Media, err = decodeMedia(media)
	return m, err
}

// nullMessage receives the msgCols of a LEFT JOIN that may find nothing.
type nullMessage struct {
	id, conversationID, senderID, clientMessageID, kind, text, media sql.NullString
	seq, createdAt                                                   sql.NullInt64
}

func (n *nullMessage) dest() []any {
	return []any{&n.id, &n.conversationID, &n.seq, &n.senderID, &n.clientMessageID, &n.kind, &n.text, &n.createdAt, &n.media}
}

// message returns the message read, nil if none. A media column that does
// not decode (it never should: the store wrote it) leaves Media nil.
func (n *nullMessage) message() *parley.Message {
	if !n.id.Valid {
		return nil
	}
	media, _ := decodeMedia(n.media)
	return &parley.Message{
		ID:              n.id.String,
		ConversationID:  n.conversationID.String,
		Seq:             n.seq.Int64,
		SenderID:        n.senderID.String,
		ClientMessageID: n.clientMessageID.String,
		Kind:            parley.MessageKind(n.kind.String),
		Text:            n.text.String,
		CreatedAt:       fromMillis(n.createdAt.Int64),
		Media:           media,
	}
}

// storedMedia is a message's media column: its Media as it was when the
// message was sent, without the URLs, which are signed when shown.
type storedMedia struct {
	ID         string `json:"id"`
	MIMEType   string `json:"mime_type"`
	Size       int64  `json:"size"`
	Name       string `json:"name"`
	Width      *int   `json:"width,omitempty"`
	Height     *int   `json:"height,omitempty"`
	DurationMS *int64 `json:"duration_ms,omitempty"`
	Thumbnail  bool   `json:"thumbnail,omitempty"`
}

// encodeMedia returns the media column of m.
func encodeMedia(m *parley.Media) (string, error) {
	b, err := json.Marshal(storedMedia{
		ID: m.ID, MIMEType: m.MIMEType, Size: m.Size, Name: m.Name,
		Width: m.Width, Height: m.Height, DurationMS: m.DurationMS, Thumbnail: m.HasThumbnail,
	})
	if err != nil {
		return "", fmt.Errorf("encode media: %w", err)
	}
	return string(b), nil
}

// decodeMedia reads a media column; NULL is no media.
func decodeMedia(col sql.NullString) (*parley.Media, error) {
	if !col.Valid || col.String == "" {
		return nil, nil
	}
	var sm storedMedia
	if err := json.Unmarshal([]byte(col.String), &sm); err != nil {
		return nil, fmt.Errorf("decode media: %w", err)
	}
	return &parley.Media{
		ID: sm.ID, MIMEType: sm.MIMEType, Size: sm.Size, Name: sm.Name,
		Width: sm.Width, Height: sm.Height, DurationMS: sm.DurationMS, HasThumbnail: sm.Thumbnail,
	}, nil
}
