package apns

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Apple's rules for provider tokens: APNs refuses one older than an hour,
// and one replaced more often than every 20 minutes
// (TooManyProviderTokenUpdates).
const (
	// tokenRenewAfter is the age at which a provider token is replaced
	// before use: well within the hour, so that a clock a little off from
	// Apple's does not matter.
	tokenRenewAfter = 40 * time.Minute
	// tokenMinAge is the youngest a token may be when it is replaced.
	tokenMinAge = 20 * time.Minute
)

// LoadKey reads an APNs token-signing key: the .p8 file from the Apple
// Developer account, a PEM "PRIVATE KEY" block holding a PKCS #8 ECDSA P-256
// key.
func LoadKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("apns key: %w", err)
	}
	k, err := ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("apns key %s: %w", path, err)
	}
	return k, nil
}

// ParseKey parses the contents of a .p8 key file (see LoadKey).
func ParseKey(pemBytes []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("no PEM block (expected the .p8 file as downloaded)")
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("PEM block is %q, want PRIVATE KEY", block.Type)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS #8: %w", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, errors.New("not an ECDSA P-256 key")
	}
	return ek, nil
}

// providerTokens makes and caches the ES256 JWT that authenticates this
// server to APNs: header alg ES256 and kid, claims iss (the team id) and
// iat. One token is reused for every request until it is tokenRenewAfter
// old; it is replaced earlier only when APNs says it expired, and never
// before it is tokenMinAge old. It is safe for concurrent use.
type providerTokens struct {
	key    *ecdsa.PrivateKey
	keyID  string
	teamID string
	now    func() time.Time

	mu     sync.Mutex // guards token and issued
	token  string
	issued time.Time
}

// get returns the token in force, making a new one if there is none or it
// is due for renewal.
func (p *providerTokens) get() (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if p.token != "" && now.Sub(p.issued) < tokenRenewAfter && !now.Before(p.issued) {
		return p.token, nil
	}
	return p.renewLocked(now)
}

// expired handles APNs's ExpiredProviderToken for the token used. If that
// token is still the one in force and old enough to be replaced, it is
// replaced; if another request replaced it already, the new one serves.
// It reports whether the caller should retry now, and if not, how long
// until a replacement is allowed.
func (p *providerTokens) expired(used string) (retry bool, wait time.Duration, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.token != used {
		return true, 0, nil // already replaced
	}
	now := p.now()
	if age := now.Sub(p.issued); age < tokenMinAge && age >= 0 {
		// Apple's clock and ours disagree by more than a new token would
		// fix, and renewing now would break the 20-minute rule.
		return false, tokenMinAge - age, nil
	}
	if _, err := p.renewLocked(now); err != nil {
		return false, 0, err
	}
	return true, 0, nil
}

func (p *providerTokens) renewLocked(now time.Time) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": p.teamID,
		"iat": now.Unix(),
	})
	t.Header["kid"] = p.keyID
	s, err := t.SignedString(p.key)
	if err != nil {
		return "", fmt.Errorf("sign provider token: %w", err)
	}
	p.token, p.issued = s, now
	return s, nil
}
