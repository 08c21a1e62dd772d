// Package blob keeps the server's media files — the originals members
// upload, their cleaned copies and thumbnails — as immutable blobs named by
// keys the server makes ("media/<id>", "media/<id>/thumb"). The records
// that say what a blob is (its type, name, owner, who may read it) live in
// the SQL store; a blob store keeps bytes only.
//
// Two implementations share one contract, Store, and one conformance suite
// (package blobtest):
//
//   - Dir, a folder under the server's data directory: the default, for a
//     single node.
//   - S3, a bucket of an S3-compatible object store (AWS S3, SeaweedFS,
//     MinIO, Ceph, R2...): for a cluster, where every node must read what
//     any node stored.
//
// A blob is written whole or not at all: a reader sees the old blob, none,
// or the whole new one, never a part. Objects are seekable so that HTTP
// Range requests can be served with http.ServeContent.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// ErrNotFound is returned, wrapped, by Open and Stat when no blob has the
// key. Test for it with errors.Is.
var ErrNotFound = errors.New("blob not found")

// ErrInvalidKey is returned, wrapped, by every method given a key that
// CheckKey refuses. Test for it with errors.Is.
var ErrInvalidKey = errors.New("invalid blob key")

// MaxKeyLen is the longest key accepted, in bytes.
const MaxKeyLen = 200

// Store keeps immutable blobs by key. Implementations are safe for
// concurrent use by multiple goroutines; concurrent Puts of one key leave
// one of the blobs whole.
type Store interface {
	// Put stores the content of r under key, replacing any blob it had.
	// size is the number of bytes r yields, or -1 if unknown; when it is
	// known and r yields fewer or more, Put fails. contentType is a hint
	// for stores that keep one (S3); Open does not return it. Nothing is
	// replaced half-way: until Put returns nil, readers see the old blob
	// (or none), and when it fails they keep seeing it. Put reads r to
	// its end or to the first error, and does not close it.
	Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error

	// Open returns the blob under key for reading, with its size and
	// modification time. The caller must close it. ctx governs the reads
	// too (S3 reads lazily): keep it live until the Object is closed. It
	// returns an error wrapping ErrNotFound if there is no such blob.
	Open(ctx context.Context, key string) (Object, error)

	// Stat returns the size and modification time of the blob under key,
	// or an error wrapping ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)

	// Delete removes the blob under key. A key with no blob is not an
	// error. An Object opened before may keep reading the old bytes (Dir)
	// or fail on its next request (S3).
	Delete(ctx context.Context, key string) error
}

// Object is an open blob: a seekable reader that knows its size and
// modification time, suitable for http.ServeContent. The bytes it yields
// are those of one version of the blob, never a mix: if the blob is
// replaced or deleted while it is read, the reads go on with the old bytes
// (Dir) or fail (S3). An Object is not safe for concurrent use.
type Object interface {
	io.ReadSeekCloser
	// Size is the blob's length in bytes.
	Size() int64
	// ModTime is when the blob was stored (S3 keeps whole seconds).
	ModTime() time.Time
}

// Info describes a stored blob.
type Info struct {
	Size    int64
	ModTime time.Time
}

// CheckKey reports whether key may name a blob: 1 to MaxKeyLen bytes of
// ASCII letters, digits, '-', '_', '.' and '/', made of non-empty
// slash-separated parts none of which is "." or "..", with no leading or
// trailing '/'. The error wraps ErrInvalidKey.
func CheckKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes, want 1 to %d", ErrInvalidKey, len(key), MaxKeyLen)
	}
	start := 0
	for i := 0; i <= len(key); i++ {
		if i < len(key) && key[i] != '/' {
			if !keyByte(key[i]) {
				return fmt.Errorf("%w: %q has byte %#x", ErrInvalidKey, key, key[i])
			}
			continue
		}
		switch part := key[start:i]; part {
		case "":
			return fmt.Errorf("%w: %q has an empty part", ErrInvalidKey, key)
		case ".", "..":
			return fmt.Errorf("%w: %q has a %q part", ErrInvalidKey, key, part)
		}
		start = i + 1
	}
	return nil
}

// keyByte reports whether c may appear in a key's part.
func keyByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.'
}

// countingReader counts what it reads and fails once r yields more than
// want bytes (want < 0: any number), so that a Put of a known size never
// stores more.
type countingReader struct {
	r    io.Reader
	want int64
	n    int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.want >= 0 && int64(len(p)) > c.want-c.n+1 {
		p = p[:c.want-c.n+1] // read at most one byte past want: enough to tell
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.want >= 0 && c.n > c.want {
		return n, fmt.Errorf("blob: content longer than its size %d", c.want)
	}
	if err == io.EOF && c.want >= 0 && c.n < c.want {
		return n, fmt.Errorf("blob: content of %d bytes shorter than its size %d: %w", c.n, c.want, io.ErrUnexpectedEOF)
	}
	return n, err
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
