package mediaproc

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"io"
)

// The EXIF orientations (TIFF tag 0x0112): how the stored pixels must be
// turned to be upright.
const (
	orientNormal     = 1 // as stored
	orientFlipH      = 2 // mirrored left to right
	orientRotate180  = 3
	orientFlipV      = 4 // mirrored top to bottom
	orientTranspose  = 5 // mirrored along the top-left to bottom-right diagonal
	orientRotate90   = 6 // to be turned 90° clockwise
	orientTransverse = 7 // mirrored along the top-right to bottom-left diagonal
	orientRotate270  = 8 // to be turned 90° counter-clockwise
)

// jpegMaxSegments bounds how many marker segments jpegOrientation reads
// before giving up: the EXIF APP1 segment comes first in practice.
const jpegMaxSegments = 64

// jpegOrientation returns the EXIF orientation of a JPEG stream: the
// Orientation tag of IFD0 in the first "Exif" APP1 segment, read before the
// image data. It returns orientNormal when there is none or the segment is
// malformed; it never fails.
func jpegOrientation(r io.Reader) int {
	br := bufio.NewReader(r)
	var soi [2]byte
	if _, err := io.ReadFull(br, soi[:]); err != nil || soi != [2]byte{0xFF, 0xD8} {
		return orientNormal
	}
	for range jpegMaxSegments {
		// A marker is 0xFF, optional 0xFF fill bytes, then its code.
		b, err := br.ReadByte()
		if err != nil || b != 0xFF {
			return orientNormal
		}
		for b == 0xFF {
			if b, err = br.ReadByte(); err != nil {
				return orientNormal
			}
		}
		switch {
		case b == 0xD9 || b == 0xDA: // EOI, SOS: no metadata after this.
			return orientNormal
		case b == 0x01 || (b >= 0xD0 && b <= 0xD7): // stand-alone markers
			continue
		}
		var lenBuf [2]byte
		if _, err := io.ReadFull(br, lenBuf[:]); err != nil {
			return orientNormal
		}
		n := int(binary.BigEndian.Uint16(lenBuf[:])) - 2
		if n < 0 {
			return orientNormal
		}
		if b != 0xE1 || n < 6 {
			if _, err := br.Discard(n); err != nil {
				return orientNormal
			}
			continue
		}
		seg := make([]byte, n)
		if _, err := io.ReadFull(br, seg); err != nil {
			return orientNormal
		}
		if bytes.HasPrefix(seg, []byte("Exif\x00\x00")) {
			return tiffOrientation(seg[6:])
		}
	}
	return orientNormal
}

// tiffOrientation returns the Orientation tag (0x0112) of IFD0 in a TIFF
// structure (the payload of an EXIF APP1 segment or a PNG eXIf chunk), or
// orientNormal when there is none or the structure is malformed.
func tiffOrientation(b []byte) int {
	if len(b) < 8 {
		return orientNormal
	}
	var order binary.ByteOrder
	switch string(b[0:4]) {
	case "II*\x00":
		order = binary.LittleEndian
	case "MM\x00*":
		order = binary.BigEndian
	default:
		return orientNormal
	}
	ifd := uint64(order.Uint32(b[4:8]))
	if ifd+2 > uint64(len(b)) {
		return orientNormal
	}
	count := uint64(order.Uint16(b[ifd : ifd+2]))
	for i := range count {
		e := ifd + 2 + 12*i
		if e+12 > uint64(len(b)) {
			return orientNormal
		}
		entry := b[e : e+12]
		if order.Uint16(entry[0:2]) != 0x0112 {
			continue
		}
		typ, n := order.Uint16(entry[2:4]), order.Uint32(entry[4:8])
		var v uint32
		switch {
		case n < 1:
			return orientNormal
		case typ == 3: // SHORT, left-justified in the value field
			v = uint32(order.Uint16(entry[8:10]))
		case typ == 4: // LONG, written by a few tools
			v = order.Uint32(entry[8:12])
		default:
			return orientNormal
		}
		if v < orientNormal || v > orientRotate270 {
			return orientNormal
		}
		return int(v)
	}
	return orientNormal
}

// orientedSize returns the size of a w×h picture once turned upright.
func orientedSize(w, h, o int) (int, int) {
	if o >= orientTranspose && o <= orientRotate270 {
		return h, w
	}
	return w, h
}

// sourcePoint returns the point of a stored w×h picture (relative to its
// top-left corner) that is shown at (x, y) once the picture is turned
// upright according to orientation o.
func sourcePoint(o, w, h, x, y int) (int, int) {
	switch o {
	case orientFlipH:
		return w - 1 - x, y
	case orientRotate180:
		return w - 1 - x, h - 1 - y
	case orientFlipV:
		return x, h - 1 - y
	case orientTranspose:
		return y, x
	case orientRotate90:
		return y, h - 1 - x
	case orientTransverse:
		return w - 1 - y, h - 1 - x
	case orientRotate270:
		return w - 1 - y, x
	}
	return x, y
}

// orient returns img turned upright according to the EXIF orientation o,
// with its top-left corner at (0, 0). It returns img itself for
// orientNormal or an unknown orientation. The result is a new image of the
// same kind as img, except that a YCbCr image becomes RGBA.
func orient(img image.Image, o int) image.Image {
	if o <= orientNormal || o > orientRotate270 {
		return img
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	dw, dh := orientedSize(w, h, o)
	r := image.Rect(0, 0, dw, dh)
	switch m := img.(type) {
	case *image.YCbCr:
		d := image.NewRGBA(r)
		for y := range dh {
			row := d.Pix[y*d.Stride:]
			for x := range dw {
				sx, sy := sourcePoint(o, w, h, x, y)
				yi := m.YOffset(b.Min.X+sx, b.Min.Y+sy)
				ci := m.COffset(b.Min.X+sx, b.Min.Y+sy)
				cr, cg, cb := color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				row[4*x], row[4*x+1], row[4*x+2], row[4*x+3] = cr, cg, cb, 0xFF
			}
		}
		return d
	case *image.RGBA:
		d := image.NewRGBA(r)
		remapPix(d.Pix, d.Stride, m.Pix[m.PixOffset(b.Min.X, b.Min.Y):], m.Stride, 4, o, w, h)
		return d
	case *image.NRGBA:
		d := image.NewNRGBA(r)
		remapPix(d.Pix, d.Stride, m.Pix[m.PixOffset(b.Min.X, b.Min.Y):], m.Stride, 4, o, w, h)
		return d
	case *image.RGBA64:
		d := image.NewRGBA64(r)
		remapPix(d.Pix, d.Stride, m.Pix[m.PixOffset(b.Min.X, b.Min.Y):], m.Stride, 8, o, w, h)
		return d
	case *image.NRGBA64:
		d := image.NewNRGBA64(r)
		remapPix(d.Pix, d.Stride, m.Pix[m.PixOffset(b.Min.X, b.Min.Y):], m.Stride, 8, o, w, h)
		return d
	case *image.Gray:
		d := image.NewGray(r)
		remapPix(d.Pix, d.Stride, m.Pix[m.PixOffset(b.Min.X, b.Min.Y):], m.Stride, 1, o, w, h)
		return d
	case *image.Gray16:
		d := image.NewGray16(r)
		remapPix(d.Pix, d.Stride, m.Pix[m.PixOffset(b.Min.X, b.Min.Y):], m.Stride, 2, o, w, h)
		return d
	case *image.CMYK:
		d := image.NewCMYK(r)
		remapPix(d.Pix, d.Stride, m.Pix[m.PixOffset(b.Min.X, b.Min.Y):], m.Stride, 4, o, w, h)
		return d
	case *image.Paletted:
		d := image.NewPaletted(r, m.Palette)
		remapPix(d.Pix, d.Stride, m.Pix[m.PixOffset(b.Min.X, b.Min.Y):], m.Stride, 1, o, w, h)
		return d
	}
	d := image.NewNRGBA64(r)
	for y := range dh {
		for x := range dw {
			sx, sy := sourcePoint(o, w, h, x, y)
			d.Set(x, y, img.At(b.Min.X+sx, b.Min.Y+sy))
		}
	}
	return d
}

// remapPix copies the pixels of a stored w×h picture (src, starting at its
// top-left pixel, bpp bytes a pixel) to dst turned upright according to o.
func remapPix(dst []byte, dstStride int, src []byte, srcStride, bpp, o, w, h int) {
	dw, dh := orientedSize(w, h, o)
	for y := range dh {
		row := dst[y*dstStride:]
		for x := range dw {
			sx, sy := sourcePoint(o, w, h, x, y)
			copy(row[x*bpp:x*bpp+bpp], src[sy*srcStride+sx*bpp:])
		}
	}
}
