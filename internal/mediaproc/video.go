package mediaproc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/jpeg"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Bounds on what ffprobe and ffmpeg may print.
const (
	maxProbeOutput  = 64 << 10
	maxPosterOutput = 4 << 20
)

// posterAt is where the poster frame is taken from, in seconds: past a
// fade-in from black, but within the shortest clips. A video shorter than
// that gets its first frame.
const posterAt = "0.5"

// processVideo probes the video at path for its duration and size, and
// writes a poster to thumbOut. Failures of ffprobe and ffmpeg leave the
// video without them; only ctx ending is an error.
func (p *Processor) processVideo(ctx context.Context, path string, info *Info, outs *Outputs, cleanOut, thumbOut io.Writer) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("mediaproc: %w", err)
	}
	// The "file:" protocol keeps a name like "x:y" or "-i" from being taken
	// for a URL or an option; the demuxer is forced so that ffmpeg does not
	// guess another format from the content (a playlist, say).
	input := "file:" + abs
	demuxer := "mov"
	if info.MIMEType == "video/webm" {
		demuxer = "matroska"
	}
	if p.ffprobe != "" {
		out, err := p.run(ctx, p.ffprobe, maxProbeOutput,
			"-v", "error", "-protocol_whitelist", "file", "-f", demuxer,
			"-select_streams", "v:0",
			"-show_entries", "stream=width,height:stream_tags=rotate:stream_side_data=rotation:format=duration",
			"-of", "default=nw=1", input)
		if err := ctx.Err(); err != nil {
			return err
		}
		if err == nil {
			parseProbe(out, info)
		}
	}
	if p.ffmpeg != "" && cleanOut != nil {
		if err := p.stripVideo(ctx, demuxer, input, info, outs, cleanOut); err != nil {
			return err
		}
	}
	if p.ffmpeg == "" || thumbOut == nil {
		return nil
	}
	poster, err := p.poster(ctx, demuxer, input, posterAt)
	if len(poster) == 0 && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		poster, err = p.poster(ctx, demuxer, input, "")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err != nil || len(poster) == 0 {
		return nil
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(poster))
	if err != nil || cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width > p.thumbMax || cfg.Height > p.thumbMax {
		return nil
	}
	return writeOutput(thumbOut, &outs.Thumbnail, "image/jpeg", cfg.Width, cfg.Height, func(w io.Writer) error {
		if _, err := w.Write(poster); err != nil {
			return fmt.Errorf("mediaproc: write poster: %w", err)
		}
		return nil
	})
}

// poster runs ffmpeg for a JPEG of the frame at the given time ("" for the
// first frame), at most thumbMax pixels on its long side. It returns no
// bytes when the video has no frame there.
func (p *Processor) poster(ctx context.Context, demuxer, input, at string) ([]byte, error) {
	args := []string{"-nostdin", "-v", "error", "-protocol_whitelist", "file",
		"-max_pixels", strconv.FormatInt(p.maxPixels, 10)}
	if at != "" {
		args = append(args, "-ss", at)
	}
	box := strconv.Itoa(p.thumbMax)
	args = append(args, "-f", demuxer, "-i", input,
		"-frames:v", "1", "-an", "-sn", "-dn",
		"-vf", "scale='min("+box+",iw)':'min("+box+",ih)':force_original_aspect_ratio=decrease",
		"-f", "image2pipe", "-c:v", "mjpeg", "-q:v", "4", "pipe:1")
	return p.run(ctx, p.ffmpeg, maxPosterOutput, args...)
}

// muxers are the ffmpeg output formats of the videos stripVideo cleans.
var muxers = map[string]string{"video/mp4": "mp4", "video/quicktime": "mov", "video/webm": "webm"}

// stripVideo writes to cleanOut a copy of the video without its container
// metadata (where a phone says it was filmed: QuickTime's location keys,
// MP4's ©xyz), and with only its video and audio streams (an iPhone's
// timed-metadata track carries the location too): a remux, the picture and
// sound copied bit for bit, streams' own tags (rotation) kept. A failure of
// ffmpeg leaves no clean copy, and the video is served as uploaded; only
// ctx ending is an error.
func (p *Processor) stripVideo(ctx context.Context, demuxer, input string, info *Info, outs *Outputs, cleanOut io.Writer) error {
	mime := info.MIMEType
	muxer, ok := muxers[mime]
	if !ok {
		return nil
	}
	tmp, err := os.CreateTemp("", "parley-video-*."+muxer)
	if err != nil {
		return nil
	}
	name := tmp.Name()
	tmp.Close()
	defer os.Remove(name)
	args := []string{"-nostdin", "-v", "error", "-protocol_whitelist", "file", "-f", demuxer, "-i", input,
		"-map", "0:v", "-map", "0:a?", "-map_metadata", "-1", "-map_chapters", "-1", "-c", "copy"}
	if muxer != "webm" {
		args = append(args, "-movflags", "+faststart")
	}
	args = append(args, "-f", muxer, "-y", "file:"+name)
	if _, err := p.run(ctx, p.ffmpeg, maxProbeOutput, args...); err != nil {
		return ctx.Err()
	}
	f, err := os.Open(name)
	if err != nil {
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return nil
	}
	return writeOutput(cleanOut, &outs.Clean, mime, info.Width, info.Height, func(w io.Writer) error {
		if _, err := io.Copy(w, f); err != nil {
			return fmt.Errorf("mediaproc: write the stripped video: %w", err)
		}
		return nil
	})
}

// errTooMuchOutput is returned by run when a program prints more than it
// may.
var errTooMuchOutput = errors.New("mediaproc: too much output")

// run runs a program without a shell, with no input, under ctx and the
// tool timeout, and returns its standard output (at most limit bytes).
func (p *Processor) run(ctx context.Context, prog string, limit int, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, p.toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	out := &limitedBuffer{limit: limit}
	cmd.Stdout = out
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("mediaproc: %s: %w", filepath.Base(prog), ctx.Err())
	}
	if out.over {
		return nil, errTooMuchOutput
	}
	if err != nil {
		return nil, fmt.Errorf("mediaproc: %s: %w", filepath.Base(prog), err)
	}
	return out.buf.Bytes(), nil
}

// limitedBuffer keeps what is written to it up to limit bytes, and fails
// past that.
type limitedBuffer struct {
	buf   bytes.Buffer
	limit int
	over  bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.buf.Len()+len(p) > b.limit {
		b.over = true
		return 0, errTooMuchOutput
	}
	return b.buf.Write(p)
}

// parseProbe reads the key=value lines that ffprobe printed into info:
// the duration, and the size turned by the rotation of the video stream.
// Values that are missing or not numbers are left out.
func parseProbe(out []byte, info *Info) {
	var w, h, rotation int
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		switch key {
		case "width":
			w = atoiPositive(value)
		case "height":
			h = atoiPositive(value)
		case "rotation", "TAG:rotate":
			if r, err := strconv.ParseFloat(value, 64); err == nil && !math.IsNaN(r) && !math.IsInf(r, 0) {
				rotation = int(math.Round(r))
			}
		case "duration":
			d, err := strconv.ParseFloat(value, 64)
			if err == nil && d > 0 && d < 1e9 { // NaN fails both
				info.DurationMS = int64(math.Round(d * 1000))
			}
		}
	}
	if w > 0 && h > 0 {
		if rotation%180 != 0 && (rotation%90) == 0 {
			w, h = h, w
		}
		info.Width, info.Height = w, h
	}
}

// atoiPositive returns the positive integer in s, or 0.
func atoiPositive(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n > 1<<20 {
		return 0
	}
	return n
}
