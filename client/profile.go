package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/parley-chat/parley"
)

// Files of a profile folder.
const (
	credentialsFile = "credentials.json"
	databaseFile    = "parley.db"
	lockFile        = "refresh.lock"
)

// credentials are what the profile keeps to stay logged in. The file holds
// bearer tokens: it is mode 0600 in a folder of mode 0700.
type credentials struct {
	User         parley.User `json:"user"`
	AccessToken  string      `json:"access_token"`
	RefreshToken string      `json:"refresh_token"`
	// IssuedAt and ExpiresAt bound the access token's lifetime, measured
	// on this device's clock from expires_in, so that clock skew with the
	// server does not matter.
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// valid reports whether c holds a login.
func (c *credentials) valid() bool { return c != nil && c.RefreshToken != "" && c.User.ID != "" }

// renewAt is when the access token should be replaced: at 80% of its
// lifetime, leaving a fifth of it for the refresh round trip and the auth
// frame. The lifetime counted is a second shorter than expires_in: the
// token's exp has whole seconds, so the server may end it up to a second
// before expires_in says, which eats the whole margin of a lifetime of a
// few seconds (as tests use).
func (c *credentials) renewAt() time.Time {
	life := c.ExpiresAt.Sub(c.IssuedAt)
	life = max(life-time.Second, life/2)
	return c.IssuedAt.Add(life * 4 / 5)
}

// profile is the profile folder.
type profile struct {
	dir string
}

// openProfile creates the folder if needed and makes sure only the owner
// can read it.
func openProfile(dir string) (*profile, error) {
	if dir == "" {
		return nil, errors.New("profile folder not set")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("profile folder: %w", err)
	}
	// MkdirAll leaves an existing folder's mode alone.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("profile folder: %w", err)
	}
	return &profile{dir: dir}, nil
}

func (p *profile) path(name string) string { return filepath.Join(p.dir, name) }

// loadCredentials reads the credentials file; no file means no login.
func (p *profile) loadCredentials() (*credentials, error) {
	b, err := os.ReadFile(p.path(credentialsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	var c credentials
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	if !c.valid() {
		return nil, nil
	}
	return &c, nil
}

// saveCredentials replaces the credentials file atomically (a temporary
// file in the same folder, synced, then renamed), so that a crash leaves
// either the old tokens or the new ones, never half a file. After a
// refresh the old refresh token is already dead on the server, so the new
// one must reach the disk before anything else happens.
func (p *profile) saveCredentials(c *credentials) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode credentials: %w", err)
	}
	f, err := os.CreateTemp(p.dir, ".credentials-*")
	if err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing to remove
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write credentials: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write credentials: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write credentials: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	if err := os.Rename(tmp, p.path(credentialsFile)); err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	syncDir(p.dir)
	return nil
}

// deleteCredentials removes the credentials file.
func (p *profile) deleteCredentials() error {
	err := os.Remove(p.path(credentialsFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete credentials: %w", err)
	}
	syncDir(p.dir)
	return nil
}

// syncDir makes a rename in dir durable. It is best effort: not every
// system can sync a folder, and the rename itself has happened.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
