package webpush

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
)

// Keys is the server's VAPID key pair (RFC 8292), an ECDSA P-256 key. The
// zero Keys holds no key: its PublicKey is empty and a Sender built from it
// fails every Send. Keys is immutable and safe for concurrent use.
type Keys struct {
	priv *ecdsa.PrivateKey
}

// PublicKey returns the public key as browsers want it for
// pushManager.subscribe({applicationServerKey}): the uncompressed P-256
// point (65 bytes, starting 0x04), base64url-encoded without padding.
func (k Keys) PublicKey() string {
	if k.priv == nil {
		return ""
	}
	b, err := k.priv.PublicKey.Bytes()
	if err != nil {
		// A key that ParseVAPID accepted is always on the curve.
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// privateKey returns the private scalar, base64url-encoded without padding,
// as webpush-go takes it.
func (k Keys) privateKey() (string, error) {
	b, err := k.priv.Bytes()
	if err != nil {
		return "", fmt.Errorf("encode VAPID private key: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// NewVAPIDPEM generates a VAPID key pair and returns its private key as
// PKCS #8 PEM, the form ParseVAPID reads (and a cluster keeps in its
// database, so that every node hands browsers the same public key).
func NewVAPIDPEM() ([]byte, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate VAPID key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode VAPID key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseVAPID reads a VAPID private key from PKCS #8 PEM: an ECDSA P-256 key.
func ParseVAPID(b []byte) (Keys, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return Keys{}, fmt.Errorf("VAPID key: no PRIVATE KEY PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return Keys{}, fmt.Errorf("VAPID key: %w", err)
	}
	ek, ok := key.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return Keys{}, fmt.Errorf("VAPID key: not an ECDSA P-256 key")
	}
	return Keys{priv: ek}, nil
}
