package media

import (
	"bytes"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley"
)

func TestSigner(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	s, err := NewSigner(key, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	parse := func(raw string) (path, exp, sig string) {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return u.Path, u.Query().Get("exp"), u.Query().Get("sig")
	}
	id := "0193a5c2-0000-7000-8000-0000000000c1"
	raw := s.URL(id, Original)
	path, exp, sig := parse(raw)
	if path != "/media/"+id {
		t.Fatalf("path %q", path)
	}
	if err := s.Check(id, Original, exp, sig); err != nil {
		t.Fatalf("fresh URL: %v", err)
	}
	// Within a few minutes the URL is the same (cacheable).
	now = now.Add(time.Minute)
	if again := s.URL(id, Original); again != raw {
		t.Errorf("a minute later %q, was %q", again, raw)
	}
	// Altered: another file, another variant, another expiry, another key.
	for name, check := range map[string]error{
		"other id":      s.Check(strings.Replace(id, "c1", "c2", 1), Original, exp, sig),
		"thumbnail":     s.Check(id, Thumbnail, exp, sig),
		"later expiry":  s.Check(id, Original, exp+"0", sig),
		"garbage sig":   s.Check(id, Original, exp, "!!"),
		"empty":         s.Check(id, Original, "", ""),
		"truncated sig": s.Check(id, Original, exp, sig[:10]),
	} {
		if !errors.Is(check, ErrBadSignature) {
			t.Errorf("%s: %v, want ErrBadSignature", name, check)
		}
	}
	other, _ := NewSigner(bytes.Repeat([]byte{8}, 32), time.Hour)
	if err := other.Check(id, Original, exp, sig); !errors.Is(err, ErrBadSignature) {
		t.Errorf("another key: %v", err)
	}
	// Expired after the lifetime (and the rounding).
	now = now.Add(time.Hour + urlBucket)
	if err := s.Check(id, Original, exp, sig); !errors.Is(err, ErrExpired) {
		t.Errorf("after its lifetime: %v, want ErrExpired", err)
	}

	m := parley.Media{ID: id, HasThumbnail: true}
	s.SignMedia(&m)
	if m.URL == "" || m.ThumbnailURL == nil || !strings.HasPrefix(*m.ThumbnailURL, "/media/"+id+"/thumbnail?") {
		t.Errorf("signed media %+v", m)
	}
	m.HasThumbnail = false
	s.SignMedia(&m)
	if m.ThumbnailURL != nil {
		t.Errorf("a media without thumbnail got %q", *m.ThumbnailURL)
	}
	if _, err := NewSigner(key[:16], time.Hour); err == nil {
		t.Error("a short key was accepted")
	}
}
