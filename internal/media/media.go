// Package media is Parley's handling of photos, videos and files: uploads
// (in one request, or resumable with tus 1.0), the inspection and
// cleaning of what was uploaded (package mediaproc), storing it in a blob
// store, the signed URLs members download it by, and the removal of
// uploads never attached to a message.
//
// An upload's record lives in the store (a parley.MediaFile); its bytes in
// the blob store under "media/<id>" (what members download: the cleaned
// copy of an image, the upload itself otherwise) and "media/<id>/thumb".
// Processing happens once, when the upload's last byte arrived, with a
// bounded number at once, and never inside a store write; a message then
// attaches a ready upload by its id (chat, sqlstore).
package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/blob"
	"github.com/parley-chat/parley/internal/mediaproc"
)

// Store is the part of the store the media service uses. *sqlstore.DB
// implements it.
type Store interface {
	CreateMedia(ctx context.Context, f parley.MediaFile) error
	UpdateMedia(ctx context.Context, f parley.MediaFile) error
	MediaFile(ctx context.Context, id string) (parley.MediaFile, error)
	MediaFor(ctx context.Context, callerID, mediaID string) (parley.MediaFile, error)
	UnattachedMedia(ctx context.Context, before time.Time, limit int) ([]string, error)
	DeleteMedia(ctx context.Context, id string) (bool, error)
	SetUploadRef(ctx context.Context, id, ref string) error
}

// Defaults of Options.
const (
	DefaultMaxUploadBytes  = 100 << 20
	DefaultURLTTL          = time.Hour
	DefaultUnattachedAfter = 24 * time.Hour
	// janitorEvery is how often uploads never attached are looked for.
	janitorEvery = 10 * time.Minute
)

// Options configures a Service. Zero values take the defaults.
type Options struct {
	// MaxUploadBytes is the largest upload (default 100 MiB); a larger one
	// is payload_too_large, as early as the protocol allows.
	MaxUploadBytes int64
	// UnattachedAfter is how long an upload that no message carries is
	// kept (default a day).
	UnattachedAfter time.Duration
	// TempDir holds uploads while they are processed (default the
	// system's).
	TempDir string
	// Processing bounds the uploads processed at once (default the
	// number of CPUs).
	Processing int
	// Allow charges an upload to the uploader's rate limit; nil: no limit.
	Allow  func(ctx context.Context, userID string) error
	Logger *slog.Logger
}

// Service handles media. It is safe for concurrent use; its janitor runs
// with Run.
type Service struct {
	store  Store
	blobs  blob.Store
	signer *Signer
	proc   *mediaproc.Processor
	opts   Options
	log    *slog.Logger
	// slots bounds the processings at once.
	slots chan struct{}
	// uploads is the tus endpoint, once made, for the janitor to drop the
	// partial uploads of the uploads it deletes.
	uploads atomic.Pointer[Uploads]
}

// New returns a Service keeping records in store and bytes in blobs,
// signing URLs with signer and processing with proc.
func New(store Store, blobs blob.Store, signer *Signer, proc *mediaproc.Processor, opts Options) *Service {
	if opts.MaxUploadBytes <= 0 {
		opts.MaxUploadBytes = DefaultMaxUploadBytes
	}
	if opts.UnattachedAfter <= 0 {
		opts.UnattachedAfter = DefaultUnattachedAfter
	}
	if opts.Processing <= 0 {
		opts.Processing = runtime.NumCPU()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Service{
		store: store, blobs: blobs, signer: signer, proc: proc, opts: opts,
		log:   opts.Logger.With("component", "media"),
		slots: make(chan struct{}, opts.Processing),
	}
}

// Signer returns the signer of the service's URLs.
func (s *Service) Signer() *Signer { return s.signer }

// MaxUploadBytes is the largest upload accepted.
func (s *Service) MaxUploadBytes() int64 { return s.opts.MaxUploadBytes }

// key is the blob key of a variant of media id.
func key(id string, v Variant) string {
	if v == Thumbnail {
		return "media/" + id + "/thumb"
	}
	return "media/" + id
}

// newID returns a new media id.
func newID() (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("media id: %w", err)
	}
	return id.String(), nil
}

// CleanName is the file name members see for an upload named name: its
// last path element, without control or format characters, at most 255
// bytes, or "file". It never names anything on disk: blobs are keyed by id.
func CleanName(name string) string {
	name = strings.ReplaceAll(name, "\\", "/")
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		// Control characters, and format ones such as the right-to-left
		// override that makes "photo\u202egnp.exe" look like a PNG.
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, name)
	name = strings.TrimSpace(name)
	for len(name) > 255 {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	if name == "" || name == "." || name == ".." {
		return "file"
	}
	return name
}

// kindOf maps mediaproc's kinds to the message kinds they allow.
func kindOf(k mediaproc.Kind) parley.MessageKind {
	switch k {
	case mediaproc.Image:
		return parley.KindImage
	case mediaproc.Video:
		return parley.KindVideo
	}
	return parley.KindFile
}

// Upload stores a whole upload read from body (POST /api/media): at most
// MaxUploadBytes (payload_too_large beyond), processed at once, and
// returns its ready Media with signed URLs. Refused content (a
// decompression bomb, a corrupt image) is invalid_argument and leaves
// nothing behind.
func (s *Service) Upload(ctx context.Context, callerID, name, claimedType string, body io.Reader) (parley.Media, error) {
	f, err := s.start(ctx, callerID, name, claimedType)
	if err != nil {
		return parley.Media{}, err
	}
	tmp, err := os.CreateTemp(s.opts.TempDir, "parley-upload-*")
	if err != nil {
		return parley.Media{}, fmt.Errorf("upload: %w", err)
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, io.LimitReader(body, s.opts.MaxUploadBytes+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig) || (err == nil && n > s.opts.MaxUploadBytes):
		return parley.Media{}, parley.Errorf(parley.CodePayloadTooLarge, "an upload is at most %d bytes", s.opts.MaxUploadBytes)
	case err != nil:
		return parley.Media{}, fmt.Errorf("upload: receive: %w", err)
	}
	f.Size = n
	if f, err = s.ingest(ctx, f, tmp.Name()); err != nil {
		return parley.Media{}, err
	}
	if err := s.store.CreateMedia(ctx, f); err != nil {
		s.deleteBlobs(context.WithoutCancel(ctx), f.ID)
		return parley.Media{}, fmt.Errorf("upload: record: %w", err)
	}
	m := f.Media
	s.signer.SignMedia(&m)
	return m, nil
}

// start charges a new upload of callerID to their upload limit and returns
// its record: a new id, the cleaned name, the claimed type. Both ways of
// uploading begin here.
func (s *Service) start(ctx context.Context, callerID, name, claimedType string) (parley.MediaFile, error) {
	if s.opts.Allow != nil {
		if err := s.opts.Allow(ctx, callerID); err != nil {
			return parley.MediaFile{}, err
		}
	}
	id, err := newID()
	if err != nil {
		return parley.MediaFile{}, err
	}
	return parley.MediaFile{
		Media:      parley.Media{ID: id, Name: CleanName(name)},
		UploaderID: callerID, ClaimedType: claimedType,
	}, nil
}

// ingest processes the upload at path and stores its blobs, returning f
// completed and ready. Refused content is invalid_argument and stores
// nothing.
func (s *Service) ingest(ctx context.Context, f parley.MediaFile, path string) (parley.MediaFile, error) {
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	case <-ctx.Done():
		return f, ctx.Err()
	}
	clean, err := os.CreateTemp(s.opts.TempDir, "parley-clean-*")
	if err != nil {
		return f, fmt.Errorf("process upload: %w", err)
	}
	defer func() { clean.Close(); os.Remove(clean.Name()) }()
	thumb, err := os.CreateTemp(s.opts.TempDir, "parley-thumb-*")
	if err != nil {
		return f, fmt.Errorf("process upload: %w", err)
	}
	defer func() { thumb.Close(); os.Remove(thumb.Name()) }()

	info, outs, err := s.proc.Process(ctx, path, clean, thumb)
	if err != nil {
		return f, err
	}
	f.MIMEType, f.Kind = info.MIMEType, kindOf(info.Kind)
	if info.Width > 0 && info.Height > 0 {
		w, h := info.Width, info.Height
		f.Width, f.Height = &w, &h
	}
	if info.DurationMS > 0 {
		d := info.DurationMS
		f.DurationMS = &d
	}
	served, size := path, info.Size
	if outs.Clean.Written {
		served, size = clean.Name(), outs.Clean.Size
	}
	if err := s.putFile(ctx, key(f.ID, Original), served, size, f.MIMEType); err != nil {
		return f, err
	}
	f.Size = size
	if outs.Thumbnail.Written {
		if err := s.putFile(ctx, key(f.ID, Thumbnail), thumb.Name(), outs.Thumbnail.Size, outs.Thumbnail.MIMEType); err != nil {
			s.deleteBlobs(context.WithoutCancel(ctx), f.ID)
			return f, err
		}
		f.HasThumbnail = true
	}
	f.State = parley.MediaReady
	return f, nil
}

// putFile stores the file at path under key.
func (s *Service) putFile(ctx context.Context, key, path string, size int64, contentType string) error {
	r, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("store %s: %w", key, err)
	}
	defer r.Close()
	if err := s.blobs.Put(ctx, key, r, size, contentType); err != nil {
		return fmt.Errorf("store %s: %w", key, err)
	}
	return nil
}

// deleteBlobs deletes the blobs of media id, logging failures.
func (s *Service) deleteBlobs(ctx context.Context, id string) {
	for _, v := range []Variant{Original, Thumbnail} {
		if err := s.blobs.Delete(ctx, key(id, v)); err != nil {
			s.log.Warn("delete media blob", "media", id, "err", err)
		}
	}
}

// Get returns a media as callerID may see it (their own upload, or one
// attached in a conversation of theirs; not_found otherwise), with fresh
// signed URLs. An upload not ready yet is conflict.
func (s *Service) Get(ctx context.Context, callerID, id string) (parley.Media, error) {
	if _, err := uuid.Parse(id); err != nil {
		return parley.Media{}, parley.Errorf(parley.CodeNotFound, "media not found")
	}
	f, err := s.store.MediaFor(ctx, callerID, id)
	if err != nil {
		return parley.Media{}, err
	}
	switch f.State {
	case parley.MediaReady:
	case parley.MediaFailed:
		return parley.Media{}, parley.Errorf(parley.CodeInvalidArgument, "the upload was refused: %s", f.Error)
	default:
		return parley.Media{}, parley.Errorf(parley.CodeConflict, "the upload is not complete")
	}
	m := f.Media
	s.signer.SignMedia(&m)
	return m, nil
}

// Run deletes, every few minutes until ctx ends, the uploads that no
// message carries and that are older than UnattachedAfter, with their
// blobs.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(janitorEvery)
	defer t.Stop()
	for {
		s.sweep(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweep deletes the unattached uploads that are too old, a batch at a time.
func (s *Service) sweep(ctx context.Context) {
	for ctx.Err() == nil {
		ids, err := s.store.UnattachedMedia(ctx, time.Now().Add(-s.opts.UnattachedAfter), 100)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("list unattached uploads", "err", err)
			}
			return
		}
		for _, id := range ids {
			f, err := s.store.MediaFile(ctx, id)
			if err != nil {
				s.log.Warn("read unattached upload", "media", id, "err", err)
				return
			}
			// The record goes first, if no send attached it meanwhile;
			// only then the bytes.
			deleted, err := s.store.DeleteMedia(ctx, id)
			if err != nil {
				s.log.Warn("delete unattached upload", "media", id, "err", err)
				return
			}
			if deleted {
				s.deleteBlobs(ctx, id)
				if f.UploadRef != "" {
					s.dropUpload(ctx, f.UploadRef)
				}
			}
		}
		if len(ids) < 100 {
			return
		}
	}
}

// Sweep runs one pass of the janitor (tests).
func (s *Service) Sweep(ctx context.Context) { s.sweep(ctx) }
