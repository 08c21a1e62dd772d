package main

import (
	"context"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/apns/apnstest"
)

// TestServePushes runs `parley serve` with the APNs settings in PARLEY_APNS_*
// variables and the stand-in's certificate trusted through SSL_CERT_FILE,
// as an operator would, and checks that an offline recipient gets a push.
func TestServePushes(t *testing.T) {
	s := apnstest.New(t)
	certFile := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SSL_CERT_FILE", certFile)
	t.Setenv("SSL_CERT_DIR", t.TempDir())
	t.Setenv("PARLEY_APNS_KEY_FILE", s.KeyFile)
	t.Setenv("PARLEY_APNS_KEY_ID", apnstest.KeyID)
	t.Setenv("PARLEY_APNS_TEAM_ID", apnstest.TeamID)
	t.Setenv("PARLEY_APNS_TOPIC", apnstest.Topic)
	t.Setenv("PARLEY_APNS_URL", s.URL)
	p := startServer(t, t.TempDir())

	alice, bob := register(t, p.base, "alice"), register(t, p.base, "bob")
	var conv parley.Conversation
	if code := postJSON(t, p.base+"/api/conversations", alice.AccessToken, map[string]any{"type": "direct", "member_ids": []string{bob.User.ID}}, &conv); code != http.StatusCreated {
		t.Fatalf("create conversation: %d", code)
	}
	token := strings.Repeat("5a", 32)
	if code := postJSON(t, p.base+"/api/device-tokens", bob.AccessToken, map[string]string{"platform": "ios", "token": token, "environment": "production"}, nil); code != http.StatusCreated {
		t.Fatalf("register token: %d", code)
	}
	if code := postJSON(t, p.base+"/api/conversations/"+conv.ID+"/messages", alice.AccessToken, map[string]string{"client_message_id": "c1", "text": "hello bob"}, nil); code != http.StatusCreated {
		t.Fatalf("send: %d", code)
	}
	for end := time.Now().Add(10 * time.Second); len(s.PushesTo(token)) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no push; problems %v\n%s", s.Problems(), p.logs)
		}
	}
	if got := s.PushesTo(token)[0].Payload.APS.Alert.Body; got != "hello bob" {
		t.Errorf("push body %q", got)
	}
	if p := s.Problems(); len(p) > 0 {
		t.Errorf("the stand-in refused: %v", p)
	}
	if strings.Contains(p.logs.String(), "not configured") {
		t.Errorf("logs say APNs is not configured:\n%s", p.logs)
	}
}

func TestServeWithoutAPNsKey(t *testing.T) {
	p := startServer(t, t.TempDir())
	if logs := p.logs.String(); !strings.Contains(logs, "APNs key not configured: iOS push notifications are off") {
		t.Errorf("no line about APNs at start:\n%s", logs)
	}
}

func TestServeBadAPNsKey(t *testing.T) {
	for name, args := range map[string][]string{
		"missing key file": {"--apns-key-file", filepath.Join(t.TempDir(), "none.p8"), "--apns-key-id", "k", "--apns-team-id", "t", "--apns-topic", "x"},
		"no key id":        {"--apns-key-file", apnstest.New(t).KeyFile, "--apns-team-id", "t", "--apns-topic", "x"},
	} {
		t.Run(name, func(t *testing.T) {
			var stderr strings.Builder
			// A bad key fails at start; the timeout only bounds a bug.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			code := run(ctx, append([]string{"serve", "--addr", "127.0.0.1:0", "--data", t.TempDir()}, args...), &stderr, &stderr)
			if code == 0 || !strings.Contains(strings.ToLower(stderr.String()), "apns") {
				t.Fatalf("exit %d, stderr %q: want a failure naming APNs", code, stderr.String())
			}
		})
	}
}
