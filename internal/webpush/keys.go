package webpush

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
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
		// A key that LoadOrCreateVAPID accepted is always on the curve.
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

// LoadOrCreateVAPID reads the VAPID key pair from path (a PKCS #8 PEM
// "PRIVATE KEY" holding an ECDSA P-256 key), creating it with mode 0600 on
// first start. A key file that the group or others can read is refused:
// whoever holds the key can push to every subscribed browser.
//
// The key must outlive restarts: browsers bind each subscription to the
// public key they subscribed with, so a new key makes every stored web
// subscription fail (the push services answer 401/403) until the browsers
// subscribe again.
func LoadOrCreateVAPID(path string) (Keys, error) {
	k, err := loadVAPID(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k, err = createVAPID(path)
	if errors.Is(err, fs.ErrExist) {
		// Another process created it between our read and our create:
		// use theirs, so that both hand out the same public key.
		return loadVAPID(path)
	}
	return k, err
}

func loadVAPID(path string) (Keys, error) {
	f, err := os.Open(path)
	if err != nil {
		return Keys{}, fmt.Errorf("open VAPID key: %w", err)
	}
	defer f.Close()
	// Stat the open file rather than the path, so that the mode checked is
	// the mode of the file read.
	fi, err := f.Stat()
	if err != nil {
		return Keys{}, fmt.Errorf("stat VAPID key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Keys{}, fmt.Errorf("VAPID key %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return Keys{}, fmt.Errorf("VAPID key %s has mode %v: want 0600", path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return Keys{}, fmt.Errorf("read VAPID key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return Keys{}, fmt.Errorf("VAPID key %s: no PRIVATE KEY PEM block", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return Keys{}, fmt.Errorf("VAPID key %s: %w", path, err)
	}
	ek, ok := key.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return Keys{}, fmt.Errorf("VAPID key %s: not an ECDSA P-256 key", path)
	}
	return Keys{priv: ek}, nil
}

// createVAPID generates a key and publishes it at path atomically: it is
// written and synced under a temporary name and then hard-linked into
// place, so a crash never leaves a half-written key behind and an existing
// key is never replaced (the link fails with fs.ErrExist).
func createVAPID(path string) (Keys, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Keys{}, fmt.Errorf("generate VAPID key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return Keys{}, fmt.Errorf("encode VAPID key: %w", err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".vapid-*.tmp") // CreateTemp uses mode 0600
	if err != nil {
		return Keys{}, fmt.Errorf("create VAPID key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		tmp.Close()
		return Keys{}, fmt.Errorf("write VAPID key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return Keys{}, fmt.Errorf("sync VAPID key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return Keys{}, fmt.Errorf("close VAPID key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return Keys{}, fmt.Errorf("create VAPID key: %w", err)
	}
	// Make the new directory entry durable too; failing that is not fatal
	// for this run, the key is in place.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return Keys{priv: priv}, nil
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
