package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

	"github.com/coder/websocket"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/pgtest"
	"github.com/parley-chat/parley/wire"
)

// binary is the parley executable built once for the process tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "parley-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "parley")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build parley:", err)
		os.Exit(1)
	}
	// pgtest drops the PostgreSQL test database of the cluster tests.
	code := pgtest.Run(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a `parley serve` child process on a free loopback port.
type process struct {
	cmd  *exec.Cmd
	base string // http://127.0.0.1:PORT
	done chan error
	logs *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var listeningRE = regexp.MustCompile(`listening on (http://[0-9.:]+)`)

func startServer(t *testing.T, dataDir string, extra ...string) *process {
	t.Helper()
	p, err := startServerErr(t, dataDir, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startServerErr is startServer for goroutines other than the test's: it
// returns its error.
func startServerErr(t *testing.T, dataDir string, extra ...string) (*process, error) {
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data", dataDir}, extra...)
	cmd := exec.Command(binary, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan error, 1), logs: &lockedBuffer{}}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(p.logs, line)
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case p.base = <-found:
	case err := <-p.done:
		return nil, fmt.Errorf("server exited before listening: %v\n%s", err, p.logs)
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("server did not print its address\n%s", p.logs)
	}
	return p, nil
}

func (p *process) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-p.done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("server did not exit\n%s", p.logs)
		return nil
	}
}

func postJSON(t *testing.T, url, token string, body, out any) int {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("decode %s: %v", data, err)
		}
	}
	return resp.StatusCode
}

func getJSON(t *testing.T, url, token string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return resp.StatusCode
}

type tokens struct {
	User        parley.User `json:"user"`
	AccessToken string      `json:"access_token"`
}

func register(t *testing.T, base, name string) tokens {
	t.Helper()
	var tok tokens
	if code := postJSON(t, base+"/api/auth/register", "", map[string]string{"username": name, "password": "correct horse battery"}, &tok); code != http.StatusCreated {
		t.Fatalf("register %s: status %d", name, code)
	}
	return tok
}

func login(t *testing.T, base, name string) tokens {
	t.Helper()
	var tok tokens
	if code := postJSON(t, base+"/api/auth/login", "", map[string]string{"username": name, "password": "correct horse battery"}, &tok); code != http.StatusOK {
		t.Fatalf("login %s: status %d", name, code)
	}
	return tok
}

func dial(ctx context.Context, base, token string) (*websocket.Conn, error) {
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", &websocket.DialOptions{
		HTTPHeader:   http.Header{"Authorization": {"Bearer " + token}},
		Subprotocols: []string{wire.Subprotocol},
	})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(1 << 20)
	_, data, err := c.Read(ctx)
	if err != nil {
		return nil, err
	}
	if f, err := wire.Decode(data); err != nil || f.Type != wire.TypeHello {
		return nil, fmt.Errorf("first frame %s is not hello", data)
	}
	return c, nil
}

// history reads a whole conversation through the REST history.
func history(t *testing.T, base, token, convID string) []parley.Message {
	t.Helper()
	var all []parley.Message
	after := int64(0)
	for {
		var page struct {
			Messages []parley.Message `json:"messages"`
			HasMore  bool             `json:"has_more"`
		}
		if code := getJSON(t, fmt.Sprintf("%s/api/conversations/%s/messages?after_seq=%d&limit=200", base, convID, after), token, &page); code != 200 {
			t.Fatalf("history: status %d", code)
		}
		all = append(all, page.Messages...)
		if !page.HasMore || len(page.Messages) == 0 {
			return all
		}
		after = page.Messages[len(page.Messages)-1].Seq
	}
}

// TestKillNineLosesNoAckedMessage sends messages from several connections,
// kills the server with SIGKILL in the middle, restarts it on the same data
// folder, and checks that every acknowledged message is in the history
// exactly once, in a gap-free seq order; resending everything with the same
// client_message_ids then stores nothing twice.
func TestKillNineLosesNoAckedMessage(t *testing.T) {
	data := t.TempDir()
	limits := []string{"--send-burst", "100000", "--send-rate", "100000"}
	p := startServer(t, data, limits...)
	alice := register(t, p.base, "alice")
	bob := register(t, p.base, "bob")
	var conv parley.Conversation
	if code := postJSON(t, p.base+"/api/conversations", alice.AccessToken, map[string]any{"type": "direct", "member_ids": []string{bob.User.ID}}, &conv); code != http.StatusCreated {
		t.Fatalf("create conversation: %d", code)
	}

	const senders = 4
	var (
		mu    sync.Mutex
		acked = map[string]int64{} // client_message_id → seq
		sent  []string
	)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for s := range senders {
		tok := alice.AccessToken
		if s%2 == 1 {
			tok = bob.AccessToken
		}
		c, err := dial(ctx, p.base, tok)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.CloseNow()
			for i := 0; ; i++ {
				cmid := fmt.Sprintf("s%d-%d", s, i)
				mu.Lock()
				sent = append(sent, cmid)
				mu.Unlock()
				frame, _ := wire.Encode(wire.TypeMessageSend, cmid, wire.MessageSend{
					ConversationID: conv.ID, ClientMessageID: cmid, Kind: parley.KindText, Text: "message " + cmid,
				})
				if err := c.Write(ctx, websocket.MessageText, frame); err != nil {
					return
				}
				for {
					_, data, err := c.Read(ctx)
					if err != nil {
						return // the server died: this send may or may not be stored
					}
					f, _ := wire.Decode(data)
					if f.Type != wire.TypeMessageAck || f.ID != cmid {
						continue
					}
					var ack wire.MessageAck
					json.Unmarshal(f.Payload, &ack)
					mu.Lock()
					acked[cmid] = ack.Message.Seq
					mu.Unlock()
					break
				}
			}
		}()
	}
	// Let the senders get well under way, then kill without warning.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 300 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(t)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 100 {
		t.Fatalf("only %d messages acked before the kill", len(acked))
	}
	t.Logf("%d messages acked, %d sent before SIGKILL", len(acked), len(sent))

	p = startServer(t, data, limits...)
	alice = login(t, p.base, "alice")
	check := func(stage string) map[string]int {
		msgs := history(t, p.base, alice.AccessToken, conv.ID)
		count := map[string]int{}
		for i, m := range msgs {
			if m.Seq != int64(i+1) {
				t.Fatalf("%s: message %d has seq %d: seq must be gap-free from 1", stage, i, m.Seq)
			}
			count[m.ClientMessageID]++
		}
		for cmid, seq := range acked {
			switch count[cmid] {
			case 1:
			case 0:
				t.Fatalf("%s: acked message %s (seq %d) is lost", stage, cmid, seq)
			default:
				t.Fatalf("%s: acked message %s stored %d times", stage, cmid, count[cmid])
			}
		}
		for cmid, n := range count {
			if n > 1 {
				t.Fatalf("%s: message %s stored %d times", stage, cmid, n)
			}
		}
		return count
	}
	before := check("after restart")

	// A client that never saw its acks resends with the same ids: nothing
	// acked is stored again, and what was not stored is stored once.
	bob = login(t, p.base, "bob")
	for _, cmid := range sent {
		tok := alice.AccessToken
		if strings.HasPrefix(cmid, "s1-") || strings.HasPrefix(cmid, "s3-") {
			tok = bob.AccessToken
		}
		var m parley.Message
		code := postJSON(t, p.base+"/api/conversations/"+conv.ID+"/messages", tok, map[string]string{
			"client_message_id": cmid, "kind": "text", "text": "message " + cmid,
		}, &m)
		wantCode := http.StatusCreated
		if before[cmid] == 1 {
			wantCode = http.StatusOK
		}
		if code != wantCode {
			t.Fatalf("resend %s: status %d, want %d", cmid, code, wantCode)
		}
		if seq, ok := acked[cmid]; ok && m.Seq != seq {
			t.Fatalf("resend %s: seq %d, acked as %d", cmid, m.Seq, seq)
		}
	}
	after := check("after resend")
	if len(after) != len(sent) {
		t.Fatalf("after resend %d distinct messages, want %d", len(after), len(sent))
	}
}

// TestGracefulStop checks that SIGTERM closes WebSockets with 1001 and the
// process exits 0 with its data intact.
func TestGracefulStop(t *testing.T) {
	data := t.TempDir()
	p := startServer(t, data)
	alice := register(t, p.base, "carol")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := dial(ctx, p.base, alice.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
		t.Fatalf("close status = %v (%v), want 1001", got, err)
	}
	if err := p.wait(t); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.logs)
	}
	p = startServer(t, data)
	login(t, p.base, "carol")
}

func TestFlagsFromEnvironment(t *testing.T) {
	t.Setenv("PARLEY_SEND_BURST", "not a number")
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"serve", "--data", t.TempDir()}, io.Discard, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "PARLEY_SEND_BURST") {
		t.Fatalf("exit %d, stderr %q: want 2 naming PARLEY_SEND_BURST", code, stderr.String())
	}
}
