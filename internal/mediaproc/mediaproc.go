// Package mediaproc inspects and prepares the photos, videos and files that
// users upload to Parley. It never trusts the client's file name or
// Content-Type: the type comes from the content alone.
//
// Process reads an uploaded original from disk and:
//
//   - finds its MIME type from the content (net/http.DetectContentType plus
//     the signatures it lacks: MP4/QuickTime/HEIF "ftyp" brands, WebP, SVG,
//     TIFF) and its Kind: Image, Video or File;
//   - for an Image (JPEG, PNG, GIF or WebP) checks its dimensions from the
//     header before decoding anything, so that a decompression bomb is
//     refused without allocating what it asks for; writes a clean copy with
//     the metadata removed (EXIF including GPS, XMP, IPTC, ICC profiles, PNG
//     text and eXIf chunks, GIF comments, WebP EXIF/XMP/ICCP chunks) and a
//     thumbnail (JPEG, or PNG when it has transparency) at most
//     Options.ThumbnailMax pixels on its long side;
//   - for a Video (MP4, QuickTime, WebM) asks ffprobe for the duration and
//     size and ffmpeg for a JPEG poster frame, when they are installed. The
//     video itself is served as uploaded; a video that ffmpeg cannot read is
//     still a Video, just without a poster or duration;
//   - for anything else returns only its Info: a File, which the server
//     serves as an attachment.
//
// How each image format is cleaned:
//
//   - JPEG is decoded and re-encoded (quality 90) after the EXIF orientation
//     has been applied to the pixels, so the picture stays upright without
//     its metadata. Info.Width and Info.Height are the upright size.
//   - PNG is decoded and re-encoded with image/png, which writes no
//     ancillary chunks; an eXIf orientation is applied as for JPEG. An
//     animated PNG (APNG) cannot be re-encoded by the standard library, so
//     its chunks are filtered instead: the image and animation chunks (IHDR,
//     PLTE, tRNS, gAMA, cHRM, sRGB, sBIT, bKGD, acTL, fcTL, IDAT, fdAT, IEND)
//     are copied byte for byte and every other chunk is dropped.
//   - GIF keeps its original frames byte for byte: the block structure is
//     rewritten without comment, plain-text and application extensions
//     (XMP, ICC), except the NETSCAPE2.0/ANIMEXTS1.0 loop count. This keeps
//     animations and their size intact and never decodes more than the
//     first frame (for the thumbnail).
//   - WebP has no encoder in Go, so the RIFF container is rebuilt with only
//     the VP8X (its ICC/EXIF/XMP flags cleared), VP8, VP8L, ALPH, ANIM and
//     ANMF chunks (and only ALPH/VP8/VP8L inside each ANMF): lossless, and
//     animations survive. An EXIF orientation in a WebP is not applied
//     (browsers ignore it too). The thumbnail of an animated WebP is its
//     first frame.
//
// HEIC/HEIF and AVIF photos (image/heic, image/heif, image/avif) are Files:
// Go cannot decode them, so they cannot be checked, cleaned or
// thumbnailed; iOS converts photos to JPEG when they are shared with other
// apps, and the server should ask clients to upload JPEG. HTML, SVG and XML
// are Files too, whatever their name: they can carry scripts and must be
// served as attachments, never inline.
package mediaproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/parley-chat/parley"
)

// Kind says how a client shows an upload.
type Kind string

// The kinds of upload.
const (
	// Image is a JPEG, PNG, GIF or WebP picture that was checked and
	// cleaned; it comes with a clean copy and a thumbnail.
	Image Kind = "image"
	// Video is an MP4, QuickTime or WebM video, served as uploaded; it comes
	// with a poster thumbnail and a duration when ffmpeg is installed.
	Video Kind = "video"
	// File is anything else, served as an attachment.
	File Kind = "file"
)

// Default limits.
const (
	DefaultMaxImagePixels = 50_000_000
	DefaultThumbnailMax   = 320
	DefaultToolTimeout    = 30 * time.Second
)

// maxSide is the largest width or height of an image that is accepted,
// whatever the pixel budget: no format Parley cleans allows more than 65535
// and a 1×50,000,000 strip is not a photo.
const maxSide = 65535

// Options are the limits of a Processor. The zero value of each field means
// its default.
type Options struct {
	// MaxImagePixels is the largest width×height of an image that is
	// decoded; default 50,000,000. Larger images are refused with
	// invalid_argument before anything is decoded. Decoding, turning and
	// re-encoding an image takes roughly 8 to 16 bytes a pixel at its peak
	// (about 100 MB and 1 s of a core for a 12-megapixel phone photo), so a
	// server bounds how many Process calls run at once.
	MaxImagePixels int64
	// ThumbnailMax is the longest side of a thumbnail or poster in pixels;
	// default 320. Smaller pictures are never scaled up.
	ThumbnailMax int
	// FFmpeg and FFprobe are the paths of the ffmpeg and ffprobe programs;
	// "" looks them up in PATH. When one is not found (or the path is not
	// an executable), videos get no poster (ffmpeg) or no duration and size
	// (ffprobe).
	FFmpeg, FFprobe string
	// ToolTimeout bounds each run of ffmpeg or ffprobe; default 30s.
	ToolTimeout time.Duration
}

// Info describes an upload, found from its content.
type Info struct {
	// MIMEType is the media type found from the content, without
	// parameters: image/jpeg, image/png, image/gif, image/webp, video/mp4,
	// video/quicktime, video/webm, image/heic, image/svg+xml, text/html,
	// text/plain, application/pdf, ..., application/octet-stream (also for
	// an empty file).
	MIMEType string
	// Kind says how the upload is shown.
	Kind Kind
	// Width and Height are the displayed size of an image (after its EXIF
	// orientation) or of a video (after its rotation, when ffprobe is
	// installed); 0 when not known or not applicable.
	Width, Height int
	// DurationMS is the length of a video in milliseconds, when ffprobe is
	// installed and could read it; 0 otherwise.
	DurationMS int64
	// Size is the size of the original in bytes.
	Size int64
}

// Output describes one file that Process wrote.
type Output struct {
	// Written reports whether Process wrote this output; when false the
	// other fields are zero and nothing was written to its writer.
	Written bool
	// MIMEType is the type of what was written (image/jpeg, image/png,
	// image/gif or image/webp).
	MIMEType string
	// Size is the number of bytes written.
	Size int64
	// Width and Height are the size of the picture written.
	Width, Height int
}

// Outputs says what Process wrote.
type Outputs struct {
	// Clean is the copy of an image, or (with ffmpeg) of a video, without
	// metadata, to be served instead of the original; its MIMEType is the
	// original's.
	Clean Output
	// Thumbnail is the thumbnail of an image or the poster frame of a
	// video: a JPEG, or a PNG when the image has transparency.
	Thumbnail Output
}

// Processor inspects and prepares uploads. It is safe for concurrent use;
// each Process call works on its own. Create it with New.
type Processor struct {
	maxPixels   int64
	thumbMax    int
	ffmpeg      string // "" when unavailable
	ffprobe     string // "" when unavailable
	toolTimeout time.Duration
}

// New returns a Processor with opts, looking up ffmpeg and ffprobe once.
func New(opts Options) *Processor {
	p := &Processor{
		maxPixels:   opts.MaxImagePixels,
		thumbMax:    opts.ThumbnailMax,
		toolTimeout: opts.ToolTimeout,
	}
	if p.maxPixels <= 0 {
		p.maxPixels = DefaultMaxImagePixels
	}
	if p.thumbMax <= 0 {
		p.thumbMax = DefaultThumbnailMax
	}
	if p.toolTimeout <= 0 {
		p.toolTimeout = DefaultToolTimeout
	}
	p.ffmpeg = lookTool(opts.FFmpeg, "ffmpeg")
	p.ffprobe = lookTool(opts.FFprobe, "ffprobe")
	return p
}

// lookTool returns the resolved path of a program, or "" when it is absent.
func lookTool(path, name string) string {
	if path == "" {
		path = name
	}
	resolved, err := exec.LookPath(path)
	if err != nil {
		return ""
	}
	return resolved
}

// VideoTools returns the paths of the ffmpeg and ffprobe programs the
// Processor runs; "" for one that was not found. A server logs it at start.
func (p *Processor) VideoTools() (ffmpeg, ffprobe string) {
	return p.ffmpeg, p.ffprobe
}

// Process inspects the upload stored at path and writes what the server
// serves in its place:
//
//   - for an Image, a clean copy to cleanOut and a thumbnail to thumbOut;
//   - for a Video, a poster thumbnail to thumbOut when ffmpeg can make one;
//   - for a File, nothing.
//
// A nil writer skips its output. Outputs says what was written. When
// Process returns an error, what was written so far is incomplete and must
// be discarded.
//
// An image that is corrupt, truncated, too large (more than MaxImagePixels,
// or a side of 0 or more than 65535 pixels) or of a type that does not
// match its content returns a *parley.Error with code invalid_argument,
// whose message can be shown to the uploader. Other errors (the file cannot
// be read, a writer fails, ctx is done) are internal. Failures of ffmpeg or
// ffprobe are not errors: the video has no poster or duration. Process
// checks ctx between steps and runs ffmpeg and ffprobe under it; decoding
// an image is not interrupted.
func (p *Processor) Process(ctx context.Context, path string, cleanOut, thumbOut io.Writer) (Info, Outputs, error) {
	if err := ctx.Err(); err != nil {
		return Info{}, Outputs{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return Info{}, Outputs{}, fmt.Errorf("mediaproc: open upload: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Info{}, Outputs{}, fmt.Errorf("mediaproc: stat upload: %w", err)
	}
	if !st.Mode().IsRegular() {
		return Info{}, Outputs{}, fmt.Errorf("mediaproc: %s is not a regular file", path)
	}
	head := make([]byte, sniffLen)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return Info{}, Outputs{}, fmt.Errorf("mediaproc: read upload: %w", err)
	}
	info := Info{MIMEType: DetectType(head[:n]), Size: st.Size()}
	info.Kind = KindOf(info.MIMEType)

	var outs Outputs
	switch info.Kind {
	case Image:
		src := &imageSource{f: f, size: st.Size()}
		if err := p.processImage(ctx, src, &info, &outs, cleanOut, thumbOut); err != nil {
			return info, outs, err
		}
	case Video:
		if err := p.processVideo(ctx, path, &info, &outs, cleanOut, thumbOut); err != nil {
			return info, outs, err
		}
	}
	return info, outs, nil
}

// imageSource is the opened original of an image.
type imageSource struct {
	f    *os.File
	size int64
}

// reader returns a buffered reader of the whole file from its start.
func (s *imageSource) reader() *bufio.Reader {
	return bufio.NewReader(io.NewSectionReader(s.f, 0, s.size))
}

// invalid returns the invalid_argument error for a bad upload, keeping the
// cause for the logs.
func invalid(cause error, format string, args ...any) error {
	e := parley.Errorf(parley.CodeInvalidArgument, format, args...)
	e.Err = cause
	return e
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// writeOutput runs write against w (skipped when w is nil) and records the
// result in out. Errors from w are returned as internal errors.
func writeOutput(w io.Writer, out *Output, mime string, width, height int, write func(io.Writer) error) error {
	if w == nil {
		return nil
	}
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 64<<10)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("mediaproc: write %s: %w", mime, err)
	}
	*out = Output{Written: true, MIMEType: mime, Size: cw.n, Width: width, Height: height}
	return nil
}

// rewriter copies the parts of an original that are kept to an output, and
// tells a short original (an invalid upload) from a failing output (an
// internal error).
type rewriter struct {
	w    io.Writer
	name string // the format, for messages
	werr error  // the first error of w
	buf  []byte
}

func newRewriter(w io.Writer, name string) *rewriter {
	return &rewriter{w: w, name: name, buf: make([]byte, 32<<10)}
}

func (rw *rewriter) Write(b []byte) (int, error) {
	n, err := rw.w.Write(b)
	if err != nil && rw.werr == nil {
		rw.werr = err
	}
	return n, err
}

// write writes b to the output.
func (rw *rewriter) write(b []byte) error {
	if _, err := rw.Write(b); err != nil {
		return fmt.Errorf("mediaproc: write clean %s: %w", rw.name, err)
	}
	return nil
}

// copy copies n bytes of r to the output.
func (rw *rewriter) copy(r io.Reader, n int64) error {
	copied, err := io.CopyBuffer(rw, io.LimitReader(r, n), rw.buf)
	if rw.werr != nil {
		return fmt.Errorf("mediaproc: write clean %s: %w", rw.name, rw.werr)
	}
	if err == nil && copied < n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return invalid(err, "the %s image is truncated", rw.name)
	}
	return nil
}

// truncated returns the error for an original that ends too soon or cannot
// be read at the given step.
func truncated(name string, err error) error {
	return invalid(err, "the %s image is truncated", name)
}
