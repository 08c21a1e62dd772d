package webpush

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

// testPushService is a stand-in for a browser vendor's push service. Each
// subscription it hands out has its own path; a POST to that path is
// checked (VAPID JWT and key, headers), decrypted with the subscription's
// private key as the browser would, recorded, and answered as the
// subscription's reply says.
type testPushService struct {
	t          *testing.T
	srv        *httptest.Server
	vapidKey   string // the k the Authorization header must carry
	subscriber string // the sub claim expected

	mu   sync.Mutex       // guards subs
	subs map[string]*tsub // by path
}

// tsub is one browser subscription of the test push service.
type tsub struct {
	path string
	priv *ecdh.PrivateKey
	auth []byte

	// reply answers each push; nil means 201 Created.
	reply func(w http.ResponseWriter, r *http.Request)

	mu       sync.Mutex // guards received and failures
	received []received
	failures []string
}

// received is one push as the service worker would see it.
type received struct {
	payload map[string]any
	header  http.Header
	size    int // request body size
}

func newTestPushService(t *testing.T, vapidKey, subscriber string) *testPushService {
	t.Helper()
	ps := &testPushService{t: t, vapidKey: vapidKey, subscriber: subscriber, subs: map[string]*tsub{}}
	ps.srv = httptest.NewServer(http.HandlerFunc(ps.serve))
	t.Cleanup(ps.srv.Close)
	return ps
}

// subscribe creates a subscription as a browser would: a fresh P-256 key
// pair and a 16-byte auth secret.
func (ps *testPushService) subscribe(reply func(http.ResponseWriter, *http.Request)) *tsub {
	ps.t.Helper()
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		ps.t.Fatal(err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	s := &tsub{priv: priv, auth: auth, reply: reply}
	ps.mu.Lock()
	s.path = fmt.Sprintf("/wpush/v2/sub%d", len(ps.subs))
	ps.subs[s.path] = s
	ps.mu.Unlock()
	return s
}

// token is the subscription as PushSubscription.toJSON gives it.
func (ps *testPushService) token(s *tsub) string {
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

func (s *tsub) pushes() ([]received, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.received...), append([]string(nil), s.failures...)
}

func (ps *testPushService) serve(w http.ResponseWriter, r *http.Request) {
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
		s.received = append(s.received, p)
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
func (ps *testPushService) check(s *tsub, r *http.Request) (received, error) {
	if r.Method != http.MethodPost {
		return received{}, fmt.Errorf("method %s", r.Method)
	}
	for h, want := range map[string]string{
		"Content-Encoding": "aes128gcm",
		"Content-Type":     "application/octet-stream",
		"Urgency":          "high",
	} {
		if got := r.Header.Get(h); got != want {
			return received{}, fmt.Errorf("header %s = %q, want %q", h, got, want)
		}
	}
	if ttl, err := strconv.Atoi(r.Header.Get("TTL")); err != nil || ttl <= 0 {
		return received{}, fmt.Errorf("header TTL = %q", r.Header.Get("TTL"))
	}
	if err := ps.checkVAPID(r); err != nil {
		return received{}, fmt.Errorf("vapid: %w", err)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8192))
	if err != nil {
		return received{}, err
	}
	// RFC 8030 7.2: push services must accept 4096 bytes, may refuse more.
	if len(body) > 4096 {
		return received{}, fmt.Errorf("body of %d bytes", len(body))
	}
	plain, err := decryptAES128GCM(s.priv, s.auth, body)
	if err != nil {
		return received{}, fmt.Errorf("decrypt: %w", err)
	}
	var p map[string]any
	if err := json.Unmarshal(plain, &p); err != nil {
		return received{}, fmt.Errorf("payload %q: %w", plain, err)
	}
	return received{payload: p, header: r.Header.Clone(), size: len(body)}, nil
}

// checkVAPID verifies the RFC 8292 Authorization header: "vapid t=<JWT>,
// k=<public key>", an ES256 JWT signed by k with aud = the endpoint's
// origin, exp in the future but within 24 hours, and sub.
func (ps *testPushService) checkVAPID(r *http.Request) error {
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
