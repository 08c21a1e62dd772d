package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/parley-chat/parley"
)

// The uploads of media messages speak tus 1.0, the core protocol and its
// creation extension (https://tus.io/protocols/resumable-upload):
//
//   - POST /api/uploads with Upload-Length and Upload-Metadata (filename
//     and filetype, base64) creates an upload; the last segment of its
//     Location is its id (the media id), stored in the outbox before any
//     byte is sent, so that a restarted client continues the same upload.
//     The upload's URL is /api/uploads/{id} on the server in use, so that
//     an upload continues through another node of a cluster that keeps
//     uploads in shared storage.
//   - PATCH at Upload-Offset, with Content-Type
//     application/offset+octet-stream, appends a chunk of at most
//     uploadChunk bytes; the answer's Upload-Offset is what the server
//     has, stored after each chunk.
//   - HEAD tells where an upload got to: every attempt but the one that
//     created the upload starts with it, since a chunk cut short may have
//     left part of itself on the server (or none of it). A PATCH answered
//     409 (another offset) also leads to a HEAD.
//   - An upload the server no longer has as one (404) is complete (the
//     answer to the last PATCH was lost: GET /api/media/{id} gives its
//     Media) or gone (expired, or the server lost it): it starts over.
//
// Every request carries Tus-Resumable: 1.0.0 and the bearer token,
// refreshed as for REST calls (at 80% of its life, and once after a 401).

// tus constants.
const (
	tusResumable = "1.0.0"
	uploadsPath  = "/api/uploads"
	// uploadChunk is the most one PATCH sends: a broken connection costs
	// at most that much again, and progress is reported after each.
	uploadChunk = 1 << 20
	// chunkTimeout bounds one PATCH, the server's processing of the file
	// after the last one included.
	chunkTimeout = 2 * time.Minute
	// maxUploads bounds the uploads in flight at once.
	maxUploads = 2
	// maxResumes bounds how often one attempt goes back to HEAD (a 409
	// or a 404 on a PATCH) before it gives up to the sender's backoff.
	maxResumes = 3
)

// Errors of an upload attempt.
var (
	// errUploadGone: the server has no upload in progress at that URL.
	errUploadGone = errors.New("tus: no such upload in progress")
	// errOffsetConflict: a PATCH was at another offset than the server's.
	errOffsetConflict = errors.New("tus: offset conflict")
	// errUploadBusy: another process on the profile uploads this file.
	errUploadBusy = parley.Errorf(parley.CodeUnavailable, "another process is uploading this file")
	// errOutboxGone: the message left the outbox meanwhile (acknowledged
	// through another process).
	errOutboxGone = errors.New("the message is no longer in the outbox")
)

// upload runs one attempt at uploading the file of an outbox item. It
// returns nil once the upload is complete and its Media stored in the
// item, with the kind the message goes out as. An error with a permanent
// code (isPermanentUpload) means the file can never be sent as it is;
// any other, that a later attempt continues where this one stopped.
func (c *Client) upload(ctx context.Context, it outboxItem) error {
	f := *it.File
	cmid := it.ClientMessageID
	file, err := os.Open(c.uploadPath(cmid))
	if errors.Is(err, fs.ErrNotExist) {
		return parley.Errorf(parley.CodeInvalidArgument, "the copy of %s in the profile is gone", f.Name)
	}
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	defer file.Close() // which releases the lock
	if ok, err := tryLock(file); err != nil {
		return fmt.Errorf("upload: %w", err)
	} else if !ok {
		return errUploadBusy
	}
	if st, err := file.Stat(); err != nil {
		return fmt.Errorf("upload: %w", err)
	} else if st.Size() != f.Size {
		return parley.Errorf(parley.CodeInvalidArgument, "the copy of %s in the profile changed size", f.Name)
	}

	id, offset := f.UploadID, f.Offset
	// known says whether offset is the server's word in this attempt.
	known := false
	buf := make([]byte, min(uploadChunk, f.Size))
	for resumes := 0; ; resumes++ {
		if resumes > maxResumes {
			return parley.Errorf(parley.CodeUnavailable, "upload of %s: the server's offset keeps changing", f.Name)
		}
		switch {
		case id == "":
			if id, err = c.tusCreate(ctx, f); err != nil {
				return err
			}
			offset, known = 0, true
			if err := c.saveUpload(ctx, cmid, id, 0); err != nil {
				return err
			}
		case !known:
			off, err := c.tusHead(ctx, id, f.Size)
			if errors.Is(err, errUploadGone) {
				m, done, err := c.uploadedMedia(ctx, id)
				if err != nil {
					return err
				}
				if done {
					return c.uploaded(ctx, it, m)
				}
				// Expired or lost: from the start, as a new upload.
				id = ""
				if err := c.saveUpload(ctx, cmid, "", 0); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			offset, known = off, true
			if err := c.saveUpload(ctx, cmid, id, offset); err != nil {
				return err
			}
		}
		c.uploadProgress(it, offset)
		for offset < f.Size {
			n := min(int64(len(buf)), f.Size-offset)
			if _, err := file.ReadAt(buf[:n], offset); err != nil {
				return fmt.Errorf("upload: read the copy of %s: %w", f.Name, err)
			}
			next, err := c.tusPatch(ctx, id, offset, buf[:n])
			if errors.Is(err, errOffsetConflict) || errors.Is(err, errUploadGone) {
				known = false
				break
			}
			if err != nil {
				return err
			}
			offset = next
			if err := c.saveUpload(ctx, cmid, id, offset); err != nil {
				return err
			}
			c.uploadProgress(it, offset)
		}
		if known && offset == f.Size {
			break
		}
	}
	// The last PATCH is answered once the server has processed the file.
	m, done, err := c.uploadedMedia(ctx, id)
	if err != nil {
		return err
	}
	if !done {
		return parley.Errorf(parley.CodeUnavailable, "upload of %s: complete, but the server has no media for it", f.Name)
	}
	return c.uploaded(ctx, it, m)
}

// isPermanentUpload reports whether an upload that failed with err can
// never succeed as it is: the server refused the file (invalid_argument,
// at the last PATCH), found it too large (payload_too_large), or refused
// the user (forbidden).
func isPermanentUpload(err error) bool {
	if !errors.As(err, new(*parley.Error)) {
		return false
	}
	switch parley.ErrorCode(err) {
	case parley.CodeInvalidArgument, parley.CodePayloadTooLarge, parley.CodeForbidden:
		return true
	}
	return false
}

// saveUpload stores where an upload is: its id ("" to start over) and
// the bytes the server has.
func (c *Client) saveUpload(ctx context.Context, cmid, id string, offset int64) error {
	ok, err := c.store.setUpload(context.WithoutCancel(ctx), cmid, id, offset)
	if err != nil {
		return err
	}
	if !ok {
		return errOutboxGone
	}
	return nil
}

// uploadProgress reports that offset bytes of an item's file are on the
// server: to its WithProgress function, and as an event.
func (c *Client) uploadProgress(it outboxItem, offset int64) {
	c.progress.report(it.ClientMessageID, offset, it.File.Size)
	f := *it.File
	f.Offset = offset
	it.File = &f
	msg := outboxMessage(it, c.me())
	c.events.emit(Event{Type: EventMessage, ConversationID: it.ConversationID, Message: &msg})
}

// uploaded stores the Media of a complete upload in its outbox item, with
// the kind the message goes out as: the server's finding for an automatic
// kind (kindOf its MIME type), the sender's choice otherwise.
func (c *Client) uploaded(ctx context.Context, it outboxItem, m parley.Media) error {
	kind := it.Kind
	if it.File.AutoKind {
		kind = kindOf(m.MIMEType)
	}
	ok, err := c.store.setUploaded(context.WithoutCancel(ctx), it.ClientMessageID, kind, m)
	if err != nil {
		return err
	}
	if !ok {
		return errOutboxGone
	}
	c.progress.report(it.ClientMessageID, it.File.Size, it.File.Size)
	c.progress.drop(it.ClientMessageID)
	f := *it.File
	f.Media, f.Offset = &m, f.Size
	it.File, it.Kind = &f, kind
	msg := outboxMessage(it, c.me())
	c.events.emit(Event{Type: EventMessage, ConversationID: it.ConversationID, Message: &msg})
	return nil
}

// uploadedMedia returns the Media of upload id: done is false when the
// server has no such media (the upload expired, was deleted, or was never
// complete and is gone). An upload still being processed is conflict; a
// refused one is invalid_argument, with the server's reason.
func (c *Client) uploadedMedia(ctx context.Context, id string) (m parley.Media, done bool, err error) {
	m, err = c.Media(ctx, id)
	switch {
	case err == nil:
		return m, true, nil
	case parley.ErrorCode(err) == parley.CodeNotFound:
		return parley.Media{}, false, nil
	}
	return parley.Media{}, false, err
}

// uploadURL is the URL of upload id on the server in use ("" for the
// creation URL).
func (c *Client) uploadURL(id string) string {
	u := c.serverURL()
	u.Path = strings.TrimSuffix(u.Path, "/") + uploadsPath
	if id != "" {
		u.Path += "/" + id
	}
	return u.String()
}

// tusCreate creates the upload of a file and returns its id: the last
// segment of the answer's Location.
func (c *Client) tusCreate(ctx context.Context, f outboxFile) (string, error) {
	meta := "filename " + base64.StdEncoding.EncodeToString([]byte(f.Name))
	if f.Type != "" {
		meta += ",filetype " + base64.StdEncoding.EncodeToString([]byte(f.Type))
	}
	hdr := http.Header{
		"Upload-Length":   {strconv.FormatInt(f.Size, 10)},
		"Upload-Metadata": {meta},
	}
	resp, err := c.tusDo(ctx, http.MethodPost, c.uploadURL(""), hdr, nil)
	if err != nil {
		return "", err
	}
	defer drainClose(resp)
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("create the upload of %s: %w", f.Name, tusError(resp))
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return "", parley.Errorf(parley.CodeInternal, "create the upload of %s: Location %q", f.Name, resp.Header.Get("Location"))
	}
	id := path.Base(loc.Path)
	if _, err := uuid.Parse(id); err != nil {
		return "", parley.Errorf(parley.CodeInternal, "create the upload of %s: Location %q", f.Name, resp.Header.Get("Location"))
	}
	return id, nil
}

// tusHead returns the offset of upload id, whose length is size.
// errUploadGone says the server has no such upload in progress.
func (c *Client) tusHead(ctx context.Context, id string, size int64) (int64, error) {
	resp, err := c.tusDo(ctx, http.MethodHead, c.uploadURL(id), nil, nil)
	if err != nil {
		return 0, err
	}
	defer drainClose(resp)
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNoContent:
	case http.StatusNotFound, http.StatusGone:
		return 0, errUploadGone
	default:
		return 0, fmt.Errorf("HEAD the upload: %w", tusError(resp))
	}
	off, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil || off < 0 || off > size {
		return 0, parley.Errorf(parley.CodeInternal, "HEAD the upload: Upload-Offset %q", resp.Header.Get("Upload-Offset"))
	}
	if l := resp.Header.Get("Upload-Length"); l != "" && l != strconv.FormatInt(size, 10) {
		// Not this file's upload: start over.
		return 0, errUploadGone
	}
	return off, nil
}

// tusPatch sends chunk at offset of upload id and returns the server's new
// offset. errOffsetConflict and errUploadGone ask for a HEAD.
func (c *Client) tusPatch(ctx context.Context, id string, offset int64, chunk []byte) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, chunkTimeout)
	defer cancel()
	hdr := http.Header{
		"Upload-Offset": {strconv.FormatInt(offset, 10)},
		"Content-Type":  {"application/offset+octet-stream"},
	}
	resp, err := c.tusDo(ctx, http.MethodPatch, c.uploadURL(id), hdr, chunk)
	if err != nil {
		return 0, err
	}
	defer drainClose(resp)
	switch resp.StatusCode {
	case http.StatusNoContent, http.StatusOK:
	case http.StatusConflict:
		return 0, errOffsetConflict
	case http.StatusNotFound, http.StatusGone:
		return 0, errUploadGone
	default:
		return 0, fmt.Errorf("PATCH the upload: %w", tusError(resp))
	}
	next, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil || next < offset || next > offset+int64(len(chunk)) {
		return 0, parley.Errorf(parley.CodeInternal, "PATCH the upload: Upload-Offset %q after %d+%d",
			resp.Header.Get("Upload-Offset"), offset, len(chunk))
	}
	return next, nil
}

// tusDo sends one tus request with the bearer token, refreshing it first
// when due and once more after a 401, as call does. body may be nil (no
// body). Transport failures come back as unavailable.
func (c *Client) tusDo(ctx context.Context, method, target string, hdr http.Header, body []byte) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		token, err := c.accessToken(ctx)
		if err != nil {
			return nil, err
		}
		var rd io.Reader = http.NoBody
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, target, rd)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", method, target, err)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		req.Header.Set("Tus-Resumable", tusResumable)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.httpClient.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%s %s: %w", method, req.URL.Path, ctx.Err())
			}
			return nil, transportError(method, req.URL.Path, err)
		}
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 {
			drainClose(resp)
			if _, err := c.refresh(ctx, token); err != nil {
				return nil, err
			}
			continue
		}
		return resp, nil
	}
}

// drainClose reads a little of what is left of a body, so that the
// connection can be reused, and closes it.
func drainClose(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// tusTransient are tusd's own error codes (ERR_...) that say a request
// was cut or overtaken, not that the upload is wrong: a later attempt,
// after a HEAD, goes on.
var tusTransient = map[string]bool{
	"ERR_UPLOAD_INTERRUPTED": true, // another request for the upload took over
	"ERR_UNEXPECTED_EOF":     true, // the body was cut short
	"ERR_UPLOAD_STOPPED":     true,
	"ERR_READ_TIMEOUT":       true,
	"ERR_UPLOAD_LOCKED":      true,
	"ERR_LOCK_TIMEOUT":       true,
	"ERR_SERVER_SHUTDOWN":    true,
	"ERR_CONNECTION_RESET":   true,
}

// tusError turns an error answer of the tus endpoint into a
// *parley.Error. Its body is a problem object (the API's own refusals:
// unauthenticated, rate_limited), or tusd's text "CODE: message", where
// CODE is the contract's code in capitals (INVALID_ARGUMENT: the file was
// refused) or tusd's own (ERR_MISMATCHED_OFFSET).
func tusError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var p problem
	if json.Unmarshal(b, &p) == nil && p.Code != "" {
		resp.Body = io.NopCloser(bytes.NewReader(b))
		return responseError(resp)
	}
	code := codeOfStatus(resp.StatusCode)
	msg := http.StatusText(resp.StatusCode)
	text := strings.TrimSpace(string(b))
	if name, rest, ok := strings.Cut(text, ": "); ok && name != "" && strings.ToUpper(name) == name {
		msg = rest
		switch c := parley.Code(strings.ToLower(name)); {
		case c.HTTPStatus() != 0:
			code = c
		case tusTransient[name]:
			code = parley.CodeUnavailable
		}
	} else if text != "" {
		msg = text
	}
	e := parley.Errorf(code, "%s", msg)
	if code == parley.CodeRateLimited {
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			e.RetryAfter = time.Duration(s) * time.Second
		}
	}
	return e
}
