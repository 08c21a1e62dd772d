package media

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/google/uuid"
	"github.com/tus/tusd/v2/pkg/filestore"
	tusd "github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"
	"github.com/tus/tusd/v2/pkg/s3store"
	"golang.org/x/exp/slog"

	"github.com/parley-chat/parley"
)

// callerKey is the context key of the authenticated uploader.
type callerKey struct{}

// WithCaller returns ctx carrying the authenticated user of an upload
// request: the tus handler reads it in its hooks.
func WithCaller(ctx context.Context, userID string) context.Context {
	return context.WithValue(ctx, callerKey{}, userID)
}

func callerOf(ctx context.Context) string {
	u, _ := ctx.Value(callerKey{}).(string)
	return u
}

// Uploads is the tus 1.0 endpoint of resumable uploads (tusd's handler on a
// folder of partial uploads), serving basePath ("/api/uploads/"). Requests
// must carry their caller (WithCaller). The id tusd gives an upload is the
// media id: the last segment of its URL. Only the uploader may continue
// (PATCH), ask the offset of (HEAD) or terminate (DELETE) an upload;
// others get 404. Once its last byte arrives the upload is processed and
// stored, and its partial file deleted: the final PATCH answers only then,
// 400 if the content was refused.
type Uploads struct {
	s        *Service
	base     string
	composer *tusd.StoreComposer
	tus      *tusd.Handler
}

// Uploads returns the tus endpoint of one node, keeping partial uploads
// in dir.
func (s *Service) Uploads(basePath, dir string) (*Uploads, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("uploads folder: %w", err)
	}
	composer := tusd.NewStoreComposer()
	filestore.New(dir).UseIn(composer)
	memorylocker.New().UseIn(composer)
	return s.newUploads(basePath, composer)
}

// UploadsIn returns the tus endpoint of a cluster: partial uploads in
// object storage (tusd's s3store, under prefix+"uploads/" in bucket) and
// locker, both shared by the nodes, so that a client may resume through
// any node.
func (s *Service) UploadsIn(basePath string, client s3store.S3API, bucket, prefix string, locker tusd.Locker) (*Uploads, error) {
	composer := tusd.NewStoreComposer()
	store := s3store.New(bucket, client)
	store.ObjectPrefix = prefix + "uploads/"
	store.UseIn(composer)
	composer.UseLocker(locker)
	return s.newUploads(basePath, composer)
}

func (s *Service) newUploads(basePath string, composer *tusd.StoreComposer) (*Uploads, error) {
	u := &Uploads{s: s, base: basePath, composer: composer}
	h, err := tusd.NewHandler(tusd.Config{
		StoreComposer:              composer,
		BasePath:                   basePath,
		MaxSize:                    s.opts.MaxUploadBytes,
		DisableDownload:            true, // members download the processed file, by signed URL
		DisableConcatenation:       true,
		Cors:                       &tusd.CorsConfig{Disable: true},
		PreUploadCreateCallback:    u.create,
		PreFinishResponseCallback:  u.finish,
		PreUploadTerminateCallback: u.terminate,
		Logger:                     slog.New(slog.NewTextHandler(discard{}, nil)),
	})
	if err != nil {
		return nil, fmt.Errorf("tus handler: %w", err)
	}
	u.tus = h
	s.uploads.Store(u)
	return u, nil
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

// tusError is a refusal in tus's terms, with the contract's code in it.
func tusError(err error) error {
	code := parley.ErrorCode(err)
	if code.HTTPStatus() == 0 {
		code = parley.CodeInternal
	}
	msg := parley.ErrorMessage(err)
	if code == parley.CodeInternal {
		msg = "internal error"
	}
	return tusd.NewError(strings.ToUpper(string(code)), msg, code.HTTPStatus())
}

// ServeHTTP checks who may touch an existing upload, then lets tusd serve.
// Clients name an upload by its media id; tusd by its own id (the media id
// and, in object storage, "+" and the multipart upload's id): the paths
// in and the Location out are translated.
func (u *Uploads) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	caller := callerOf(r.Context())
	if caller == "" {
		http.Error(w, "unauthenticated", http.StatusUnauthorized)
		return
	}
	if id, ok := strings.CutPrefix(r.URL.Path, u.base); ok && id != "" && r.Method != http.MethodOptions {
		if _, err := uuid.Parse(id); err != nil {
			http.NotFound(w, r)
			return
		}
		f, err := u.s.store.MediaFile(r.Context(), id)
		if err != nil || f.UploaderID != caller || f.State != parley.MediaUploading || f.UploadRef == "" {
			// Another's upload, or one that is complete: nothing to resume.
			http.NotFound(w, r)
			return
		}
		r = r.Clone(r.Context())
		r.URL.Path, r.URL.RawPath = u.base+f.UploadRef, ""
	}
	if r.Method == http.MethodPost {
		w = &locationWriter{ResponseWriter: w, u: u, ctx: r.Context()}
	}
	http.StripPrefix(strings.TrimSuffix(u.base, "/"), u.tus).ServeHTTP(w, r)
}

// locationWriter records the tus id of a created upload and answers its
// media id in Location instead.
type locationWriter struct {
	http.ResponseWriter
	u   *Uploads
	ctx context.Context
	err error
}

func (lw *locationWriter) WriteHeader(status int) {
	if loc := lw.Header().Get("Location"); status == http.StatusCreated && loc != "" {
		i := strings.LastIndexByte(loc, '/')
		ref := loc[i+1:]
		id := mediaIDOf(ref)
		// Recorded before the client hears of it, so that its next request
		// finds it; a creation-with-upload completed already (and needs
		// none), and an error leaves the upload unreachable, never wrong.
		if err := lw.u.s.store.SetUploadRef(lw.ctx, id, ref); err != nil {
			lw.u.s.log.Warn("record a new upload", "media", id, "err", err)
		}
		lw.Header().Set("Location", loc[:i+1]+id)
	}
	lw.ResponseWriter.WriteHeader(status)
}

func (lw *locationWriter) Write(b []byte) (int, error) { return lw.ResponseWriter.Write(b) }

// Unwrap lets http.ResponseController reach the connection (tusd sets read
// deadlines through it).
func (lw *locationWriter) Unwrap() http.ResponseWriter { return lw.ResponseWriter }

// mediaIDOf is the media id in a tus id: what comes before a "+".
func mediaIDOf(ref string) string {
	if i := strings.IndexByte(ref, '+'); i >= 0 {
		return ref[:i]
	}
	return ref
}

// create records a new upload: its id (the media id), name, claimed type
// and length. The length must be given at creation.
func (u *Uploads) create(hook tusd.HookEvent) (tusd.HTTPResponse, tusd.FileInfoChanges, error) {
	caller := callerOf(hook.Context)
	if caller == "" {
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusd.NewError("UNAUTHENTICATED", "no caller", http.StatusUnauthorized)
	}
	if hook.Upload.SizeIsDeferred {
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusError(parley.Errorf(parley.CodeInvalidArgument, "Upload-Length is required"))
	}
	meta := hook.Upload.MetaData
	f, err := u.s.start(hook.Context, caller, meta["filename"], meta["filetype"])
	if err != nil {
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusError(err)
	}
	f.Size, f.State = hook.Upload.Size, parley.MediaUploading
	if err := u.s.store.CreateMedia(hook.Context, f); err != nil {
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusError(err)
	}
	return tusd.HTTPResponse{}, tusd.FileInfoChanges{ID: f.ID}, nil
}

// finish processes a complete upload and stores it; refused content fails
// the upload (400), and either way the partial upload goes.
func (u *Uploads) finish(hook tusd.HookEvent) (tusd.HTTPResponse, error) {
	ref := hook.Upload.ID
	id := mediaIDOf(ref)
	ctx := hook.Context
	f, err := u.s.store.MediaFile(ctx, id)
	if err != nil {
		return tusd.HTTPResponse{}, tusError(err)
	}
	defer u.drop(context.WithoutCancel(ctx), ref)
	path, err := u.copyOut(ctx, ref)
	if err != nil {
		return tusd.HTTPResponse{}, tusError(err)
	}
	defer os.Remove(path)
	ready, err := u.s.ingest(ctx, f, path)
	if err != nil {
		if parley.ErrorCode(err) == parley.CodeInvalidArgument {
			f.State, f.Error = parley.MediaFailed, parley.ErrorMessage(err)
			if uerr := u.s.store.UpdateMedia(context.WithoutCancel(ctx), f); uerr != nil {
				u.s.log.Warn("record a refused upload", "media", id, "err", uerr)
			}
		}
		return tusd.HTTPResponse{}, tusError(err)
	}
	if err := u.s.store.UpdateMedia(ctx, ready); err != nil {
		u.s.deleteBlobs(context.WithoutCancel(ctx), id)
		return tusd.HTTPResponse{}, tusError(err)
	}
	return tusd.HTTPResponse{}, nil
}

// terminate forgets an upload its uploader gave up (DELETE).
func (u *Uploads) terminate(hook tusd.HookEvent) (tusd.HTTPResponse, error) {
	if _, err := u.s.store.DeleteMedia(hook.Context, mediaIDOf(hook.Upload.ID)); err != nil {
		return tusd.HTTPResponse{}, tusError(err)
	}
	return tusd.HTTPResponse{}, nil
}

// copyOut copies a complete upload into a temp file for processing (ffmpeg
// and the image checks need a file), whatever store holds it.
func (u *Uploads) copyOut(ctx context.Context, id string) (string, error) {
	up, err := u.composer.Core.GetUpload(ctx, id)
	if err != nil {
		return "", fmt.Errorf("read upload %s: %w", id, err)
	}
	r, err := up.GetReader(ctx)
	if err != nil {
		return "", fmt.Errorf("read upload %s: %w", id, err)
	}
	defer r.Close()
	tmp, err := os.CreateTemp(u.s.opts.TempDir, "parley-tus-*")
	if err != nil {
		return "", fmt.Errorf("read upload %s: %w", id, err)
	}
	_, err = io.Copy(tmp, r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("read upload %s: %w", id, err)
	}
	return tmp.Name(), nil
}

// drop deletes what the tus store holds of an upload (by its tus id), if
// anything.
func (u *Uploads) drop(ctx context.Context, ref string) {
	up, err := u.composer.Core.GetUpload(ctx, ref)
	if err != nil {
		return // gone already
	}
	if err := u.composer.Terminater.AsTerminatableUpload(up).Terminate(ctx); err != nil {
		u.s.log.Warn("delete a partial upload", "upload", ref, "err", err)
	}
}

// dropUpload deletes the partial upload of tus id ref, if the tus endpoint
// exists.
func (s *Service) dropUpload(ctx context.Context, ref string) {
	if u := s.uploads.Load(); u != nil {
		u.drop(ctx, ref)
	}
}
