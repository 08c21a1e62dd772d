package apns_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/apns"
	"github.com/parley-chat/parley/internal/apns/apnstest"
	"github.com/parley-chat/parley/internal/push"
)

// clock is a settable clock for provider tokens.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time      { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) set(d time.Duration) { c.offset.Store(int64(d)) }

// newSender returns a Sender to the stand-in, with a clock.
func newSender(t *testing.T, s *apnstest.Server, c *clock) *apns.Sender {
	t.Helper()
	key, err := apns.LoadKey(s.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	opts := apns.Options{
		Key: key, KeyID: apnstest.KeyID, TeamID: apnstest.TeamID, Topic: apnstest.Topic,
		URL: s.URL, RootCAs: s.RootCAs(),
	}
	if c != nil {
		opts.Now = c.now
	}
	snd, err := apns.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(snd.Close)
	return snd
}

func device(token string) parley.DeviceToken {
	return parley.DeviceToken{UserID: "u", Platform: parley.PlatformIOS, Token: token, Environment: "sandbox"}
}

var alert = push.Alert{
	Title: "Trip planning", Subtitle: "Carol", Body: "Great, I'll look at trains. <&>",
	Badge: 3, ConversationID: "01a200e4-9f00-7f4d-9867-d510038a3716",
	SenderID: "01a1fed8-2042-7872-927d-f6dfd376764b", MessageID: "01a200e6-2499-7170-87ed-153a233c076b", Seq: 2,
}

func noProblems(t *testing.T, s *apnstest.Server) {
	t.Helper()
	if p := s.Problems(); len(p) > 0 {
		t.Fatalf("the stand-in refused requests: %v", p)
	}
}

func TestSend(t *testing.T) {
	s := apnstest.New(t)
	snd := newSender(t, s, nil)
	ctx := context.Background()
	expires := time.Now().Add(2 * time.Hour).Truncate(time.Second)
	a := alert
	a.Expires = expires
	if err := snd.Send(ctx, device("00aa11bb"), a); err != nil {
		t.Fatal(err)
	}
	noProblems(t, s)
	ps := s.PushesTo("00aa11bb")
	if len(ps) != 1 {
		t.Fatalf("%d pushes, want 1", len(ps))
	}
	p := ps[0]
	want := apns.Payload{
		APS: apns.APS{
			Alert:          apns.AlertBody{Title: "Trip planning", Subtitle: "Carol", Body: "Great, I'll look at trains. <&>"},
			Sound:          "default",
			Badge:          3,
			ThreadID:       alert.ConversationID,
			MutableContent: 1,
		},
		ConversationID: alert.ConversationID, SenderID: alert.SenderID, MessageID: alert.MessageID, Seq: 2,
	}
	if p.Payload != want {
		t.Errorf("payload %+v, want %+v", p.Payload, want)
	}
	if got := p.Header.Get("apns-expiration"); got != strconv.FormatInt(expires.Unix(), 10) {
		t.Errorf("apns-expiration %s, want %d", got, expires.Unix())
	}
	for k, want := range map[string]string{
		"apns-collapse-id": alert.ConversationID, // one notification per conversation
		"apns-push-type":   "alert",
		"apns-priority":    "10",
	} {
		if got := p.Header.Get(k); got != want {
			t.Errorf("%s %q, want %q", k, got, want)
		}
	}

	// A direct conversation's alert has no subtitle key at all.
	d := alert
	d.Subtitle, d.Title = "", "Carol"
	b, err := json.Marshal(apns.NewPayload(d))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "subtitle") {
		t.Errorf("direct payload %s has a subtitle", b)
	}
}

// TestSendBadgeOnly sends a badge update: an alert push at priority 5 whose
// aps holds the badge and nothing else, as Apple asks.
func TestSendBadgeOnly(t *testing.T) {
	s := apnstest.New(t)
	snd := newSender(t, s, nil)
	expires := time.Now().Add(7 * 24 * time.Hour).Truncate(time.Second)
	if err := snd.Send(context.Background(), device("00aa11bb"), push.Alert{BadgeOnly: true, Badge: 2, Expires: expires}); err != nil {
		t.Fatal(err)
	}
	noProblems(t, s)
	ps := s.PushesTo("00aa11bb")
	if len(ps) != 1 || !ps[0].BadgeOnly || ps[0].Payload.APS.Badge != 2 {
		t.Fatalf("pushes %+v, want one badge update to 2", ps)
	}
	h := ps[0].Header
	for k, want := range map[string]string{
		"apns-push-type":   "alert",
		"apns-priority":    "5",
		"apns-collapse-id": "",
		"apns-expiration":  strconv.FormatInt(expires.Unix(), 10),
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s %q, want %q", k, got, want)
		}
	}
}

func TestRefusals(t *testing.T) {
	s := apnstest.New(t)
	snd := newSender(t, s, nil)
	ctx := context.Background()
	tests := []struct {
		name      string
		reply     apnstest.Reply
		gone      bool
		retry     bool
		after     time.Duration
		wantError bool
	}{
		{"410 Unregistered", apnstest.Unregistered, true, false, 0, true},
		{"400 BadDeviceToken", apnstest.BadDeviceToken, true, false, 0, true},
		{"429 with Retry-After", apnstest.TooMany, false, true, time.Second, true},
		{"503", apnstest.Unavailable, false, true, 0, true},
		{"500", apnstest.Reply{Status: 500, Reason: "InternalServerError"}, false, true, 0, true},
		{"503 with a date", apnstest.Reply{Status: 503, Reason: "ServiceUnavailable", RetryAfter: time.Now().Add(time.Minute).UTC().Format(http.TimeFormat)}, false, true, 59 * time.Second, true},
		{"400 DeviceTokenNotForTopic", apnstest.Reply{Status: 400, Reason: "DeviceTokenNotForTopic"}, false, false, 0, true},
		{"403 InvalidProviderToken", apnstest.Reply{Status: 403, Reason: "InvalidProviderToken"}, false, false, 0, true},
		{"413 PayloadTooLarge", apnstest.Reply{Status: 413, Reason: "PayloadTooLarge"}, false, false, 0, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := strconv.Itoa(10 + i)
			s.Script(tok, tt.reply)
			err := snd.Send(ctx, device(tok), alert)
			if err == nil {
				t.Fatal("no error")
			}
			if got := errors.Is(err, push.ErrTokenGone); got != tt.gone {
				t.Errorf("%v: token gone %v, want %v", err, got, tt.gone)
			}
			var re *push.RetryError
			if got := errors.As(err, &re); got != tt.retry {
				t.Fatalf("%v: retry %v, want %v", err, got, tt.retry)
			}
			if tt.retry && (re.After < tt.after || re.After > tt.after+2*time.Second) {
				t.Errorf("retry after %v, want %v", re.After, tt.after)
			}
			var ae *apns.Error
			if !errors.As(err, &ae) || ae.Status != tt.reply.Status || ae.Reason != tt.reply.Reason {
				t.Errorf("%v: want an *apns.Error %d %s", err, tt.reply.Status, tt.reply.Reason)
			}
			// The next attempt is accepted.
			if err := snd.Send(ctx, device(tok), alert); err != nil {
				t.Errorf("after the refusal: %v", err)
			}
		})
	}
	noProblems(t, s)
}

func TestNetworkErrorIsRetried(t *testing.T) {
	s := apnstest.New(t)
	snd := newSender(t, s, nil)
	s.Close()
	err := snd.Send(context.Background(), device("abcd"), alert)
	var re *push.RetryError
	if !errors.As(err, &re) {
		t.Fatalf("a closed APNs: %v, want a RetryError", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	<-ctx.Done()
	if err := snd.Send(ctx, device("abcd"), alert); !errors.As(err, &re) {
		t.Fatalf("a timeout: %v, want a RetryError", err)
	}
}

func TestUntrustedCertificate(t *testing.T) {
	s := apnstest.New(t)
	key, err := apns.LoadKey(s.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	// The system roots do not trust the stand-in: verification stays on.
	snd, err := apns.New(apns.Options{Key: key, KeyID: apnstest.KeyID, TeamID: apnstest.TeamID, Topic: apnstest.Topic, URL: s.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	if err := snd.Send(context.Background(), device("abcd"), alert); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("send to an untrusted certificate: %v", err)
	}
	if len(s.Pushes()) != 0 {
		t.Fatal("a push went to an untrusted server")
	}
}

func TestConnectionReused(t *testing.T) {
	s := apnstest.New(t)
	snd := newSender(t, s, nil)
	ctx := context.Background()
	if err := snd.Send(ctx, device("0001"), alert); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Go(func() {
			errs <- snd.Send(ctx, device(strconv.Itoa(1000+i)), alert)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	noProblems(t, s)
	if n := len(s.Pushes()); n != 51 {
		t.Fatalf("%d pushes, want 51", n)
	}
	if c := s.Conns(); c != 1 {
		t.Errorf("%d connections for 51 pushes, want 1 (HTTP/2, kept open)", c)
	}
	if n := s.ProviderTokens(); n != 1 {
		t.Errorf("%d provider tokens for 51 pushes, want 1", n)
	}
}

func TestProviderTokenRenewal(t *testing.T) {
	s := apnstest.New(t)
	c := &clock{}
	snd := newSender(t, s, c)
	ctx := context.Background()
	send := func() {
		t.Helper()
		if err := snd.Send(ctx, device("abcd"), alert); err != nil {
			t.Fatal(err)
		}
	}
	c.set(-45 * time.Minute)
	send()
	send()
	if n := s.ProviderTokens(); n != 1 {
		t.Fatalf("%d provider tokens, want 1 reused", n)
	}
	c.set(-45*time.Minute + 39*time.Minute)
	send()
	if n := s.ProviderTokens(); n != 1 {
		t.Fatalf("%d provider tokens at 39 minutes, want 1", n)
	}
	c.set(-45*time.Minute + 41*time.Minute)
	send()
	if n := s.ProviderTokens(); n != 2 {
		t.Fatalf("%d provider tokens at 41 minutes, want 2 (renewed within the hour)", n)
	}
	c.set(-45*time.Minute + 41*time.Minute + 19*time.Minute)
	send()
	if n := s.ProviderTokens(); n != 2 {
		t.Fatalf("%d provider tokens 19 minutes after renewal, want still 2", n)
	}
	ps := s.Pushes()
	if d := ps[len(ps)-1].IssuedAt.Sub(ps[0].IssuedAt); d < 40*time.Minute || d > 42*time.Minute {
		t.Errorf("renewed token issued %v after the first, want 41 minutes", d)
	}
	noProblems(t, s)
}

func TestExpiredProviderToken(t *testing.T) {
	s := apnstest.New(t)
	c := &clock{}
	snd := newSender(t, s, c)
	ctx := context.Background()

	// APNs says a token just made is expired: its clock and ours disagree,
	// and a new token may not be made within 20 minutes of the last.
	c.set(-30 * time.Minute)
	s.ExpireTokensIssuedBefore(time.Now().Add(-29 * time.Minute))
	err := snd.Send(ctx, device("abcd"), alert)
	var re *push.RetryError
	if !errors.As(err, &re) || re.After < 19*time.Minute || re.After > 20*time.Minute {
		t.Fatalf("expired young token: %v, want a RetryError after about 20 minutes", err)
	}
	if n := s.ProviderTokens(); n != 1 {
		t.Fatalf("%d provider tokens, want 1 (no renewal within 20 minutes)", n)
	}

	// 25 minutes later the same token is refused again: it is renewed and
	// the push retried at once, in the same Send.
	c.set(-5 * time.Minute)
	if err := snd.Send(ctx, device("abcd"), alert); err != nil {
		t.Fatalf("after ExpiredProviderToken: %v", err)
	}
	if n := s.ProviderTokens(); n != 2 {
		t.Fatalf("%d provider tokens, want 2", n)
	}
	if n := s.Requests(); n != 3 {
		t.Errorf("%d requests, want 3 (refused, refused, accepted)", n)
	}
	ps := s.Pushes()
	if len(ps) != 1 || ps[0].IssuedAt.Before(time.Now().Add(-6*time.Minute)) {
		t.Errorf("accepted %+v, want one push with the renewed token", ps)
	}
	noProblems(t, s)
}

func TestHosts(t *testing.T) {
	s := apnstest.New(t)
	key, _ := apns.LoadKey(s.KeyFile)
	// Without a URL, production and sandbox tokens go to Apple's hosts.
	// The tests do not reach Apple: the context is cancelled before the
	// request, whose error names the URL it was for.
	snd, err := apns.New(apns.Options{Key: key, KeyID: "k", TeamID: "t", Topic: "x"})
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no network: the error names the URL
	for env, host := range map[string]string{"sandbox": "api.sandbox.push.apple.com", "production": "api.push.apple.com"} {
		d := device("abcd")
		d.Environment = env
		err := snd.Send(ctx, d, alert)
		if err == nil || !strings.Contains(err.Error(), "https://"+host+"/3/device/abcd") {
			t.Errorf("%s: %v, want a request to %s", env, err, host)
		}
	}
}

func TestOptions(t *testing.T) {
	s := apnstest.New(t)
	key, _ := apns.LoadKey(s.KeyFile)
	for name, o := range map[string]apns.Options{
		"no key":      {KeyID: "k", TeamID: "t", Topic: "x"},
		"no key id":   {Key: key, TeamID: "t", Topic: "x"},
		"no team":     {Key: key, KeyID: "k", Topic: "x"},
		"no topic":    {Key: key, KeyID: "k", TeamID: "t"},
		"http url":    {Key: key, KeyID: "k", TeamID: "t", Topic: "x", URL: "http://localhost:1"},
		"no url host": {Key: key, KeyID: "k", TeamID: "t", Topic: "x", URL: "https://"},
	} {
		if _, err := apns.New(o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	for name, path := range map[string]string{
		"missing":  filepath.Join(dir, "none.p8"),
		"not PEM":  write("junk.p8", []byte("not a key")),
		"RSA key":  write("rsa.p8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"EC block": write("ec.p8", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})),
	} {
		if _, err := apns.LoadKey(path); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	s := apnstest.New(t)
	if _, err := apns.LoadKey(s.KeyFile); err != nil {
		t.Errorf("a .p8 key: %v", err)
	}
}
