package webpush

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"
)

// newKeys returns a fresh VAPID key pair.
func newKeys(t *testing.T) Keys {
	t.Helper()
	b, err := NewVAPIDPEM()
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseVAPID(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestVAPIDPEM(t *testing.T) {
	b, err := NewVAPIDPEM()
	if err != nil {
		t.Fatal(err)
	}
	k1, err := ParseVAPID(b)
	if err != nil {
		t.Fatal(err)
	}
	// The public key is what applicationServerKey takes: a base64url
	// uncompressed P-256 point.
	pub := k1.PublicKey()
	if strings.ContainsAny(pub, "+/=") {
		t.Errorf("PublicKey %q is not unpadded base64url", pub)
	}
	raw, err := base64.RawURLEncoding.DecodeString(pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ecdh.P256().NewPublicKey(raw); err != nil || len(raw) != 65 {
		t.Errorf("PublicKey is not an uncompressed P-256 point (%d bytes): %v", len(raw), err)
	}
	// The same PEM (as every node of a cluster reads it) is the same key.
	k2, err := ParseVAPID(b)
	if err != nil {
		t.Fatal(err)
	}
	if k2.PublicKey() != pub {
		t.Errorf("parsed again: %s, want %s", k2.PublicKey(), pub)
	}
	if newKeys(t).PublicKey() == pub {
		t.Error("two new keys are equal")
	}
}

func TestParseVAPIDRefuses(t *testing.T) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKCS8PrivateKey(ed)
	for _, tt := range []struct {
		name    string
		content []byte
		wantErr string
	}{
		{"not PEM", []byte("garbage"), "no PRIVATE KEY"},
		{"not PKCS 8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("x")}), "VAPID key"},
		{"Ed25519", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER}), "not an ECDSA P-256 key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseVAPID(tt.content); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseVAPID = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestZeroKeys(t *testing.T) {
	if pub := (Keys{}).PublicKey(); pub != "" {
		t.Errorf("zero Keys PublicKey = %q, want empty", pub)
	}
}
