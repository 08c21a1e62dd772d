// Package blobtest is the conformance suite of blob.Store: every
// implementation must pass Run, so that the server behaves the same on a
// folder and on S3.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/blob"
)

// Run runs the suite, one subtest per behaviour. newStore returns the
// store for one subtest: empty, and cleaned up by itself when the subtest
// ends.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s blob.Store)
	}{
		{"PutOpen", testPutOpen},
		{"Stat", testStat},
		{"NotFound", testNotFound},
		{"NestedKeys", testNestedKeys},
		{"Seek", testSeek},
		{"ServeContentRanges", testServeContentRanges},
		{"Overwrite", testOverwrite},
		{"Delete", testDelete},
		{"Empty", testEmpty},
		{"UnknownSize", testUnknownSize},
		{"SizeMismatch", testSizeMismatch},
		{"ReaderFails", testReaderFails},
		{"CanceledContext", testCanceledContext},
		{"InvalidKeys", testInvalidKeys},
		{"LongestKey", testLongestKey},
		{"ConcurrentPuts", testConcurrentPuts},
		{"ConcurrentPutsOneKey", testConcurrentPutsOneKey},
		{"Large", testLarge},
		{"ReplacedWhileOpen", testReplacedWhileOpen},
		{"ReadsDuringReplaces", testReadsDuringReplaces},
		{"PutsDuringDeletes", testPutsDuringDeletes},
		{"Closed", testClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

// ctx returns a context for one subtest, bounded so that a hung store
// fails the test instead of the run.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// put stores data under key, failing the test on error.
func put(t *testing.T, s blob.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(ctx(t), key, bytes.NewReader(data), int64(len(data)), "application/octet-stream"); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(data), err)
	}
}

// get opens key and reads it whole, failing the test on error.
func get(t *testing.T, s blob.Store, key string) []byte {
	t.Helper()
	obj, err := s.Open(ctx(t), key)
	if err != nil {
		t.Fatalf("Open(%q): %v", key, err)
	}
	defer obj.Close()
	data, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	if int64(len(data)) != obj.Size() {
		t.Fatalf("read %d bytes of %q, Size says %d", len(data), key, obj.Size())
	}
	return data
}

// wantNotFound fails the test unless key has no blob.
func wantNotFound(t *testing.T, s blob.Store, key string) {
	t.Helper()
	obj, err := s.Open(ctx(t), key)
	if err == nil {
		obj.Close()
		t.Fatalf("Open(%q) found a blob, want ErrNotFound", key)
	}
	if !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Open(%q) = %v, want ErrNotFound", key, err)
	}
}

// randomBytes returns n bytes that depend on seed only.
func randomBytes(seed uint64, n int) []byte {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

func testPutOpen(t *testing.T, s blob.Store) {
	data := []byte("hello, parley")
	before := time.Now()
	put(t, s, "media/a", data)
	obj, err := s.Open(ctx(t), "media/a")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if obj.Size() != int64(len(data)) {
		t.Errorf("Size = %d, want %d", obj.Size(), len(data))
	}
	// S3 keeps whole seconds; clocks are the same machine's.
	if mod := obj.ModTime(); mod.Before(before.Add(-2*time.Second)) || mod.After(time.Now().Add(2*time.Second)) {
		t.Errorf("ModTime = %v, want about %v", mod, before)
	}
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %q, %v; want %q", got, err, data)
	}
	if n, err := obj.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Errorf("Read at the end = %d, %v; want 0, EOF", n, err)
	}
}

func testStat(t *testing.T, s blob.Store) {
	put(t, s, "media/s", []byte("12345"))
	info, err := s.Stat(ctx(t), "media/s")
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != 5 || info.ModTime.IsZero() {
		t.Errorf("Stat = %+v, want size 5 and a time", info)
	}
	if _, err := s.Stat(ctx(t), "media/none"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat of a missing blob = %v, want ErrNotFound", err)
	}
}

func testNotFound(t *testing.T, s blob.Store) {
	wantNotFound(t, s, "media/none")
	put(t, s, "media/x", []byte("x"))
	for _, key := range []string{"media/x/thumb", "media", "media/x.", "media/xx", "x"} {
		t.Run(key, func(t *testing.T) { wantNotFound(t, s, key) })
	}
}

func testNestedKeys(t *testing.T, s blob.Store) {
	// "media/<id>" and "media/<id>/thumb" are both blobs.
	put(t, s, "media/n", []byte("original"))
	put(t, s, "media/n/thumb", []byte("thumbnail"))
	put(t, s, "media/n/a/b/c", []byte("deep"))
	if got := get(t, s, "media/n"); string(got) != "original" {
		t.Errorf("media/n = %q", got)
	}
	if got := get(t, s, "media/n/thumb"); string(got) != "thumbnail" {
		t.Errorf("media/n/thumb = %q", got)
	}
	if err := s.Delete(ctx(t), "media/n/a/b/c"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx(t), "media/n"); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, s, "media/n")
	if got := get(t, s, "media/n/thumb"); string(got) != "thumbnail" {
		t.Errorf("after deleting media/n, media/n/thumb = %q", got)
	}
	put(t, s, "media/n", []byte("again"))
	if err := s.Delete(ctx(t), "media/n/thumb"); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, "media/n"); string(got) != "again" {
		t.Errorf("after deleting media/n/thumb, media/n = %q", got)
	}
}

func testSeek(t *testing.T, s blob.Store) {
	data := []byte("0123456789abcdefghij")
	put(t, s, "media/seek", data)
	obj, err := s.Open(ctx(t), "media/seek")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	read := func(n int) string {
		t.Helper()
		buf := make([]byte, n)
		m, err := io.ReadFull(obj, buf)
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			t.Fatalf("read: %v", err)
		}
		return string(buf[:m])
	}
	seek := func(off int64, whence int, want int64) {
		t.Helper()
		got, err := obj.Seek(off, whence)
		if err != nil || got != want {
			t.Fatalf("Seek(%d, %d) = %d, %v; want %d", off, whence, got, err, want)
		}
	}
	seek(0, io.SeekEnd, 20) // how http.ServeContent finds the size
	seek(0, io.SeekStart, 0)
	if got := read(3); got != "012" {
		t.Errorf("read %q, want 012", got)
	}
	seek(0, io.SeekCurrent, 3)
	if got := read(2); got != "34" {
		t.Errorf("read %q, want 34 (without a seek)", got)
	}
	seek(10, io.SeekStart, 10)
	if got := read(4); got != "abcd" {
		t.Errorf("after Seek(10) read %q, want abcd", got)
	}
	seek(-3, io.SeekCurrent, 11)
	if got := read(2); got != "bc" {
		t.Errorf("after Seek(-3, current) read %q, want bc", got)
	}
	seek(-2, io.SeekEnd, 18)
	if got := read(10); got != "ij" {
		t.Errorf("after Seek(-2, end) read %q, want ij", got)
	}
	seek(5, io.SeekStart, 5)
	if got := read(100); got != string(data[5:]) {
		t.Errorf("read to the end %q", got)
	}
	seek(30, io.SeekStart, 30)
	if n, err := obj.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Errorf("Read past the end = %d, %v; want 0, EOF", n, err)
	}
	if _, err := obj.Seek(-1, io.SeekStart); err == nil {
		t.Error("Seek(-1) succeeded")
	}
	seek(0, io.SeekStart, 0)
	if got := read(20); got != string(data) {
		t.Errorf("after seeking back, read %q", got)
	}
}

func testServeContentRanges(t *testing.T, s blob.Store) {
	data := []byte("0123456789abcdefghij")
	put(t, s, "media/range", data)
	tests := []struct {
		rangeHeader string
		status      int
		body        string // for a single range, or a part of the multipart body
	}{
		{"", http.StatusOK, string(data)},
		{"bytes=2-5", http.StatusPartialContent, "2345"},
		{"bytes=15-", http.StatusPartialContent, "fghij"},
		{"bytes=-3", http.StatusPartialContent, "hij"},
		{"bytes=0-1,10-12", http.StatusPartialContent, "abc"},
		{"bytes=30-40", http.StatusRequestedRangeNotSatisfiable, ""},
	}
	for _, tt := range tests {
		t.Run(tt.rangeHeader, func(t *testing.T) {
			obj, err := s.Open(ctx(t), "media/range")
			if err != nil {
				t.Fatal(err)
			}
			defer obj.Close()
			req := httptest.NewRequest("GET", "/media/range", nil)
			if tt.rangeHeader != "" {
				req.Header.Set("Range", tt.rangeHeader)
			}
			rec := httptest.NewRecorder()
			rec.Header().Set("Content-Type", "application/octet-stream")
			http.ServeContent(rec, req, "", obj.ModTime(), obj)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d", rec.Code, tt.status)
			}
			body := rec.Body.String()
			if strings.Contains(tt.rangeHeader, ",") {
				if !strings.Contains(body, "01") || !strings.Contains(body, tt.body) {
					t.Errorf("multipart body %q lacks 01 and %q", body, tt.body)
				}
			} else if tt.status != http.StatusRequestedRangeNotSatisfiable && body != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
		})
	}
}

func testOverwrite(t *testing.T, s blob.Store) {
	put(t, s, "media/o", []byte("first version, the longer one"))
	put(t, s, "media/o", []byte("second"))
	if got := get(t, s, "media/o"); string(got) != "second" {
		t.Errorf("got %q, want second", got)
	}
	put(t, s, "media/o", []byte("third, longer than the second"))
	if got := get(t, s, "media/o"); string(got) != "third, longer than the second" {
		t.Errorf("got %q", got)
	}
}

func testDelete(t *testing.T, s blob.Store) {
	put(t, s, "media/d", []byte("doomed"))
	put(t, s, "media/kept", []byte("kept"))
	if err := s.Delete(ctx(t), "media/d"); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, s, "media/d")
	if err := s.Delete(ctx(t), "media/d"); err != nil {
		t.Errorf("deleting a deleted blob: %v", err)
	}
	if err := s.Delete(ctx(t), "media/never/was"); err != nil {
		t.Errorf("deleting a blob that never was: %v", err)
	}
	if got := get(t, s, "media/kept"); string(got) != "kept" {
		t.Errorf("media/kept = %q", got)
	}
	put(t, s, "media/d", []byte("reborn"))
	if got := get(t, s, "media/d"); string(got) != "reborn" {
		t.Errorf("after a new Put, got %q", got)
	}
}

func testEmpty(t *testing.T, s blob.Store) {
	put(t, s, "media/empty", nil)
	obj, err := s.Open(ctx(t), "media/empty")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if obj.Size() != 0 {
		t.Errorf("Size = %d", obj.Size())
	}
	if n, err := obj.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Errorf("Read = %d, %v; want 0, EOF", n, err)
	}
	if err := s.Put(ctx(t), "media/empty2", strings.NewReader(""), -1, ""); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, "media/empty2"); len(got) != 0 {
		t.Errorf("got %d bytes", len(got))
	}
}

// onlyReader hides every method but Read, as a network body would.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func testUnknownSize(t *testing.T, s blob.Store) {
	data := randomBytes(1, 100_000)
	if err := s.Put(ctx(t), "media/u", onlyReader{bytes.NewReader(data)}, -1, "image/jpeg"); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, "media/u"); !bytes.Equal(got, data) {
		t.Errorf("got %d bytes, want the %d put", len(got), len(data))
	}
}

func testSizeMismatch(t *testing.T, s blob.Store) {
	put(t, s, "media/m", []byte("old"))
	for _, tt := range []struct {
		name string
		data string
		size int64
	}{
		{"shorter", "abcde", 10},
		{"longer", "abcde", 3},
		{"none", "", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Put(ctx(t), "media/m", onlyReader{strings.NewReader(tt.data)}, tt.size, "")
			if err == nil {
				t.Fatalf("Put of %d bytes with size %d succeeded", len(tt.data), tt.size)
			}
			if got := get(t, s, "media/m"); string(got) != "old" {
				t.Errorf("after a failed Put, got %q, want the old blob", got)
			}
			err = s.Put(ctx(t), "media/fresh-"+tt.name, onlyReader{strings.NewReader(tt.data)}, tt.size, "")
			if err == nil {
				t.Fatal("Put succeeded")
			}
			wantNotFound(t, s, "media/fresh-"+tt.name)
		})
	}
}

// failingReader yields n bytes, then fails.
type failingReader struct{ n int }

var errReader = errors.New("reader failed on purpose")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errReader
	}
	n := min(len(p), f.n)
	for i := range p[:n] {
		p[i] = 'z'
	}
	f.n -= n
	return n, nil
}

func testReaderFails(t *testing.T, s blob.Store) {
	put(t, s, "media/f", []byte("old"))
	// A small blob, and one past a part of a multipart upload.
	for _, n := range []int{10, 9 << 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			err := s.Put(ctx(t), "media/f", &failingReader{n: n}, -1, "")
			if !errors.Is(err, errReader) {
				t.Fatalf("Put = %v, want the reader's error", err)
			}
			if got := get(t, s, "media/f"); string(got) != "old" {
				t.Errorf("after a failed Put, got %d bytes, want the old blob", len(got))
			}
			err = s.Put(ctx(t), "media/f-new", &failingReader{n: n}, int64(n+10), "")
			if !errors.Is(err, errReader) {
				t.Fatalf("Put = %v, want the reader's error", err)
			}
			wantNotFound(t, s, "media/f-new")
		})
	}
}

func testCanceledContext(t *testing.T, s blob.Store) {
	c, cancel := context.WithCancel(ctx(t))
	cancel()
	if err := s.Put(c, "media/c", strings.NewReader("data"), 4, ""); err == nil {
		t.Fatal("Put with a canceled context succeeded")
	}
	wantNotFound(t, s, "media/c")
}

// InvalidKeys are keys that every Store refuses.
var InvalidKeys = []string{
	"",
	"/media/a",
	"media/a/",
	"media//a",
	".",
	"..",
	"../a",
	"media/../../etc/passwd",
	"media/./a",
	"media/..",
	"./media",
	`media\a`,
	`..\..\a`,
	"media/a b",
	"media/a@",
	"media/é",
	"media/a\x00b",
	"media/a\nb",
	"media/%2e%2e",
	"media/a?b",
	"media/a#b",
	"media/a:b",
	"media/~a",
	strings.Repeat("a", blob.MaxKeyLen+1),
}

func testInvalidKeys(t *testing.T, s blob.Store) {
	for _, key := range InvalidKeys {
		t.Run(fmt.Sprintf("%q", key), func(t *testing.T) {
			c := ctx(t)
			if err := s.Put(c, key, strings.NewReader("x"), 1, ""); !errors.Is(err, blob.ErrInvalidKey) {
				t.Errorf("Put = %v, want ErrInvalidKey", err)
			}
			if obj, err := s.Open(c, key); !errors.Is(err, blob.ErrInvalidKey) {
				if err == nil {
					obj.Close()
				}
				t.Errorf("Open = %v, want ErrInvalidKey", err)
			}
			if _, err := s.Stat(c, key); !errors.Is(err, blob.ErrInvalidKey) {
				t.Errorf("Stat = %v, want ErrInvalidKey", err)
			}
			if err := s.Delete(c, key); !errors.Is(err, blob.ErrInvalidKey) {
				t.Errorf("Delete = %v, want ErrInvalidKey", err)
			}
		})
	}
}

func testLongestKey(t *testing.T, s blob.Store) {
	key := "media/" + strings.Repeat("k", blob.MaxKeyLen-len("media/"))
	put(t, s, key, []byte("long"))
	if got := get(t, s, key); string(got) != "long" {
		t.Errorf("got %q", got)
	}
	key = "Media_2/a.b-c/.hidden/x.y"
	put(t, s, key, []byte("odd"))
	if got := get(t, s, key); string(got) != "odd" {
		t.Errorf("got %q", got)
	}
}

func testConcurrentPuts(t *testing.T, s blob.Store) {
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			data := randomBytes(uint64(i), 50_000+i)
			key := fmt.Sprintf("media/c%d", i)
			if err := s.Put(ctx(t), key, bytes.NewReader(data), int64(len(data)), ""); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range n {
		if got := get(t, s, fmt.Sprintf("media/c%d", i)); !bytes.Equal(got, randomBytes(uint64(i), 50_000+i)) {
			t.Errorf("media/c%d holds %d other bytes", i, len(got))
		}
	}
}

func testConcurrentPutsOneKey(t *testing.T, s blob.Store) {
	const n = 8
	versions := make([][]byte, n)
	for i := range versions {
		versions[i] = randomBytes(uint64(100+i), 100_000+1000*i)
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := s.Put(ctx(t), "media/one", bytes.NewReader(versions[i]), int64(len(versions[i])), ""); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got := get(t, s, "media/one")
	for _, v := range versions {
		if bytes.Equal(got, v) {
			return
		}
	}
	t.Errorf("the blob (%d bytes) is none of the versions put", len(got))
}

func testLarge(t *testing.T, s blob.Store) {
	// 20 MB: several parts of a multipart upload, with a known size and
	// with an unknown one.
	data := randomBytes(7, 20_000_000)
	want := sha256.Sum256(data)
	if err := s.Put(ctx(t), "media/large", bytes.NewReader(data), int64(len(data)), "video/mp4"); err != nil {
		t.Fatal(err)
	}
	checkLarge := func(key string, want [32]byte, size int) {
		t.Helper()
		obj, err := s.Open(ctx(t), key)
		if err != nil {
			t.Fatal(err)
		}
		defer obj.Close()
		if obj.Size() != int64(size) {
			t.Errorf("Size = %d, want %d", obj.Size(), size)
		}
		h := sha256.New()
		if n, err := io.Copy(h, obj); err != nil || n != int64(size) {
			t.Fatalf("read %d bytes, %v; want %d", n, err, size)
		}
		if got := [32]byte(h.Sum(nil)); got != want {
			t.Errorf("%s: the bytes read differ from those put", key)
		}
		// A range across a part boundary (S3 parts are 8 MiB).
		if _, err := obj.Seek(8<<20-100, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 200)
		if _, err := io.ReadFull(obj, buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, data[8<<20-100:8<<20+100]) {
			t.Errorf("%s: the range across 8 MiB differs", key)
		}
	}
	checkLarge("media/large", want, len(data))

	data = data[:len(data)-1]
	if err := s.Put(ctx(t), "media/large-unknown", onlyReader{bytes.NewReader(data)}, -1, ""); err != nil {
		t.Fatal(err)
	}
	checkLarge("media/large-unknown", sha256.Sum256(data), len(data))
}

func testReplacedWhileOpen(t *testing.T, s blob.Store) {
	const size = 1 << 20
	oldData := bytes.Repeat([]byte("a"), size)
	newData := bytes.Repeat([]byte("b"), size)
	put(t, s, "media/r", oldData)
	obj, err := s.Open(ctx(t), "media/r")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	head := make([]byte, 1000)
	if _, err := io.ReadFull(obj, head); err != nil {
		t.Fatal(err)
	}
	put(t, s, "media/r", newData)
	// The rest is the old blob's, or the read fails: never the new bytes.
	rest, err := io.ReadAll(obj)
	t.Logf("reading on after the Put: %d bytes, then %v", len(rest), err)
	if bytes.ContainsRune(rest, 'b') {
		t.Fatalf("an Object opened before a Put read the new bytes")
	}
	if err == nil && len(rest) != size-1000 {
		t.Fatalf("read %d bytes after the Put, want %d or an error", len(rest), size-1000)
	}
	// After a seek (a new request, for S3), the same holds.
	if _, err := obj.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(obj)
	t.Logf("reading again from 0: %d bytes, then %v", len(all), err)
	if bytes.ContainsRune(all, 'b') {
		t.Fatalf("an Object opened before a Put read the new bytes after a seek")
	}
	if err == nil && !bytes.Equal(all, oldData) {
		t.Fatalf("read %d bytes after a seek, want the old blob or an error", len(all))
	}
	if got := get(t, s, "media/r"); !bytes.Equal(got, newData) {
		t.Errorf("a new Open did not see the new blob")
	}
}

func testReadsDuringReplaces(t *testing.T, s blob.Store) {
	// One writer replaces the blob with whole versions of different sizes
	// while readers read it whole again and again: every read is one
	// version, whole, or an error.
	versions := [][]byte{
		bytes.Repeat([]byte("a"), 300_000),
		bytes.Repeat([]byte("b"), 200_000),
		bytes.Repeat([]byte("c"), 400_000),
	}
	put(t, s, "media/rr", versions[0])
	c, cancel := context.WithTimeout(ctx(t), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var puts int
	wg.Go(func() {
		for i := 1; c.Err() == nil; i++ {
			v := versions[i%len(versions)]
			if err := s.Put(ctx(t), "media/rr", bytes.NewReader(v), int64(len(v)), ""); err != nil {
				t.Error(err)
				return
			}
			puts++
		}
	})
	var mu sync.Mutex
	reads := 0
	for range 2 {
		wg.Go(func() {
			for c.Err() == nil {
				obj, err := s.Open(ctx(t), "media/rr")
				if err != nil {
					t.Errorf("Open: %v", err)
					return
				}
				data, err := io.ReadAll(obj)
				obj.Close()
				if err != nil {
					continue // the blob was replaced under an S3 reader
				}
				whole := false
				for _, v := range versions {
					whole = whole || bytes.Equal(data, v)
				}
				if !whole {
					t.Errorf("read %d bytes that are no version whole", len(data))
					return
				}
				if int64(len(data)) != obj.Size() {
					t.Errorf("read %d bytes, Size said %d", len(data), obj.Size())
				}
				mu.Lock()
				reads++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("%d puts, %d whole reads", puts, reads)
	if puts == 0 || reads == 0 {
		t.Errorf("%d puts, %d whole reads: want some of each", puts, reads)
	}
}

func testPutsDuringDeletes(t *testing.T, s blob.Store) {
	// Deletes of blobs while others in the same folders come and go (a
	// Dir removes the folders a Delete empties): no Put fails.
	const rounds = 40
	writing, stop := context.WithCancel(ctx(t))
	defer stop()
	var deleter, writers sync.WaitGroup
	deleter.Go(func() {
		for i := 0; writing.Err() == nil; i++ {
			key := fmt.Sprintf("media/pd/%d/thumb", i%2)
			if err := s.Delete(ctx(t), key); err != nil {
				t.Errorf("Delete(%s): %v", key, err)
				return
			}
		}
	})
	for w := range 2 {
		writers.Go(func() {
			for i := range rounds {
				key := fmt.Sprintf("media/pd/%d/thumb", (i+w)%2)
				data := []byte(fmt.Sprintf("%d-%d", w, i))
				if err := s.Put(ctx(t), key, bytes.NewReader(data), int64(len(data)), ""); err != nil {
					t.Errorf("Put(%s): %v", key, err)
					return
				}
			}
		})
	}
	writers.Wait()
	stop()
	deleter.Wait()
	put(t, s, "media/pd/0/thumb", []byte("last"))
	if got := get(t, s, "media/pd/0/thumb"); string(got) != "last" {
		t.Errorf("got %q", got)
	}
}

func testClosed(t *testing.T, s blob.Store) {
	put(t, s, "media/closed", []byte("data"))
	obj, err := s.Open(ctx(t), "media/closed")
	if err != nil {
		t.Fatal(err)
	}
	if err := obj.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := obj.Read(make([]byte, 4)); err == nil {
		t.Error("Read after Close succeeded")
	}
}
