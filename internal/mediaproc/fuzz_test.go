package mediaproc

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/gif"
	"testing"

	"github.com/parley-chat/parley"
)

// FuzzProcess feeds arbitrary files to Process: it must not panic, must
// refuse bad images with invalid_argument only, and must write bounded
// output. The seed corpus (valid, metadata-laden, truncated and bomb
// images of every format) runs with the normal tests; fuzz with
//
//	go test ./internal/mediaproc -run '^$' -fuzz FuzzProcess -fuzztime 30s
func FuzzProcess(f *testing.F) {
	jpg := encodeJPEG(f, quadrants(40, 30))
	pngData := encodePNG(f, quadrants(24, 12))
	var g bytes.Buffer
	pal := color.Palette{color.Black, color.White}
	if err := gif.EncodeAll(&g, &gif.GIF{
		Image: []*image.Paletted{image.NewPaletted(image.Rect(0, 0, 8, 8), pal), image.NewPaletted(image.Rect(2, 2, 4, 4), pal)},
		Delay: []int{1, 2},
	}); err != nil {
		f.Fatal(err)
	}
	seeds := [][]byte{
		jpg,
		withSegments(jpg, exifSegment(binary.BigEndian, 6)),
		pngData,
		withPNGChunks(pngData, pngChunk("tEXt", []byte("a\x00b")), pngChunk("eXIf", testTIFF(binary.LittleEndian, 8))),
		g.Bytes(),
		readTestdata(f, "still.webp"),
		readTestdata(f, "lossless.webp"),
		readTestdata(f, "alpha.webp"),
		readTestdata(f, "anim.webp"),
		pngHeader(100000, 100000),
		gifHeader(65535, 65535),
		webpHeader(16384, 16384),
		jpg[:len(jpg)/2],
		[]byte("<svg/>"),
		nil,
	}
	for _, s := range seeds {
		f.Add(s)
	}
	const (
		maxPixels = 1 << 20
		thumbMax  = 64
	)
	p := New(noVideo(Options{MaxImagePixels: maxPixels, ThumbnailMax: thumbMax}))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := process(t, p, "upload", data)
		if r.err != nil {
			if code := parley.ErrorCode(r.err); code != parley.CodeInvalidArgument {
				t.Fatalf("error %v has code %s, want invalid_argument", r.err, code)
			}
			return
		}
		if r.info.Kind != KindOf(r.info.MIMEType) {
			t.Fatalf("kind %s for %s", r.info.Kind, r.info.MIMEType)
		}
		if r.info.Kind != Image {
			if len(r.clean) != 0 || len(r.thumb) != 0 {
				t.Fatal("outputs written for a non-image")
			}
			return
		}
		// A re-encoded PNG of 16-bit RGBA takes at most 8 bytes a pixel
		// plus filter bytes and deflate's overhead; rewritten GIF, WebP and
		// APNG files are never larger than the original plus a trailer.
		pixels := int64(r.info.Width) * int64(r.info.Height)
		if pixels <= 0 || pixels > maxPixels {
			t.Fatalf("accepted a %d×%d image", r.info.Width, r.info.Height)
		}
		if n := int64(len(r.clean)); n > max(int64(len(data))+1, 9*pixels+1<<16) || n != r.outs.Clean.Size {
			t.Fatalf("clean copy of %d bytes (reported %d) for a %d-byte %d×%d image", n, r.outs.Clean.Size, len(data), r.info.Width, r.info.Height)
		}
		th := r.outs.Thumbnail
		if th.Width > thumbMax || th.Height > thumbMax || th.Width <= 0 || th.Height <= 0 || th.Size != int64(len(r.thumb)) || len(r.thumb) > 64<<10 {
			t.Fatalf("thumbnail %+v (%d bytes)", th, len(r.thumb))
		}
	})
}
