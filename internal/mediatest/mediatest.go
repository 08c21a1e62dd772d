// Package mediatest makes the photos and files that media tests upload: a
// plain JPEG, one with the GPS position a phone's camera writes, a
// decompression bomb, and bytes that are no picture.
package mediatest

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"testing"
)

// JPEG returns a 64×48 JPEG photo.
func JPEG(t testing.TB) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 64, 48))
	for y := range 48 {
		for x := range 64 {
			img.Set(x, y, color.RGBA{uint8(x * 4), uint8(y * 5), 128, 255})
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// ExifJPEG returns JPEG's photo with an EXIF block whose GPS IFD says
// where it was taken (GPSLatitudeRef "N"): what a phone's camera writes,
// and what the server must not pass on.
func ExifJPEG(t testing.TB) []byte {
	t.Helper()
	// TIFF, little-endian: IFD0 with one entry, GPSInfo (0x8825) → the
	// GPS IFD with one entry, GPSLatitudeRef (1) = "N".
	tiff := new(bytes.Buffer)
	le := binary.LittleEndian
	tiff.WriteString("II")
	binary.Write(tiff, le, uint16(42))
	binary.Write(tiff, le, uint32(8)) // IFD0 at 8
	binary.Write(tiff, le, uint16(1))
	binary.Write(tiff, le, [3]uint16{0x8825, 4, 1}) // GPSInfo, LONG, count 1 (low half)
	binary.Write(tiff, le, uint16(0))               // count, high half
	binary.Write(tiff, le, uint32(26))              // the GPS IFD at 26
	binary.Write(tiff, le, uint32(0))               // no next IFD
	binary.Write(tiff, le, uint16(1))
	binary.Write(tiff, le, [2]uint16{0x0001, 2}) // GPSLatitudeRef, ASCII
	binary.Write(tiff, le, uint32(2))            // count
	tiff.WriteString("N\x00\x00\x00")            // the value, padded
	binary.Write(tiff, le, uint32(0))
	app1 := append([]byte("Exif\x00\x00"), tiff.Bytes()...)
	seg := []byte{0xff, 0xe1, byte((len(app1) + 2) >> 8), byte(len(app1) + 2)}
	plain := JPEG(t)
	out := append([]byte{0xff, 0xd8}, seg...)
	out = append(out, app1...)
	return append(out, plain[2:]...)
}

// BombPNG returns a valid PNG header (its CRC right) that claims
// 100000×100000 pixels: 40 GB to decode.
func BombPNG(t testing.TB) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	data := b.Bytes()
	// IHDR's width and height are bytes 16..24; its CRC covers its type
	// and data and follows them.
	binary.BigEndian.PutUint32(data[16:], 100000)
	binary.BigEndian.PutUint32(data[20:], 100000)
	binary.BigEndian.PutUint32(data[29:], crc32.ChecksumIEEE(data[12:29]))
	return data
}

// Random returns n bytes that no server takes for a picture, the same for
// the same n.
func Random(n int) []byte {
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}
