//go:build unix

package client

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/server"
)

// Environment of the helper process of TestOutboxSurvivesKill.
const (
	helperEnv        = "PARLEY_CLIENT_TEST_HELPER"
	helperProfileEnv = "PARLEY_CLIENT_TEST_PROFILE"
	helperServerEnv  = "PARLEY_CLIENT_TEST_SERVER"
	helperConvEnv    = "PARLEY_CLIENT_TEST_CONVERSATION"
)

// TestOutboxSurvivesKill queues messages in a child process that cannot
// reach the server, kills it with SIGKILL as soon as Send has returned,
// and opens the profile again here: every message goes out, once, in
// order.
func TestOutboxSurvivesKill(t *testing.T) {
	ts := startServer(t, server.Config{})
	dead := startProxy(t, ts.URL)
	dead.setDown(true)
	dir := filepath.Join(t.TempDir(), "alice")
	alice, bob := openClient(t, dir, ts.URL), openClient(t, "", ts.URL)
	conv := pair(t, alice, bob)
	if err := alice.Close(); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperQueueAndHang$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", helperProfileEnv+"="+dir,
		helperServerEnv+"="+dead.URL, helperConvEnv+"="+conv)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(out)
	queued := false
	for lines.Scan() {
		if strings.TrimSpace(lines.Text()) == "queued" {
			queued = true
			break
		}
	}
	if !queued {
		t.Fatal("the helper did not queue its messages")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // killed: the error is expected

	alice = openClient(t, dir, ts.URL)
	want := []string{"killed 0", "killed 1", "killed 2"}
	eventually(t, 10*time.Second, wantTexts(alice, conv, want...))
	eventually(t, 10*time.Second, wantTexts(bob, conv, want...))
}

// TestHelperQueueAndHang is the child of TestOutboxSurvivesKill; it does
// nothing in a normal test run.
func TestHelperQueueAndHang(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("helper process only")
	}
	c, err := Open(context.Background(), Config{
		Profile: os.Getenv(helperProfileEnv),
		Servers: []string{os.Getenv(helperServerEnv)},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := c.Send(context.Background(), os.Getenv(helperConvEnv), fmt.Sprintf("killed %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Println("queued")
	time.Sleep(time.Minute) // until killed; a parent that died leaves no orphan for long
	t.Fatal("not killed")
}
