package webpush

import (
	"github.com/parley-chat/parley/internal/webpush/webpushtest"

	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/push"
)

const testSubscriber = "mailto:ops@parley.example"

// quiet drops the Sender's logs, which the refusals tested here would fill.
var quiet = slog.New(slog.DiscardHandler)

// newTestSender returns a Sender with fresh keys, allowed to reach the
// local test push service, and that service.
func newTestSender(t *testing.T, opts Options) (*Sender, *webpushtest.Service) {
	t.Helper()
	keys := newKeys(t)
	if opts.Subscriber == "" {
		opts.Subscriber = testSubscriber
	}
	opts.AllowInsecureEndpoints = true
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	ps := webpushtest.New(t, keys.PublicKey(), opts.Subscriber)
	return New(keys, opts), ps
}

func webToken(token string) parley.DeviceToken {
	return parley.DeviceToken{UserID: "u1", Platform: parley.PlatformWeb, Token: token}
}

var testAlert = push.Alert{
	Title:          "Team <Rocket>",
	Subtitle:       "Ada",
	Body:           "hello & welcome",
	Badge:          7,
	ConversationID: "0198c6b5-1111-7000-8000-000000000001",
	SenderID:       "0198c6b5-2222-7000-8000-000000000002",
	MessageID:      "0198c6b5-3333-7000-8000-000000000003",
	Seq:            42,
}

// wantPayload is what the service worker must receive for testAlert.
var wantPayload = map[string]any{
	"type":            "message",
	"title":           "Team <Rocket>",
	"subtitle":        "Ada",
	"body":            "hello & welcome",
	"badge":           float64(7),
	"conversation_id": testAlert.ConversationID,
	"sender_id":       testAlert.SenderID,
	"message_id":      testAlert.MessageID,
	"seq":             float64(42),
	"tag":             testAlert.ConversationID,
}

func status(code int, header ...string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"code":%d}`, code)
	}
}

func TestSendOutcomes(t *testing.T) {
	retryDate := time.Now().Add(2 * time.Minute).UTC().Format(http.TimeFormat)
	tests := []struct {
		name  string
		reply func(http.ResponseWriter, *http.Request)
		// want: "ok", "gone", "retry" or "drop".
		want      string
		wantAfter time.Duration // for retry; 0 = worker's backoff
		afterTol  time.Duration
	}{
		{name: "201 Created", reply: status(201), want: "ok"},
		{name: "200 OK", reply: status(200), want: "ok"},
		{name: "202 Accepted", reply: status(202), want: "ok"},
		{name: "404 Not Found", reply: status(404), want: "gone"},
		{name: "410 Gone", reply: status(410), want: "gone"},
		{name: "429 Retry-After seconds", reply: status(429, "Retry-After", "30"), want: "retry", wantAfter: 30 * time.Second},
		{name: "429 Retry-After date", reply: status(429, "Retry-After", retryDate), want: "retry", wantAfter: 2 * time.Minute, afterTol: 5 * time.Second},
		{name: "429 without Retry-After", reply: status(429), want: "retry"},
		{name: "503 Service Unavailable", reply: status(503), want: "retry"},
		{name: "503 Retry-After", reply: status(503, "Retry-After", "5"), want: "retry", wantAfter: 5 * time.Second},
		{name: "500 Internal Server Error", reply: status(500), want: "retry"},
		{name: "408 Request Timeout", reply: status(408), want: "retry"},
		{name: "413 Payload Too Large", reply: status(413), want: "drop"},
		{name: "400 Bad Request", reply: status(400), want: "drop"},
		{name: "403 Forbidden", reply: status(403), want: "drop"},
		{name: "302 redirect is not followed", reply: status(302, "Location", "http://169.254.169.254/latest/meta-data/"), want: "drop"},
	}
	s, ps := newTestSender(t, Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := ps.Subscribe(tt.reply)
			err := s.Send(context.Background(), webToken(ps.Token(sub)), testAlert)
			checkOutcome(t, err, tt.want, tt.wantAfter, tt.afterTol)

			// Whatever the answer, the push service got exactly one
			// valid, decryptable push carrying the alert.
			got, failures := sub.Pushes()
			if len(failures) > 0 {
				t.Fatalf("push service refused the request: %v", failures)
			}
			if len(got) != 1 {
				t.Fatalf("push service got %d pushes, want 1", len(got))
			}
			checkPayload(t, got[0].Payload, wantPayload)
			if got[0].Size != recordSize {
				t.Errorf("body of %d bytes, want the padded %d", got[0].Size, recordSize)
			}
			if ttl := got[0].Header.Get("TTL"); ttl != "86400" {
				t.Errorf("TTL %q, want 86400 (the default day)", ttl)
			}
		})
	}
}

func checkOutcome(t *testing.T, err error, want string, wantAfter, tol time.Duration) {
	t.Helper()
	var re *push.RetryError
	switch want {
	case "ok":
		if err != nil {
			t.Fatalf("Send = %v, want nil", err)
		}
	case "gone":
		if !errors.Is(err, push.ErrTokenGone) {
			t.Fatalf("Send = %v, want ErrTokenGone", err)
		}
		if errors.As(err, &re) {
			t.Fatalf("Send = %v: gone must not be retried", err)
		}
	case "retry":
		if !errors.As(err, &re) {
			t.Fatalf("Send = %v, want *push.RetryError", err)
		}
		if errors.Is(err, push.ErrTokenGone) {
			t.Fatalf("Send = %v: retry must not delete the token", err)
		}
		if d := re.After - wantAfter; d > tol || d < -tol {
			t.Fatalf("After = %v, want %v ± %v", re.After, wantAfter, tol)
		}
	case "drop":
		if err == nil || errors.Is(err, push.ErrTokenGone) || errors.As(err, &re) {
			t.Fatalf("Send = %v, want a plain error", err)
		}
	default:
		t.Fatalf("bad want %q", want)
	}
}

func checkPayload(t *testing.T, got, want map[string]any) {
	t.Helper()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("payload[%q] = %#v, want %#v", k, got[k], w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("payload has unexpected field %q", k)
		}
	}
}

// TestSendBadgeOnly sends a badge update: the service worker gets only
// the type and the badge, kept as long as the alert asks.
func TestSendBadgeOnly(t *testing.T) {
	s, ps := newTestSender(t, Options{})
	sub := ps.Subscribe(status(201))
	a := push.Alert{BadgeOnly: true, Badge: 0, Expires: time.Now().Add(time.Hour)}
	if err := s.Send(context.Background(), webToken(ps.Token(sub)), a); err != nil {
		t.Fatal(err)
	}
	got, failures := sub.Pushes()
	if len(failures) > 0 || len(got) != 1 {
		t.Fatalf("pushes %d, refusals %v; want one", len(got), failures)
	}
	checkPayload(t, got[0].Payload, map[string]any{"type": "badge", "badge": float64(0)})
	if ttl, _ := strconv.Atoi(got[0].Header.Get("TTL")); ttl < 3590 || ttl > 3600 {
		t.Errorf("TTL %q, want about an hour", got[0].Header.Get("TTL"))
	}
}

func TestSendNetworkErrors(t *testing.T) {
	s, ps := newTestSender(t, Options{})

	t.Run("connection refused", func(t *testing.T) {
		// A port that was just free: nothing listens there now.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		sub := ps.Subscribe(nil)
		tok := strings.Replace(ps.Token(sub), ps.URL(), "http://"+addr, 1)
		checkOutcome(t, s.Send(context.Background(), webToken(tok), testAlert), "retry", 0, 0)
	})

	t.Run("timeout", func(t *testing.T) {
		sub := ps.Subscribe(func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // answer only once the client gave up
		})
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		err := s.Send(ctx, webToken(ps.Token(sub)), testAlert)
		checkOutcome(t, err, "retry", 0, 0)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Send = %v, want it to wrap context.DeadlineExceeded", err)
		}
		if strings.Contains(err.Error(), sub.Path()) {
			t.Errorf("error %q repeats the endpoint URL", err)
		}
	})
}

func TestSendMalformedSubscription(t *testing.T) {
	s, ps := newTestSender(t, Options{})
	sub := ps.Subscribe(nil)
	var good map[string]any
	if err := json.Unmarshal([]byte(ps.Token(sub)), &good); err != nil {
		t.Fatal(err)
	}
	// with returns the good subscription with one change.
	with := func(change func(m map[string]any)) string {
		b, _ := json.Marshal(good)
		var m map[string]any
		json.Unmarshal(b, &m)
		change(m)
		b, _ = json.Marshal(m)
		return string(b)
	}
	keys := func(m map[string]any) map[string]any { return m["keys"].(map[string]any) }
	offCurve := make([]byte, 65)
	offCurve[0], offCurve[64] = 4, 1

	tests := map[string]string{
		"not JSON":       "not json",
		"empty":          "",
		"JSON array":     "[]",
		"no endpoint":    with(func(m map[string]any) { delete(m, "endpoint") }),
		"relative URL":   with(func(m map[string]any) { m["endpoint"] = "/wpush/v2/x" }),
		"ftp endpoint":   with(func(m map[string]any) { m["endpoint"] = "ftp://127.0.0.1/x" }),
		"no keys":        with(func(m map[string]any) { delete(m, "keys") }),
		"no p256dh":      with(func(m map[string]any) { delete(keys(m), "p256dh") }),
		"p256dh not b64": with(func(m map[string]any) { keys(m)["p256dh"] = "!!!" }),
		"p256dh short":   with(func(m map[string]any) { keys(m)["p256dh"] = "BAAA" }),
		"p256dh off curve": with(func(m map[string]any) {
			keys(m)["p256dh"] = base64.RawURLEncoding.EncodeToString(offCurve)
		}),
		"no auth":    with(func(m map[string]any) { delete(keys(m), "auth") }),
		"auth short": with(func(m map[string]any) { keys(m)["auth"] = "AAAA" }),
		"expired": with(func(m map[string]any) {
			m["expirationTime"] = float64(time.Now().Add(-time.Hour).UnixMilli())
		}),
	}
	for name, tok := range tests {
		t.Run(name, func(t *testing.T) {
			err := s.Send(context.Background(), webToken(tok), testAlert)
			checkOutcome(t, err, "gone", 0, 0)
		})
	}
	if got, _ := sub.Pushes(); len(got) != 0 {
		t.Errorf("%d malformed subscriptions reached the push service", len(got))
	}

	t.Run("good one still works", func(t *testing.T) {
		tok := with(func(m map[string]any) {
			m["expirationTime"] = float64(time.Now().Add(time.Hour).UnixMilli())
		})
		checkOutcome(t, s.Send(context.Background(), webToken(tok), testAlert), "ok", 0, 0)
	})
}

func TestSendRefusesEndpointsInProduction(t *testing.T) {
	keys := newKeys(t)
	// Without AllowInsecureEndpoints; a client that fails the test if
	// it is ever used.
	s := New(keys, Options{Logger: quiet, HTTPClient: &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Errorf("request to %s was sent", r.URL)
		return nil, errors.New("must not be sent")
	})}})
	ua, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// A valid subscription but for its endpoint.
	sub := `{"endpoint":%q,"keys":{"p256dh":"` + base64.RawURLEncoding.EncodeToString(ua.PublicKey().Bytes()) +
		`","auth":"BTBZMqHH6r4Tts7J_aSIgg"}}`
	for _, endpoint := range []string{
		"http://fcm.googleapis.com/fcm/send/x",
		"https://127.0.0.1/x",
		"https://localhost/x",
		"https://push.localhost/x",
		"https://10.1.2.3/x",
		"https://169.254.169.254/latest/meta-data/",
		"https://[::1]/x",
		"https://[::ffff:127.0.0.1]/x",
		"https://fcm.googleapis.com:8443/x",
		"https://user:pw@fcm.googleapis.com/x",
		"https://metadata/computeMetadata/v1/",
		"https://metadata.google.internal/computeMetadata/v1/",
	} {
		t.Run(endpoint, func(t *testing.T) {
			err := s.Send(context.Background(), webToken(fmt.Sprintf(sub, endpoint)), testAlert)
			checkOutcome(t, err, "gone", 0, 0)
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestDefaultClientRefusesNonPublicAddresses checks the connect-time rule,
// which catches names that resolve to internal addresses: the default
// production client will not connect to the local test server.
func TestDefaultClientRefusesNonPublicAddresses(t *testing.T) {
	_, ps := newTestSender(t, Options{})
	c := defaultClient(false)
	_, err := c.Get(ps.URL())
	if !errors.Is(err, errNotPublic) {
		t.Fatalf("GET %s = %v, want errNotPublic", ps.URL(), err)
	}
	// And Send turns that into a dropped push, not a retry or a deletion.
	keys := newKeys(t)
	s := New(keys, Options{Logger: quiet})
	// Bypass the URL rules to reach the dial check: it is what a public
	// name with a private DNS answer would hit.
	s.insecure = true
	sub := ps.Subscribe(nil)
	checkOutcome(t, s.Send(context.Background(), webToken(ps.Token(sub)), testAlert), "drop", 0, 0)
}

func TestSendWrongPlatformAndNoKey(t *testing.T) {
	s, ps := newTestSender(t, Options{})
	tok := webToken(ps.Token(ps.Subscribe(nil)))
	tok.Platform = parley.PlatformIOS
	checkOutcome(t, s.Send(context.Background(), tok, testAlert), "drop", 0, 0)

	s = New(Keys{}, Options{AllowInsecureEndpoints: true, Logger: quiet})
	checkOutcome(t, s.Send(context.Background(), webToken(ps.Token(ps.Subscribe(nil))), testAlert), "drop", 0, 0)
}

func TestSendOptions(t *testing.T) {
	tests := []struct {
		name, subscriber, wantSub string
		ttl                       time.Duration
		wantTTL                   string
	}{
		{"mailto subscriber", "mailto:ops@parley.example", "mailto:ops@parley.example", 0, "86400"},
		{"bare address", "ops@parley.example", "mailto:ops@parley.example", time.Hour, "3600"},
		{"https subscriber", "https://parley.example/contact", "https://parley.example/contact", 90 * time.Second, "90"},
		{"default subscriber", "", DefaultSubscriber, 0, "86400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := newKeys(t)
			ps := webpushtest.New(t, keys.PublicKey(), tt.wantSub)
			s := New(keys, Options{Subscriber: tt.subscriber, TTL: tt.ttl, AllowInsecureEndpoints: true, Logger: quiet})
			sub := ps.Subscribe(nil)
			checkOutcome(t, s.Send(context.Background(), webToken(ps.Token(sub)), testAlert), "ok", 0, 0)
			got, failures := sub.Pushes()
			if len(failures) > 0 || len(got) != 1 {
				t.Fatalf("pushes %d, failures %v", len(got), failures)
			}
			if ttl := got[0].Header.Get("TTL"); ttl != tt.wantTTL {
				t.Errorf("TTL %q, want %q", ttl, tt.wantTTL)
			}
		})
	}
}

// TestSendLongPayload checks that an alert whose JSON would not fit one
// record is shortened rather than refused: 200 control characters that
// JSON escapes to six bytes each, and the longest titles.
func TestSendLongPayload(t *testing.T) {
	s, ps := newTestSender(t, Options{})
	sub := ps.Subscribe(nil)
	a := testAlert
	a.Title = strings.Repeat("\U0001F600", 128)
	a.Subtitle = strings.Repeat("é", 64)
	a.Body = strings.Repeat("\x01", 199) + "…"
	checkOutcome(t, s.Send(context.Background(), webToken(ps.Token(sub)), a), "ok", 0, 0)
	got, failures := sub.Pushes()
	if len(failures) > 0 || len(got) != 1 {
		t.Fatalf("pushes %d, failures %v", len(got), failures)
	}
	p := got[0].Payload
	if p["title"] != a.Title || p["subtitle"] != a.Subtitle {
		t.Errorf("title or subtitle changed: %q, %q", p["title"], p["subtitle"])
	}
	body, _ := p["body"].(string)
	if !strings.HasSuffix(body, "…") || utf8.RuneCountInString(body) >= 200 || !strings.HasPrefix(a.Body, strings.TrimSuffix(body, "…")) {
		t.Errorf("body %q is not a shortened prefix of the alert's", body)
	}
}

// TestSendConcurrent sends from many goroutines through one Sender; with
// -race it checks that nothing is shared between sends (webpush-go #83).
func TestSendConcurrent(t *testing.T) {
	s, ps := newTestSender(t, Options{})
	subs := make([]*webpushtest.Subscription, 8)
	for i := range subs {
		subs[i] = ps.Subscribe(nil)
	}
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			a := testAlert
			a.Seq = int64(i)
			sub := subs[i%len(subs)]
			if err := s.Send(context.Background(), webToken(ps.Token(sub)), a); err != nil {
				t.Errorf("Send %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	seen := map[float64]bool{}
	for _, sub := range subs {
		got, failures := sub.Pushes()
		if len(failures) > 0 {
			t.Errorf("failures: %v", failures)
		}
		for _, r := range got {
			seen[r.Payload["seq"].(float64)] = true
		}
	}
	if len(seen) != 32 {
		t.Errorf("push service decrypted %d distinct pushes, want 32", len(seen))
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := map[string]time.Duration{
		"":                              0,
		"120":                           2 * time.Minute,
		" 7 ":                           7 * time.Second,
		"0":                             0,
		"-5":                            0,
		"soon":                          0,
		"Sun, 01 Mar 2026 12:00:30 GMT": 30 * time.Second,
		"Sun, 01 Mar 2026 11:00:00 GMT": 0,
		"99999999999999":                365 * 24 * time.Hour,
	}
	for v, want := range tests {
		if got := retryAfter(v, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}
