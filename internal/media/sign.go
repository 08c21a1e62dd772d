package media

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"time"

	"github.com/parley-chat/parley"
)

// Variant is one of the files of a media: the file itself, or its
// thumbnail.
type Variant string

// Variants, as they appear in URLs.
const (
	Original  Variant = ""
	Thumbnail Variant = "thumbnail"
)

// urlBucket rounds expiries up, so that a media shown twice within a few
// minutes gets the same URL and the browser's cache serves the second.
const urlBucket = 5 * time.Minute

// Errors of Signer.Check.
var (
	ErrExpired      = errors.New("the signed URL has expired")
	ErrBadSignature = errors.New("the URL's signature is not valid")
)

// Signer makes and checks the short-lived signed URLs of media:
// /media/{id}?exp=UNIX&sig=MAC and /media/{id}/thumbnail?exp=...&sig=...,
// where MAC is HMAC-SHA-256 of the id, the variant and the expiry under a
// key shared by every node. A browser cannot put a bearer token on an
// <img>; whoever holds a URL may fetch that one file until it expires, as
// with S3's presigned URLs. It is safe for concurrent use.
type Signer struct {
	key []byte
	ttl time.Duration
	now func() time.Time
}

// NewSigner returns a Signer with key (at least 32 bytes) whose URLs live
// ttl, rounded up to a few minutes.
func NewSigner(key []byte, ttl time.Duration) (*Signer, error) {
	if len(key) < 32 {
		return nil, errors.New("media URL key: at least 32 bytes")
	}
	if ttl <= 0 {
		return nil, errors.New("media URL lifetime must be positive")
	}
	return &Signer{key: key, ttl: ttl, now: time.Now}, nil
}

// mac returns the signature of a file of id until exp (Unix seconds).
func (s *Signer) mac(id string, v Variant, exp int64) []byte {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte("parley media\x00"))
	h.Write([]byte(id))
	h.Write([]byte{0})
	h.Write([]byte(v))
	h.Write([]byte{0})
	h.Write(strconv.AppendInt(nil, exp, 10))
	return h.Sum(nil)
}

// URL returns the signed path of a file of id, valid at least ttl from now.
func (s *Signer) URL(id string, v Variant) string {
	exp := s.now().Add(s.ttl + urlBucket).Truncate(urlBucket).Unix()
	p := "/media/" + id
	if v != Original {
		p += "/" + string(v)
	}
	return p + "?exp=" + strconv.FormatInt(exp, 10) + "&sig=" + base64.RawURLEncoding.EncodeToString(s.mac(id, v, exp))
}

// Check verifies the exp and sig of a URL of a file of id: ErrBadSignature
// if they were not made by this key for that file, ErrExpired if they
// were but have expired.
func (s *Signer) Check(id string, v Variant, exp, sig string) error {
	e, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return ErrBadSignature
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(id, v, e)) {
		return ErrBadSignature
	}
	if s.now().Unix() >= e {
		return ErrExpired
	}
	return nil
}

// SignMedia fills in m's URL, and its ThumbnailURL if it has a thumbnail
// (parley.MediaSigner).
func (s *Signer) SignMedia(m *parley.Media) {
	m.URL = s.URL(m.ID, Original)
	m.ThumbnailURL = nil
	if m.HasThumbnail {
		u := s.URL(m.ID, Thumbnail)
		m.ThumbnailURL = &u
	}
}

var _ parley.MediaSigner = (*Signer)(nil)
