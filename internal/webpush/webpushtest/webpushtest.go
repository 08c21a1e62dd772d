// Package webpushtest is a stand-in for a browser vendor's Web Push service,
// for tests: it hands out subscriptions as a browser would, checks each
// push's VAPID authorization and headers, and decrypts its aes128gcm body
// with the subscription's private key (RFC 8291), as the browser does.
package webpushtest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Service is a stand-in for a browser vendor's push service. Each
// subscription it hands out has its own path; a POST to that path is
// checked (VAPID JWT and key, headers), decrypted with the subscription's
// private key as the browser would, recorded, and answered as the
// subscription's reply says.
type Service struct {
	t          *testing.T
	srv        *httptest.Server
	vapidKey   string // the k the Authorization header must carry
	subscriber string // the sub claim expected

	mu   sync.Mutex               // guards subs
	subs map[string]*Subscription // by path
}

// Subscription is one browser subscription of the test push service.
type Subscription struct {
	path string
	priv *ecdh.PrivateKey
	auth []byte

	// reply answers each push; nil means 201 Created.
	reply func(w http.ResponseWriter, r *http.Request)

	mu       sync.Mutex // guards Received and failures
	Received []Received
	failures []string
}

// Received is one push as the service worker would see it.
type Received struct {
	Payload map[string]any
	Header  http.Header
	Size    int // request body size
}

// New starts a push service that expects pushes signed with the VAPID
// public key vapidKey and the given sub claim.
func New(t *testing.T, vapidKey, subscriber string) *Service {
	t.Helper()
	ps := &Service{t: t, vapidKey: vapidKey, subscriber: subscriber, subs: map[string]*Subscription{}}
	ps.srv = httptest.NewServer(http.HandlerFunc(ps.serve))
	t.Cleanup(ps.srv.Close)
	return ps
}

// Path is the subscription's path on the service, the secret part of its
// endpoint.
func (s *Subscription) Path() string { return s.path }

// URL is the base URL of the service.
func (ps *Service) URL() string { return ps.srv.URL }

// Close shuts the service down: pushes then fail to connect.
func (ps *Service) Close() { ps.srv.Close() }

// Subscribe creates a subscription as a browser would: a fresh P-256 key
// pair and a 16-byte auth secret.
func (ps *Service) Subscribe(reply func(http.ResponseWriter, *http.Request)) *Subscription {
	ps.t.Helper()
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		ps.t.Fatal(err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	s := &Subscription{priv: priv, auth: auth, reply: reply}
	ps.mu.Lock()
	s.path = fmt.Sprintf("/wpush/v2/sub%d", len(ps.subs))
	ps.subs[s.path] = s
	ps.mu.Unlock()
	return s
}

// Token is the subscription as PushSubscription.toJSON gives it.
func (ps *Service) Token(s *Subscription) string {
	b, err := json.Marshal(map[string]any{
		"endpoint":       ps.srv.URL + s.path,
		"expirationTime": nil,
		"keys": map[string]string{
			"p256dh": base64.RawURLEncoding.EncodeToString(s.priv.PublicKey().Bytes()),
			"auth":   base64.RawURLEncoding.EncodeToString(s.auth),
		},
	})
	if err != nil {
		ps.t.Fatal(err)
	}
	return string(b)
}

// Pushes returns the pushes received so far and the checks that failed.
func (s *Subscription) Pushes() ([]Received, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.Received...), append([]string(nil), s.failures...)
}

func (ps *Service) serve(w http.ResponseWriter, r *http.Request) {
	ps.mu.Lock()
	s := ps.subs[r.URL.Path]
	ps.mu.Unlock()
	if s == nil {
		http.Error(w, "no such subscription", http.StatusNotFound)
		return
	}
	p, err := ps.check(s, r)
	s.mu.Lock()
	if err != nil {
		s.failures = append(s.failures, err.Error())
	} else {
		s.Received = append(s.Received, p)
	}
	s.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if s.reply != nil {
		s.reply(w, r)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

// check verifies one push request the way a push service and then the
// browser would, and returns the decrypted payload.
func (ps *Service) check(s *Subscription, r *http.Request) (Received, error) {
	if r.Method != http.MethodPost {
		return Received{}, fmt.Errorf("method %s", r.Method)
	}
	for h, want := range map[string]string{
		"Content-Encoding": "aes128gcm",
		"Content-Type":     "application/octet-stream",
		"Urgency":          "high",
	} {
		if got := r.Header.Get(h); got != want {
			return Received{}, fmt.Errorf("header %s = %q, want %q", h, got, want)
		}
	}
	if ttl, err := strconv.Atoi(r.Header.Get("TTL")); err != nil || ttl <= 0 {
		return Received{}, fmt.Errorf("header TTL = %q", r.Header.Get("TTL"))
	}
	if err := ps.checkVAPID(r); err != nil {
		return Received{}, fmt.Errorf("vapid: %w", err)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8192))
	if err != nil {
		return Received{}, err
	}
	// RFC 8030 7.2: push services must accept 4096 bytes, may refuse more.
	if len(body) > 4096 {
		return Received{}, fmt.Errorf("body of %d bytes", len(body))
	}
	plain, err := decryptAES128GCM(s.priv, s.auth, body)
	if err != nil {
		return Received{}, fmt.Errorf("decrypt: %w", err)
	}
	var p map[string]any
	if err := json.Unmarshal(plain, &p); err != nil {
		return Received{}, fmt.Errorf("payload %q: %w", plain, err)
	}
	return Received{Payload: p, Header: r.Header.Clone(), Size: len(body)}, nil
}

// checkVAPID verifies the RFC 8292 Authorization header: "vapid t=<JWT>,
// k=<public key>", an ES256 JWT signed by k with aud = the endpoint's
// origin, exp in the future but within 24 hours, and sub.
func (ps *Service) checkVAPID(r *http.Request) error {
	h := r.Header.Get("Authorization")
	rest, ok := strings.CutPrefix(h, "vapid ")
	if !ok {
		return fmt.Errorf("Authorization %q: want vapid scheme", h)
	}
	var jwt, k string
	for _, part := range strings.Split(rest, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch name {
		case "t":
			jwt = value
		case "k":
			k = value
		}
	}
	if k != ps.vapidKey {
		return fmt.Errorf("k = %q, want %q", k, ps.vapidKey)
	}
	kb, err := base64.RawURLEncoding.DecodeString(k)
	if err != nil {
		return fmt.Errorf("k: %w", err)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), kb)
	if err != nil {
		return fmt.Errorf("k: %w", err)
	}

	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return fmt.Errorf("t = %q: not a JWS", jwt)
	}
	var hdr struct{ Alg, Typ string }
	if err := decodeSegment(parts[0], &hdr); err != nil {
		return fmt.Errorf("JWT header: %w", err)
	}
	if hdr.Alg != "ES256" {
		return fmt.Errorf("JWT alg %q", hdr.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return fmt.Errorf("JWT signature: %d bytes, %v", len(sig), err)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	rr, ss := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(pub, digest[:], rr, ss) {
		return errors.New("JWT signature does not verify against k")
	}
	var claims struct {
		Aud string
		Exp int64
		Sub string
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return fmt.Errorf("JWT claims: %w", err)
	}
	if origin := "http://" + r.Host; claims.Aud != origin {
		return fmt.Errorf("aud %q, want %q", claims.Aud, origin)
	}
	now := time.Now()
	exp := time.Unix(claims.Exp, 0)
	if !exp.After(now) || exp.After(now.Add(24*time.Hour)) {
		return fmt.Errorf("exp %v is not within 24 h of %v", exp, now)
	}
	if claims.Sub != ps.subscriber {
		return fmt.Errorf("sub %q, want %q", claims.Sub, ps.subscriber)
	}
	return nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// decryptAES128GCM is the user agent's side of RFC 8291 (on the content
// coding of RFC 8188), written from the RFCs so that it checks the library
// rather than mirrors it.
func decryptAES128GCM(ua *ecdh.PrivateKey, authSecret, body []byte) ([]byte, error) {
	// Header: salt (16) | rs (4) | idlen (1) | keyid (idlen): the keyid is
	// the application server's ephemeral public key.
	if len(body) < 21 {
		return nil, errors.New("short header")
	}
	salt := body[:16]
	rs := binary.BigEndian.Uint32(body[16:20])
	idlen := int(body[20])
	if idlen != 65 || len(body) < 21+idlen {
		return nil, fmt.Errorf("keyid of %d bytes", idlen)
	}
	asPublic := body[21 : 21+idlen]
	ciphertext := body[21+idlen:]
	if rs < 18 || len(body) > int(rs) {
		// One record: the whole body, header included, within rs.
		return nil, fmt.Errorf("rs %d for a body of %d bytes", rs, len(body))
	}

	asKey, err := ecdh.P256().NewPublicKey(asPublic)
	if err != nil {
		return nil, fmt.Errorf("keyid: %w", err)
	}
	ecdhSecret, err := ua.ECDH(asKey)
	if err != nil {
		return nil, err
	}
	// RFC 8291 3.4: IKM from the ECDH secret and the auth secret.
	prkKey, err := hkdf.Extract(sha256.New, ecdhSecret, authSecret)
	if err != nil {
		return nil, err
	}
	keyInfo := "WebPush: info\x00" + string(ua.PublicKey().Bytes()) + string(asPublic)
	ikm, err := hkdf.Expand(sha256.New, prkKey, keyInfo, 32)
	if err != nil {
		return nil, err
	}
	// RFC 8188 2.2, 2.3: content encryption key and nonce.
	prk, err := hkdf.Extract(sha256.New, ikm, salt)
	if err != nil {
		return nil, err
	}
	cek, err := hkdf.Expand(sha256.New, prk, "Content-Encoding: aes128gcm\x00", 16)
	if err != nil {
		return nil, err
	}
	nonce, err := hkdf.Expand(sha256.New, prk, "Content-Encoding: nonce\x00", 12)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	// Record sequence number 0: the nonce is used as derived.
	plain, err := gcm.Open(nil, nonce, ciphertext, nil)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	// The last record ends with 0x02 and then any number of zero bytes.
	plain = bytes.TrimRight(plain, "\x00")
	if len(plain) == 0 || plain[len(plain)-1] != 2 {
		return nil, errors.New("no last-record delimiter")
	}
	return plain[:len(plain)-1], nil
}
