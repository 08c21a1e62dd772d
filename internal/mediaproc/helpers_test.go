package mediaproc

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

// result is what one Process call returned and wrote.
type result struct {
	info         Info
	outs         Outputs
	clean, thumb []byte
	err          error
}

// process stores data in a file named name and processes it.
func process(t testing.TB, p *Processor, name string, data []byte) result {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var clean, thumb bytes.Buffer
	info, outs, err := p.Process(context.Background(), path, &clean, &thumb)
	return result{info: info, outs: outs, clean: clean.Bytes(), thumb: thumb.Bytes(), err: err}
}

// noVideo returns Options without ffmpeg and ffprobe.
func noVideo(opts Options) Options {
	opts.FFmpeg, opts.FFprobe = "/nonexistent/ffmpeg", "/nonexistent/ffprobe"
	return opts
}

// quadrants returns a w×h picture whose quarters are red (top left), green
// (top right), blue (bottom left) and white (bottom right).
func quadrants(w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			var c color.NRGBA
			switch {
			case x < w/2 && y < h/2:
				c = color.NRGBA{R: 255, A: 255}
			case y < h/2:
				c = color.NRGBA{G: 255, A: 255}
			case x < w/2:
				c = color.NRGBA{B: 255, A: 255}
			default:
				c = color.NRGBA{R: 255, G: 255, B: 255, A: 255}
			}
			m.SetNRGBA(x, y, c)
		}
	}
	return m
}

func encodeJPEG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// withSegments inserts JPEG marker segments right after the SOI marker.
func withSegments(jpg []byte, segments ...[]byte) []byte {
	out := append([]byte{}, jpg[:2]...)
	for _, s := range segments {
		out = append(out, s...)
	}
	return append(out, jpg[2:]...)
}

// segment returns a JPEG marker segment.
func segment(marker byte, payload []byte) []byte {
	s := []byte{0xFF, marker, 0, 0}
	binary.BigEndian.PutUint16(s[2:], uint16(len(payload)+2))
	return append(s, payload...)
}

// gpsLatitude is the GPSLatitude value of testTIFF: 48° 51' 29.88"; the
// test looks for these bytes in cleaned output.
var gpsLatitude = []uint32{48, 1, 51, 1, 2988, 100}

// byteOrder is binary.LittleEndian or binary.BigEndian.
type byteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

// testTIFF returns an EXIF TIFF structure in the given byte order with an
// IFD0 holding Orientation (unless orientation is 0), Make "SpyCam" and a
// pointer to a GPS IFD with GPSLatitudeRef and GPSLatitude.
func testTIFF(order byteOrder, orientation int) []byte {
	var b []byte
	if order == binary.LittleEndian {
		b = []byte("II*\x00")
	} else {
		b = []byte("MM\x00*")
	}
	b = order.AppendUint32(b, 8)
	type entry struct {
		tag, typ uint16
		count    uint32
		value    []byte // 4 bytes, or the offset filled in later
	}
	var ifd0 []entry
	if orientation != 0 {
		ifd0 = append(ifd0, entry{0x0112, 3, 1, order.AppendUint16(nil, uint16(orientation))})
	}
	// IFD0: entries, next-IFD offset; then "SpyCam\0", then the GPS IFD.
	n0 := len(ifd0) + 2
	ifd0End := 8 + 2 + 12*n0 + 4
	makeOff := ifd0End
	gpsOff := makeOff + 8
	ifd0 = append(ifd0,
		entry{0x010F, 2, 7, order.AppendUint32(nil, uint32(makeOff))},
		entry{0x8825, 4, 1, order.AppendUint32(nil, uint32(gpsOff))})
	b = order.AppendUint16(b, uint16(len(ifd0)))
	for _, e := range ifd0 {
		b = order.AppendUint16(b, e.tag)
		b = order.AppendUint16(b, e.typ)
		b = order.AppendUint32(b, e.count)
		b = append(b, append(e.value, 0, 0, 0, 0)[:4]...)
	}
	b = order.AppendUint32(b, 0)
	b = append(b, "SpyCam\x00\x00"...)
	// GPS IFD: 2 entries, then the latitude rationals.
	latOff := gpsOff + 2 + 2*12 + 4
	b = order.AppendUint16(b, 2)
	b = order.AppendUint16(b, 0x0001)
	b = order.AppendUint16(b, 2)
	b = order.AppendUint32(b, 2)
	b = append(b, 'N', 0, 0, 0)
	b = order.AppendUint16(b, 0x0002)
	b = order.AppendUint16(b, 5)
	b = order.AppendUint32(b, 3)
	b = order.AppendUint32(b, uint32(latOff))
	b = order.AppendUint32(b, 0)
	for _, v := range gpsLatitude {
		b = order.AppendUint32(b, v)
	}
	return b
}

// latitudeBytes returns gpsLatitude as testTIFF writes it.
func latitudeBytes(order byteOrder) []byte {
	var b []byte
	for _, v := range gpsLatitude {
		b = order.AppendUint32(b, v)
	}
	return b
}

// exifSegment returns an EXIF APP1 segment with testTIFF.
func exifSegment(order byteOrder, orientation int) []byte {
	return segment(0xE1, append([]byte("Exif\x00\x00"), testTIFF(order, orientation)...))
}

// pngChunk returns a PNG chunk with its CRC.
func pngChunk(typ string, data []byte) []byte {
	c := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	c = append(c, typ...)
	c = append(c, data...)
	return binary.BigEndian.AppendUint32(c, crc32.ChecksumIEEE(c[4:]))
}

// pngChunks splits a PNG into its chunks (type and data).
func pngChunks(t testing.TB, b []byte) (types []string, data [][]byte) {
	t.Helper()
	if !bytes.HasPrefix(b, []byte(pngSignature)) {
		t.Fatalf("not a PNG: % x", b[:min(8, len(b))])
	}
	b = b[8:]
	for len(b) >= 12 {
		n := int(binary.BigEndian.Uint32(b))
		if 12+n > len(b) {
			t.Fatalf("truncated PNG chunk %q", b[4:8])
		}
		types = append(types, string(b[4:8]))
		data = append(data, b[8:8+n])
		b = b[12+n:]
	}
	return types, data
}

// withPNGChunks inserts chunks right after the IHDR chunk of a PNG.
func withPNGChunks(p []byte, chunks ...[]byte) []byte {
	const afterIHDR = 8 + 12 + 13
	out := append([]byte{}, p[:afterIHDR]...)
	for _, c := range chunks {
		out = append(out, c...)
	}
	return append(out, p[afterIHDR:]...)
}

// near reports whether two colours are within tol of each other in every
// channel (JPEG is lossy).
func near(a, b color.Color, tol int) bool {
	ar, ag, ab, aa := a.RGBA()
	br, bg, bb, ba := b.RGBA()
	d := func(x, y uint32) bool {
		v := int(x>>8) - int(y>>8)
		return v <= tol && v >= -tol
	}
	return d(ar, br) && d(ag, bg) && d(ab, bb) && d(aa, ba)
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
