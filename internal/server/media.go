package server

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/parley-chat/parley/internal/blob"
	"github.com/parley-chat/parley/internal/media"
	"github.com/parley-chat/parley/internal/mediaproc"
)

// MediaConfig configures photos, videos and files.
type MediaConfig struct {
	// MaxUploadBytes is the largest upload (default 100 MiB).
	MaxUploadBytes int64
	// URLTTL is the lifetime of signed media URLs (default 1 h).
	URLTTL time.Duration
	// MaxImagePixels is the largest image accepted (default 50 megapixels).
	MaxImagePixels int64
	// UnattachedAfter is how long an upload no message carries is kept
	// (default a day).
	UnattachedAfter time.Duration
}

// mediaRunner owns the media janitor's goroutine.
type mediaRunner struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (m *mediaRunner) stop() {
	m.cancel()
	<-m.done
}

// openMedia builds the media service: blobs in the data folder's media/,
// partial uploads in uploads/, and the URL key shared by the nodes.
func (s *Server) openMedia(ctx context.Context, allow func(context.Context, string) error) (*media.Service, *media.Uploads, error) {
	cfg := s.cfg.Media
	keyBytes, err := s.store.Secret(ctx, "media-url-key", func() ([]byte, error) {
		b := make([]byte, 32)
		_, err := rand.Read(b)
		return b, err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("media URL key: %w", err)
	}
	ttl := cfg.URLTTL
	if ttl <= 0 {
		ttl = media.DefaultURLTTL
	}
	signer, err := media.NewSigner(keyBytes, ttl)
	if err != nil {
		return nil, nil, err
	}
	blobs, err := blob.NewDir(filepath.Join(s.cfg.DataDir, "media"))
	if err != nil {
		return nil, nil, fmt.Errorf("media folder: %w", err)
	}
	tmp := filepath.Join(s.cfg.DataDir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, nil, fmt.Errorf("media temp folder: %w", err)
	}
	proc := mediaproc.New(mediaproc.Options{MaxImagePixels: cfg.MaxImagePixels})
	svc := media.New(s.store, blobs, signer, proc, media.Options{
		MaxUploadBytes:  cfg.MaxUploadBytes,
		UnattachedAfter: cfg.UnattachedAfter,
		TempDir:         tmp,
		Allow:           allow,
		Logger:          s.log,
	})
	uploads, err := svc.Uploads("/api/uploads/", filepath.Join(s.cfg.DataDir, "uploads"))
	if err != nil {
		return nil, nil, err
	}
	run, cancel := context.WithCancel(context.Background())
	s.mediaJanitor = &mediaRunner{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.mediaJanitor.done)
		svc.Run(run)
	}()
	return svc, uploads, nil
}
