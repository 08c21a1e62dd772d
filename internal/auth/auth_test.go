package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-chat/parley"
)

// memStore is a hand-written fake of the few store calls the token checks
// need; the full flows run against SQLite in the httpapi tests.
type memStore struct {
	mu       sync.Mutex
	users    map[string]parley.User
	hashes   map[string]string
	families map[string]bool // family → active
}

func newMemStore() *memStore {
	return &memStore{users: map[string]parley.User{}, hashes: map[string]string{}, families: map[string]bool{}}
}

func (m *memStore) CreateUser(_ context.Context, u parley.User, hash string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.users[u.Username]; ok {
		return parley.Errorf(parley.CodeConflict, "taken")
	}
	m.users[u.Username], m.hashes[u.Username] = u, hash
	return nil
}

func (m *memStore) UserByUsername(_ context.Context, name string) (parley.User, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[name]
	if !ok {
		return parley.User{}, "", parley.Errorf(parley.CodeNotFound, "no user")
	}
	return u, m.hashes[name], nil
}

func (m *memStore) UserByID(_ context.Context, id string) (parley.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, u := range m.users {
		if u.ID == id {
			return u, nil
		}
	}
	return parley.User{}, parley.Errorf(parley.CodeNotFound, "no user")
}

func (m *memStore) CreateSession(_ context.Context, t parley.RefreshToken) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.families[t.FamilyID] = true
	return nil
}

func (m *memStore) RotateRefreshToken(context.Context, string, parley.RefreshToken, time.Duration) (parley.RefreshToken, error) {
	return parley.RefreshToken{}, parley.Errorf(parley.CodeUnauthenticated, "not in this fake")
}

func (m *memStore) RevokeSession(context.Context, string) error { return nil }

func (m *memStore) DeleteUser(context.Context, string) error {
	return parley.Errorf(parley.CodeNotFound, "not in this fake")
}

func (m *memStore) SessionActive(_ context.Context, fam string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.families[fam], nil
}

var cheap = Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1}

func newService(t *testing.T, ttl time.Duration) (*Service, ed25519.PrivateKey, *memStore) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	st := newMemStore()
	s, err := New(st, key, Options{AccessTTL: ttl, Argon2: cheap})
	if err != nil {
		t.Fatal(err)
	}
	return s, key, st
}

func TestSigningKeyPEM(t *testing.T) {
	b, err := NewSigningKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	k1, err := ParseSigningKey(b)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ParseSigningKey(b)
	if err != nil || !k1.Equal(k2) {
		t.Fatalf("parsing the same PEM twice: %v", err)
	}
	other, _ := NewSigningKeyPEM()
	if k3, _ := ParseSigningKey(other); k3.Equal(k1) {
		t.Fatal("two new keys are equal")
	}
	for name, bad := range map[string][]byte{
		"not PEM":    []byte("garbage"),
		"not PKCS 8": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("x")}),
		"wrong type": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("x")}),
	} {
		if _, err := ParseSigningKey(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPasswordHashIsArgon2idAndVerifies(t *testing.T) {
	h := newHasher(DefaultArgon2, 1)
	ctx := context.Background()
	enc, err := h.hash(ctx, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q does not use argon2id with OWASP parameters", enc)
	}
	for pw, want := range map[string]bool{"correct horse": true, "correct hors": false, "": false} {
		ok, err := h.verify(ctx, pw, enc)
		if err != nil || ok != want {
			t.Errorf("verify(%q) = %v, %v; want %v", pw, ok, err, want)
		}
	}
}

func TestLoginFailuresLookTheSame(t *testing.T) {
	s, _, _ := newService(t, time.Minute)
	ctx := context.Background()
	if _, err := s.Register(ctx, "Alice", "correct horse", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Login(ctx, "ALICE", "correct horse"); err != nil {
		t.Fatalf("case-insensitive login: %v", err)
	}
	_, wrongPw := s.Login(ctx, "alice", "wrong password")
	_, noUser := s.Login(ctx, "nobody", "correct horse")
	_, badName := s.Login(ctx, "x", "correct horse")
	for _, err := range []error{wrongPw, noUser, badName} {
		if parley.ErrorCode(err) != parley.CodeUnauthenticated || err.Error() != wrongPw.Error() {
			t.Errorf("login error %v, want the same unauthenticated error for every failure", err)
		}
	}
}

func TestAuthenticateRejectsForgedAndExpiredTokens(t *testing.T) {
	s, key, st := newService(t, time.Minute)
	ctx := context.Background()
	tok, err := s.Register(ctx, "bob", "correct horse", "Bob")
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Authenticate(ctx, tok.AccessToken)
	if err != nil || c.UserID != tok.User.ID {
		t.Fatalf("Authenticate(valid) = %+v, %v", c, err)
	}
	claims := jwt.RegisteredClaims{Issuer: issuer, Subject: tok.User.ID, ID: c.FamilyID,
		IssuedAt: jwt.NewNumericDate(time.Now()), ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}
	sign := func(m jwt.SigningMethod, k any, cl jwt.Claims) string {
		s, err := jwt.NewWithClaims(m, cl).SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	noExp := claims
	noExp.ExpiresAt = nil
	expired := claims
	expired.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Minute))
	// Expired is expired from the moment it expires: no leeway.
	justExpired := claims
	justExpired.IssuedAt = jwt.NewNumericDate(time.Now().Add(-time.Minute))
	justExpired.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Second))
	revoked := claims
	revoked.ID = "00000000-0000-7000-8000-000000000000"
	tests := map[string]string{
		"alg none":       sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims),
		"HS256 with pub": sign(jwt.SigningMethodHS256, []byte(key.Public().(ed25519.PublicKey)), claims),
		"other key":      sign(jwt.SigningMethodEdDSA, otherKey, claims),
		"no expiry":      sign(jwt.SigningMethodEdDSA, key, noExp),
		"expired":        sign(jwt.SigningMethodEdDSA, key, expired),
		"just expired":   sign(jwt.SigningMethodEdDSA, key, justExpired),
		"unknown family": sign(jwt.SigningMethodEdDSA, key, revoked),
		"garbage":        "not.a.jwt",
		"empty":          "",
		"tampered":       tok.AccessToken[:len(tok.AccessToken)-2] + "xx",
	}
	for name, token := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := s.Authenticate(ctx, token); parley.ErrorCode(err) != parley.CodeUnauthenticated {
				t.Fatalf("Authenticate = %v, want unauthenticated", err)
			}
		})
	}
	st.mu.Lock()
	st.families[c.FamilyID] = false
	st.mu.Unlock()
	if _, err := s.Authenticate(ctx, tok.AccessToken); parley.ErrorCode(err) != parley.CodeUnauthenticated {
		t.Fatalf("token of a revoked family accepted: %v", err)
	}
}

func TestBearerToken(t *testing.T) {
	for in, want := range map[string]string{"Bearer abc": "abc", "bearer abc": "abc", "BEARER x.y": "x.y", "Basic abc": "", "Bearer ": "", "": ""} {
		got, err := BearerToken(in)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("BearerToken(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
