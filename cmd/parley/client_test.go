package main

import (
	"bufio"
	"bytes"
	"context"
	byteorder "encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/internal/mediatest"
)

// testPassword is the password of every user the client tests make; the
// REST helpers of main_test.go log in with it too.
const testPassword = "correct horse battery"

// runParley runs the client command args against server with a profile
// folder, and returns its stdout and stderr. The password comes from
// PARLEY_PASSWORD, as a script would give it.
func runParley(t *testing.T, server, profile string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	full := append(append([]string{}, args...), "--server", server, "--profile", profile, "--log", profile+".log")
	cmd := exec.CommandContext(ctx, binary, full...)
	cmd.Env = append(os.Environ(), "PARLEY_PASSWORD="+testPassword)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// mustParley is runParley for commands that must succeed.
func mustParley(t *testing.T, server, profile string, args ...string) string {
	t.Helper()
	out, errOut, err := runParley(t, server, profile, args...)
	if err != nil {
		t.Fatalf("parley %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// listener is a `parley listen` process whose JSON lines are collected.
type listener struct {
	cmd  *exec.Cmd
	done chan error

	mu     sync.Mutex // guards events and raw
	events []client.Event
	raw    []string
}

func startListen(t *testing.T, server, profile string) *listener {
	t.Helper()
	cmd := exec.Command(binary, "listen", "--server", server, "--profile", profile, "--log", profile+".log")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &listener{cmd: cmd, done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		for sc.Scan() {
			var ev client.Event
			line := sc.Text()
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Errorf("listen printed a line that is not JSON: %q", line)
				continue
			}
			l.mu.Lock()
			l.events, l.raw = append(l.events, ev), append(l.raw, line)
			l.mu.Unlock()
		}
		l.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-l.done
		}
	})
	return l
}

// waitFor polls the events printed so far until one matches.
func (l *listener) waitFor(t *testing.T, what string, d time.Duration, match func(client.Event) bool) client.Event {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		l.mu.Lock()
		for _, ev := range l.events {
			if match(ev) {
				l.mu.Unlock()
				return ev
			}
		}
		raw := strings.Join(l.raw, "\n")
		l.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("listen did not print %s within %v; it printed:\n%s", what, d, raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop interrupts the listener and checks that it exits cleanly.
func (l *listener) stop(t *testing.T) {
	t.Helper()
	if err := l.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-l.done:
		if err != nil {
			t.Fatalf("listen exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("listen did not stop on SIGINT")
	}
}

func isOnline(ev client.Event) bool {
	return ev.Type == client.EventConnection && ev.State == client.StateOnline
}

func isMessage(text string) func(client.Event) bool {
	return func(ev client.Event) bool {
		return ev.Type == client.EventMessage && ev.Message != nil && ev.Message.Text == text
	}
}

// convID checks that `parley new` printed a conversation id.
func convID(t *testing.T, out string) string {
	t.Helper()
	id := strings.TrimSpace(out)
	if _, err := uuid.Parse(id); err != nil {
		t.Fatalf("parley new printed %q, not a conversation id", out)
	}
	return id
}

// TestCLIRoundTrip drives the one-shot commands and listen through a real
// server: register, new, send (by id and by username), listen, history,
// conversations with unread counts, and logout.
func TestCLIRoundTrip(t *testing.T) {
	p := startServer(t, t.TempDir())
	dir := t.TempDir()
	alice, bob := filepath.Join(dir, "alice"), filepath.Join(dir, "bob")
	if out := mustParley(t, p.base, alice, "register", "alice"); !strings.Contains(out, "registered alice") {
		t.Fatalf("register printed %q", out)
	}
	mustParley(t, p.base, bob, "register", "bob", "--display-name", "Bob")
	if fi, err := os.Stat(filepath.Join(bob, "credentials.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v, mode %v; want mode 0600", err, fi.Mode())
	}

	l := startListen(t, p.base, bob)
	l.waitFor(t, "online", 30*time.Second, isOnline)

	conv := convID(t, mustParley(t, p.base, alice, "new", "bob"))
	if again := convID(t, mustParley(t, p.base, alice, "new", "@bob")); again != conv {
		t.Fatalf("new bob twice gave %s and %s: a direct conversation is unique", conv, again)
	}
	out := mustParley(t, p.base, alice, "send", "--wait", conv, "hello", "bob")
	if !regexp.MustCompile(`^sent to bob \(seq 1\)`).MatchString(out) {
		t.Fatalf("send --wait printed %q", out)
	}
	// By username, flags after the arguments, and without --wait: online,
	// it still waits for the ack before it exits.
	if out := mustParley(t, p.base, alice, "send", "bob", "second message"); !strings.Contains(out, "sent to bob (seq 2)") {
		t.Fatalf("send printed %q", out)
	}

	ev := l.waitFor(t, "a message event for hello bob", 30*time.Second, isMessage("hello bob"))
	if ev.ConversationID != conv || ev.Message.Seq != 1 || ev.Message.Status != client.StatusReceived {
		t.Fatalf("listen printed %+v", ev)
	}
	l.waitFor(t, "a message event for the second message", 30*time.Second, isMessage("second message"))

	hist := mustParley(t, p.base, bob, "history", "alice")
	if !regexp.MustCompile(`(?s)alice: hello bob\n.*alice: second message\n$`).MatchString(hist) {
		t.Fatalf("bob's history:\n%s", hist)
	}
	var msgs []client.Message
	for line := range strings.Lines(mustParley(t, p.base, alice, "history", "--json", conv)) {
		var m client.Message
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("history --json line %q: %v", line, err)
		}
		msgs = append(msgs, m)
	}
	if len(msgs) != 2 || msgs[0].Seq != 1 || msgs[1].Seq != 2 || msgs[0].Status == client.StatusPending {
		t.Fatalf("alice's history: %+v", msgs)
	}

	// listen sends delivered receipts but never read ones: bob has two
	// unread.
	table := mustParley(t, p.base, bob, "conversations")
	if !regexp.MustCompile(`(?m)^CONVERSATION\s+UNREAD\s+ID\s+LAST MESSAGE$`).MatchString(table) ||
		!regexp.MustCompile(`(?m)^alice\s+2\s+`+conv+`\s+alice: second message$`).MatchString(table) {
		t.Fatalf("bob's conversations:\n%s", table)
	}
	var listed client.Conversation
	if err := json.Unmarshal([]byte(mustParley(t, p.base, alice, "conversations", "--json")), &listed); err != nil {
		t.Fatal(err)
	}
	if listed.ID != conv || listed.UnreadCount != 0 || listed.LastSeq != 2 {
		t.Fatalf("alice's conversation: %+v", listed)
	}

	l.stop(t)
	if out := mustParley(t, p.base, bob, "logout"); !strings.Contains(out, "logged out bob") {
		t.Fatalf("logout printed %q", out)
	}
	if _, errOut, err := runParley(t, p.base, bob, "conversations"); err == nil || !strings.Contains(errOut, "not logged in") {
		t.Fatalf("conversations after logout: %v, %q", err, errOut)
	}
	// The password as the first line of a standard input that is not a
	// terminal, as `printf '%s\n' "$pw" | parley login bob` gives it.
	login := exec.Command(binary, "login", "bob", "--server", p.base, "--profile", bob)
	login.Env = withoutEnv(os.Environ(), "PARLEY_PASSWORD")
	login.Stdin = strings.NewReader(testPassword + "\n")
	if out, err := login.CombinedOutput(); err != nil || !strings.Contains(string(out), "logged in as bob") {
		t.Fatalf("login with the password on stdin: %v\n%s", err, out)
	}
	if hist := mustParley(t, p.base, bob, "history", "alice"); strings.Count(hist, "\n") != 2 {
		t.Fatalf("history after a new login:\n%s", hist)
	}
}

// TestCLISendOffline checks that send returns at once while the server is
// down, with the message queued in the profile, and that after the server
// is back the next commands deliver every queued message exactly once and
// in order.
func TestCLISendOffline(t *testing.T) {
	data := t.TempDir()
	p := startServer(t, data)
	dir := t.TempDir()
	alice, bob := filepath.Join(dir, "alice"), filepath.Join(dir, "bob")
	mustParley(t, p.base, alice, "register", "alice")
	mustParley(t, p.base, bob, "register", "bob")
	conv := convID(t, mustParley(t, p.base, alice, "new", "bob"))
	mustParley(t, p.base, alice, "send", "--wait", "bob", "before the outage")

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t); err != nil {
		t.Fatalf("server exit: %v", err)
	}
	for i, to := range []string{"bob", conv} { // by username (known offline) and by id
		text := fmt.Sprintf("queued %d", i+1)
		start := time.Now()
		out := mustParley(t, p.base, alice, "send", to, text)
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("send with the server down took %v: it must return at once", took)
		}
		if !strings.Contains(out, "queued for bob") || !strings.Contains(out, fmt.Sprintf("(%d waiting)", i+1)) {
			t.Fatalf("send with the server down printed %q", out)
		}
	}
	out, errOut, err := runParley(t, p.base, alice, "history", "bob")
	if err != nil || !strings.Contains(errOut, "unreachable") ||
		!regexp.MustCompile(`(?s)before the outage  \(sent\)\n.*queued 1  \(pending\)\n.*queued 2  \(pending\)\n$`).MatchString(out) {
		t.Fatalf("history offline: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}

	// The server comes back on another port; the profile follows --server.
	p = startServer(t, data)
	countTexts := func(stage string, want ...string) {
		t.Helper()
		tok := login(t, p.base, "bob")
		seen := map[string]int{}
		var order []string
		for _, m := range history(t, p.base, tok.AccessToken, conv) {
			seen[m.Text]++
			order = append(order, m.Text)
		}
		for _, text := range want {
			if seen[text] != 1 {
				t.Fatalf("%s: %q stored %d times; the server has %q", stage, text, seen[text], order)
			}
		}
		if len(order) != len(want) || strings.Join(order, "|") != strings.Join(want, "|") {
			t.Fatalf("%s: the server has %q, want %q", stage, order, want)
		}
	}
	// A later command, whatever it is, lets the outbox drain first.
	hist := mustParley(t, p.base, alice, "history", "bob")
	if strings.Contains(hist, "pending") || !strings.Contains(hist, "queued 2") {
		t.Fatalf("history after the server came back:\n%s", hist)
	}
	countTexts("after history", "before the outage", "queued 1", "queued 2")

	mustParley(t, p.base, alice, "send", "--wait", "bob", "after the outage")
	mustParley(t, p.base, alice, "conversations")
	countTexts("after send --wait", "before the outage", "queued 1", "queued 2", "after the outage")
	if out := mustParley(t, p.base, bob, "history", "alice"); strings.Count(out, "queued 1") != 1 {
		t.Fatalf("bob's history:\n%s", out)
	}
}

// accessToken reads the access token of a profile's credentials file.
func accessToken(t *testing.T, profile string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(profile, "credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(b, &cr); err != nil {
		t.Fatal(err)
	}
	return cr.AccessToken
}

// TestCLITokenRefresh runs the server with two-second access tokens: a
// listen process keeps receiving across several expiries with no user
// action (it refreshes, and sends the new token over its connection), and
// each send, a new process, refreshes the profile's stale token itself.
func TestCLITokenRefresh(t *testing.T) {
	p := startServer(t, t.TempDir(), "--access-ttl", "2s")
	dir := t.TempDir()
	alice, bob := filepath.Join(dir, "alice"), filepath.Join(dir, "bob")
	mustParley(t, p.base, alice, "register", "alice")
	mustParley(t, p.base, bob, "register", "bob")
	mustParley(t, p.base, alice, "new", "bob")

	l := startListen(t, p.base, bob)
	l.waitFor(t, "online", 30*time.Second, isOnline)
	start := time.Now()
	token := accessToken(t, bob)
	// At least four rounds, and as many more as it takes to span several
	// two-second expiries (a fast machine does four rounds sooner).
	for i := 0; i < 4 || time.Since(start) < 5*time.Second; i++ {
		if i == 20 {
			t.Fatal("20 rounds without spanning 5 s")
		}
		// Wait until listen has replaced its token: the expiries are
		// what this test is about.
		deadline := time.Now().Add(15 * time.Second)
		for accessToken(t, bob) == token {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: listen did not refresh its token", i)
			}
			time.Sleep(50 * time.Millisecond)
		}
		token = accessToken(t, bob)
		text := fmt.Sprintf("after refresh %d", i+1)
		mustParley(t, p.base, alice, "send", "--wait", "bob", text)
		l.waitFor(t, text, 15*time.Second, isMessage(text))
	}
	l.mu.Lock()
	reconnects := 0
	for _, ev := range l.events {
		if ev.Type == client.EventConnection && ev.State == client.StateConnecting {
			reconnects++
		}
	}
	l.mu.Unlock()
	t.Logf("listen connected %d time(s) over %v", reconnects, time.Since(start))
	// The token is renewed on the open connection, so listen should
	// connect once; one reconnect (a 4001 that raced a renewal on a slow
	// machine) is tolerated, one per expiry is the bug this guards.
	if reconnects > 2 {
		t.Fatalf("listen connected %d times: its connection did not survive the token expiries", reconnects)
	}
	l.stop(t)
}

// tmux drives terminal sessions on a private tmux server.
type tmux struct {
	t      *testing.T
	socket string
}

// needTmux returns a private tmux server, installing tmux with apt-get
// if it is missing (CI runs as root).
func needTmux(t *testing.T) *tmux {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		install := func() error {
			out, err := exec.Command("apt-get", "install", "-y", "tmux").CombinedOutput()
			if err != nil {
				t.Logf("apt-get install tmux: %v\n%s", err, out)
			}
			return err
		}
		// A fresh machine may have no package lists yet.
		if install() != nil && exec.Command("apt-get", "update").Run() == nil {
			_ = install()
		}
		if _, err := exec.LookPath("tmux"); err != nil {
			t.Skip("tmux is not installed and apt-get could not install it; the terminal chat test needs it")
		}
	}
	tm := &tmux{t: t, socket: fmt.Sprintf("parley-test-%d", os.Getpid())}
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", tm.socket, "kill-server").Run() })
	return tm
}

func (tm *tmux) run(args ...string) string {
	tm.t.Helper()
	cmd := exec.Command("tmux", append([]string{"-L", tm.socket, "-f", "/dev/null"}, args...)...)
	// The panes inherit the server's environment: UTF-8 for the marks.
	cmd.Env = append(os.Environ(), "LANG=C.UTF-8", "TERM=xterm-256color")
	out, err := cmd.CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// start opens a detached session running a shell command; the pane stays
// after the command ends, with its exit status, for the failure message.
func (tm *tmux) start(name, command string) {
	tm.run("new-session", "-d", "-s", name, "-x", "110", "-y", "30", command+`; echo "EXITED $?"; sleep 600`)
}

func (tm *tmux) screen(name string) string {
	return tm.run("capture-pane", "-p", "-t", name)
}

// waitScreen polls a pane until match accepts it.
func (tm *tmux) waitScreen(name, what string, match func(string) bool) string {
	tm.t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		s := tm.screen(name)
		if match(s) {
			return s
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("pane %s did not show %s; it shows:\n%s", name, what, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (tm *tmux) waitText(name, text string) string {
	tm.t.Helper()
	return tm.waitScreen(name, fmt.Sprintf("%q", text), func(s string) bool { return strings.Contains(s, text) })
}

// typeText types text into a pane literally, then presses the keys.
func (tm *tmux) typeText(name, text string, keys ...string) {
	tm.run("send-keys", "-t", name, "-l", text)
	if len(keys) > 0 {
		tm.run(append([]string{"send-keys", "-t", name}, keys...)...)
	}
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestChatInTmux runs two `parley chat` in two tmux sessions: alice and
// bob exchange messages, each sees the other's reply, the typing
// indicator, and the read mark on their own message.
func TestChatInTmux(t *testing.T) {
	tm := needTmux(t)
	p := startServer(t, t.TempDir())
	dir := t.TempDir()
	alice, bob := filepath.Join(dir, "alice"), filepath.Join(dir, "bob")
	mustParley(t, p.base, alice, "register", "alice")
	mustParley(t, p.base, bob, "register", "bob")
	mustParley(t, p.base, alice, "new", "bob")

	chat := func(profile, with string) string {
		return strings.Join([]string{shellQuote(binary), "chat", with, "--server", p.base,
			"--profile", shellQuote(profile), "--log", shellQuote(profile + ".log")}, " ")
	}
	tm.start("alice", chat(alice, "bob"))
	tm.start("bob", chat(bob, "alice"))
	online := func(s string) bool { return strings.Contains(s, "● online") && strings.Contains(s, "> ") }
	tm.waitScreen("alice", "the online banner", online)
	tm.waitScreen("bob", "the online banner", online)

	tm.typeText("alice", "hello from alice", "Enter")
	tm.waitText("bob", "hello from alice")
	// Bob's screen shows it, so bob's client reads it: alice sees read.
	tm.waitScreen("alice", "the read mark", func(s string) bool {
		return regexp.MustCompile(`hello from alice\s+✓✓ read`).MatchString(s)
	})

	tm.typeText("bob", "hi alice, bob here")
	tm.waitText("alice", "bob is typing…")
	tm.run("send-keys", "-t", "bob", "Enter")
	s := tm.waitText("alice", "hi alice, bob here")
	if !regexp.MustCompile(`bob\s+hi alice, bob here`).MatchString(s) {
		t.Fatalf("alice's screen:\n%s", s)
	}
	tm.waitScreen("alice", "the typing indicator gone", func(s string) bool { return !strings.Contains(s, "is typing") })
	tm.typeText("alice", "see you", "Enter")
	tm.waitText("bob", "see you")

	// A photo from the input line, shown with its type, name and size.
	photo := filepath.Join(dir, "holiday.jpg")
	if err := os.WriteFile(photo, mediatest.JPEG(t), 0o600); err != nil {
		t.Fatal(err)
	}
	tm.typeText("alice", "/file "+photo+" the beach", "Enter")
	photoLine := regexp.MustCompile(`\[photo holiday\.jpg [0-9.]+ [KM]?B\] the beach`)
	tm.waitScreen("bob", "the photo", photoLine.MatchString)
	tm.waitScreen("alice", "the photo read", func(s string) bool {
		return regexp.MustCompile(photoLine.String() + `\s+✓✓ read`).MatchString(s)
	})

	for _, name := range []string{"alice", "bob"} {
		tm.run("send-keys", "-t", name, "C-c")
		tm.waitText(name, "EXITED 0")
	}
	// What the chat showed is what the server stored.
	tok := login(t, p.base, "bob")
	var texts []string
	convs := mustParley(t, p.base, bob, "conversations", "--json")
	var conv client.Conversation
	if err := json.Unmarshal([]byte(convs), &conv); err != nil {
		t.Fatal(err)
	}
	for _, m := range history(t, p.base, tok.AccessToken, conv.ID) {
		texts = append(texts, m.Text)
	}
	if got := strings.Join(texts, "|"); got != "hello from alice|hi alice, bob here|see you|the beach" {
		t.Fatalf("the server has %q", texts)
	}
}

// withoutEnv returns env without the variable name.
func withoutEnv(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  string // PARLEY_SERVER
		pos  string
		wait bool
		srv  string
	}{
		{"flags first", []string{"--wait", "bob", "hi", "there"}, "", "bob|hi|there", true, defaultServer},
		{"flags last", []string{"bob", "hi", "--wait", "--server", "http://a"}, "", "bob|hi", true, "http://a"},
		{"flags between", []string{"bob", "--wait", "hi"}, "", "bob|hi", true, defaultServer},
		{"dash dash", []string{"bob", "--", "--wait", "-1"}, "", "bob|--wait|-1", false, defaultServer},
		{"environment", []string{"bob", "hi"}, "http://b,http://c", "bob|hi", false, "http://b,http://c"},
		{"flag beats environment", []string{"--server=http://a", "bob", "hi"}, "http://b", "bob|hi", false, "http://a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PARLEY_SERVER", tc.env)
			if tc.env == "" {
				os.Unsetenv("PARLEY_SERVER")
			}
			var cf clientFlags
			fs := newFlagSet("send", "CONVERSATION TEXT...", io.Discard, &cf)
			wait := fs.Bool("wait", false, "")
			pos, err := parseArgs(fs, tc.args, 2, -1)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(pos, "|"); got != tc.pos || *wait != tc.wait || cf.server != tc.srv {
				t.Fatalf("got %q wait=%v server=%q; want %q wait=%v server=%q", got, *wait, cf.server, tc.pos, tc.wait, tc.srv)
			}
		})
	}
	var cf clientFlags
	fs := newFlagSet("send", "CONVERSATION TEXT...", io.Discard, &cf)
	var ue usageError
	if _, err := parseArgs(fs, []string{"bob"}, 2, -1); !errors.As(err, &ue) {
		t.Fatalf("too few arguments: %v, want a usage error", err)
	}
}

func TestProfileDir(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", "/conf")
	t.Setenv("HOME", "/home/someone")
	wd, _ := os.Getwd()
	for in, want := range map[string]string{
		"":           "/conf/parley/default",
		"alice":      "/conf/parley/alice",
		"./alice":    filepath.Join(wd, "alice"),
		"/tmp/p/bob": "/tmp/p/bob",
		"../x/carol": filepath.Join(filepath.Dir(wd), "x", "carol"),
	} {
		if got, err := profileDir(in); err != nil || got != want {
			t.Errorf("profileDir(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestCLISendFile sends a photo and a file with `send --file`, with the
// upload's progress on stderr; listen prints their media, history and
// conversations show their type, name and size, and the server stored the
// file as it was. A photo sent while the server is down is queued and
// goes out once with the next command; a refused file fails the send.
func TestCLISendFile(t *testing.T) {
	data := t.TempDir()
	p := startServer(t, data)
	dir := t.TempDir()
	alice, bob := filepath.Join(dir, "alice"), filepath.Join(dir, "bob")
	mustParley(t, p.base, alice, "register", "alice")
	mustParley(t, p.base, bob, "register", "bob")
	conv := convID(t, mustParley(t, p.base, alice, "new", "bob"))
	l := startListen(t, p.base, bob)
	l.waitFor(t, "online", 30*time.Second, isOnline)

	photo := filepath.Join(dir, "holiday.jpg")
	if err := os.WriteFile(photo, mediatest.JPEG(t), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := runParley(t, p.base, alice, "send", "--file", photo, "bob", "the", "beach")
	if err != nil || !regexp.MustCompile(`^sent to bob \(seq 1\): \[photo holiday\.jpg [0-9.]+ [KM]?B\] the beach\n$`).MatchString(out) ||
		!strings.Contains(errOut, "uploading holiday.jpg: ") || !strings.Contains(errOut, "(100%)") {
		t.Fatalf("send --file: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	blob := make([]byte, 2<<20+5000)
	for i := range blob {
		blob[i] = byte(i*7 + i/1000)
	}
	file := filepath.Join(dir, "data.bin")
	if err := os.WriteFile(file, blob, 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, err = runParley(t, p.base, alice, "send", "bob", "--file", file)
	if err != nil || out != "sent to bob (seq 2): [file data.bin 2.1 MB]\n" ||
		!regexp.MustCompile(`(?s)uploading data.bin: 0 B of 2.1 MB \(0%\)\n.*uploading data.bin: 2.1 MB of 2.1 MB \(100%\)\n$`).MatchString(errOut) {
		t.Fatalf("send --file without a caption: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}

	// listen prints the media object.
	ev := l.waitFor(t, "the photo", 30*time.Second, isMessage("the beach"))
	if m := ev.Message; m.Kind != parley.KindImage || m.Media == nil || m.Media.Name != "holiday.jpg" || m.Media.MIMEType != "image/jpeg" || m.Media.URL == "" {
		t.Fatalf("listen printed %+v, media %+v", m, m.Media)
	}
	ev = l.waitFor(t, "the file", 30*time.Second, func(ev client.Event) bool {
		return ev.Type == client.EventMessage && ev.Message != nil && ev.Message.Media != nil && ev.Message.Media.Name == "data.bin"
	})
	fileID := ev.Message.Media.ID
	l.stop(t)

	hist := mustParley(t, p.base, bob, "history", "alice")
	if !regexp.MustCompile(`(?s)alice: \[photo holiday\.jpg [0-9.]+ [KM]?B\] the beach\n.*alice: \[file data\.bin 2\.1 MB\]\n$`).MatchString(hist) {
		t.Fatalf("bob's history:\n%s", hist)
	}
	if table := mustParley(t, p.base, bob, "conversations"); !regexp.MustCompile(`(?m)alice: \[file data\.bin 2\.1 MB\]$`).MatchString(table) {
		t.Fatalf("bob's conversations:\n%s", table)
	}
	// What bob can download is what alice had.
	tok := login(t, p.base, "bob")
	var media parley.Media
	if code := getJSON(t, p.base+"/api/media/"+fileID, tok.AccessToken, &media); code != http.StatusOK {
		t.Fatalf("GET media: %d", code)
	}
	resp, err := http.Get(p.base + media.URL)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("the server has %d bytes (%v), not the %d sent", len(got), err, len(blob))
	}

	// A refused file fails the command with the server's reason.
	var bomb bytes.Buffer
	if err := png.Encode(&bomb, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	b := bomb.Bytes()
	byteorder.BigEndian.PutUint32(b[16:], 100000)
	byteorder.BigEndian.PutUint32(b[20:], 100000)
	byteorder.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	bombPath := filepath.Join(dir, "bomb.png")
	if err := os.WriteFile(bombPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, err := runParley(t, p.base, alice, "send", "--file", bombPath, "bob"); err == nil ||
		!strings.Contains(errOut, "invalid_argument") || !strings.Contains(errOut, "pixels") {
		t.Fatalf("send of a decompression bomb: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	if hist := mustParley(t, p.base, alice, "history", "bob"); !regexp.MustCompile(`alice: \[photo bomb\.png [0-9]+ B\]  \(failed: invalid_argument: .*pixels.*\)\n$`).MatchString(hist) {
		t.Fatalf("alice's history after the refusal:\n%s", hist)
	}

	// Offline: queued at once, then sent once by the next command.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t); err != nil {
		t.Fatalf("server exit: %v", err)
	}
	start := time.Now()
	out, errOut, err = runParley(t, p.base, alice, "send", "--file", photo, "bob", "offline", "photo")
	if took := time.Since(start); err != nil || took > 10*time.Second ||
		!strings.Contains(out, "queued for bob: the server is unreachable") || !strings.Contains(out, "(1 waiting)") {
		t.Fatalf("send --file with the server down (%v): %v\nstdout: %s\nstderr: %s", took, err, out, errOut)
	}
	if err := os.Remove(photo); err != nil { // the profile has its copy
		t.Fatal(err)
	}
	out, _, _ = runParley(t, p.base, alice, "history", "bob")
	if !regexp.MustCompile(`alice: \[photo holiday\.jpg [0-9.]+ [KM]?B, uploading 0%\] offline photo  \(pending\)\n$`).MatchString(out) {
		t.Fatalf("history offline:\n%s", out)
	}
	p = startServer(t, data)
	if hist := mustParley(t, p.base, alice, "history", "bob"); !strings.Contains(hist, "offline photo  (sent)") {
		t.Fatalf("history after the server came back:\n%s", hist)
	}
	n := 0
	for _, m := range history(t, p.base, login(t, p.base, "bob").AccessToken, conv) {
		if m.Text == "offline photo" {
			n++
			if m.Kind != parley.KindImage || m.Media == nil || m.Media.Name != "holiday.jpg" {
				t.Fatalf("the server has %+v", m)
			}
		}
	}
	if n != 1 {
		t.Fatalf("the server has the offline photo %d times", n)
	}

	for _, args := range [][]string{
		{"send", "bob"},
		{"send", "--as", "gif", "--file", file, "bob"},
		{"send", "--as", "photo", "bob", "text"},
	} {
		if _, errOut, err := runParley(t, p.base, alice, args...); exitCode(err) != 2 {
			t.Errorf("parley %s: %v, want exit status 2\n%s", strings.Join(args, " "), err, errOut)
		}
	}
}

// exitCode is the exit status of a command's error, 0 for none.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
