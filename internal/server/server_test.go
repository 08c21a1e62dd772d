package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/pgtest"
	"github.com/parley-chat/parley/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// register creates a user on the node at base and returns its access token.
func register(t *testing.T, base, name string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": name, "password": "correct horse"})
	resp, err := http.Post(base+"/api/auth/register", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("register: %d %v", resp.StatusCode, err)
	}
	return tok.AccessToken
}

// TestLegacyKeyFileIsImported: a data folder of an earlier release keeps
// its signing key, now copied into the database, so that the access tokens
// it issued stay valid.
func TestLegacyKeyFileIsImported(t *testing.T) {
	cfg := testnode.Config(t)
	pemKey, err := auth.NewSigningKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.DataDir, "access-token.key"), pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := auth.ParseSigningKey(pemKey)
	if err != nil {
		t.Fatal(err)
	}
	n := testnode.StartNode(t, cfg)
	tok := register(t, n.URL, "legacy")
	if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return key.Public(), nil },
		jwt.WithValidMethods([]string{"EdDSA"})); err != nil {
		t.Fatalf("the token is not signed with the key of the data folder: %v", err)
	}
}

// TestClusterSharesKeys: nodes started at the same moment on one database
// create one signing key and one VAPID key, and accept each other's
// tokens.
func TestClusterSharesKeys(t *testing.T) {
	set := testnode.StartCluster(t, 3)
	tok := register(t, set.Nodes[0].URL, "shared")
	vapid := map[string]bool{}
	for _, n := range set.Nodes {
		req, _ := http.NewRequest(http.MethodGet, n.URL+"/api/users/me", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s refused a token of another node: %d", n.URL, resp.StatusCode)
		}
		req, _ = http.NewRequest(http.MethodGet, n.URL+"/api/push/vapid-public-key", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			PublicKey string `json:"public_key"`
		}
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if err != nil || v.PublicKey == "" {
			t.Fatalf("%s: no VAPID key: %v", n.URL, err)
		}
		vapid[v.PublicKey] = true
	}
	if len(vapid) != 1 {
		t.Errorf("the nodes hand out %d VAPID keys, want one", len(vapid))
	}
}
