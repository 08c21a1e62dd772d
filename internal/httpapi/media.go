package httpapi

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/media"
)

// Media is what the API needs of the media service (*media.Service):
// uploads in one request, a media's record with fresh URLs, and the files
// behind signed URLs.
type Media interface {
	MaxUploadBytes() int64
	Upload(ctx context.Context, callerID, name, claimedType string, body io.Reader) (parley.Media, error)
	Get(ctx context.Context, callerID, id string) (parley.Media, error)
	Download(ctx context.Context, id string, v media.Variant, exp, sig string) (media.Download, error)
}

var _ Media = (*media.Service)(nil)

// uploadMedia stores a small file sent as the whole body (POST
// /api/media?name=FILENAME), answering 201 with its Media.
func (h *api) uploadMedia(w http.ResponseWriter, r *http.Request, callerID string) error {
	if r.ContentLength > h.media.MaxUploadBytes() {
		return parley.Errorf(parley.CodePayloadTooLarge, "an upload is at most %d bytes: use /api/uploads (tus) for large files", h.media.MaxUploadBytes())
	}
	body := http.MaxBytesReader(w, r.Body, h.media.MaxUploadBytes())
	claimed, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	m, err := h.media.Upload(r.Context(), callerID, r.URL.Query().Get("name"), claimed, body)
	if err != nil {
		return err
	}
	h.writeJSON(w, r, http.StatusCreated, m)
	return nil
}

// getMedia answers a media the caller may see, with fresh URLs.
func (h *api) getMedia(w http.ResponseWriter, r *http.Request, callerID string) error {
	m, err := h.media.Get(r.Context(), callerID, r.PathValue("id"))
	if err != nil {
		return err
	}
	h.writeJSON(w, r, http.StatusOK, m)
	return nil
}

// downloadMedia serves the file of a signed URL (GET /media/{id} and
// /media/{id}/thumbnail, no bearer token: the signature is the
// permission). Range requests and If-None-Match are http.ServeContent's;
// anything but a picture or a video is an attachment, never rendered; and
// nothing in it may run (nosniff, a sandboxing CSP).
func (h *api) downloadMedia(v media.Variant) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		d, err := h.media.Download(r.Context(), r.PathValue("id"), v, q.Get("exp"), q.Get("sig"))
		if err != nil {
			return err
		}
		defer d.Object.Close()
		hdr := w.Header()
		hdr.Set("Content-Type", d.MIMEType)
		hdr.Set("ETag", d.ETag)
		// The URL's signature expires, the bytes never change.
		hdr.Set("Cache-Control", "private, max-age=3600")
		hdr.Set("Content-Security-Policy", "default-src 'none'; sandbox")
		disposition := "attachment"
		if d.Inline {
			disposition = "inline"
		}
		hdr.Set("Content-Disposition", mime.FormatMediaType(disposition, map[string]string{"filename": d.Name}))
		http.ServeContent(w, r, "", d.ModTime, d.Object)
		return nil
	}
}

// uploads serves the tus endpoint for an authenticated caller.
func (h *api) uploads(w http.ResponseWriter, r *http.Request, callerID string) error {
	if h.tus == nil {
		return errors.New("no uploads handler")
	}
	// tusd answers itself; its body limit is its own (Upload-Length).
	h.tus.ServeHTTP(w, r.WithContext(media.WithCaller(r.Context(), callerID)))
	return nil
}
