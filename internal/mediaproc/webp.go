package mediaproc

import (
	"bytes"
	"encoding/binary"
	"image"
	"io"

	"golang.org/x/image/webp"
)

// maxWebPChunks bounds the chunks (frames included) of a WebP that
// parseWebP accepts, and so the memory its plan takes.
const maxWebPChunks = 1 << 16

// VP8X flags that survive cleaning: alpha and animation. ICC, EXIF and XMP
// flags are cleared with their chunks.
const webpKeptFlags = 0x10 | 0x02

// webpPiece is a part of a cleaned WebP: literal bytes, or n bytes of the
// original from off.
type webpPiece struct {
	lit    []byte
	off, n int64
}

// webpChunk is where a chunk's data lies in the original.
type webpChunk struct {
	id     string
	off, n int64
}

// webpFrame is the first frame of an animated WebP.
type webpFrame struct {
	x, y, w, h int       // its place and size on the canvas
	alpha      webpChunk // its ALPH chunk; n == 0 when none
	bitstream  webpChunk // its VP8 or VP8L chunk; n == 0 when none
}

// webpPlan is the cleaned copy of a WebP, as pieces of the original.
type webpPlan struct {
	pieces []webpPiece
	size   int64 // of "WEBP" and the chunks: the RIFF size
	// firstFrame is the first frame of an animation; nil for a still.
	firstFrame *webpFrame
}

// parseWebP reads the chunk structure of the WebP in f (size bytes) and
// plans its cleaned copy: VP8X (flags cleared), VP8, VP8L, ALPH, ANIM and
// ANMF chunks, and within each ANMF its ALPH, VP8 and VP8L chunks, in their
// order; everything else (ICCP, EXIF, XMP, unknown chunks, bytes after the
// RIFF) is dropped.
func parseWebP(f io.ReaderAt, size int64) (*webpPlan, error) {
	var hdr [12]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return nil, truncated("WebP", err)
	}
	if string(hdr[0:4]) != "RIFF" || string(hdr[8:12]) != "WEBP" {
		return nil, invalid(nil, "the WebP image is corrupt")
	}
	end := 8 + int64(binary.LittleEndian.Uint32(hdr[4:8]))
	if end > size {
		return nil, truncated("WebP", io.ErrUnexpectedEOF)
	}
	plan := &webpPlan{size: 4}
	add := func(pc webpPiece) {
		plan.pieces = append(plan.pieces, pc)
		plan.size += int64(len(pc.lit)) + pc.n
	}
	chunks, err := webpChunks(f, 12, end)
	if err != nil {
		return nil, err
	}
	if len(chunks) > maxWebPChunks {
		return nil, invalid(nil, "the WebP image has more than %d chunks", maxWebPChunks)
	}
	total, hasImage := len(chunks), false
	for _, c := range chunks {
		switch c.id {
		case "VP8X":
			if c.n != 10 {
				return nil, invalid(nil, "the WebP image is corrupt")
			}
			vp8x := make([]byte, 18)
			copy(vp8x, "VP8X\x0a\x00\x00\x00")
			if _, err := f.ReadAt(vp8x[8:], c.off); err != nil {
				return nil, truncated("WebP", err)
			}
			vp8x[8] &= webpKeptFlags
			vp8x[9], vp8x[10], vp8x[11] = 0, 0, 0
			add(webpPiece{lit: vp8x})
		case "VP8 ", "VP8L", "ALPH", "ANIM":
			hasImage = hasImage || c.id == "VP8 " || c.id == "VP8L"
			for _, pc := range chunkPieces(c) {
				add(pc)
			}
		case "ANMF":
			if c.n < 16 {
				return nil, invalid(nil, "the WebP image is corrupt")
			}
			var fh [16]byte
			if _, err := f.ReadAt(fh[:], c.off); err != nil {
				return nil, truncated("WebP", err)
			}
			subs, err := webpChunks(f, c.off+16, c.off+c.n)
			if err != nil {
				return nil, err
			}
			if total += len(subs); total > maxWebPChunks {
				return nil, invalid(nil, "the WebP image has more than %d chunks", maxWebPChunks)
			}
			frame := &webpFrame{
				x: 2 * int(uint24(fh[0:3])), y: 2 * int(uint24(fh[3:6])),
				w: 1 + int(uint24(fh[6:9])), h: 1 + int(uint24(fh[9:12])),
			}
			var kept []webpPiece
			n := int64(16)
			for _, s := range subs {
				switch s.id {
				case "ALPH":
					if frame.alpha.n == 0 {
						frame.alpha = s
					}
				case "VP8 ", "VP8L":
					if frame.bitstream.n == 0 {
						frame.bitstream = s
					}
				default:
					continue
				}
				for _, pc := range chunkPieces(s) {
					kept = append(kept, pc)
					n += int64(len(pc.lit)) + pc.n
				}
			}
			if n > 1<<32-1-8 {
				return nil, invalid(nil, "the WebP image is corrupt")
			}
			head := make([]byte, 8)
			copy(head, "ANMF")
			binary.LittleEndian.PutUint32(head[4:], uint32(n))
			add(webpPiece{lit: head})
			add(webpPiece{off: c.off, n: 16})
			for _, pc := range kept {
				add(pc)
			}
			if plan.firstFrame == nil {
				plan.firstFrame = frame
			}
			hasImage = true
		}
	}
	if !hasImage {
		return nil, invalid(nil, "the WebP image has no picture")
	}
	if plan.size > 1<<32-1-8 {
		return nil, invalid(nil, "the WebP image is corrupt")
	}
	return plan, nil
}

// webpChunks lists the chunks of f between start and end.
func webpChunks(f io.ReaderAt, start, end int64) ([]webpChunk, error) {
	var chunks []webpChunk
	pos := start
	for pos+8 <= end {
		var h [8]byte
		if _, err := f.ReadAt(h[:], pos); err != nil {
			return nil, truncated("WebP", err)
		}
		n := int64(binary.LittleEndian.Uint32(h[4:8]))
		off := pos + 8
		if off+n > end {
			return nil, truncated("WebP", io.ErrUnexpectedEOF)
		}
		chunks = append(chunks, webpChunk{id: string(h[0:4]), off: off, n: n})
		if len(chunks) > maxWebPChunks {
			return nil, invalid(nil, "the WebP image has more than %d chunks", maxWebPChunks)
		}
		pos = off + n + n&1 // chunks are padded to an even size
	}
	return chunks, nil
}

// chunkPieces returns the pieces that copy chunk c: its header, its data
// and its padding.
func chunkPieces(c webpChunk) []webpPiece {
	head := make([]byte, 8)
	copy(head, c.id)
	binary.LittleEndian.PutUint32(head[4:], uint32(c.n))
	pieces := []webpPiece{{lit: head}, {off: c.off, n: c.n}}
	if c.n&1 == 1 {
		pieces = append(pieces, webpPiece{lit: []byte{0}})
	}
	return pieces
}

func uint24(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16
}

// write writes the cleaned WebP to w, reading its pieces from f.
func (plan *webpPlan) write(f io.ReaderAt, w io.Writer) error {
	rw := newRewriter(w, "WebP")
	var head [12]byte
	copy(head[:], "RIFF")
	binary.LittleEndian.PutUint32(head[4:8], uint32(plan.size))
	copy(head[8:], "WEBP")
	if err := rw.write(head[:]); err != nil {
		return err
	}
	for _, pc := range plan.pieces {
		var err error
		if pc.lit != nil {
			err = rw.write(pc.lit)
		} else {
			err = rw.copy(io.NewSectionReader(f, pc.off, pc.n), pc.n)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// decodeWebPFrame decodes the first frame of an animated WebP on a
// canvasW×canvasH canvas, by making it a still WebP of its own. Its size
// is checked before it is decoded.
func (p *Processor) decodeWebPFrame(src *imageSource, fr *webpFrame, canvasW, canvasH int) (image.Image, error) {
	if fr.bitstream.n == 0 || fr.x+fr.w > canvasW || fr.y+fr.h > canvasH {
		return nil, invalid(nil, "the WebP animation's first frame is corrupt")
	}
	read := func(c webpChunk) ([]byte, error) {
		b := make([]byte, c.n)
		if _, err := src.f.ReadAt(b, c.off); err != nil {
			return nil, truncated("WebP", err)
		}
		return b, nil
	}
	var still bytes.Buffer
	still.WriteString("RIFF\x00\x00\x00\x00WEBP")
	writeChunk := func(id string, data []byte) {
		var h [8]byte
		copy(h[:], id)
		binary.LittleEndian.PutUint32(h[4:], uint32(len(data)))
		still.Write(h[:])
		still.Write(data)
		if len(data)&1 == 1 {
			still.WriteByte(0)
		}
	}
	bits, err := read(fr.bitstream)
	if err != nil {
		return nil, err
	}
	if fr.bitstream.id == "VP8 " && fr.alpha.n > 0 {
		alpha, err := read(fr.alpha)
		if err != nil {
			return nil, err
		}
		vp8x := make([]byte, 10)
		vp8x[0] = 0x10 // alpha
		w, h := uint32(fr.w-1), uint32(fr.h-1)
		vp8x[4], vp8x[5], vp8x[6] = byte(w), byte(w>>8), byte(w>>16)
		vp8x[7], vp8x[8], vp8x[9] = byte(h), byte(h>>8), byte(h>>16)
		writeChunk("VP8X", vp8x)
		writeChunk("ALPH", alpha)
	}
	writeChunk(fr.bitstream.id, bits)
	data := still.Bytes()
	binary.LittleEndian.PutUint32(data[4:8], uint32(len(data)-8))

	cfg, err := webp.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, invalid(err, "the WebP animation's first frame is corrupt")
	}
	if cfg.Width != fr.w || cfg.Height != fr.h {
		return nil, invalid(nil, "the WebP animation's first frame is %d×%d, not the %d×%d it claims", cfg.Width, cfg.Height, fr.w, fr.h)
	}
	if err := p.checkSize("WebP", cfg.Width, cfg.Height); err != nil {
		return nil, err
	}
	img, err := webp.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, invalid(err, "the WebP animation's first frame is corrupt")
	}
	return img, nil
}
