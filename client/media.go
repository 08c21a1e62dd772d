package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/parley-chat/parley"
)

// uploadsDir is the folder of the profile that holds the files of the
// media messages in the outbox, each named by its client_message_id.
const uploadsDir = "uploads"

// orphanAge is how old a file in uploadsDir with no outbox item must be
// before Open deletes it: younger, it may be a SendFile of another
// process between its copy and its commit.
const orphanAge = time.Hour

// FileOption configures SendFile.
type FileOption func(*fileOptions)

type fileOptions struct {
	caption  string
	kind     parley.MessageKind
	name     string
	progress func(sent, total int64)
}

// WithCaption sends text with the file (default: none).
func WithCaption(text string) FileOption { return func(o *fileOptions) { o.caption = text } }

// WithKind sends the file as a message of kind k: parley.KindImage,
// KindVideo or KindFile. By default the kind follows what the server
// finds in the content: image for a JPEG, PNG, GIF or WebP picture, video
// for MP4, QuickTime or WebM, file for anything else. A kind the content
// does not allow (an image message of a text file) fails the message
// with invalid_argument; KindFile takes anything.
func WithKind(k parley.MessageKind) FileOption { return func(o *fileOptions) { o.kind = k } }

// WithFileName sets the name members see (default: the last element of
// the path).
func WithFileName(name string) FileOption { return func(o *fileOptions) { o.name = name } }

// WithProgress sets a function told how many of the file's total bytes
// the server has confirmed: first where the upload starts (0, or where
// an earlier attempt got to), then after each chunk, with values that
// only increase and end at total. It is called on one of the client's
// goroutines and must not block; it is not called again after the upload
// is complete, nor after Close. An upload resumed by another Open of the
// profile reports through events only (Message.Upload).
func WithProgress(fn func(sent, total int64)) FileOption {
	return func(o *fileOptions) { o.progress = fn }
}

// progressFunc is a WithProgress function and the last value it was told.
type progressFunc struct {
	fn   func(sent, total int64)
	last int64
}

// progressFuncs are the WithProgress functions of the uploads this
// process queued, by client_message_id.
type progressFuncs struct {
	mu sync.Mutex // guards m
	m  map[string]*progressFunc
}

func (p *progressFuncs) set(cmid string, fn func(sent, total int64)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]*progressFunc{}
	}
	p.m[cmid] = &progressFunc{fn: fn, last: -1}
}

// report tells cmid's function, if any, that sent of total bytes are on
// the server, unless that is no more than it was told already.
func (p *progressFuncs) report(cmid string, sent, total int64) {
	p.mu.Lock()
	f := p.m[cmid]
	if f == nil || sent <= f.last {
		p.mu.Unlock()
		return
	}
	f.last = sent
	p.mu.Unlock()
	f.fn(sent, total)
}

func (p *progressFuncs) drop(cmid string) {
	p.mu.Lock()
	delete(p.m, cmid)
	p.mu.Unlock()
}

// SendFile queues a photo, a video or any other file read from path as a
// message, and returns its client_message_id, like Send. The file is
// copied into the profile and the message committed to the outbox before
// SendFile returns and before any network I/O: it survives a crash, a
// restart and going offline, and the original may change or go. The
// message is pending, with Message.Media (name, size, the type guessed
// here) and Message.Upload set.
//
// When connected, the client uploads the copy with tus (resumable: after
// a broken connection or a restart it asks the server where the upload
// got to and continues from there), then sends the message with the
// media's id through the outbox, exactly once, in order with the other
// messages of the conversation: the ones queued after it wait for it. A
// file the server refuses (too large, a corrupt image, a decompression
// bomb) makes the message failed with the server's reason; Retry uploads
// it again. Events report the upload's progress (EventMessage with
// Message.Upload), and so does WithProgress.
//
// A caption that is not UTF-8, an invalid kind, and a path that is not a
// readable regular file are invalid_argument.
func (c *Client) SendFile(ctx context.Context, convID, path string, opts ...FileOption) (string, error) {
	var o fileOptions
	for _, opt := range opts {
		opt(&o)
	}
	if convID == "" {
		return "", parley.Errorf(parley.CodeInvalidArgument, "no conversation")
	}
	if !utf8.ValidString(o.caption) {
		return "", parley.Errorf(parley.CodeInvalidArgument, "a caption must be UTF-8")
	}
	switch o.kind {
	case "", parley.KindImage, parley.KindVideo, parley.KindFile:
	default:
		return "", parley.Errorf(parley.CodeInvalidArgument, "a file is sent as image, video or file, not %q", o.kind)
	}
	me := c.me()
	if me == "" {
		return "", errSignedOut
	}
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("send file: %w", err)
	}
	cmid := id.String()
	size, head, err := c.copyUpload(path, cmid)
	if err != nil {
		return "", err
	}
	name := o.name
	if name == "" {
		name = filepath.Base(path)
	}
	typ := guessType(head, name)
	kind, auto := o.kind, o.kind == ""
	if auto {
		kind = kindOf(typ)
	}
	it := outboxItem{
		ClientMessageID: cmid,
		ConversationID:  convID,
		Kind:            kind,
		Text:            o.caption,
		CreatedAt:       parley.Now(),
		State:           outboxPending,
		File:            &outboxFile{Name: name, Type: typ, Size: size, AutoKind: auto},
	}
	if err := c.store.enqueue(ctx, it); err != nil {
		c.removeUpload(cmid)
		return "", err
	}
	if o.progress != nil {
		c.progress.set(cmid, o.progress)
	}
	msg := outboxMessage(it, me)
	c.events.emit(Event{Type: EventMessage, ConversationID: convID, Message: &msg})
	c.typist.sent(convID)
	signal(c.sendKick)
	return cmid, nil
}

// uploadPath is where the outbox keeps the file of message cmid.
func (c *Client) uploadPath(cmid string) string {
	return filepath.Join(c.profile.path(uploadsDir), cmid)
}

// copyUpload copies the file at path into the uploads folder as cmid's
// (a temporary file, synced, then renamed), and returns its size and its
// first bytes, for guessing its type.
func (c *Client) copyUpload(path, cmid string) (size int64, head []byte, err error) {
	src, err := os.Open(path)
	if err != nil {
		return 0, nil, parley.Errorf(parley.CodeInvalidArgument, "file: %v", err)
	}
	defer src.Close()
	if st, err := src.Stat(); err != nil || !st.Mode().IsRegular() {
		return 0, nil, parley.Errorf(parley.CodeInvalidArgument, "file %s: not a regular file", path)
	}
	dir := c.profile.path(uploadsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, nil, fmt.Errorf("send file: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".copy-*")
	if err != nil {
		return 0, nil, fmt.Errorf("send file: %w", err)
	}
	defer os.Remove(tmp.Name()) // nothing to remove after the rename
	head = make([]byte, 512)
	n, err := io.ReadFull(src, head)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		tmp.Close()
		return 0, nil, parley.Errorf(parley.CodeInvalidArgument, "file: %v", err)
	}
	head = head[:n]
	if _, err := tmp.Write(head); err != nil {
		tmp.Close()
		return 0, nil, fmt.Errorf("send file: copy: %w", err)
	}
	rest, err := io.Copy(tmp, src)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, nil, fmt.Errorf("send file: copy: %w", err)
	}
	if err := os.Rename(tmp.Name(), c.uploadPath(cmid)); err != nil {
		return 0, nil, fmt.Errorf("send file: copy: %w", err)
	}
	syncDir(dir)
	return int64(n) + rest, head, nil
}

// removeUpload deletes the outbox's copy of cmid's file, if any.
func (c *Client) removeUpload(cmid string) {
	if err := os.Remove(c.uploadPath(cmid)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.log.Warn("parley: delete an uploaded file's copy", "err", err)
	}
}

// removeUploads deletes the copies of the files of messages the server
// acknowledged.
func (c *Client) removeUploads(msgs []parley.Message) {
	for _, m := range msgs {
		if m.Kind != parley.KindText && m.ClientMessageID != "" {
			c.removeUpload(m.ClientMessageID)
			c.progress.drop(m.ClientMessageID)
		}
	}
}

// sweepUploads deletes the files in the uploads folder that no outbox
// item owns and that are older than minAge (the leftovers of a crash, or
// of an acknowledgement that another process stored).
func (c *Client) sweepUploads(ctx context.Context, minAge time.Duration) error {
	entries, err := os.ReadDir(c.profile.path(uploadsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list uploads: %w", err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || time.Since(info.ModTime()) < minAge {
			continue
		}
		if _, ok, err := c.store.outboxItem(ctx, e.Name()); err != nil {
			return err
		} else if ok {
			continue
		}
		if err := os.Remove(filepath.Join(c.profile.path(uploadsDir), e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("delete an orphaned upload: %w", err)
		}
	}
	return nil
}

// guessType is the type of a file from its first bytes, or from its
// name's extension when they say nothing more than "bytes": what the
// upload claims. The server decides from the content.
func guessType(head []byte, name string) string {
	detected, _, _ := mime.ParseMediaType(http.DetectContentType(head))
	if detected != "" && detected != "application/octet-stream" && detected != "text/plain" {
		return detected
	}
	if byExt, _, err := mime.ParseMediaType(mime.TypeByExtension(filepath.Ext(name))); err == nil {
		return byExt
	}
	if detected != "" {
		return detected
	}
	return "application/octet-stream"
}

// kindOf is the message kind of content of MIME type t, as the contract
// lists them: images are JPEG, PNG, GIF and WebP; videos are MP4,
// QuickTime and WebM; anything else is a file.
func kindOf(t string) parley.MessageKind {
	switch t {
	case "image/jpeg", "image/png", "image/gif", "image/webp":
		return parley.KindImage
	case "video/mp4", "video/quicktime", "video/webm":
		return parley.KindVideo
	}
	return parley.KindFile
}

// Media returns a media with fresh signed URLs (GET /api/media/{id}): the
// user's own upload, or one attached to a message of a conversation the
// user is in; not_found otherwise. An upload not complete yet is conflict;
// one the server refused is invalid_argument.
func (c *Client) Media(ctx context.Context, id string) (parley.Media, error) {
	var m parley.Media
	if err := c.call(ctx, http.MethodGet, "/api/media/"+url.PathEscape(id), nil, nil, &m, true); err != nil {
		return parley.Media{}, err
	}
	return m, nil
}

// Download writes the file of media id to w, and returns the Media. It
// asks the server for a fresh signed URL first, so a message read long
// ago downloads as well as a new one. A body shorter than Media.Size is
// an error; w may then hold part of the file.
func (c *Client) Download(ctx context.Context, id string, w io.Writer) (parley.Media, error) {
	m, err := c.Media(ctx, id)
	if err != nil {
		return parley.Media{}, err
	}
	n, err := c.fetch(ctx, m.URL, w)
	if err != nil {
		return m, err
	}
	if n != m.Size {
		return m, parley.Errorf(parley.CodeUnavailable, "download of %s: %d bytes of %d", id, n, m.Size)
	}
	return m, nil
}

// DownloadThumbnail writes the thumbnail of media id (a JPEG or PNG of
// at most 320 pixels a side, for images and, when the server has ffmpeg,
// videos) to w, and returns the Media. A media without one is not_found.
func (c *Client) DownloadThumbnail(ctx context.Context, id string, w io.Writer) (parley.Media, error) {
	m, err := c.Media(ctx, id)
	if err != nil {
		return parley.Media{}, err
	}
	if m.ThumbnailURL == nil {
		return m, parley.Errorf(parley.CodeNotFound, "media %s has no thumbnail", id)
	}
	_, err = c.fetch(ctx, *m.ThumbnailURL, w)
	return m, err
}

// DownloadFile saves the file of media id at path, which appears only
// once complete (a temporary file in the same folder, renamed), and
// returns the Media.
func (c *Client) DownloadFile(ctx context.Context, id, path string) (parley.Media, error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".parley-download-*")
	if err != nil {
		return parley.Media{}, fmt.Errorf("download: %w", err)
	}
	defer os.Remove(f.Name()) // nothing to remove after the rename
	m, err := c.Download(ctx, id, f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("download: %w", cerr)
	}
	if err != nil {
		return m, err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return m, fmt.Errorf("download: %w", err)
	}
	return m, nil
}

// fetch GETs a signed media URL into w. A path is on the current server
// (joined to its base URL as REST paths are); an absolute URL is used as
// it is. No bearer token goes with it: the signature is the permission.
func (c *Client) fetch(ctx context.Context, ref string, w io.Writer) (int64, error) {
	target, err := c.mediaURL(ref)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, fmt.Errorf("download: %w", err)
	}
	resp, err := c.httpClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("download: %w", ctx.Err())
		}
		return 0, transportError(http.MethodGet, "/media", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("download: %w", responseError(resp))
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		if ctx.Err() != nil {
			return n, fmt.Errorf("download: %w", ctx.Err())
		}
		return n, transportError(http.MethodGet, "/media", err)
	}
	return n, nil
}

// mediaURL resolves a media URL from the server.
func (c *Client) mediaURL(ref string) (string, error) {
	r, err := url.Parse(ref)
	if err != nil || (r.Scheme != "" && r.Scheme != "http" && r.Scheme != "https") {
		return "", parley.Errorf(parley.CodeInternal, "the server sent a media URL %q", ref)
	}
	if r.Scheme != "" {
		return r.String(), nil
	}
	u := c.serverURL()
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + strings.TrimPrefix(r.Path, "/")
	u.RawPath = ""
	u.RawQuery = r.RawQuery
	return u.String(), nil
}
