package media

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/blob"
)

// inline are the types a browser may render in place: pictures and videos
// that cannot carry script. Everything else (HTML named .jpg, SVG, PDF,
// scripts, text) is only ever downloaded.
var inline = map[string]bool{
	"image/jpeg": true, "image/png": true, "image/gif": true, "image/webp": true,
	"video/mp4": true, "video/quicktime": true,
}

// Download is a file of a media, opened for an HTTP answer.
type Download struct {
	// Object is the bytes, seekable for Range requests; the caller closes it.
	Object blob.Object
	// MIMEType is what the server found in the content (image/jpeg for a
	// thumbnail).
	MIMEType string
	// Name is the file name to offer.
	Name string
	// Inline says whether it may be shown in place; otherwise it must be
	// served as an attachment.
	Inline bool
	// ETag identifies the bytes: a media never changes.
	ETag    string
	ModTime time.Time
}

// Download opens the file of a signed URL: forbidden if the signature is
// altered or has expired, not_found if there is no such file.
func (s *Service) Download(ctx context.Context, id string, v Variant, exp, sig string) (Download, error) {
	if _, err := uuid.Parse(id); err != nil {
		return Download{}, parley.Errorf(parley.CodeNotFound, "media not found")
	}
	switch err := s.signer.Check(id, v, exp, sig); {
	case errors.Is(err, ErrExpired):
		return Download{}, parley.Errorf(parley.CodeForbidden, "this link has expired: ask GET /api/media/%s for a fresh one", id)
	case err != nil:
		return Download{}, parley.Errorf(parley.CodeForbidden, "this link is not valid")
	}
	f, err := s.store.MediaFile(ctx, id)
	if err != nil {
		return Download{}, err
	}
	if f.State != parley.MediaReady || (v == Thumbnail && !f.HasThumbnail) {
		return Download{}, parley.Errorf(parley.CodeNotFound, "media not found")
	}
	obj, err := s.blobs.Open(ctx, key(id, v))
	if errors.Is(err, blob.ErrNotFound) {
		return Download{}, parley.Errorf(parley.CodeNotFound, "media not found")
	}
	if err != nil {
		return Download{}, fmt.Errorf("download %s: %w", id, err)
	}
	d := Download{Object: obj, MIMEType: f.MIMEType, Name: f.Name, ETag: `"` + id + `"`, ModTime: obj.ModTime()}
	if v == Thumbnail {
		d.MIMEType, d.Name, d.ETag = thumbnailType(obj), "thumbnail-"+f.Name, `"`+id+`-thumb"`
	}
	d.Inline = inline[d.MIMEType]
	return d, nil
}

// thumbnailType is the type of a thumbnail: a JPEG, or a PNG when the
// picture has transparency, told by its first bytes.
func thumbnailType(obj blob.Object) string {
	head := make([]byte, 8)
	n, _ := obj.Read(head)
	if _, err := obj.Seek(0, 0); err != nil {
		return "application/octet-stream"
	}
	if n == 8 && string(head) == "\x89PNG\r\n\x1a\n" {
		return "image/png"
	}
	return "image/jpeg"
}
