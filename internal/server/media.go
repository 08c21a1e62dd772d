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
	// S3, with a Bucket, keeps media and partial uploads in S3-compatible
	// object storage instead of the data folder: what a cluster needs, so
	// that a file uploaded through one node downloads through any other.
	S3 blob.S3Options
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
	var blobs blob.Store
	var bucket *blob.S3
	if cfg.S3.Bucket != "" {
		if bucket, err = blob.NewS3(ctx, cfg.S3); err != nil {
			return nil, nil, fmt.Errorf("media storage: %w", err)
		}
		blobs = bucket
	} else {
		if s.cfg.NATS != "" {
			s.log.Warn("media are kept in this node's data folder: a file uploaded here downloads only here (set --s3-bucket for a cluster)")
		}
		if blobs, err = blob.NewDir(filepath.Join(s.cfg.DataDir, "media")); err != nil {
			return nil, nil, fmt.Errorf("media folder: %w", err)
		}
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
	var uploads *media.Uploads
	if bucket != nil {
		// Partial uploads in the bucket, and a lock in the database, so
		// that an upload resumes through any node.
		uploads, err = svc.UploadsIn("/api/uploads/", bucket.Client(), bucket.Bucket(), bucket.Prefix(), media.ClusterLocker(s.store))
	} else {
		uploads, err = svc.Uploads("/api/uploads/", filepath.Join(s.cfg.DataDir, "uploads"))
	}
	if err != nil {
		return nil, nil, err
	}
	if ffmpeg, ffprobe := proc.VideoTools(); ffmpeg == "" || ffprobe == "" {
		s.log.Info("ffmpeg or ffprobe not found: videos get no duration or poster frame")
	}
	run, cancel := context.WithCancel(context.Background())
	s.mediaJanitor = &mediaRunner{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.mediaJanitor.done)
		svc.Run(run)
	}()
	return svc, uploads, nil
}
