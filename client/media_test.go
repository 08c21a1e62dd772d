package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/jpeg"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/mediatest"
	"github.com/parley-chat/parley/internal/server"
	"github.com/parley-chat/parley/wire"
)

// writeFile writes data to a new file named name and returns its path.
func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tusRequest is a tus request a client made, as the test transport saw it.
type tusRequest struct {
	method string
	offset int64 // Upload-Offset of a PATCH, -1 otherwise
	cut    bool  // the transport broke this one
}

func (r tusRequest) String() string {
	if r.offset >= 0 {
		return fmt.Sprintf("%s@%d%s", r.method, r.offset, map[bool]string{true: "(cut)"}[r.cut])
	}
	return r.method
}

// tusTransport records the tus requests going through it and can break
// one PATCH in the middle of its body, as a lost connection does; after
// the break it may refuse every new request (the server is unreachable).
type tusTransport struct {
	base http.RoundTripper

	mu sync.Mutex // guards the fields below
	// cutPatch, if not 0, is the number of the PATCH (from 1) to break
	// after cutAfter bytes of its body.
	cutPatch int
	cutAfter int64
	// downAfterCut makes every request after the break fail.
	downAfterCut bool
	patches      int
	cutDone      bool
	log          []tusRequest
}

func newTusTransport() *tusTransport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	return &tusTransport{base: tr}
}

func (t *tusTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.mu.Lock()
	if t.cutDone && t.downAfterCut {
		t.mu.Unlock()
		return nil, errors.New("test: the server is unreachable")
	}
	if !strings.HasPrefix(req.URL.Path, uploadsPath) {
		t.mu.Unlock()
		return t.base.RoundTrip(req)
	}
	rec := tusRequest{method: req.Method, offset: -1}
	if req.Method == http.MethodPatch {
		rec.offset, _ = strconv.ParseInt(req.Header.Get("Upload-Offset"), 10, 64)
		t.patches++
		if t.patches == t.cutPatch {
			rec.cut, t.cutDone = true, true
			r2 := req.Clone(req.Context())
			r2.Body = &cutBody{r: req.Body, left: t.cutAfter}
			r2.GetBody = nil
			req = r2
		}
	}
	t.log = append(t.log, rec)
	t.mu.Unlock()
	return t.base.RoundTrip(req)
}

// requests returns the tus requests so far.
func (t *tusTransport) requests() []tusRequest {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.log)
}

func (t *tusTransport) wasCut() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cutDone
}

// cutBody passes on left bytes of a body, then fails: the transport
// gives up on the request and drops its connection mid-body.
type cutBody struct {
	r    io.ReadCloser
	left int64
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errors.New("test: connection broken in the middle of the body")
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *cutBody) Close() error { return b.r.Close() }

// download returns the bytes of a media as c downloads them.
func download(t *testing.T, c *Client, id string) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := c.Download(ctxT(t, 30*time.Second), id, &b); err != nil {
		t.Fatalf("download %s: %v", id, err)
	}
	return b.Bytes()
}

// waitSent waits for the ack of a message.
func waitSent(t *testing.T, c *Client, cmid string) Message {
	t.Helper()
	m, err := c.WaitSent(ctxT(t, 60*time.Second), cmid)
	if err != nil {
		t.Fatalf("wait sent: %v (%+v)", err, m)
	}
	return m
}

// TestSendFileResumes cuts an upload in the middle of a chunk: the client
// asks the server where the upload got to (HEAD) and continues from
// there, in the same process and, after a restart, in the next one; what
// the server stored is byte-identical to the file.
func TestSendFileResumes(t *testing.T) {
	ts := startServer(t, server.Config{})
	alice, bob := openClient(t, "", ts.URL), openClient(t, "", ts.URL)
	conv := pair(t, alice, bob)

	for _, restart := range []bool{false, true} {
		t.Run(map[bool]string{false: "in the same process", true: "after a restart"}[restart], func(t *testing.T) {
			data := mediatest.Random(3*uploadChunk + 12345)
			path := writeFile(t, "report.bin", data)
			tr := newTusTransport()
			// The second PATCH breaks after 300 kB: the first chunk is on
			// the server, and perhaps some of the second.
			tr.cutPatch, tr.cutAfter, tr.downAfterCut = 2, 300_000, restart
			profile := filepath.Join(t.TempDir(), "alice2")
			c := openClientConfig(t, Config{Profile: profile, Servers: []string{ts.URL}, HTTPClient: &http.Client{Transport: tr}})
			if _, err := c.Login(ctxT(t, 10*time.Second), "alice", "password-alice"); err != nil {
				t.Fatal(err)
			}
			waitSynced(t, c)
			cmid, err := c.SendFile(ctxT(t, 10*time.Second), conv, path)
			if err != nil {
				t.Fatal(err)
			}
			if restart {
				// Offline after the break: the upload waits, its URL and
				// offset in the store.
				eventually(t, 30*time.Second, func() error {
					it, ok, err := c.store.outboxItem(context.Background(), cmid)
					if err != nil || !ok || !tr.wasCut() || it.File.UploadID == "" || it.File.Offset < uploadChunk {
						return fmt.Errorf("outbox %+v %v %v, cut %v", it.File, ok, err, tr.wasCut())
					}
					return nil
				})
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
				tr = newTusTransport()
				c = openClientConfig(t, Config{Profile: profile, Servers: []string{ts.URL}, HTTPClient: &http.Client{Transport: tr}})
			}
			m := waitSent(t, c, cmid)
			reqs := tr.requests()
			t.Logf("tus requests: %v", reqs)
			if m.Kind != parley.KindFile || m.Media == nil || m.Media.Size != int64(len(data)) || m.Media.Name != "report.bin" {
				t.Fatalf("sent %+v, media %+v", m.Message, m.Media)
			}
			// One upload (one POST, none after a restart), resumed by a
			// HEAD at its offset, not from the start.
			posts, heads := 0, 0
			resumeAt := int64(-1)
			for i, r := range reqs {
				switch r.method {
				case http.MethodPost:
					posts++
				case http.MethodHead:
					heads++
					if resumeAt < 0 && i+1 < len(reqs) {
						resumeAt = reqs[i+1].offset
					}
				}
			}
			wantPosts := 1
			if restart {
				wantPosts = 0
			}
			if posts != wantPosts || heads == 0 || resumeAt < uploadChunk || resumeAt > uploadChunk+300_000 {
				t.Fatalf("tus requests %v: want %d POST, then a HEAD and a PATCH from where the cut one got to", reqs, wantPosts)
			}
			if got := download(t, bob, m.Media.ID); !bytes.Equal(got, data) {
				t.Fatalf("bob downloaded %d bytes, not the %d sent", len(got), len(data))
			}
			if _, err := os.Stat(c.uploadPath(cmid)); !os.IsNotExist(err) {
				t.Fatalf("the profile still holds the file's copy: %v", err)
			}
		})
	}
}

// TestSendFileOffline queues a photo while the server is unreachable and
// the application then closes; the next Open sends it once the server is
// back, and bob gets it exactly once, even though the first ack is lost
// with its connection.
func TestSendFileOffline(t *testing.T) {
	ts := startServer(t, server.Config{})
	px := startProxy(t, ts.URL)
	profile := filepath.Join(t.TempDir(), "alice")
	alice := openClient(t, profile, px.URL)
	bob := openClient(t, "", ts.URL)
	conv := pair(t, alice, bob)

	px.setDown(true)
	eventually(t, 10*time.Second, func() error {
		if st := alice.State(); st == StateOnline {
			return fmt.Errorf("state %s", st)
		}
		return nil
	})
	photo := mediatest.JPEG(t)
	path := writeFile(t, "holiday.jpg", photo)
	cmid, err := alice.SendFile(ctxT(t, 10*time.Second), conv, path, WithCaption("the beach"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil { // the queued copy is the profile's
		t.Fatal(err)
	}
	msgs, err := alice.Messages(ctxT(t, 10*time.Second), conv, MessageQuery{})
	if err != nil {
		t.Fatal(err)
	}
	last := msgs[len(msgs)-1]
	if last.ClientMessageID != cmid || last.Status != StatusPending || last.Kind != parley.KindImage || last.Text != "the beach" ||
		last.Media == nil || last.Media.Name != "holiday.jpg" || last.Media.MIMEType != "image/jpeg" ||
		last.Upload == nil || *last.Upload != (Upload{Sent: 0, Total: int64(len(photo))}) {
		t.Fatalf("queued %+v, media %+v, upload %+v", last, last.Media, last.Upload)
	}
	if err := alice.Close(); err != nil {
		t.Fatal(err)
	}

	// Back: the first ack is dropped and the connection cut, so the
	// message goes out again with the same client_message_id.
	px.setDown(false)
	var (
		once    sync.Once
		dropped atomic.Bool
	)
	alice = openClientConfig(t, Config{Profile: profile, Servers: []string{px.URL},
		dropFrame: func(f wire.Frame) bool {
			drop := false
			if f.Type == wire.TypeMessageAck {
				once.Do(func() { drop = true; dropped.Store(true); go px.cut() })
			}
			return drop
		}})
	m := waitSent(t, alice, cmid)
	if !dropped.Load() {
		t.Fatal("no ack was dropped")
	}
	if m.Kind != parley.KindImage || m.Text != "the beach" || m.Media == nil || m.Media.ID == "" || m.Media.MIMEType != "image/jpeg" {
		t.Fatalf("sent %+v, media %+v", m.Message, m.Media)
	}
	eventually(t, 20*time.Second, func() error {
		msgs, err := bob.Messages(context.Background(), conv, MessageQuery{})
		if err != nil {
			return err
		}
		n := 0
		for _, got := range msgs {
			if got.ClientMessageID == cmid {
				n++
				if got.Media == nil || got.Media.ID != m.Media.ID || got.Kind != parley.KindImage || got.Status != StatusReceived {
					return fmt.Errorf("bob has %+v, media %+v", got.Message, got.Media)
				}
			}
		}
		if n != 1 {
			return fmt.Errorf("bob has the photo %d times", n)
		}
		return nil
	})
	hist, _, err := bob.History(ctxT(t, 10*time.Second), conv, parley.HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(hist); n != 1 || hist[0].Media == nil || hist[0].Media.ID != m.Media.ID {
		t.Fatalf("the server has %d messages: %+v", n, hist)
	}
	if _, err := jpeg.Decode(bytes.NewReader(download(t, bob, m.Media.ID))); err != nil {
		t.Fatalf("bob's download is not a JPEG: %v", err)
	}
	var thumb bytes.Buffer
	if _, err := bob.DownloadThumbnail(ctxT(t, 10*time.Second), m.Media.ID, &thumb); err != nil || thumb.Len() == 0 {
		t.Fatalf("thumbnail: %v, %d bytes", err, thumb.Len())
	}
	saved := filepath.Join(t.TempDir(), "saved.jpg")
	if _, err := bob.DownloadFile(ctxT(t, 10*time.Second), m.Media.ID, saved); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(saved); err != nil || fi.Size() != m.Media.Size {
		t.Fatalf("saved file: %v, %v", fi, err)
	}
}

// TestSendFileProgress: the progress function is told increasing values
// that end at the total, and the events carry the same progress.
func TestSendFileProgress(t *testing.T) {
	ts := startServer(t, server.Config{})
	alice, bob := openClient(t, "", ts.URL), openClient(t, "", ts.URL)
	conv := pair(t, alice, bob)
	data := mediatest.Random(2*uploadChunk + 1000)
	var (
		mu     sync.Mutex
		values []int64
		totals []int64
	)
	cmid, err := alice.SendFile(ctxT(t, 10*time.Second), conv, writeFile(t, "big.bin", data),
		WithProgress(func(sent, total int64) {
			mu.Lock()
			values, totals = append(values, sent), append(totals, total)
			mu.Unlock()
		}))
	if err != nil {
		t.Fatal(err)
	}
	waitSent(t, alice, cmid)
	mu.Lock()
	defer mu.Unlock()
	total := int64(len(data))
	if len(values) < 3 || values[len(values)-1] != total {
		t.Fatalf("progress %v, want a few values ending at %d", values, total)
	}
	for i := range values {
		if totals[i] != total || (i > 0 && values[i] <= values[i-1]) {
			t.Fatalf("progress %v of %v: not increasing, or not of %d", values, totals, total)
		}
	}
}

// TestSendFileRefused: content the server refuses at the last PATCH (a
// decompression bomb) fails the message with the server's reason; the
// kind asked for must fit the content.
func TestSendFileRefused(t *testing.T) {
	ts := startServer(t, server.Config{})
	alice, bob := openClient(t, "", ts.URL), openClient(t, "", ts.URL)
	conv := pair(t, alice, bob)

	bomb, err := alice.SendFile(ctxT(t, 10*time.Second), conv, writeFile(t, "bomb.png", mediatest.BombPNG(t)))
	if err != nil {
		t.Fatal(err)
	}
	m, err := alice.WaitSent(ctxT(t, 30*time.Second), bomb)
	if parley.ErrorCode(err) != parley.CodeInvalidArgument || m.Status != StatusFailed || !strings.Contains(m.Error, "pixels") {
		t.Fatalf("bomb: %v, %+v", err, m)
	}
	// A text file sent as a photo: uploaded, then refused by the send.
	notPhoto, err := alice.SendFile(ctxT(t, 10*time.Second), conv, writeFile(t, "notes.txt", []byte("just text\n")),
		WithKind(parley.KindImage))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := alice.WaitSent(ctxT(t, 30*time.Second), notPhoto); parley.ErrorCode(err) != parley.CodeInvalidArgument || m.Status != StatusFailed {
		t.Fatalf("text as a photo: %v, %+v", err, m)
	}
	// Discarding drops the profile's copy; as a file it goes.
	if err := alice.Discard(ctxT(t, 10*time.Second), notPhoto); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(alice.uploadPath(notPhoto)); !os.IsNotExist(err) {
		t.Fatalf("the discarded message's copy: %v", err)
	}
	asFile, err := alice.SendFile(ctxT(t, 10*time.Second), conv, writeFile(t, "notes.txt", []byte("just text\n")),
		WithCaption("see"), WithFileName("renamed.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if m := waitSent(t, alice, asFile); m.Kind != parley.KindFile || m.Media.Name != "renamed.txt" || m.Text != "see" {
		t.Fatalf("file %+v, media %+v", m.Message, m.Media)
	}
	// An empty file is complete as soon as its upload is created.
	empty, err := alice.SendFile(ctxT(t, 10*time.Second), conv, writeFile(t, "empty", nil))
	if err != nil {
		t.Fatal(err)
	}
	if m := waitSent(t, alice, empty); m.Kind != parley.KindFile || m.Media == nil || m.Media.Size != 0 {
		t.Fatalf("empty file %+v, media %+v", m.Message, m.Media)
	}

	for _, tc := range []struct {
		name string
		path string
		opts []FileOption
	}{
		{"a folder", t.TempDir(), nil},
		{"no file", filepath.Join(t.TempDir(), "missing"), nil},
		{"a text kind", writeFile(t, "x", []byte("x")), []FileOption{WithKind(parley.KindText)}},
		{"a caption not UTF-8", writeFile(t, "x", []byte("x")), []FileOption{WithCaption("\xff")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := alice.SendFile(ctxT(t, 10*time.Second), conv, tc.path, tc.opts...); parley.ErrorCode(err) != parley.CodeInvalidArgument {
				t.Fatalf("SendFile: %v, want invalid_argument", err)
			}
		})
	}
}

func TestGuessType(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		head       []byte
		want       string
		kind       parley.MessageKind
	}{
		{"jpeg", "x.bin", []byte("\xff\xd8\xff\xe0\x00\x10JFIF"), "image/jpeg", parley.KindImage},
		{"png named jpg", "x.jpg", []byte("\x89PNG\r\n\x1a\n"), "image/png", parley.KindImage},
		{"unknown by extension", "x.pdf", []byte{0, 1, 2, 3}, "application/pdf", parley.KindFile},
		{"unknown", "x", []byte{0, 1, 2, 3}, "application/octet-stream", parley.KindFile},
		{"text", "notes", []byte("hello"), "text/plain", parley.KindFile},
		{"empty", "empty", nil, "text/plain", parley.KindFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := guessType(tc.head, tc.file)
			if got != tc.want || kindOf(got) != tc.kind {
				t.Fatalf("guessType = %q (%s), want %q (%s)", got, kindOf(got), tc.want, tc.kind)
			}
		})
	}
}

func TestTusError(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		code   parley.Code
		msg    string
	}{
		{"refused", 400, "INVALID_ARGUMENT: the png image is 100000×100000 pixels\n", parley.CodeInvalidArgument, "the png image is 100000×100000 pixels"},
		{"too large", 413, "ERR_MAX_SIZE_EXCEEDED: maximum size exceeded\n", parley.CodePayloadTooLarge, "maximum size exceeded"},
		{"interrupted", 400, "ERR_UPLOAD_INTERRUPTED: upload has been interrupted\n", parley.CodeUnavailable, "upload has been interrupted"},
		{"problem", 429, `{"title":"Too Many Requests","status":429,"code":"rate_limited","detail":"slow down","retry_after_ms":1500}`, parley.CodeRateLimited, "slow down"},
		{"plain", 502, "bad gateway", parley.CodeUnavailable, "bad gateway"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tusError(&http.Response{StatusCode: tc.status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(tc.body))})
			if parley.ErrorCode(err) != tc.code || parley.ErrorMessage(err) != tc.msg {
				t.Fatalf("tusError = %v, want %s: %s", err, tc.code, tc.msg)
			}
		})
	}
}
