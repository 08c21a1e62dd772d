// Package chat is Parley's application core: the operations that the REST
// API and the WebSocket gateway offer, with the contract's validation and
// rate limits, on top of a parley.Store. Writes commit in the store, which
// then publishes their events; typing and presence, which are not stored,
// are published here. The service knows nothing of HTTP or sockets.
package chat

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/parley-chat/parley"
)

// Store is the storage the service works on: a parley.Store that can also
// page a user's conversations and check several memberships at once (for
// sync). *sqlstore.DB implements it.
type Store interface {
	parley.Store
	// ConversationsPage returns at most limit of callerID's conversations
	// in activity order, starting at the cursor (inclusive; nil: the most
	// recent).
	ConversationsPage(ctx context.Context, callerID string, from *parley.ActivityCursor, limit int) ([]parley.Conversation, error)
	// Memberships reports which of the conversations callerID is a member of.
	Memberships(ctx context.Context, callerID string, conversationIDs []string) (map[string]bool, error)
}

// Options configures a Service. Zero values take the defaults.
type Options struct {
	// Limits are the size and rate limits (see DefaultLimits).
	Limits Limits
	// Limiter decides the rate limits of sends and requests; nil means a
	// LocalLimiter of Limits. Typing is always limited locally: a typing
	// frame over the limit is dropped, and is not worth a question to
	// another node.
	Limiter RateLimiter
	// Ready, if set, is asked before every write: an error (unavailable
	// while the event bus is down) refuses the write, so that nothing is
	// stored that the cluster cannot announce.
	Ready func() error
	// Media signs the URLs of the media in the messages the service
	// returns; nil leaves them empty.
	Media  parley.MediaSigner
	Logger *slog.Logger
}

// Service implements the chat operations. It is safe for concurrent use.
type Service struct {
	store   Store
	bus     parley.Publisher
	limits  Limits
	log     *slog.Logger
	limiter RateLimiter
	typing  *LocalLimiter
	ready   func() error
	media   parley.MediaSigner
}

// New returns a Service over store, publishing typing on bus.
func New(store Store, bus parley.Publisher, opts Options) *Service {
	limits := opts.Limits.withDefaults()
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	local := NewLocalLimiter(limits)
	limiter := opts.Limiter
	if limiter == nil {
		limiter = local
	}
	return &Service{
		store:   store,
		bus:     bus,
		limits:  limits,
		log:     log,
		limiter: limiter,
		typing:  local,
		ready:   opts.Ready,
		media:   opts.Media,
	}
}

// allow charges one request of kind to callerID's rate limit.
func (s *Service) allow(ctx context.Context, kind, callerID string) error {
	return s.limiter.Allow(ctx, kind, callerID)
}

// writable refuses writes while the node cannot announce them.
func (s *Service) writable() error {
	if s.ready == nil {
		return nil
	}
	return s.ready()
}

// Limits returns the limits in force.
func (s *Service) Limits() Limits { return s.limits }

// User returns a user by id.
func (s *Service) User(ctx context.Context, id string) (parley.User, error) {
	if !validID(id) {
		return parley.User{}, parley.Errorf(parley.CodeNotFound, "no such user")
	}
	return s.store.UserByID(ctx, id)
}

// SearchUsers returns at most 20 users whose username starts with prefix.
func (s *Service) SearchUsers(ctx context.Context, callerID, prefix string) ([]parley.User, error) {
	if err := s.allow(ctx, LimitRequest, callerID); err != nil {
		return nil, err
	}
	prefix = strings.ToLower(strings.TrimSpace(prefix))
	if prefix == "" {
		return []parley.User{}, nil
	}
	if len(prefix) > 32 {
		return []parley.User{}, nil
	}
	users, err := s.store.SearchUsers(ctx, prefix, 20)
	if err != nil {
		return nil, err
	}
	if users == nil {
		users = []parley.User{}
	}
	return users, nil
}

// CreateConversation creates a direct conversation or a group with callerID
// in it. An existing direct conversation of the pair comes back with
// created false.
func (s *Service) CreateConversation(ctx context.Context, callerID string, typ parley.ConversationType, title *string, memberIDs []string) (parley.Conversation, bool, error) {
	if err := s.allow(ctx, LimitRequest, callerID); err != nil {
		return parley.Conversation{}, false, err
	}
	for _, id := range memberIDs {
		if !validID(id) {
			return parley.Conversation{}, false, parley.Errorf(parley.CodeInvalidArgument, "unknown user id %q", truncate(id, 64))
		}
	}
	switch typ {
	case parley.Direct:
		if title != nil {
			return parley.Conversation{}, false, parley.Errorf(parley.CodeInvalidArgument, "a direct conversation has no title")
		}
		if len(memberIDs) != 1 {
			return parley.Conversation{}, false, parley.Errorf(parley.CodeInvalidArgument, "a direct conversation names exactly one other user")
		}
		if memberIDs[0] == callerID {
			return parley.Conversation{}, false, parley.Errorf(parley.CodeInvalidArgument, "a direct conversation needs another user")
		}
	case parley.Group:
		if title == nil {
			return parley.Conversation{}, false, parley.Errorf(parley.CodeInvalidArgument, "a group needs a title")
		}
		t := strings.TrimSpace(*title)
		if err := parley.ValidateTitle(t); err != nil {
			return parley.Conversation{}, false, err
		}
		title = &t
		if len(memberIDs)+1 > s.limits.MaxGroupMembers {
			return parley.Conversation{}, false, parley.Errorf(parley.CodeInvalidArgument, "a group has at most %d members", s.limits.MaxGroupMembers)
		}
	default:
		return parley.Conversation{}, false, parley.Errorf(parley.CodeInvalidArgument, "type must be direct or group")
	}
	if err := s.writable(); err != nil {
		return parley.Conversation{}, false, err
	}
	c, created, err := s.store.CreateConversation(ctx, parley.NewConversation{Type: typ, Title: title, CreatorID: callerID, MemberIDs: memberIDs})
	parley.SignConversation(s.media, &c)
	return c, created, err
}

// Conversation returns one of callerID's conversations.
func (s *Service) Conversation(ctx context.Context, callerID, id string) (parley.Conversation, error) {
	if !validID(id) {
		return parley.Conversation{}, notFound()
	}
	c, err := s.store.Conversation(ctx, id, callerID)
	parley.SignConversation(s.media, &c)
	return c, err
}

// Conversations returns callerID's conversations, most recent activity first.
func (s *Service) Conversations(ctx context.Context, callerID string) ([]parley.Conversation, error) {
	convs, err := s.store.Conversations(ctx, callerID)
	if err != nil {
		return nil, err
	}
	if convs == nil {
		convs = []parley.Conversation{}
	}
	for i := range convs {
		parley.SignConversation(s.media, &convs[i])
	}
	return convs, nil
}

// MemberIDs returns the members of a conversation callerID belongs to.
func (s *Service) MemberIDs(ctx context.Context, callerID, conversationID string) ([]string, error) {
	if !validID(conversationID) {
		return nil, notFound()
	}
	return s.store.MemberIDs(ctx, conversationID, callerID)
}

// AddMember adds userID to a group that callerID administers.
func (s *Service) AddMember(ctx context.Context, callerID, conversationID, userID string) (parley.Conversation, error) {
	if err := s.allow(ctx, LimitRequest, callerID); err != nil {
		return parley.Conversation{}, err
	}
	if !validID(conversationID) {
		return parley.Conversation{}, notFound()
	}
	if !validID(userID) {
		return parley.Conversation{}, parley.Errorf(parley.CodeInvalidArgument, "unknown user id")
	}
	conv, err := s.store.Conversation(ctx, conversationID, callerID)
	if err != nil {
		return parley.Conversation{}, err
	}
	if _, already := conv.Member(userID); !already && len(conv.Members) >= s.limits.MaxGroupMembers {
		return parley.Conversation{}, parley.Errorf(parley.CodeInvalidArgument, "a group has at most %d members", s.limits.MaxGroupMembers)
	}
	if err := s.writable(); err != nil {
		return parley.Conversation{}, err
	}
	c, err := s.store.AddMember(ctx, conversationID, callerID, userID)
	parley.SignConversation(s.media, &c)
	return c, err
}

// RemoveMember removes userID from a group: an admin removing someone, or a
// user leaving.
func (s *Service) RemoveMember(ctx context.Context, callerID, conversationID, userID string) error {
	if err := s.allow(ctx, LimitRequest, callerID); err != nil {
		return err
	}
	if !validID(conversationID) {
		return notFound()
	}
	if !validID(userID) {
		return parley.Errorf(parley.CodeNotFound, "no such member")
	}
	if err := s.writable(); err != nil {
		return err
	}
	return s.store.RemoveMember(ctx, conversationID, callerID, userID)
}

// History returns a page of a conversation's history. limit 0 means the
// default (50); above 200 it is clamped; negative is invalid.
func (s *Service) History(ctx context.Context, callerID, conversationID string, q parley.HistoryQuery) ([]parley.Message, bool, error) {
	if !validID(conversationID) {
		return nil, false, notFound()
	}
	if q.AfterSeq < 0 || q.BeforeSeq < 0 {
		return nil, false, parley.Errorf(parley.CodeInvalidArgument, "after_seq and before_seq must not be negative")
	}
	q.Limit = clampLimit(q.Limit)
	msgs, more, err := s.store.Messages(ctx, conversationID, callerID, q)
	if msgs == nil {
		msgs = []parley.Message{}
	}
	parley.SignMessages(s.media, msgs)
	return msgs, more, err
}

// SendParams is a message as a client sends it.
type SendParams struct {
	ConversationID  string
	ClientMessageID string
	Kind            parley.MessageKind
	Text            string
	// MediaID is the upload an image, video or file message carries.
	MediaID string
	// Origin is the sending session, which gets an ack instead of message.new.
	Origin string
}

// Send validates and stores a message. A repeated client_message_id returns
// the original with created false.
func (s *Service) Send(ctx context.Context, senderID string, p SendParams) (parley.Message, bool, error) {
	if err := s.allow(ctx, LimitSend, senderID); err != nil {
		return parley.Message{}, false, err
	}
	if p.ConversationID == "" {
		return parley.Message{}, false, parley.Errorf(parley.CodeInvalidArgument, "conversation_id is required")
	}
	if n := utf8.RuneCountInString(p.ClientMessageID); n < 1 || n > 64 {
		return parley.Message{}, false, parley.Errorf(parley.CodeInvalidArgument, "client_message_id must be 1 to 64 characters")
	}
	if !utf8.ValidString(p.ClientMessageID) {
		return parley.Message{}, false, parley.Errorf(parley.CodeInvalidArgument, "client_message_id must be UTF-8")
	}
	if p.Kind == "" {
		p.Kind = parley.KindText
	}
	switch p.Kind {
	case parley.KindText:
		if strings.TrimSpace(p.Text) == "" {
			return parley.Message{}, false, parley.Errorf(parley.CodeInvalidArgument, "a text message needs text")
		}
		if p.MediaID != "" {
			return parley.Message{}, false, parley.Errorf(parley.CodeInvalidArgument, "a text message carries no media_id")
		}
	case parley.KindImage, parley.KindVideo, parley.KindFile:
		// The text is an optional caption.
		if !validID(p.MediaID) {
			return parley.Message{}, false, parley.Errorf(parley.CodeInvalidArgument, "an %s message needs the media_id of an upload", p.Kind)
		}
	case parley.KindSystem:
		return parley.Message{}, false, parley.Errorf(parley.CodeInvalidArgument, "clients may not send system messages")
	default:
		return parley.Message{}, false, parley.Errorf(parley.CodeInvalidArgument, "unknown kind %q", truncate(string(p.Kind), 32))
	}
	if len(p.Text) > s.limits.MaxTextBytes {
		return parley.Message{}, false, parley.Errorf(parley.CodePayloadTooLarge, "text is larger than %d bytes", s.limits.MaxTextBytes)
	}
	if !utf8.ValidString(p.Text) {
		return parley.Message{}, false, parley.Errorf(parley.CodeInvalidArgument, "text must be UTF-8")
	}
	if !validID(p.ConversationID) {
		return parley.Message{}, false, notFound()
	}
	if err := s.writable(); err != nil {
		return parley.Message{}, false, err
	}
	m, created, err := s.store.SendMessage(ctx, parley.NewMessage{
		ConversationID:  p.ConversationID,
		SenderID:        senderID,
		ClientMessageID: p.ClientMessageID,
		Kind:            p.Kind,
		Text:            p.Text,
		MediaID:         p.MediaID,
		Origin:          p.Origin,
	})
	if err != nil {
		return parley.Message{}, false, err
	}
	return *parley.SignedMessage(s.media, &m), created, nil
}

// Receipt moves callerID's delivered or read watermark forward. deviceID is
// the login it came from ("" if unknown), whose own confirmation is
// recorded for its push notifications.
func (s *Service) Receipt(ctx context.Context, callerID, conversationID string, kind parley.ReceiptKind, seq int64, deviceID string) error {
	if err := s.allow(ctx, LimitRequest, callerID); err != nil {
		return err
	}
	if kind != parley.Delivered && kind != parley.Read {
		return parley.Errorf(parley.CodeInvalidArgument, "kind must be delivered or read")
	}
	if seq < 0 {
		return parley.Errorf(parley.CodeInvalidArgument, "seq must not be negative")
	}
	if !validID(conversationID) {
		return notFound()
	}
	if err := s.writable(); err != nil {
		return err
	}
	_, err := s.store.MarkReceipt(ctx, callerID, conversationID, kind, seq, deviceID)
	return err
}

// Typing publishes a typing change to the conversation's room. Typing in a
// conversation the user is not in, or over the typing rate, is dropped
// silently; only a malformed state is an error.
func (s *Service) Typing(ctx context.Context, callerID, conversationID string, state parley.TypingState) error {
	if state != parley.TypingStarted && state != parley.TypingStopped {
		return parley.Errorf(parley.CodeInvalidArgument, "state must be started or stopped")
	}
	if s.typing.Allow(ctx, LimitTyping, callerID) != nil || !validID(conversationID) {
		return nil
	}
	members, err := s.store.MemberIDs(ctx, conversationID, callerID)
	if err != nil {
		if parley.ErrorCode(err) == parley.CodeNotFound {
			return nil
		}
		return err
	}
	return s.bus.Publish(ctx, &parley.Event{
		Type:       parley.EventTyping,
		Recipients: members,
		Typing:     &parley.Typing{ConversationID: conversationID, UserID: callerID, State: state},
	})
}

// Allow charges one general request to callerID's rate limit: for requests
// (room joins) whose work is not done by this service.
func (s *Service) Allow(ctx context.Context, callerID string) error {
	return s.allow(ctx, LimitRequest, callerID)
}

// AllowUpload charges one upload (a photo, a video, a file) to callerID's
// upload rate limit, which the media service does not keep itself.
func (s *Service) AllowUpload(ctx context.Context, callerID string) error {
	return s.allow(ctx, LimitUpload, callerID)
}

// MarkSeen records that userIDs were connected at at (when they connect,
// and when they disconnect). Presence itself is announced by the gateway
// from the directory of connections.
func (s *Service) MarkSeen(ctx context.Context, at parley.Time, userIDs ...string) error {
	for _, id := range userIDs {
		if err := s.store.SetLastSeen(ctx, id, at); err != nil {
			return fmt.Errorf("mark seen: %w", err)
		}
	}
	return nil
}

// LastSeen returns when each of the users was last connected, if known.
func (s *Service) LastSeen(ctx context.Context, userIDs []string) (map[string]parley.Time, error) {
	return s.store.LastSeen(ctx, userIDs)
}

// RegisterDeviceToken registers a push token for callerID's device
// deviceID (the login whose access token made the call).
func (s *Service) RegisterDeviceToken(ctx context.Context, callerID string, platform parley.Platform, token, environment, deviceID string) (bool, error) {
	if err := s.allow(ctx, LimitRequest, callerID); err != nil {
		return false, err
	}
	switch platform {
	case parley.PlatformIOS:
		if environment != "sandbox" && environment != "production" {
			return false, parley.Errorf(parley.CodeInvalidArgument, "environment must be sandbox or production")
		}
		if len(token) < 16 || len(token) > 200 || !isHex(token) {
			return false, parley.Errorf(parley.CodeInvalidArgument, "an ios token is the APNs device token in hex")
		}
		token = strings.ToLower(token)
	case parley.PlatformWeb:
		environment = ""
		if token == "" || len(token) > 4096 || !utf8.ValidString(token) {
			return false, parley.Errorf(parley.CodeInvalidArgument, "a web token is the PushSubscription as a JSON string")
		}
	default:
		return false, parley.Errorf(parley.CodeInvalidArgument, "platform must be ios or web")
	}
	if err := s.writable(); err != nil {
		return false, err
	}
	return s.store.PutDeviceToken(ctx, parley.DeviceToken{
		UserID: callerID, DeviceID: deviceID, Platform: platform, Token: token, Environment: environment, CreatedAt: parley.Now(),
	})
}

// DeleteDeviceToken deletes one of callerID's push tokens.
func (s *Service) DeleteDeviceToken(ctx context.Context, callerID, token string) error {
	if isHex(token) {
		token = strings.ToLower(token)
	}
	if err := s.writable(); err != nil {
		return err
	}
	return s.store.DeleteDeviceToken(ctx, callerID, token)
}

func clampLimit(limit int) int {
	switch {
	case limit == 0:
		return 50
	case limit > 200:
		return 200
	}
	return limit
}

func notFound() error { return parley.Errorf(parley.CodeNotFound, "no such conversation") }

// validID reports whether id looks like one of ours (a UUID), so that
// garbage never reaches a query.
func validID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// maxMute is the farthest a timed mute may reach; longer is "for ever".
const maxMute = 100 * 365 * 24 * time.Hour

// Mute mutes a conversation for callerID until the given time, or for ever
// when until is nil: no push notifications for it, and its messages leave
// the badge. A time that is not in the future is invalid_argument.
func (s *Service) Mute(ctx context.Context, callerID, conversationID string, until *parley.Time) error {
	if err := s.allow(ctx, LimitRequest, callerID); err != nil {
		return err
	}
	if !validID(conversationID) {
		return notFound()
	}
	if until != nil {
		if d := time.Until(until.Time); d <= 0 || d > maxMute {
			return parley.Errorf(parley.CodeInvalidArgument, "until must be a time in the future (or null for ever)")
		}
	}
	if err := s.writable(); err != nil {
		return err
	}
	return s.store.SetMute(ctx, conversationID, callerID, until)
}

// Unmute ends callerID's mute of a conversation, if any.
func (s *Service) Unmute(ctx context.Context, callerID, conversationID string) error {
	if err := s.allow(ctx, LimitRequest, callerID); err != nil {
		return err
	}
	if !validID(conversationID) {
		return notFound()
	}
	if err := s.writable(); err != nil {
		return err
	}
	return s.store.ClearMute(ctx, conversationID, callerID)
}

// MuteOf returns callerID's mute of a conversation.
func (s *Service) MuteOf(ctx context.Context, callerID, conversationID string) (parley.Mute, error) {
	if !validID(conversationID) {
		return parley.Mute{}, notFound()
	}
	return s.store.MuteOf(ctx, conversationID, callerID)
}
