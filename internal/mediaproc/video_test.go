package mediaproc

import (
	"bytes"
	"context"
	"errors"
	"image/jpeg"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// makeVideo runs ffmpeg to write a test video to dir/name, and skips the
// test when ffmpeg is not installed.
func makeVideo(t *testing.T, name string, args ...string) string {
	t.Helper()
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("ffmpeg is not installed (apt-get install ffmpeg); video probing and posters are untested")
	}
	path := filepath.Join(t.TempDir(), name)
	args = append([]string{"-nostdin", "-v", "error", "-y"}, args...)
	out, err := exec.Command(ffmpeg, append(args, path)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", args, err, out)
	}
	return path
}

const testsrc = "testsrc=duration=2:size=320x240:rate=10"

func TestVideo(t *testing.T) {
	mp4 := makeVideo(t, "clip.jpg", "-f", "lavfi", "-i", testsrc, "-pix_fmt", "yuv420p", "-f", "mp4")
	mov := makeVideo(t, "clip.mov", "-f", "lavfi", "-i", testsrc, "-pix_fmt", "yuv420p", "-f", "mov")
	short := makeVideo(t, "short.mp4", "-f", "lavfi", "-i", "testsrc=duration=0.2:size=160x90:rate=10", "-pix_fmt", "yuv420p")
	rotated := makeVideo(t, "rotated.mp4", "-i", mp4, "-c", "copy", "-metadata:s:v:0", "rotate=90", "-f", "mp4")
	webm := makeVideo(t, "clip.webm", "-f", "lavfi", "-i", "testsrc=duration=1:size=64x48:rate=5", "-c:v", "libvpx", "-b:v", "100k")
	tests := []struct {
		name         string
		path         string
		thumbMax     int
		mime         string
		w, h         int
		durationMS   int64
		posterW      int
		posterH      int
		durationSlop int64
	}{
		{"mp4", mp4, 0, "video/mp4", 320, 240, 2000, 320, 240, 50},
		{"mov", mov, 0, "video/quicktime", 320, 240, 2000, 320, 240, 50},
		{"mp4 small poster", mp4, 100, "video/mp4", 320, 240, 2000, 100, 75, 50},
		{"shorter than the poster time", short, 0, "video/mp4", 160, 90, 200, 160, 90, 50},
		{"rotated", rotated, 0, "video/mp4", 240, 320, 2000, 240, 320, 50},
		{"webm", webm, 0, "video/webm", 64, 48, 1000, 64, 48, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(Options{ThumbnailMax: tt.thumbMax})
			if ffmpeg, ffprobe := p.VideoTools(); ffmpeg == "" || ffprobe == "" {
				t.Fatalf("video tools not found: ffmpeg %q, ffprobe %q", ffmpeg, ffprobe)
			}
			data, err := os.ReadFile(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			r := process(t, p, "upload", data)
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.info.MIMEType != tt.mime || r.info.Kind != Video {
				t.Fatalf("type %s, kind %s; want %s, video", r.info.MIMEType, r.info.Kind, tt.mime)
			}
			if r.info.Width != tt.w || r.info.Height != tt.h {
				t.Errorf("size %d×%d, want %d×%d", r.info.Width, r.info.Height, tt.w, tt.h)
			}
			if d := r.info.DurationMS - tt.durationMS; d < -tt.durationSlop || d > tt.durationSlop {
				t.Errorf("duration %d ms, want %d", r.info.DurationMS, tt.durationMS)
			}
			c := r.outs.Clean
			if !c.Written || c.MIMEType != tt.mime || c.Size != int64(len(r.clean)) || c.Size == 0 {
				t.Fatalf("stripped copy %+v (%d bytes)", c, len(r.clean))
			}
			// The stripped copy is the same video: size, turn and length.
			again := process(t, p, "stripped", r.clean)
			if again.info.MIMEType != tt.mime || again.info.Width != tt.w || again.info.Height != tt.h ||
				again.info.DurationMS-tt.durationMS < -tt.durationSlop || again.info.DurationMS-tt.durationMS > tt.durationSlop {
				t.Errorf("stripped copy %+v, want the original's type, %d×%d and length", again.info, tt.w, tt.h)
			}
			th := r.outs.Thumbnail
			if !th.Written || th.MIMEType != "image/jpeg" || th.Size != int64(len(r.thumb)) {
				t.Fatalf("poster %+v (%d bytes)", th, len(r.thumb))
			}
			img, err := jpeg.Decode(bytes.NewReader(r.thumb))
			if err != nil {
				t.Fatal(err)
			}
			if b := img.Bounds(); b.Dx() != tt.posterW || b.Dy() != tt.posterH || th.Width != tt.posterW || th.Height != tt.posterH {
				t.Errorf("poster %v (output %d×%d), want %d×%d", b, th.Width, th.Height, tt.posterW, tt.posterH)
			}
		})
	}
}

// TestVideoLocationStripped: a phone's video says where it was filmed in
// its container's metadata; the copy members download does not.
func TestVideoLocationStripped(t *testing.T) {
	for _, ext := range []string{"mp4", "mov"} {
		t.Run(ext, func(t *testing.T) {
			path := makeVideo(t, "clip."+ext, "-f", "lavfi", "-i", testsrc, "-pix_fmt", "yuv420p",
				"-metadata", "location=+37.7749-122.4194/", "-metadata", "comment=filmed at home",
				"-movflags", "use_metadata_tags", "-f", map[string]string{"mp4": "mp4", "mov": "mov"}[ext])
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(data, []byte("37.7749")) || !bytes.Contains(data, []byte("filmed at home")) {
				t.Fatal("the test video carries no location")
			}
			r := process(t, New(Options{}), "upload", data)
			if r.err != nil || !r.outs.Clean.Written {
				t.Fatalf("%v, outputs %+v", r.err, r.outs)
			}
			if bytes.Contains(r.clean, []byte("37.7749")) || bytes.Contains(r.clean, []byte("filmed at home")) {
				t.Error("the stripped copy still says where it was filmed")
			}
		})
	}
}

func TestVideoWithoutTools(t *testing.T) {
	mp4 := makeVideo(t, "clip.mp4", "-f", "lavfi", "-i", testsrc, "-pix_fmt", "yuv420p")
	data, err := os.ReadFile(mp4)
	if err != nil {
		t.Fatal(err)
	}
	p := New(noVideo(Options{}))
	if ffmpeg, ffprobe := p.VideoTools(); ffmpeg != "" || ffprobe != "" {
		t.Fatalf("tools found at bogus paths: %q %q", ffmpeg, ffprobe)
	}
	r := process(t, p, "clip.mp4", data)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.info.Kind != Video || r.info.DurationMS != 0 || r.info.Width != 0 || r.outs != (Outputs{}) || len(r.thumb) != 0 {
		t.Errorf("info %+v, outputs %+v", r.info, r.outs)
	}
}

func TestBrokenVideoIsPlainVideo(t *testing.T) {
	makeVideo(t, "probe.mp4", "-f", "lavfi", "-i", "testsrc=duration=0.1:size=16x16:rate=10") // skips without ffmpeg
	broken := append(ftyp("isom", "isom", "mp41"), bytes.Repeat([]byte("\x00\x00\x00\x10moov garbage!"), 50)...)
	r := process(t, New(Options{}), "broken.mp4", broken)
	if r.err != nil {
		t.Fatalf("a broken video is an error: %v", r.err)
	}
	if r.info.MIMEType != "video/mp4" || r.info.Kind != Video || r.info.DurationMS != 0 || r.outs.Thumbnail.Written {
		t.Errorf("info %+v, outputs %+v", r.info, r.outs)
	}
}

func TestVideoNameIsNotAnOption(t *testing.T) {
	mp4 := makeVideo(t, "clip.mp4", "-f", "lavfi", "-i", testsrc, "-pix_fmt", "yuv420p")
	// A file named like an option or a URL is still read as this file.
	t.Chdir(filepath.Dir(mp4))
	for _, name := range []string{"-y", "http:x", "concat:a|b"} {
		if err := os.Rename(mp4, name); err != nil {
			t.Fatal(err)
		}
		mp4 = name
		var thumb bytes.Buffer
		info, outs, err := New(Options{}).Process(context.Background(), name, nil, &thumb)
		if err != nil || info.DurationMS == 0 || !outs.Thumbnail.Written {
			t.Errorf("%q: info %+v, outputs %+v, err %v", name, info, outs, err)
		}
	}
}

func TestVideoContext(t *testing.T) {
	mp4 := makeVideo(t, "clip.mp4", "-f", "lavfi", "-i", testsrc, "-pix_fmt", "yuv420p")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A "ffprobe" that hangs; the context ends once it has started:
	// Process returns the context's error instead of waiting, and does not
	// run ffmpeg.
	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	script := filepath.Join(dir, "ffprobe")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ntouch '"+started+"'\nexec sleep 30\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	p := New(Options{FFprobe: script})
	go func() {
		for {
			if _, err := os.Stat(started); err == nil {
				cancel()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	_, outs, err := p.Process(ctx, mp4, nil, &bytes.Buffer{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
	if outs.Thumbnail.Written {
		t.Error("a poster was made after the context ended")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Process took %v after the context ended", d)
	}
}

func TestVideoToolTimeout(t *testing.T) {
	mp4 := makeVideo(t, "clip.mp4", "-f", "lavfi", "-i", testsrc, "-pix_fmt", "yuv420p")
	dir := t.TempDir()
	script := filepath.Join(dir, "ffprobe")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec sleep 30\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	p := New(Options{FFprobe: script, ToolTimeout: 3 * time.Second})
	start := time.Now()
	var thumb bytes.Buffer
	info, outs, err := p.Process(context.Background(), mp4, nil, &thumb)
	if err != nil {
		t.Fatalf("a hung ffprobe is an error: %v", err)
	}
	if info.DurationMS != 0 || !outs.Thumbnail.Written {
		t.Errorf("info %+v, outputs %+v: want no duration but a poster", info, outs)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Process took %v with a 3s tool timeout", d)
	}
}

func TestParseProbe(t *testing.T) {
	tests := []struct {
		out        string
		w, h       int
		durationMS int64
	}{
		{"width=320\nheight=240\nduration=2.000000\n", 320, 240, 2000},
		{"width=320\nheight=240\nrotation=-90\nduration=1.2345\n", 240, 320, 1235},
		{"width=320\nheight=240\nTAG:rotate=270\nduration=N/A\n", 240, 320, 0},
		{"width=320\nheight=240\nrotation=180\n", 320, 240, 0},
		{"width=0\nheight=240\nduration=nan\n", 0, 0, 0},
		{"width=abc\nduration=-5\n", 0, 0, 0},
		{"duration=1e300\n", 0, 0, 0},
		{"garbage", 0, 0, 0},
	}
	for _, tt := range tests {
		var info Info
		parseProbe([]byte(tt.out), &info)
		if info.Width != tt.w || info.Height != tt.h || info.DurationMS != tt.durationMS {
			t.Errorf("%q: %d×%d %d ms, want %d×%d %d ms", tt.out, info.Width, info.Height, info.DurationMS, tt.w, tt.h, tt.durationMS)
		}
	}
}
