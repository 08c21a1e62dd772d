package tui

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/server"
)

// testServer is a Parley node in this process.
type testServer struct {
	URL  string
	stop func()
}

// startServer runs a node on a data folder, with a cheap password hash.
// stop (also run at the end of the test) leaves the data for a restart.
func startServer(t *testing.T, data string) *testServer {
	t.Helper()
	srv, err := server.Open(context.Background(), server.Config{
		DataDir: data,
		Argon2:  auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1},
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("open server: %v", err)
	}
	ts := httptest.NewServer(srv.Handler())
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Gateway().Shutdown(ctx)
			ts.Close()
			srv.Close()
		})
	}
	t.Cleanup(stop)
	return &testServer{URL: ts.URL, stop: stop}
}

// openClient opens a client on a profile folder and closes it with the
// test.
func openClient(t *testing.T, profile, url string) *client.Client {
	t.Helper()
	c, err := client.Open(context.Background(), client.Config{
		Profile:       profile,
		Servers:       []string{url},
		ReconnectBase: 20 * time.Millisecond,
		ReconnectCap:  200 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("open client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func registerUser(t *testing.T, c *client.Client, name string) parley.User {
	t.Helper()
	u, err := c.Register(ctxT(t, 10*time.Second), name, "password-"+name, "")
	if err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	return u
}

func TestSplitTitle(t *testing.T) {
	for _, tc := range []struct {
		in      string
		title   string
		members string
	}{
		{`team bob carol`, "team", "bob carol"},
		{`"our team" bob carol`, "our team", "bob carol"},
		{`"unclosed bob`, `"unclosed`, "bob"},
		{``, "", ""},
		{`solo`, "solo", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			title, members := splitTitle(tc.in)
			if title != tc.title || strings.Join(members, " ") != tc.members {
				t.Fatalf("splitTitle(%q) = %q, %q; want %q, %q", tc.in, title, members, tc.title, tc.members)
			}
		})
	}
}

func TestStatusMark(t *testing.T) {
	for _, tc := range []struct {
		status client.Status
		want   string
	}{
		{client.StatusPending, "◷ pending"},
		{client.StatusSent, "✓ sent"},
		{client.StatusDelivered, "✓✓ delivered"},
		{client.StatusRead, "✓✓ read"},
		{client.StatusFailed, "✗ failed: forbidden: no (/retry or /discard)"},
		{client.StatusReceived, ""},
	} {
		t.Run(string(tc.status), func(t *testing.T) {
			got := statusMark(client.Message{Status: tc.status, Error: "forbidden: no"})
			if got != tc.want {
				t.Fatalf("statusMark(%s) = %q, want %q", tc.status, got, tc.want)
			}
		})
	}
}

// TestDirectoryAndSettle resolves conversations by username online and
// offline, and checks that Settle returns at once while the server is
// down and drains the outbox once it is back.
func TestDirectoryAndSettle(t *testing.T) {
	data := t.TempDir()
	ts := startServer(t, data)
	profile := filepath.Join(t.TempDir(), "alice")
	alice := openClient(t, profile, ts.URL)
	bob := openClient(t, filepath.Join(t.TempDir(), "bob"), ts.URL)
	registerUser(t, alice, "alice")
	bobUser := registerUser(t, bob, "bob")

	dir, err := OpenDirectory(profile, alice)
	if err != nil {
		t.Fatal(err)
	}
	conv, err := dir.Conversation(ctxT(t, 10*time.Second), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if got := dir.Title(conv); got != "bob" {
		t.Fatalf("title %q, want bob", got)
	}
	if again, err := dir.Conversation(ctxT(t, 10*time.Second), bobUser.ID); err != nil || again.ID != conv.ID {
		t.Fatalf("by user id: %v, %v; want %s", again.ID, err, conv.ID)
	}
	if _, err := dir.Conversation(ctxT(t, 10*time.Second), "nobody"); parley.ErrorCode(err) != parley.CodeNotFound {
		t.Fatalf("unknown user: %v, want not_found", err)
	}
	if fi, err := os.Stat(filepath.Join(profile, directoryFile)); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("directory file: %v, %v; want private to the user", fi, err)
	}

	ts.stop()
	// A fresh directory on the same profile resolves offline from the file.
	dir2, err := OpenDirectory(profile, alice)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := dir2.Conversation(ctxT(t, 10*time.Second), "@Bob"); err != nil || got.ID != conv.ID {
		t.Fatalf("offline by username: %v, %v", got.ID, err)
	}
	if _, err := dir2.Conversation(ctxT(t, 10*time.Second), "carol"); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("offline unknown name: %v", err)
	}

	if _, err := alice.Send(ctxT(t, 5*time.Second), conv.ID, "while down"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	pending, err := Settle(ctxT(t, 20*time.Second), alice)
	if err != nil || len(pending) != 1 || pending[0].Text != "while down" {
		t.Fatalf("Settle offline: %v, %+v", err, pending)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Settle offline took %v: it must return after the first failed attempt", took)
	}
	alice.Close()

	ts = startServer(t, data)
	alice = openClient(t, profile, ts.URL)
	pending, err = Settle(ctxT(t, 20*time.Second), alice)
	if err != nil || len(pending) != 0 {
		t.Fatalf("Settle online: %v, %+v", err, pending)
	}
	msgs, _, err := alice.History(ctxT(t, 10*time.Second), conv.ID, parley.HistoryQuery{})
	if err != nil || len(msgs) != 1 || msgs[0].Text != "while down" {
		t.Fatalf("history: %v, %+v", err, msgs)
	}
}

// offlineModel is a chat model of alice, with a direct conversation with
// bob and a group, on a client whose server is gone, for rendering and
// key handling. It returns bob's id.
func offlineModel(t *testing.T) (*model, string) {
	t.Helper()
	ts := startServer(t, t.TempDir())
	profile := filepath.Join(t.TempDir(), "alice")
	c := openClient(t, profile, ts.URL)
	me := registerUser(t, c, "alice")
	bob := registerUser(t, openClient(t, filepath.Join(t.TempDir(), "bob"), ts.URL), "bob")
	dir, err := OpenDirectory(profile, c)
	if err != nil {
		t.Fatal(err)
	}
	direct, err := dir.Conversation(ctxT(t, 10*time.Second), "bob")
	if err != nil {
		t.Fatal(err)
	}
	group, err := c.CreateGroup(ctxT(t, 10*time.Second), "team", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	ts.stop()

	m := newModel(context.Background(), c, dir, me, "")
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 16})
	direct.UnreadCount = 3
	m.convs = []client.Conversation{direct, group}
	m.openID = direct.ID
	now := parley.Now()
	m.msgs = []client.Message{
		{Message: parley.Message{ID: "m1", ConversationID: direct.ID, Seq: 1, SenderID: bob.ID,
			Kind: parley.KindText, Text: "hi alice", CreatedAt: now}, Status: client.StatusReceived},
		{Message: parley.Message{ID: "m2", ConversationID: direct.ID, Seq: 2, SenderID: bob.ID,
			Kind: parley.KindImage, Text: "the beach", CreatedAt: now,
			Media: &parley.Media{ID: "f1", MIMEType: "image/jpeg", Size: 48213, Name: "holiday.jpg"}}, Status: client.StatusReceived},
		{Message: parley.Message{ConversationID: direct.ID, SenderID: me.ID,
			Kind: parley.KindText, Text: "typed offline", CreatedAt: now}, Status: client.StatusPending},
	}
	m.state = client.StateOffline
	return m, bob.ID
}

func TestRender(t *testing.T) {
	m, bob := offlineModel(t)
	m.setTyping(m.openID, bob, true)
	m.presence[bob] = parley.Presence{UserID: bob, Status: parley.Online}
	screen := m.render()
	for _, want := range []string{
		"parley · alice", "○ offline · 1 queued", // the connection banner
		"bob", "3", "team", // the list with the unread count
		"bob · online",   // presence in the header
		"bob   hi alice", // a received message
		"bob   [photo holiday.jpg 48 KB] the beach", // a received photo
		"alice typed offline  ◷ pending",            // own message, pending
		"bob is typing…",
		"> ", // the input line
	} {
		if !strings.Contains(stripANSI(screen), want) {
			t.Errorf("screen lacks %q:\n%s", want, stripANSI(screen))
		}
	}
	if lines := strings.Count(screen, "\n") + 1; lines != 16 {
		t.Errorf("screen has %d lines, want the window's 16", lines)
	}

	m.state = client.StateOnline
	m.msgs[2].Status = client.StatusRead
	if s := stripANSI(m.render()); !strings.Contains(s, "● online") || !strings.Contains(s, "typed offline  ✓✓ read") {
		t.Errorf("after reconnecting:\n%s", s)
	}

	m.Update(tea.WindowSizeMsg{Width: 20, Height: 5})
	if s := m.render(); !strings.Contains(s, "window too small") {
		t.Errorf("tiny window shows:\n%s", s)
	}
}

func TestKeys(t *testing.T) {
	m, _ := offlineModel(t)
	direct, group := m.convs[0].ID, m.convs[1].ID
	press := func(code rune, text string) {
		t.Helper()
		m.Update(tea.KeyPressMsg{Code: code, Text: text})
	}
	press(tea.KeyTab, "")
	if m.focus != focusList {
		t.Fatal("tab did not move to the list")
	}
	press(tea.KeyDown, "")
	if m.openID != group || m.selected != 1 {
		t.Fatalf("down opened %q (row %d), want the group %s", m.openID, m.selected, group)
	}
	press(tea.KeyUp, "")
	if m.openID != direct || m.selected != 0 {
		t.Fatalf("up opened %q (row %d), want %s", m.openID, m.selected, direct)
	}
	press(tea.KeyEnter, "")
	if m.focus != focusInput {
		t.Fatal("enter in the list did not move to the input")
	}
	for _, r := range "/help" {
		press(r, string(r))
	}
	press(tea.KeyEnter, "")
	if !strings.Contains(m.note, "/new USER") || m.input.Value() != "" {
		t.Fatalf("/help: note %q, input %q", m.note, m.input.Value())
	}
	press(tea.KeyEnter, "") // an empty line sends nothing
	if m.input.Value() != "" {
		t.Fatal("input not empty")
	}
}

// stripANSI removes the styling, to compare what a person reads.
func stripANSI(s string) string { return ansi.Strip(s) }

func TestMediaLabel(t *testing.T) {
	dur := int64(42_400)
	for _, tc := range []struct {
		name string
		msg  client.Message
		want string
		text string
	}{
		{"text", client.Message{Message: parley.Message{Kind: parley.KindText, Text: "hi"}}, "", "hi"},
		{"photo", client.Message{Message: parley.Message{Kind: parley.KindImage, Text: "the beach",
			Media: &parley.Media{Name: "holiday.jpg", Size: 48213}}}, "[photo holiday.jpg 48 KB]", "[photo holiday.jpg 48 KB] the beach"},
		{"video", client.Message{Message: parley.Message{Kind: parley.KindVideo,
			Media: &parley.Media{Name: "clip.mp4", Size: 1_234_567, DurationMS: &dur}}}, "[video clip.mp4 1.2 MB 0:42]", "[video clip.mp4 1.2 MB 0:42]"},
		{"file with a name in two lines", client.Message{Message: parley.Message{Kind: parley.KindFile,
			Media: &parley.Media{Name: "a\nb.txt", Size: 12}}}, "[file a b.txt 12 B]", "[file a b.txt 12 B]"},
		{"uploading", client.Message{Message: parley.Message{Kind: parley.KindImage,
			Media: &parley.Media{Name: "big.jpg", Size: 4_000_000}}, Status: client.StatusPending,
			Upload: &client.Upload{Sent: 1_400_000, Total: 4_000_000}}, "[photo big.jpg 4.0 MB, uploading 35%]", "[photo big.jpg 4.0 MB, uploading 35%]"},
		{"failed upload", client.Message{Message: parley.Message{Kind: parley.KindImage,
			Media: &parley.Media{Name: "bomb.png", Size: 70}}, Status: client.StatusFailed}, "[photo bomb.png 70 B]", "[photo bomb.png 70 B]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := MediaLabel(tc.msg); got != tc.want {
				t.Errorf("MediaLabel = %q, want %q", got, tc.want)
			}
			if got := MessageText(tc.msg); got != tc.text {
				t.Errorf("MessageText = %q, want %q", got, tc.text)
			}
		})
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 B", 999: "999 B", 1000: "1.0 KB", 48213: "48 KB", 999_499: "999 KB", 999_500: "1.0 MB",
		4_800_000: "4.8 MB", 104_857_600: "105 MB", 3_000_000_000: "3.0 GB",
	} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestSplitPath(t *testing.T) {
	for _, tc := range []struct{ in, path, rest string }{
		{`photo.jpg`, "photo.jpg", ""},
		{`photo.jpg the beach`, "photo.jpg", "the beach"},
		{`"my photo.jpg" the beach`, "my photo.jpg", "the beach"},
		{`"unclosed photo.jpg`, `"unclosed`, "photo.jpg"},
		{``, "", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if path, rest := splitPath(tc.in); path != tc.path || rest != tc.rest {
				t.Fatalf("splitPath(%q) = %q, %q; want %q, %q", tc.in, path, rest, tc.path, tc.rest)
			}
		})
	}
}

// TestFileCommand queues a file with /file while offline: it waits in
// the outbox, shown with its name, size and upload progress.
func TestFileCommand(t *testing.T) {
	m, _ := offlineModel(t)
	path := filepath.Join(t.TempDir(), "my notes.txt")
	if err := os.WriteFile(path, []byte("twelve bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cmd := m.command("/file"); cmd != nil || !strings.Contains(m.note, "usage: /file PATH") {
		t.Fatalf("/file without a path: note %q", m.note)
	}
	cmd := m.command(`/file "` + path + `" for you`)
	if cmd == nil {
		t.Fatalf("/file: no command; note %q", m.note)
	}
	if msg := cmd(); msg != nil {
		t.Fatalf("/file: %+v", msg)
	}
	queued, err := m.c.Outbox(ctxT(t, 10*time.Second))
	if err != nil || len(queued) != 1 {
		t.Fatalf("outbox %+v, %v", queued, err)
	}
	if got := MessageText(queued[0]); got != "[file my notes.txt 12 B, uploading 0%] for you" {
		t.Fatalf("queued file reads %q", got)
	}
	if msg := m.command("/file /no/such/file")(); msg == nil || !strings.Contains(msg.(noteMsg).text, "invalid_argument") {
		t.Fatalf("/file of a missing file: %+v", msg)
	}
}
