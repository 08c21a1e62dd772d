// Package apns sends Parley's push notifications to iOS devices through the
// Apple Push Notification service: HTTP/2 with token (.p8, ES256)
// authentication, one long-lived connection per APNs host, the payload of
// the contract's Push section. Sender implements push.Sender.
package apns

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/push"
)

// The APNs hosts, by device token environment.
const (
	ProductionURL = "https://api.push.apple.com"
	SandboxURL    = "https://api.sandbox.push.apple.com"
)

// defaultExpiration is how long APNs keeps trying to deliver a push to an
// unreachable device when the alert sets no expiry.
const defaultExpiration = 24 * time.Hour

// Options configures a Sender. Key, KeyID, TeamID and Topic are required.
type Options struct {
	// Key is the token-signing key (see LoadKey).
	Key *ecdsa.PrivateKey
	// KeyID is the key's id, TeamID the Apple team id, Topic the app's
	// bundle id.
	KeyID, TeamID, Topic string
	// URL replaces both APNs hosts (a stand-in in tests, or a proxy);
	// empty sends sandbox tokens to SandboxURL and the others to
	// ProductionURL.
	URL string
	// RootCAs are the roots that APNs's certificate must chain to; nil
	// means the system's, which SSL_CERT_FILE and SSL_CERT_DIR replace.
	RootCAs *x509.CertPool
	// Now is the clock of provider tokens (default time.Now).
	Now func() time.Time
}

// Sender sends alerts to APNs. Create it with New; it is safe for
// concurrent use, and keeps its connections open between sends (HTTP/2
// multiplexes every request to a host over one). Close releases them.
type Sender struct {
	client *http.Client
	tr     *http.Transport
	tokens *providerTokens
	topic  string
	url    string
	now    func() time.Time
}

var _ push.Sender = (*Sender)(nil)

// New returns a Sender with the given options.
func New(opts Options) (*Sender, error) {
	switch {
	case opts.Key == nil:
		return nil, errors.New("apns: no signing key")
	case opts.KeyID == "":
		return nil, errors.New("apns: no key id")
	case opts.TeamID == "":
		return nil, errors.New("apns: no team id")
	case opts.Topic == "":
		return nil, errors.New("apns: no topic (the app's bundle id)")
	}
	if opts.URL != "" {
		u, err := url.Parse(opts.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("apns: URL %q must be https://host[:port]", opts.URL)
		}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   true,
		// APNs asks providers to keep connections open rather than open
		// one per push; an idle one is checked with pings instead.
		IdleConnTimeout: 0,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: time.Minute,
			PingTimeout:     15 * time.Second,
		},
	}
	// APNs speaks HTTP/2 only.
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP2(true)
	return &Sender{
		client: &http.Client{Transport: tr},
		tr:     tr,
		tokens: &providerTokens{key: opts.Key, keyID: opts.KeyID, teamID: opts.TeamID, now: opts.Now},
		topic:  opts.Topic,
		url:    strings.TrimSuffix(opts.URL, "/"),
		now:    opts.Now,
	}, nil
}

// Close closes the idle connections. Sends after Close open new ones.
func (s *Sender) Close() { s.tr.CloseIdleConnections() }

// Error is an APNs refusal: the HTTP status and Apple's reason.
type Error struct {
	Status int
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("apns: %d %s", e.Status, e.Reason) }

// Send sends an alert to one iOS device token. It returns nil when APNs
// accepted it; an error wrapping push.ErrTokenGone for 410 Unregistered or
// 400 BadDeviceToken; a *push.RetryError for 429, 5xx, timeouts and
// connection errors (with Retry-After when APNs gave one); and an *Error
// for any other refusal. On 403 ExpiredProviderToken it renews the provider
// token and tries once more.
func (s *Sender) Send(ctx context.Context, t parley.DeviceToken, a push.Alert) error {
	if t.Platform != parley.PlatformIOS {
		return fmt.Errorf("apns: %s token", t.Platform)
	}
	body, err := encodePayload(a)
	if err != nil {
		return err
	}
	target := s.baseURL(t.Environment) + "/3/device/" + url.PathEscape(t.Token)
	for try := 0; ; try++ {
		jwt, err := s.tokens.get()
		if err != nil {
			return err
		}
		status, reason, retryAfter, err := s.post(ctx, target, jwt, body, a)
		if err != nil {
			return &push.RetryError{Err: err}
		}
		if status == http.StatusOK {
			return nil
		}
		apnsErr := &Error{Status: status, Reason: reason}
		if status == http.StatusForbidden && reason == "ExpiredProviderToken" && try == 0 {
			retry, wait, err := s.tokens.expired(jwt)
			if err != nil {
				return err
			}
			if retry {
				continue
			}
			return &push.RetryError{After: wait, Err: apnsErr}
		}
		return classify(apnsErr, retryAfter, s.now())
	}
}

// classify turns a refusal into the error that tells the worker what to do.
func classify(e *Error, retryAfter string, now time.Time) error {
	switch {
	case e.Status == http.StatusGone,
		e.Status == http.StatusBadRequest && e.Reason == "BadDeviceToken":
		return fmt.Errorf("%w: %w", push.ErrTokenGone, e)
	case e.Status == http.StatusTooManyRequests, e.Status >= 500,
		e.Status == http.StatusForbidden && e.Reason == "ExpiredProviderToken":
		return &push.RetryError{After: parseRetryAfter(retryAfter, now), Err: e}
	}
	return e
}

// baseURL is where a token of the environment goes.
func (s *Sender) baseURL(environment string) string {
	switch {
	case s.url != "":
		return s.url
	case environment == "sandbox":
		return SandboxURL
	}
	return ProductionURL
}

// post makes one request and returns APNs's answer: the status, the
// reason of a refusal, and its Retry-After header. err is a failure to get
// an answer at all.
func (s *Sender) post(ctx context.Context, target, jwt string, body []byte, a push.Alert) (status int, reason, retryAfter string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, "", "", err
	}
	expires := a.Expires
	if expires.IsZero() {
		expires = s.now().Add(defaultExpiration)
	}
	h := req.Header
	h.Set("authorization", "bearer "+jwt)
	h.Set("apns-topic", s.topic)
	// A badge update is an alert push without alert or sound, which Apple
	// wants sent at priority 5 (it may be delayed to save power); a
	// background push (content-available) could carry nothing else.
	h.Set("apns-push-type", "alert")
	if a.BadgeOnly {
		h.Set("apns-priority", "5")
	} else {
		h.Set("apns-priority", "10")
	}
	h.Set("apns-expiration", strconv.FormatInt(expires.Unix(), 10))
	if a.ConversationID != "" {
		// One notification per conversation, as the contract describes:
		// a newer message replaces the one shown, and a push sent again
		// (at least once) replaces itself rather than showing twice.
		h.Set("apns-collapse-id", a.ConversationID)
	}
	h.Set("content-type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	// A refusal is {"reason":"..."} (with a timestamp for 410); a success
	// has no body. Reading it to the end lets the stream be reused.
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if err != nil && resp.StatusCode != http.StatusOK {
		return 0, "", "", fmt.Errorf("read APNs answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var r struct {
			Reason string `json:"reason"`
		}
		_ = json.Unmarshal(data, &r)
		reason = r.Reason
	}
	return resp.StatusCode, reason, resp.Header.Get("Retry-After"), nil
}

// parseRetryAfter reads a Retry-After header: seconds, or an HTTP date.
// Anything else is 0 (the worker's own backoff).
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Payload is the JSON body of a push, as the contract's Push section fixes
// it. It is exported for tests and stand-ins that decode what was sent.
type Payload struct {
	APS            APS    `json:"aps"`
	ConversationID string `json:"conversation_id"`
	SenderID       string `json:"sender_id"`
	MessageID      string `json:"message_id"`
	Seq            int64  `json:"seq"`
}

// APS is the aps dictionary of a Payload.
type APS struct {
	Alert          AlertBody `json:"alert"`
	Sound          string    `json:"sound"`
	Badge          int       `json:"badge"`
	ThreadID       string    `json:"thread-id"`
	MutableContent int       `json:"mutable-content"`
}

// AlertBody is the alert dictionary of APS. A direct conversation has no
// subtitle.
type AlertBody struct {
	Title    string `json:"title"`
	Subtitle string `json:"subtitle,omitempty"`
	Body     string `json:"body"`
}

// NewPayload returns the payload of an alert.
func NewPayload(a push.Alert) Payload {
	return Payload{
		APS: APS{
			Alert:          AlertBody{Title: a.Title, Subtitle: a.Subtitle, Body: a.Body},
			Sound:          "default",
			Badge:          a.Badge,
			ThreadID:       a.ConversationID,
			MutableContent: 1,
		},
		ConversationID: a.ConversationID,
		SenderID:       a.SenderID,
		MessageID:      a.MessageID,
		Seq:            a.Seq,
	}
}

// maxPayload is APNs's limit on an alert's payload.
const maxPayload = 4096

// BadgePayload is the body of a badge update: {"aps":{"badge":N}}, no
// alert and no sound.
type BadgePayload struct {
	APS struct {
		Badge int `json:"badge"`
	} `json:"aps"`
}

func encodePayload(a push.Alert) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // <, > and & as themselves: fewer bytes
	var v any = NewPayload(a)
	if a.BadgeOnly {
		var p BadgePayload
		p.APS.Badge = a.Badge
		v = p
	}
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("apns: encode payload: %w", err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(b) > maxPayload {
		return nil, fmt.Errorf("apns: payload of %d bytes is over APNs's %d", len(b), maxPayload)
	}
	return b, nil
}
