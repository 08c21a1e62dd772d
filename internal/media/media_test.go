package media

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/blob"
	"github.com/parley-chat/parley/internal/mediaproc"
	"github.com/parley-chat/parley/internal/sqlstore"
)

// newService returns a service on a fresh SQLite store and folder, with
// the store to make users and conversations.
func newService(t *testing.T, opts Options) (*Service, *sqlstore.DB, blob.Store) {
	t.Helper()
	dir := t.TempDir()
	db, err := sqlstore.Open(context.Background(), filepath.Join(dir, "parley.db"), nil, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	blobs, err := blob.NewDir(filepath.Join(dir, "media"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := NewSigner(bytes.Repeat([]byte{1}, 32), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	opts.TempDir = t.TempDir()
	return New(db, blobs, signer, mediaproc.New(mediaproc.Options{}), opts), db, blobs
}

func newUser(t *testing.T, db *sqlstore.DB, name string) string {
	t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	if err := db.CreateUser(context.Background(), parley.User{ID: id, Username: name, DisplayName: name}, "h"); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestSweepUnattached: uploads no message carries go after
// UnattachedAfter, with their bytes; those a message carries stay.
func TestSweepUnattached(t *testing.T) {
	ctx := context.Background()
	s, db, blobs := newService(t, Options{UnattachedAfter: time.Nanosecond})
	alice, bob := newUser(t, db, "alice"), newUser(t, db, "bob")
	conv, _, err := db.CreateConversation(ctx, parley.NewConversation{Type: parley.Direct, CreatorID: alice, MemberIDs: []string{bob}})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := s.Upload(ctx, alice, "kept.txt", "text/plain", strings.NewReader("kept"))
	if err != nil {
		t.Fatal(err)
	}
	gone, err := s.Upload(ctx, alice, "gone.txt", "text/plain", strings.NewReader("gone"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.SendMessage(ctx, parley.NewMessage{ConversationID: conv.ID, SenderID: alice,
		ClientMessageID: "c1", Kind: parley.KindFile, MediaID: kept.ID}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // both are older than UnattachedAfter
	s.Sweep(ctx)
	if _, err := db.MediaFile(ctx, gone.ID); parley.ErrorCode(err) != parley.CodeNotFound {
		t.Errorf("the unattached upload's record: %v, want not_found", err)
	}
	if _, err := blobs.Open(ctx, key(gone.ID, Original)); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("the unattached upload's bytes: %v, want gone", err)
	}
	if _, err := db.MediaFile(ctx, kept.ID); err != nil {
		t.Errorf("the attached upload's record: %v", err)
	}
	obj, err := blobs.Open(ctx, key(kept.ID, Original))
	if err != nil {
		t.Fatalf("the attached upload's bytes: %v", err)
	}
	obj.Close()
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{
		"holiday.jpg":            "holiday.jpg",
		"../../etc/passwd":       "passwd",
		`C:\Users\bob\photo.png`: "photo.png",
		"dir/":                   "file",
		"":                       "file",
		"..":                     "file",
		"a\x00b\nc.txt":          "abc.txt",
		"  spaced.txt  ":         "spaced.txt",
		strings.Repeat("é", 200): strings.Repeat("é", 127),
		"photo\u202egnp.exe":     "photognp.exe", // no right-to-left override
	} {
		if got := CleanName(in); got != want {
			t.Errorf("CleanName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDownloadExpired: an expired URL is forbidden, an altered one too, and
// a fresh one serves the file.
func TestDownloadExpired(t *testing.T) {
	ctx := context.Background()
	s, db, _ := newService(t, Options{})
	alice := newUser(t, db, "alice")
	m, err := s.Upload(ctx, alice, "note.txt", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	query := func(raw string) (exp, sig string) {
		_, q, _ := strings.Cut(raw, "?")
		for _, kv := range strings.Split(q, "&") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "exp":
				exp = v
			case "sig":
				sig = v
			}
		}
		return exp, sig
	}
	exp, sig := query(m.URL)
	d, err := s.Download(ctx, m.ID, Original, exp, sig)
	if err != nil {
		t.Fatalf("fresh URL: %v", err)
	}
	d.Object.Close()
	if d.Inline || d.MIMEType != "text/plain" {
		t.Errorf("download %+v: text must be an attachment", d)
	}
	// Two hours later, as the signer's clock sees it.
	s.signer.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if _, err := s.Download(ctx, m.ID, Original, exp, sig); parley.ErrorCode(err) != parley.CodeForbidden {
		t.Errorf("expired URL: %v, want forbidden", err)
	}
	if _, err := s.Download(ctx, m.ID, Original, exp, "x"+sig[1:]); parley.ErrorCode(err) != parley.CodeForbidden {
		t.Errorf("altered URL: %v, want forbidden", err)
	}
	got, err := s.Get(ctx, alice, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	exp, sig = query(got.URL)
	d, err = s.Download(ctx, m.ID, Original, exp, sig)
	if err != nil {
		t.Fatalf("the fresh URL GET /api/media gives: %v", err)
	}
	d.Object.Close()
}
