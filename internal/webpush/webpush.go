// Package webpush sends push notifications to browsers: the Web Push
// protocol (RFC 8030) with VAPID authentication (RFC 8292) and the
// aes128gcm payload encryption (RFC 8291), on top of
// github.com/SherClockHolmes/webpush-go.
//
// A browser subscribes with pushManager.subscribe, giving Keys.PublicKey
// as applicationServerKey, and registers the resulting PushSubscription,
// serialized as JSON, as a device token of platform "web". A Sender turns
// a push.Alert into an encrypted JSON payload for the service worker and
// POSTs it to the subscription's endpoint.
//
// Endpoints come from browsers, that is from untrusted clients. So that
// the server cannot be used to reach its own network (SSRF), a Sender only
// posts to https URLs on port 443 whose host is a public address or a
// public DNS name (not localhost, not .local, .internal and the like), and
// its default HTTP client refuses, at connect time, any resolved address
// that is loopback, private, link-local or otherwise not public. It never
// follows redirects. Options.AllowInsecureEndpoints lifts these rules for
// tests. endpoint.go has the details.
package webpush

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	webpushgo "github.com/SherClockHolmes/webpush-go"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/push"
)

// Defaults for Options.
const (
	DefaultSubscriber = "mailto:admin@localhost"
	DefaultTTL        = 24 * time.Hour
)

// recordSize is the aes128gcm record size, and so the exact size of every
// request body: webpush-go pads each payload to fill one record, which
// hides the length of the message. Its default (4096) is refused by some
// push services (Firefox for Android's autopush bridge answers 413 above
// about 3 KB; webpush-go issue #23); 2048 is what other servers settled on.
const recordSize = 2048

// maxPayload is the largest plaintext that fits one record: the record
// minus the GCM tag (16), the aes128gcm header (16 salt + 4 rs + 1 idlen
// + 65 key) and the padding delimiter (1).
const maxPayload = recordSize - 16 - 86 - 1

// Options configure a Sender. The zero Options are valid for production.
type Options struct {
	// Subscriber is the contact put in the VAPID "sub" claim, a mailto:
	// or https: URI; push services use it to reach the operator. Default
	// DefaultSubscriber. A bare e-mail address is taken as mailto:.
	Subscriber string
	// HTTPClient sends the requests. Nil means a client with a 30 s
	// timeout that dials only public addresses (see endpoint.go) and uses
	// no proxy. A client given here is used as is, except that redirects
	// are never followed; the connect-time address check is then its job.
	HTTPClient *http.Client
	// TTL is how long the push service keeps a push for an offline
	// browser; 0 means DefaultTTL. Sent in whole seconds.
	TTL time.Duration
	// AllowInsecureEndpoints lifts the endpoint rules: http endpoints,
	// any port, loopback and private hosts. For tests and local push
	// service stand-ins only; never set it on a public server.
	AllowInsecureEndpoints bool
	// Logger receives the Sender's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Sender delivers alerts to browser push subscriptions. It implements
// push.Sender and is safe for concurrent use.
type Sender struct {
	publicKey  string // VAPID public key, base64url
	privateKey string // VAPID private scalar, base64url; "" without a key
	subscriber string // as webpush-go wants it, see New
	client     *http.Client
	ttl        int // seconds
	insecure   bool
	log        *slog.Logger
	now        func() time.Time
}

var _ push.Sender = (*Sender)(nil)

// New returns a Sender that signs with keys. A Sender built from the zero
// Keys returns an error from every Send.
func New(keys Keys, opts Options) *Sender {
	s := &Sender{
		subscriber: opts.Subscriber,
		ttl:        int(opts.TTL / time.Second),
		insecure:   opts.AllowInsecureEndpoints,
		log:        opts.Logger,
		now:        time.Now,
	}
	if keys.priv != nil {
		if priv, err := keys.privateKey(); err == nil {
			s.publicKey, s.privateKey = keys.PublicKey(), priv
		}
	}
	if s.subscriber == "" {
		s.subscriber = DefaultSubscriber
	}
	// webpush-go v1.4.0 prepends "mailto:" to any subscriber that does not
	// start with "https:", so a proper mailto: URI would go out as
	// "mailto:mailto:...": hand it the bare address.
	s.subscriber = strings.TrimPrefix(s.subscriber, "mailto:")
	if opts.TTL <= 0 {
		s.ttl = int(DefaultTTL / time.Second)
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if opts.HTTPClient != nil {
		c := *opts.HTTPClient
		s.client = &c
	} else {
		s.client = defaultClient(opts.AllowInsecureEndpoints)
	}
	// A push service has no reason to redirect, and following one would
	// take the request past the endpoint checks.
	s.client.CheckRedirect = func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}
	return s
}

// defaultClient returns the client used when Options.HTTPClient is nil.
// It dials directly, without HTTP(S)_PROXY, so that the address checked
// at connect time is the push service's and not a proxy's.
func defaultClient(allowInsecure bool) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if !allowInsecure {
		d.Control = dialControl
	}
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext:           d.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          100,
			MaxIdleConnsPerHost:   16, // a few push services carry all the traffic
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
	}
}

// payload is the JSON the service worker receives in its push event: a
// message ("type":"message") or a badge update ({"type":"badge","badge"}).
type payload struct {
	Type           string `json:"type"`
	Title          string `json:"title"`
	Subtitle       string `json:"subtitle"`
	Body           string `json:"body"`
	Badge          int    `json:"badge"`
	ConversationID string `json:"conversation_id"`
	SenderID       string `json:"sender_id"`
	MessageID      string `json:"message_id"`
	Seq            int64  `json:"seq"`
	// Tag is the Notification tag: a new message replaces the shown
	// notification of its conversation instead of stacking up.
	Tag string `json:"tag"`
}

// Send encrypts the alert for the subscription in t.Token and posts it.
// It returns nil when the push service accepted it (200, 201, 202); an
// error wrapping push.ErrTokenGone for 404 and 410 and for a subscription
// that is malformed, expired or whose endpoint breaks the endpoint rules;
// a *push.RetryError for 408, 429, 5xx, timeouts and network errors (with
// Retry-After, seconds or a date, as After); and any other error (413,
// other 4xx, a refused address) when the push should be dropped.
func (s *Sender) Send(ctx context.Context, t parley.DeviceToken, a push.Alert) error {
	if t.Platform != parley.PlatformWeb {
		return fmt.Errorf("webpush: token of platform %q", t.Platform)
	}
	if s.privateKey == "" {
		return errors.New("webpush: no VAPID key")
	}
	sub, endpoint, err := s.parseSubscription(t.Token)
	if err != nil {
		s.log.Warn("web push subscription refused", "user", t.UserID, "err", err)
		return fmt.Errorf("webpush: %w: %w", push.ErrTokenGone, err)
	}
	p := payload{
		Type:           "message",
		Title:          a.Title,
		Subtitle:       a.Subtitle,
		Body:           a.Body,
		Badge:          a.Badge,
		ConversationID: a.ConversationID,
		SenderID:       a.SenderID,
		MessageID:      a.MessageID,
		Seq:            a.Seq,
		Tag:            a.ConversationID,
	}
	var msg []byte
	if a.BadgeOnly {
		msg, err = json.Marshal(struct {
			Type  string `json:"type"`
			Badge int    `json:"badge"`
		}{"badge", a.Badge})
	} else {
		msg, err = encodePayload(p)
	}
	if err != nil {
		return fmt.Errorf("webpush: %w", err)
	}
	// webpush-go v1.4.0 appends the padding to the slice it is given
	// (bytes.NewBuffer(message)), writing into its spare capacity: a
	// payload shared between sends is a data race (issue #83). Give each
	// send its own copy, with no spare capacity, so the library's appends
	// allocate.
	msg = append(make([]byte, 0, len(msg)), msg...)

	resp, err := webpushgo.SendNotificationWithContext(ctx, msg, sub, &webpushgo.Options{
		HTTPClient:      doer{s.client},
		RecordSize:      recordSize,
		Subscriber:      s.subscriber,
		TTL:             s.ttlFor(a),
		Urgency:         webpushgo.UrgencyHigh,
		VAPIDPublicKey:  s.publicKey,
		VAPIDPrivateKey: s.privateKey,
		// VapidExpiration is not set: v1.4.0 ignores it (issue #74) and
		// always signs exp = now + 12 h, inside RFC 8292's 24 h limit.
	})
	if err != nil {
		var te *transportError
		if !errors.As(err, &te) {
			// Encryption or signing failed before any request was made.
			return fmt.Errorf("webpush: %w", err)
		}
		if errors.Is(te.err, errNotPublic) {
			s.log.Warn("web push endpoint resolves to a non-public address", "user", t.UserID, "host", endpoint.Host, "err", te.err)
			return fmt.Errorf("webpush: POST to %s refused: %w", endpoint.Host, te.err)
		}
		return &push.RetryError{Err: fmt.Errorf("webpush: POST to %s: %w", endpoint.Host, te.err)}
	}
	defer resp.Body.Close()
	return s.result(resp, endpoint.Host)
}

// ttlFor is the TTL of a push, in seconds: until a.Expires, or the
// sender's TTL when the alert leaves it open.
func (s *Sender) ttlFor(a push.Alert) int {
	if a.Expires.IsZero() {
		return s.ttl
	}
	return max(int(time.Until(a.Expires)/time.Second), 0)
}

// result maps the push service's answer to Send's result.
func (s *Sender) result(resp *http.Response, host string) error {
	detail, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	// Drain a little more so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))

	code := resp.StatusCode
	err := fmt.Errorf("webpush: %s answered %s: %q", host, resp.Status, bytes.TrimSpace(detail))
	switch {
	case code == http.StatusOK || code == http.StatusCreated || code == http.StatusAccepted:
		s.log.Debug("web push sent", "host", host, "status", code)
		return nil
	case code == http.StatusNotFound || code == http.StatusGone:
		return fmt.Errorf("%w: %w", push.ErrTokenGone, err)
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return &push.RetryError{After: retryAfter(resp.Header.Get("Retry-After"), s.now()), Err: err}
	default:
		return err
	}
}

// retryAfter parses a Retry-After value, delay-seconds or an HTTP date,
// into a delay from now. It returns 0 when v is absent or unusable.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		// Clamp absurd values rather than overflow the Duration.
		return time.Duration(min(n, int64(365*24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// subscription is a browser's PushSubscription as PushSubscription.toJSON
// serializes it.
type subscription struct {
	Endpoint string `json:"endpoint"`
	// ExpirationTime is in milliseconds since the epoch, or null.
	ExpirationTime *float64 `json:"expirationTime"`
	Keys           struct {
		P256dh string `json:"p256dh"`
		Auth   string `json:"auth"`
	} `json:"keys"`
}

// parseSubscription decodes and checks a web device token. Every error it
// returns means the token can never be delivered to.
func (s *Sender) parseSubscription(token string) (*webpushgo.Subscription, *url.URL, error) {
	var sub subscription
	if err := json.Unmarshal([]byte(token), &sub); err != nil {
		return nil, nil, fmt.Errorf("malformed subscription: %w", err)
	}
	if sub.ExpirationTime != nil && *sub.ExpirationTime > 0 &&
		time.UnixMilli(int64(*sub.ExpirationTime)).Before(s.now()) {
		return nil, nil, errors.New("subscription expired")
	}
	if sub.Endpoint == "" {
		return nil, nil, errors.New("malformed subscription: no endpoint")
	}
	endpoint, err := checkEndpoint(sub.Endpoint, s.insecure)
	if err != nil {
		return nil, nil, err
	}
	p256dh, err := decodeKey(sub.Keys.P256dh)
	if err != nil {
		return nil, nil, fmt.Errorf("malformed subscription: keys.p256dh: %w", err)
	}
	// Check the point here: webpush-go's own check comes after it has
	// done work, and its errors do not say that the token is at fault.
	if _, err := ecdh.P256().NewPublicKey(p256dh); err != nil {
		return nil, nil, fmt.Errorf("malformed subscription: keys.p256dh is not an uncompressed P-256 point: %w", err)
	}
	auth, err := decodeKey(sub.Keys.Auth)
	if err != nil {
		return nil, nil, fmt.Errorf("malformed subscription: keys.auth: %w", err)
	}
	if len(auth) != 16 {
		return nil, nil, fmt.Errorf("malformed subscription: keys.auth has %d bytes, want 16", len(auth))
	}
	return &webpushgo.Subscription{
		Endpoint: endpoint.String(),
		Keys: webpushgo.Keys{
			P256dh: base64.RawURLEncoding.EncodeToString(p256dh),
			Auth:   base64.RawURLEncoding.EncodeToString(auth),
		},
	}, endpoint, nil
}

// decodeKey decodes a subscription key: base64url as browsers write it,
// with or without padding, or standard base64 as some libraries do.
func decodeKey(v string) ([]byte, error) {
	v = strings.TrimRight(v, "=")
	if v == "" {
		return nil, errors.New("missing")
	}
	if b, err := base64.RawURLEncoding.DecodeString(v); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(v)
}

// encodePayload marshals p, shortening the body (then the subtitle, then
// the title) until it fits one record. Alerts are short, but a body of
// 200 characters that JSON escapes six bytes each would not fit.
func encodePayload(p payload) ([]byte, error) {
	for {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // "<" as is, not six bytes of \u003c
		if err := enc.Encode(p); err != nil {
			return nil, fmt.Errorf("encode payload: %w", err)
		}
		b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		excess := len(b) - maxPayload
		switch {
		case excess <= 0:
			return b, nil
		case p.Body != "":
			p.Body = shorten(p.Body, excess)
		case p.Subtitle != "":
			p.Subtitle = shorten(p.Subtitle, excess)
		case p.Title != "":
			p.Title = shorten(p.Title, excess)
		default:
			return nil, fmt.Errorf("payload of %d bytes does not fit %d", len(b), maxPayload)
		}
	}
}

// shorten cuts s by at least excess bytes of JSON and marks the cut with
// "…". Every rune is at least one byte of JSON and "…" is three, so
// dropping excess+3 runes is always enough; the caller re-measures.
func shorten(s string, excess int) string {
	r := []rune(strings.TrimSuffix(s, "…"))
	keep := len(r) - excess - 3
	if keep <= 0 {
		return ""
	}
	return string(r[:keep]) + "…"
}

// doer adapts the Sender's client for webpush-go and marks the errors
// that come from the request itself, so that Send can tell them from the
// library's own (encryption, signing), which are not worth a retry.
type doer struct{ c *http.Client }

func (d doer) Do(r *http.Request) (*http.Response, error) {
	resp, err := d.c.Do(r)
	if err != nil {
		// *url.Error would repeat the whole endpoint URL, which is a
		// capability: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, &transportError{err: err}
	}
	return resp, nil
}

// transportError is an error from sending the request or reading the
// response headers: a network error, a timeout, a cancelled context.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }
