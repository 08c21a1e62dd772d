// Package apnstest is a stand-in for the Apple Push Notification service,
// for tests: a local HTTP/2 TLS server with a fresh token-signing key of its
// own (the test's ".p8") that checks every request as APNs would (the
// provider token's ES256 signature against the key's public half, its kid,
// iss and iat; the path, the headers and the payload of the contract), keeps
// what it accepted, and answers with whatever status a test asks for.
package apnstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-chat/parley/internal/apns"
)

// The identity that Server expects.
const (
	KeyID  = "TESTKEY123"
	TeamID = "TESTTEAM99"
	Topic  = "chat.parley.test"
)

// Push is a request that the stand-in accepted.
type Push struct {
	Token string
	// BadgeOnly says that it was a badge update ({"aps":{"badge":N}} at
	// priority 5): Payload then holds only APS.Badge.
	BadgeOnly bool
	Payload   apns.Payload
	Header    http.Header
	// IssuedAt is the iat of the provider token it carried.
	IssuedAt time.Time
	// JWT is the provider token itself.
	JWT string
}

// Reply is an answer the stand-in gives instead of 200.
type Reply struct {
	Status     int
	Reason     string
	RetryAfter string
}

// Common replies.
var (
	Unregistered   = Reply{Status: http.StatusGone, Reason: "Unregistered"}
	BadDeviceToken = Reply{Status: http.StatusBadRequest, Reason: "BadDeviceToken"}
	TooMany        = Reply{Status: http.StatusTooManyRequests, Reason: "TooManyRequests", RetryAfter: "1"}
	Unavailable    = Reply{Status: http.StatusServiceUnavailable, Reason: "ServiceUnavailable"}
	ExpiredToken   = Reply{Status: http.StatusForbidden, Reason: "ExpiredProviderToken"}
)

// Server is a running stand-in. Its methods are safe for concurrent use.
type Server struct {
	*httptest.Server
	// Key is the token-signing key, and KeyFile the same as a .p8 file.
	Key     *ecdsa.PrivateKey
	KeyFile string

	mu       sync.Mutex // guards everything below
	pushes   []Push
	problems []string
	scripted map[string][]Reply // token → replies to give first
	always   *Reply             // the answer to everything, if set
	expireAt time.Time          // provider tokens issued before this are expired
	requests int
	conns    int
	jwts     map[string]bool
}

// New starts a stand-in that is closed when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "AuthKey_"+KeyID+".p8")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Server{Key: key, KeyFile: keyFile, scripted: map[string][]Reply{}, jwts: map[string]bool{}}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.Server.EnableHTTP2 = true
	s.Server.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
		}
	}
	s.Server.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// RootCAs trusts the stand-in's certificate.
func (s *Server) RootCAs() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(s.Certificate())
	return pool
}

// Script makes the next requests for token get replies, in order, before
// it is accepted again.
func (s *Server) Script(token string, replies ...Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripted[token] = append(s.scripted[token], replies...)
}

// Always makes every request get r (nil: accept again).
func (s *Server) Always(r *Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.always = r
}

// ExpireTokensIssuedBefore makes provider tokens with an earlier iat get
// 403 ExpiredProviderToken, as APNs answers tokens older than an hour.
func (s *Server) ExpireTokensIssuedBefore(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireAt = t
}

// Pushes returns what was accepted, in order.
func (s *Server) Pushes() []Push {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Push(nil), s.pushes...)
}

// PushesTo returns what was accepted for one token.
func (s *Server) PushesTo(token string) []Push {
	var out []Push
	for _, p := range s.Pushes() {
		if p.Token == token {
			out = append(out, p)
		}
	}
	return out
}

// Problems lists what was wrong with the requests received, as APNs would
// have refused them; a correct client causes none.
func (s *Server) Problems() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.problems...)
}

// Requests is the number of requests received; Conns the number of
// connections opened; ProviderTokens the number of distinct provider
// tokens seen.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Conns is the number of connections opened to the stand-in.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// ProviderTokens is the number of distinct provider tokens seen.
func (s *Server) ProviderTokens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.jwts)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()
	refuse := func(status int, reason, problem string) {
		s.mu.Lock()
		s.problems = append(s.problems, problem)
		s.mu.Unlock()
		answer(w, Reply{Status: status, Reason: reason})
	}
	if r.ProtoMajor != 2 {
		refuse(http.StatusBadRequest, "BadRequest", "not HTTP/2: "+r.Proto)
		return
	}
	token, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	if r.Method != http.MethodPost || !ok {
		refuse(http.StatusNotFound, "BadPath", r.Method+" "+r.URL.Path)
		return
	}
	if _, err := hex.DecodeString(token); err != nil || token == "" {
		refuse(http.StatusBadRequest, "BadDeviceToken", "token not hex: "+token)
		return
	}
	jwtText, iat, problem := s.checkJWT(r.Header.Get("authorization"))
	if problem != "" {
		refuse(http.StatusForbidden, "InvalidProviderToken", problem)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<10))
	if err != nil {
		refuse(http.StatusBadRequest, "BadRequest", "read body: "+err.Error())
		return
	}
	badgeOnly := isBadgeOnly(body)
	if p := checkHeaders(r.Header, badgeOnly); p != "" {
		refuse(http.StatusBadRequest, "BadRequest", p)
		return
	}
	var payload apns.Payload
	var p string
	if badgeOnly {
		payload, p = checkBadgePayload(body)
	} else {
		payload, p = checkPayload(body)
		if c := r.Header.Get("apns-collapse-id"); p == "" && c != payload.ConversationID {
			p = fmt.Sprintf("apns-collapse-id %q is not the conversation id %q", c, payload.ConversationID)
		}
	}
	if p != "" {
		refuse(http.StatusBadRequest, "PayloadInvalid", p+": "+string(body))
		return
	}

	s.mu.Lock()
	s.jwts[jwtText] = true
	var reply *Reply
	switch {
	case !s.expireAt.IsZero() && iat.Before(s.expireAt):
		reply = &ExpiredToken
	case len(s.scripted[token]) > 0:
		r := s.scripted[token][0]
		s.scripted[token] = s.scripted[token][1:]
		reply = &r
	case s.always != nil:
		reply = s.always
	default:
		s.pushes = append(s.pushes, Push{Token: token, BadgeOnly: badgeOnly, Payload: payload, Header: r.Header.Clone(), IssuedAt: iat, JWT: jwtText})
	}
	s.mu.Unlock()
	if reply != nil {
		answer(w, *reply)
		return
	}
	w.Header().Set("apns-id", "00000000-0000-4000-8000-000000000000")
	w.WriteHeader(http.StatusOK)
}

func answer(w http.ResponseWriter, r Reply) {
	if r.RetryAfter != "" {
		w.Header().Set("Retry-After", r.RetryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(r.Status)
	body := map[string]any{"reason": r.Reason}
	if r.Status == http.StatusGone {
		body["timestamp"] = time.Now().UnixMilli()
	}
	_ = json.NewEncoder(w).Encode(body)
}

// checkJWT verifies a provider token as APNs does and returns it and its
// iat, or what is wrong with it.
func (s *Server) checkJWT(authorization string) (string, time.Time, string) {
	text, ok := strings.CutPrefix(authorization, "bearer ")
	if !ok {
		return "", time.Time{}, "authorization is not \"bearer <jwt>\": " + authorization
	}
	claims := jwt.MapClaims{}
	tok, err := jwt.ParseWithClaims(text, claims, func(t *jwt.Token) (any, error) {
		return &s.Key.PublicKey, nil
	}, jwt.WithValidMethods([]string{"ES256"}))
	if err != nil {
		return "", time.Time{}, "provider token: " + err.Error()
	}
	if kid, _ := tok.Header["kid"].(string); kid != KeyID {
		return "", time.Time{}, fmt.Sprintf("provider token kid %q, want %q", tok.Header["kid"], KeyID)
	}
	if iss, _ := claims["iss"].(string); iss != TeamID {
		return "", time.Time{}, fmt.Sprintf("provider token iss %q, want %q", claims["iss"], TeamID)
	}
	iat, err := claims.GetIssuedAt()
	if err != nil || iat == nil {
		return "", time.Time{}, "provider token without iat"
	}
	if age := time.Since(iat.Time); age > time.Hour || age < -time.Minute {
		return "", time.Time{}, fmt.Sprintf("provider token iat %v is not within the last hour", iat.Time)
	}
	return text, iat.Time, ""
}

// isBadgeOnly reports whether a payload's aps has no alert: a badge
// update, which checkBadgePayload checks.
func isBadgeOnly(body []byte) bool {
	var raw struct {
		APS map[string]json.RawMessage `json:"aps"`
	}
	if json.Unmarshal(body, &raw) != nil || raw.APS == nil {
		return false
	}
	_, alert := raw.APS["alert"]
	return !alert
}

// checkBadgePayload checks a badge update: exactly {"aps":{"badge":N}},
// as Apple asks (no alert, no sound; content-available would make it a
// background push, which must carry nothing else).
func checkBadgePayload(body []byte) (apns.Payload, string) {
	var raw map[string]map[string]any
	if err := json.Unmarshal(body, &raw); err != nil || len(raw) != 1 || len(raw["aps"]) != 1 {
		return apns.Payload{}, "a badge update is exactly {\"aps\":{\"badge\":N}}"
	}
	b, ok := raw["aps"]["badge"].(float64)
	if !ok || b < 0 || b != float64(int(b)) {
		return apns.Payload{}, fmt.Sprintf("aps.badge %v", raw["aps"]["badge"])
	}
	var p apns.Payload
	p.APS.Badge = int(b)
	return p, ""
}

func checkHeaders(h http.Header, badgeOnly bool) string {
	var bad []string
	priority := "10"
	if badgeOnly {
		priority = "5"
	}
	want := map[string]string{
		"apns-topic":     Topic,
		"apns-push-type": "alert",
		"apns-priority":  priority,
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			bad = append(bad, fmt.Sprintf("%s %q, want %q", k, got, v))
		}
	}
	exp, err := strconv.ParseInt(h.Get("apns-expiration"), 10, 64)
	if err != nil || time.Unix(exp, 0).Before(time.Now()) {
		bad = append(bad, fmt.Sprintf("apns-expiration %q is not a future Unix time", h.Get("apns-expiration")))
	}
	if c := h.Get("apns-collapse-id"); len(c) > 64 {
		bad = append(bad, "apns-collapse-id over 64 bytes")
	}
	return strings.Join(bad, "; ")
}

// checkPayload decodes a payload and checks the contract's shape: every
// field present with its type, and the fixed values.
func checkPayload(body []byte) (apns.Payload, string) {
	if len(body) > 4096 {
		return apns.Payload{}, "payload over 4096 bytes"
	}
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		return apns.Payload{}, "payload not a JSON object"
	}
	var bad []string
	aps, _ := raw["aps"].(map[string]any)
	if aps == nil {
		return apns.Payload{}, "no aps object"
	}
	alert, _ := aps["alert"].(map[string]any)
	if alert == nil {
		return apns.Payload{}, "no aps.alert object"
	}
	for _, k := range []string{"title", "body"} {
		if s, ok := alert[k].(string); !ok || s == "" {
			bad = append(bad, "aps.alert."+k+" missing or empty")
		}
	}
	if v, ok := alert["subtitle"]; ok {
		if s, ok := v.(string); !ok || s == "" {
			bad = append(bad, "aps.alert.subtitle present but not a non-empty string")
		}
	}
	if aps["sound"] != "default" {
		bad = append(bad, fmt.Sprintf("aps.sound %v", aps["sound"]))
	}
	if aps["mutable-content"] != float64(1) {
		bad = append(bad, fmt.Sprintf("aps.mutable-content %v", aps["mutable-content"]))
	}
	if b, ok := aps["badge"].(float64); !ok || b < 0 || b != float64(int(b)) {
		bad = append(bad, fmt.Sprintf("aps.badge %v", aps["badge"]))
	}
	for _, k := range []string{"conversation_id", "sender_id", "message_id"} {
		if s, ok := raw[k].(string); !ok || len(s) != 36 {
			bad = append(bad, k+" is not an id")
		}
	}
	if aps["thread-id"] != raw["conversation_id"] {
		bad = append(bad, fmt.Sprintf("aps.thread-id %v is not conversation_id %v", aps["thread-id"], raw["conversation_id"]))
	}
	if seq, ok := raw["seq"].(float64); !ok || seq < 1 {
		bad = append(bad, fmt.Sprintf("seq %v", raw["seq"]))
	}
	var p apns.Payload
	if err := json.Unmarshal(body, &p); err != nil {
		bad = append(bad, err.Error())
	}
	return p, strings.Join(bad, "; ")
}
