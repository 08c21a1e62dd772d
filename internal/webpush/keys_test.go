package webpush

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreateVAPID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vapid.key")
	k1, err := LoadOrCreateVAPID(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode %v, want 0600", perm)
	}

	// The public key is what applicationServerKey takes: a base64url
	// uncompressed P-256 point.
	pub := k1.PublicKey()
	if strings.ContainsAny(pub, "+/=") {
		t.Errorf("PublicKey %q is not unpadded base64url", pub)
	}
	b, err := base64.RawURLEncoding.DecodeString(pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ecdh.P256().NewPublicKey(b); err != nil || len(b) != 65 {
		t.Errorf("PublicKey is not an uncompressed P-256 point (%d bytes): %v", len(b), err)
	}

	// A restart loads the same key.
	k2, err := LoadOrCreateVAPID(path)
	if err != nil {
		t.Fatal(err)
	}
	if k2.PublicKey() != pub {
		t.Errorf("reloaded key differs: %s, want %s", k2.PublicKey(), pub)
	}
	// And no temporary file is left behind.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("data folder holds %d entries, want only the key", len(entries))
	}
}

func TestLoadOrCreateVAPIDRefuses(t *testing.T) {
	edDER := func() []byte {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		der, _ := x509.MarshalPKCS8PrivateKey(priv)
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	good := func(t *testing.T) []byte {
		path := filepath.Join(t.TempDir(), "vapid.key")
		if _, err := LoadOrCreateVAPID(path); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name    string
		content func(t *testing.T) []byte
		mode    os.FileMode
		wantErr string
	}{
		{"group readable", good, 0o640, "want 0600"},
		{"world readable", good, 0o644, "want 0600"},
		{"not PEM", func(*testing.T) []byte { return []byte("garbage") }, 0o600, "no PRIVATE KEY"},
		{"not PKCS 8", func(*testing.T) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("x")})
		}, 0o600, "VAPID key"},
		{"Ed25519", func(*testing.T) []byte { return edDER() }, 0o600, "not an ECDSA P-256 key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "vapid.key")
			if err := os.WriteFile(path, tt.content(t), tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil { // past the umask
				t.Fatal(err)
			}
			_, err := LoadOrCreateVAPID(path)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("LoadOrCreateVAPID = %v, want error containing %q", err, tt.wantErr)
			}
			// A refused key is never replaced: it may be the one all
			// subscriptions depend on.
			if b, _ := os.ReadFile(path); len(b) == 0 {
				t.Error("key file was emptied")
			}
		})
	}

	t.Run("missing folder", func(t *testing.T) {
		if _, err := LoadOrCreateVAPID(filepath.Join(t.TempDir(), "nope", "vapid.key")); err == nil {
			t.Fatal("LoadOrCreateVAPID in a missing folder succeeded")
		}
	})
}

func TestZeroKeys(t *testing.T) {
	if pub := (Keys{}).PublicKey(); pub != "" {
		t.Errorf("zero Keys PublicKey = %q, want empty", pub)
	}
}
