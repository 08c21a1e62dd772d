package mediaproc

import (
	"context"
	"encoding/binary"
	"image"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkProcessPhoto processes a 12-megapixel (4000×3000) JPEG taken
// sideways, as a phone sends one: decode, turn upright, re-encode,
// thumbnail.
func BenchmarkProcessPhoto(b *testing.B) {
	m := image.NewRGBA(image.Rect(0, 0, 4000, 3000))
	for y := range 3000 {
		for x := range 4000 {
			m.SetRGBA(x, y, color.RGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	path := filepath.Join(b.TempDir(), "photo")
	data := withSegments(encodeJPEG(b, m), exifSegment(binary.LittleEndian, 6))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
	p := New(noVideo(Options{}))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := p.Process(context.Background(), path, io.Discard, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
