package conformance

import (
	"bytes"
	"context"
	"encoding/base64"
	"image"
	"image/jpeg"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/parley-chat/parley/internal/apns/apnstest"
	"github.com/parley-chat/parley/internal/mediatest"
	"github.com/parley-chat/parley/internal/server"
)

// Media (docs/protocol.md, "Media"): uploads in one request and with tus,
// what members download, and what nobody else can. Until media live in
// shared object storage, a cluster's tests pin one node: a file is where
// it was uploaded.

// rawResp is an answer read whole.
type rawResp struct {
	status int
	header http.Header
	body   []byte
}

// raw sends a request with the given headers and body to n.
func (n *node) raw(t *testing.T, method, path, token string, header map[string]string, body []byte) rawResp {
	t.Helper()
	nd := n.pick()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	target := path
	if !strings.HasPrefix(path, "http") {
		target = nd.URL + path
	}
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := nd.HTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return rawResp{res.StatusCode, res.Header, data}
}

// upload posts data as a one-request upload named name.
func (n *node) upload(t *testing.T, u user, name, contentType string, data []byte) rawResp {
	t.Helper()
	return n.raw(t, "POST", "/api/media?name="+url.QueryEscape(name), u.access, map[string]string{"Content-Type": contentType}, data)
}

// wantMedia decodes a 201/200 Media answer.
func wantMedia(t *testing.T, r rawResp, status int) obj {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, truncate(string(r.body), 300))
	}
	v, err := decodeJSON(r.body)
	o, ok := v.(obj)
	if err != nil || !ok {
		t.Fatalf("not a JSON object: %s", r.body)
	}
	checkMedia(t, "media", o)
	return o
}

// checkMedia checks the Media object's shape.
func checkMedia(t *testing.T, where string, m obj) {
	t.Helper()
	checkSnake(t, where, m)
	wantUUID(t, where, m, "id")
	wantString(t, where, m, "mime_type")
	wantInt(t, where, m, "size")
	wantString(t, where, m, "name")
	for _, k := range []string{"width", "height", "duration_ms", "thumbnail_url"} {
		if _, ok := m[k]; !ok {
			t.Errorf("%s: no %q (null where it does not apply)", where, k)
		}
	}
	if u := wantString(t, where, m, "url"); !strings.HasPrefix(u, "/media/") {
		t.Errorf("%s: url %q", where, u)
	}
}

func TestMediaUploadAndDownload(t *testing.T) {
	s := apnstest.New(t)
	n := startPushNode(t, s).at(0)
	us := n.users(t, "alice", "bob", "eve")
	alice, bob, eve := us[0], us[1], us[2]
	conv := wantString(t, "direct", n.createDirect(t, alice, bob), "id")
	tokB := newAPNsToken()
	n.registerIOS(t, bob, tokB)

	photo := mediatest.ExifJPEG(t)
	if !bytes.Contains(photo, []byte("Exif")) {
		t.Fatal("the test photo has no EXIF")
	}
	m := wantMedia(t, n.upload(t, alice, "holiday.jpg", "image/png", photo), http.StatusCreated)
	if m["mime_type"] != "image/jpeg" || wantInt(t, "media", m, "width") != 64 || wantInt(t, "media", m, "height") != 48 || m["name"] != "holiday.jpg" {
		t.Errorf("photo %v: want image/jpeg (the content, not the claim), 64×48", m)
	}
	if m["thumbnail_url"] == nil {
		t.Error("a photo without a thumbnail")
	}

	// The download: no token, the signature is the permission.
	d := n.raw(t, "GET", m["url"].(string), "", nil, nil)
	if d.status != http.StatusOK || d.header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("download %d %q", d.status, d.header.Get("Content-Type"))
	}
	if bytes.Contains(d.body, []byte("Exif")) || bytes.Contains(d.body, []byte("II*\x00")) {
		t.Error("the downloaded photo still carries its EXIF (and its location)")
	}
	if _, err := jpeg.Decode(bytes.NewReader(d.body)); err != nil {
		t.Errorf("the downloaded photo is not a JPEG: %v", err)
	}
	if int64(len(d.body)) != wantInt(t, "media", m, "size") {
		t.Errorf("downloaded %d bytes, size says %d", len(d.body), wantInt(t, "media", m, "size"))
	}
	for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "Accept-Ranges": "bytes"} {
		if got := d.header.Get(k); got != v {
			t.Errorf("%s %q, want %q", k, got, v)
		}
	}
	if cd := d.header.Get("Content-Disposition"); !strings.HasPrefix(cd, "inline") {
		t.Errorf("a JPEG's Content-Disposition %q, want inline", cd)
	}
	// Range (video seeking) and revalidation.
	part := n.raw(t, "GET", m["url"].(string), "", map[string]string{"Range": "bytes=10-19"}, nil)
	if part.status != http.StatusPartialContent || !bytes.Equal(part.body, d.body[10:20]) {
		t.Errorf("range: %d %q", part.status, part.body)
	}
	same := n.raw(t, "GET", m["url"].(string), "", map[string]string{"If-None-Match": d.header.Get("ETag")}, nil)
	if same.status != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", same.status)
	}
	thumb := n.raw(t, "GET", m["thumbnail_url"].(string), "", nil, nil)
	if thumb.status != http.StatusOK {
		t.Fatalf("thumbnail: %d", thumb.status)
	}
	if cfg, _, err := image.DecodeConfig(bytes.NewReader(thumb.body)); err != nil || max(cfg.Width, cfg.Height) > 320 {
		t.Errorf("thumbnail %v, %v", cfg, err)
	}
	// An altered or foreign signature is 403.
	u, _ := url.Parse(m["url"].(string))
	q := u.Query()
	q.Set("exp", strconv.FormatInt(mustInt(t, q.Get("exp"))+3600, 10))
	if r := n.raw(t, "GET", u.Path+"?"+q.Encode(), "", nil, nil); r.status != http.StatusForbidden {
		t.Errorf("a lengthened expiry: %d, want 403", r.status)
	}
	if r := n.raw(t, "GET", u.Path+"/thumbnail?"+u.RawQuery, "", nil, nil); r.status != http.StatusForbidden {
		t.Errorf("the photo's signature on its thumbnail: %d, want 403", r.status)
	}

	// Only the uploader sees an upload not sent yet.
	id := m["id"].(string)
	n.do(t, "GET", "/api/media/"+id, alice.access, nil).want(t, http.StatusOK)
	n.do(t, "GET", "/api/media/"+id, bob.access, nil).wantProblem(t, http.StatusNotFound, "not_found")

	// Sent in a message: the ack and message.new carry it; bob may read
	// it; eve may not; the push says what it is.
	ws, _ := n.connect(t, alice, "alice")
	bws, _ := n.connect(t, bob, "bob")
	bws.request("app.state", "bg", obj{"state": "background"})
	bws.reply("bg")
	ws.request("message.send", "s1", obj{"conversation_id": conv, "client_message_id": newCMID(), "kind": "video", "text": "", "media_id": id})
	wantError(t, ws.reply("s1"), "s1", "invalid_argument")
	ws.request("message.send", "s2", obj{"conversation_id": conv, "client_message_id": newCMID(), "kind": "image", "text": "the beach", "media_id": id})
	ack := ws.reply("s2")
	if ack.typ != "message.ack" {
		t.Fatalf("send: %v", ack)
	}
	sent := wantObject(t, "ack", wantObject(t, "ack", ack.payload, "message"), "media")
	checkMedia(t, "ack media", sent)
	f, _ := bws.event("message.new", nil)
	got := wantObject(t, "message.new", wantObject(t, "message.new", f.payload, "message"), "media")
	checkMedia(t, "message.new media", got)
	if got["id"] != id {
		t.Errorf("message.new media %v", got)
	}
	if r := n.raw(t, "GET", got["url"].(string), "", nil, nil); r.status != http.StatusOK || !bytes.Equal(r.body, d.body) {
		t.Errorf("bob's download: %d", r.status)
	}
	fresh := n.do(t, "GET", "/api/media/"+id, bob.access, nil).want(t, http.StatusOK)
	checkMedia(t, "GET media", fresh)
	n.do(t, "GET", "/api/media/"+id, eve.access, nil).wantProblem(t, http.StatusNotFound, "not_found")
	hist, _ := n.history(t, bob, conv, "")
	if len(hist) != 1 || hist[0]["media"] == nil {
		t.Fatalf("history %v", hist)
	}
	if p := waitPushes(t, s, tokB, 1)[0]; p.Payload.APS.Alert.Body != "Photo: the beach" {
		t.Errorf("push body %q, want \"Photo: the beach\"", p.Payload.APS.Alert.Body)
	}
	// Attached once.
	ws.request("message.send", "s3", obj{"conversation_id": conv, "client_message_id": newCMID(), "kind": "image", "text": "", "media_id": id})
	wantError(t, ws.reply("s3"), "s3", "invalid_argument")
	// Another's upload cannot be attached.
	other := wantMedia(t, n.upload(t, eve, "x.jpg", "image/jpeg", photo), http.StatusCreated)
	ws.request("message.send", "s4", obj{"conversation_id": conv, "client_message_id": newCMID(), "kind": "image", "text": "", "media_id": other["id"]})
	wantError(t, ws.reply("s4"), "s4", "invalid_argument")
	noProblems(t, s)
}

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestMediaServedInert: what could run in a browser is only ever
// downloaded, a bomb is refused undecoded, a name cannot reach the disk.
func TestMediaServedInert(t *testing.T) {
	n := startNode(t).at(0)
	alice := n.users(t, "alice")[0]

	html := wantMedia(t, n.upload(t, alice, "cat.jpg", "image/jpeg", []byte("<!doctype html><html><script>alert(document.cookie)</script></html>")), http.StatusCreated)
	svg := wantMedia(t, n.upload(t, alice, "logo.svg", "image/svg+xml", []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`)), http.StatusCreated)
	for _, m := range []obj{html, svg} {
		if m["mime_type"] == "image/jpeg" || m["thumbnail_url"] != nil || m["width"] != nil {
			t.Errorf("%v taken for an image", m)
		}
		d := n.raw(t, "GET", m["url"].(string), "", nil, nil)
		if d.status != http.StatusOK || !strings.HasPrefix(d.header.Get("Content-Disposition"), "attachment") ||
			d.header.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(d.header.Get("Content-Security-Policy"), "sandbox") {
			t.Errorf("%v served %d with %v", m["name"], d.status, d.header)
		}
	}
	// An image message cannot carry them.
	conv := wantString(t, "direct", n.createDirect(t, alice, n.register(t, "bob")), "id")
	r := n.do(t, "POST", "/api/conversations/"+conv+"/messages", alice.access, obj{"client_message_id": newCMID(), "kind": "image", "text": "", "media_id": html["id"]})
	r.wantProblem(t, http.StatusBadRequest, "invalid_argument")
	n.do(t, "POST", "/api/conversations/"+conv+"/messages", alice.access, obj{"client_message_id": newCMID(), "kind": "file", "text": "", "media_id": html["id"]}).want(t, http.StatusCreated)

	bomb := n.upload(t, alice, "bomb.png", "image/png", mediatest.BombPNG(t))
	if bomb.status != http.StatusBadRequest || !strings.Contains(string(bomb.body), "invalid_argument") {
		t.Errorf("decompression bomb: %d %s", bomb.status, bomb.body)
	}

	// A name that tries to leave the folder is only a name.
	data := n.set.Nodes[0].Config.DataDir
	trav := wantMedia(t, n.upload(t, alice, "../../../../tmp/evil.txt", "text/plain", []byte("hello")), http.StatusCreated)
	if trav["name"] != "evil.txt" {
		t.Errorf("name %q, want evil.txt", trav["name"])
	}
	if _, err := os.Stat(filepath.Join(data, "..", "evil.txt")); err == nil {
		t.Error("a file appeared outside the data folder")
	}
	// An empty name is "file"; no body is an empty file.
	if m := wantMedia(t, n.upload(t, alice, "", "", nil), http.StatusCreated); m["name"] != "file" || wantInt(t, "empty", m, "size") != 0 {
		t.Errorf("empty upload %v", m)
	}
	if r := n.raw(t, "POST", "/api/media?name=x", "", nil, []byte("x")); r.status != http.StatusUnauthorized {
		t.Errorf("upload without a token: %d", r.status)
	}
}

// TestMediaTooLarge: past --max-upload-bytes is 413, early.
func TestMediaTooLarge(t *testing.T) {
	n := startNode(t, func(c *server.Config) { c.Media.MaxUploadBytes = 1000 }).at(0)
	alice := n.users(t, "alice")[0]
	if r := n.upload(t, alice, "big.bin", "application/octet-stream", make([]byte, 1001)); r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("one request: %d, want 413", r.status)
	}
	r := n.raw(t, "POST", "/api/uploads", alice.access, map[string]string{"Tus-Resumable": "1.0.0", "Upload-Length": "1001"}, nil)
	if r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("tus creation: %d, want 413", r.status)
	}
}

// tusMeta encodes Upload-Metadata.
func tusMeta(kv ...string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, kv[i]+" "+base64.StdEncoding.EncodeToString([]byte(kv[i+1])))
	}
	return strings.Join(parts, ",")
}

// TestMediaResumableUpload: a tus upload cut in the middle resumes from
// HEAD's offset, and the stored file is byte-identical.
func TestMediaResumableUpload(t *testing.T) {
	n := startNode(t).at(0)
	us := n.users(t, "alice", "eve")
	alice, eve := us[0], us[1]
	data := mediatest.Random(300_000)
	tus := map[string]string{"Tus-Resumable": "1.0.0"}
	with := func(kv ...string) map[string]string {
		h := map[string]string{"Tus-Resumable": "1.0.0"}
		for i := 0; i+1 < len(kv); i += 2 {
			h[kv[i]] = kv[i+1]
		}
		return h
	}
	created := n.raw(t, "POST", "/api/uploads", alice.access, with("Upload-Length", strconv.Itoa(len(data)),
		"Upload-Metadata", tusMeta("filename", "report.bin", "filetype", "application/pdf")), nil)
	if created.status != http.StatusCreated {
		t.Fatalf("create: %d %s", created.status, created.body)
	}
	loc := created.header.Get("Location")
	id := loc[strings.LastIndex(loc, "/")+1:]
	path := "/api/uploads/" + id
	// The first half arrives, then the connection breaks.
	half := 120_000
	r := n.raw(t, "PATCH", path, alice.access, with("Upload-Offset", "0", "Content-Type", "application/offset+octet-stream"), data[:half])
	if r.status != http.StatusNoContent || r.header.Get("Upload-Offset") != strconv.Itoa(half) {
		t.Fatalf("first PATCH: %d %v", r.status, r.header)
	}
	// Nobody else may look at it, continue it or end it.
	for _, m := range []string{"HEAD", "PATCH", "DELETE"} {
		if r := n.raw(t, m, path, eve.access, with("Upload-Offset", strconv.Itoa(half), "Content-Type", "application/offset+octet-stream"), []byte("x")); r.status != http.StatusNotFound {
			t.Errorf("eve's %s: %d, want 404", m, r.status)
		}
	}
	head := n.raw(t, "HEAD", path, alice.access, tus, nil)
	off, _ := strconv.Atoi(head.header.Get("Upload-Offset"))
	if head.status != http.StatusOK || off != half {
		t.Fatalf("HEAD: %d offset %d, want %d", head.status, off, half)
	}
	// A PATCH at the wrong offset is refused; at HEAD's, it completes.
	if r := n.raw(t, "PATCH", path, alice.access, with("Upload-Offset", "5", "Content-Type", "application/offset+octet-stream"), data[5:]); r.status != http.StatusConflict {
		t.Errorf("PATCH at a wrong offset: %d, want 409", r.status)
	}
	r = n.raw(t, "PATCH", path, alice.access, with("Upload-Offset", strconv.Itoa(off), "Content-Type", "application/offset+octet-stream"), data[off:])
	if r.status != http.StatusNoContent {
		t.Fatalf("last PATCH: %d %s", r.status, r.body)
	}
	m := n.do(t, "GET", "/api/media/"+id, alice.access, nil).want(t, http.StatusOK)
	checkMedia(t, "tus media", m)
	if m["name"] != "report.bin" || m["mime_type"] != "application/octet-stream" || wantInt(t, "tus media", m, "size") != int64(len(data)) {
		t.Errorf("media %v: the claimed PDF is octet-stream, %d bytes", m, len(data))
	}
	d := n.raw(t, "GET", m["url"].(string), "", nil, nil)
	if d.status != http.StatusOK || !bytes.Equal(d.body, data) {
		t.Fatalf("download: %d, %d bytes, identical %t", d.status, len(d.body), bytes.Equal(d.body, data))
	}

	// Creation with upload, then termination of another.
	small := []byte("small file in one go")
	r = n.raw(t, "POST", "/api/uploads", alice.access, with("Upload-Length", strconv.Itoa(len(small)),
		"Upload-Metadata", tusMeta("filename", "note.txt"), "Content-Type", "application/offset+octet-stream"), small)
	if r.status != http.StatusCreated || r.header.Get("Upload-Offset") != strconv.Itoa(len(small)) {
		t.Fatalf("creation with upload: %d %v", r.status, r.header)
	}
	one := r.header.Get("Location")
	n.do(t, "GET", "/api/media/"+one[strings.LastIndex(one, "/")+1:], alice.access, nil).want(t, http.StatusOK)
	r = n.raw(t, "POST", "/api/uploads", alice.access, with("Upload-Length", "10"), nil)
	gone := r.header.Get("Location")
	goneID := gone[strings.LastIndex(gone, "/")+1:]
	if r := n.raw(t, "DELETE", "/api/uploads/"+goneID, alice.access, tus, nil); r.status != http.StatusNoContent {
		t.Errorf("termination: %d", r.status)
	}
	n.do(t, "GET", "/api/media/"+goneID, alice.access, nil).wantProblem(t, http.StatusNotFound, "not_found")
	if r := n.raw(t, "POST", "/api/uploads", "", with("Upload-Length", "10"), nil); r.status != http.StatusUnauthorized {
		t.Errorf("tus without a token: %d", r.status)
	}
}

// TestMediaVideo: a video gets its duration and a poster frame from
// ffmpeg, and a video message carries it.
func TestMediaVideo(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatalf("ffmpeg is needed for the video tests (test.sh installs it): %v", err)
	}
	dir := t.TempDir()
	clip := filepath.Join(dir, "clip.mp4")
	out, err := exec.Command(ffmpeg, "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=2:size=320x240:rate=10",
		"-pix_fmt", "yuv420p", "-c:v", "libx264", "-y", clip).CombinedOutput()
	if err != nil {
		// Not every ffmpeg build has x264: MPEG-4 part 2 is in all.
		out, err = exec.Command(ffmpeg, "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=2:size=320x240:rate=10",
			"-c:v", "mpeg4", "-y", clip).CombinedOutput()
	}
	if err != nil {
		t.Fatalf("make a test video: %v: %s", err, out)
	}
	data, err := os.ReadFile(clip)
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t).at(0)
	us := n.users(t, "alice", "bob")
	alice, bob := us[0], us[1]
	conv := wantString(t, "direct", n.createDirect(t, alice, bob), "id")
	m := wantMedia(t, n.upload(t, alice, "clip.mp4", "video/mp4", data), http.StatusCreated)
	if m["mime_type"] != "video/mp4" || m["thumbnail_url"] == nil {
		t.Fatalf("video %v: want video/mp4 with a poster", m)
	}
	if d := wantInt(t, "video", m, "duration_ms"); d < 1500 || d > 2500 {
		t.Errorf("duration %d ms, want about 2000", d)
	}
	if r := n.raw(t, "GET", m["thumbnail_url"].(string), "", nil, nil); r.status != http.StatusOK || r.header.Get("Content-Type") != "image/jpeg" {
		t.Errorf("poster: %d %s", r.status, r.header.Get("Content-Type"))
	}
	// Members get a copy without the container's metadata (where it was
	// filmed), the same size on the wire as the Media says.
	whole := n.raw(t, "GET", m["url"].(string), "", nil, nil)
	if whole.status != http.StatusOK || int64(len(whole.body)) != wantInt(t, "video", m, "size") {
		t.Fatalf("video download: %d, %d bytes", whole.status, len(whole.body))
	}
	v := n.raw(t, "GET", m["url"].(string), "", map[string]string{"Range": "bytes=0-99"}, nil)
	if v.status != http.StatusPartialContent || !bytes.Equal(v.body, whole.body[:100]) || !strings.HasPrefix(v.header.Get("Content-Disposition"), "inline") {
		t.Errorf("video range: %d %v", v.status, v.header)
	}
	sent := n.do(t, "POST", "/api/conversations/"+conv+"/messages", alice.access,
		obj{"client_message_id": newCMID(), "kind": "video", "text": "", "media_id": m["id"]}).want(t, http.StatusCreated)
	if sm := wantObject(t, "sent", sent, "media"); sm["id"] != m["id"] {
		t.Errorf("sent media %v", sm)
	}
}

// TestMediaUploadRateLimit: starting uploads is limited per user.
func TestMediaUploadRateLimit(t *testing.T) {
	n := startNode(t, func(c *server.Config) { c.Limits.UploadBurst, c.Limits.UploadPerSecond = 2, 0.01 }).at(0)
	us := n.users(t, "alice", "bob")
	alice, bob := us[0], us[1]
	for range 2 {
		wantMedia(t, n.upload(t, alice, "a.txt", "text/plain", []byte("a")), http.StatusCreated)
	}
	r := n.upload(t, alice, "a.txt", "text/plain", []byte("a"))
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), "retry_after_ms") {
		t.Errorf("third upload: %d %v %s", r.status, r.header, r.body)
	}
	tus := n.raw(t, "POST", "/api/uploads", alice.access, map[string]string{"Tus-Resumable": "1.0.0", "Upload-Length": "1"}, nil)
	if tus.status != http.StatusTooManyRequests {
		t.Errorf("a tus upload over the limit: %d", tus.status)
	}
	// Another user has a budget of their own.
	wantMedia(t, n.upload(t, bob, "b.txt", "text/plain", []byte("b")), http.StatusCreated)
}
