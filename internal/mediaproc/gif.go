package mediaproc

import (
	"bufio"
	"io"
)

// GIF block introducers and extension labels.
const (
	gifExtension      = 0x21
	gifImage          = 0x2C
	gifTrailer        = 0x3B
	gifGraphicControl = 0xF9
	gifComment        = 0xFE
	gifPlainText      = 0x01
	gifApplication    = 0xFF
)

// stripGIF copies the GIF in r to w without its comment, plain-text and
// application extensions (where XMP and ICC profiles live), keeping the
// header, colour tables, frames, graphic control extensions and the
// NETSCAPE2.0/ANIMEXTS1.0 loop count byte for byte. A GIF that ends
// without a trailer (common, and shown by browsers) gets one; one that ends
// within a block is truncated.
func stripGIF(r *bufio.Reader, w io.Writer) error {
	rw := newRewriter(w, "GIF")
	// Header and logical screen descriptor.
	var head [13]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return truncated("GIF", err)
	}
	if s := string(head[:6]); s != "GIF87a" && s != "GIF89a" {
		return invalid(nil, "the GIF image is corrupt")
	}
	if err := rw.write(head[:]); err != nil {
		return err
	}
	if flags := head[10]; flags&0x80 != 0 {
		if err := rw.copy(r, colorTableSize(flags)); err != nil {
			return err
		}
	}
	// A graphic control extension applies to the next graphic block: it is
	// held until that block is known to be kept.
	var pendingGCE []byte
	for {
		intro, err := r.ReadByte()
		if err == io.EOF {
			return rw.write([]byte{gifTrailer})
		}
		if err != nil {
			return truncated("GIF", err)
		}
		switch intro {
		case gifTrailer:
			return rw.write([]byte{gifTrailer})
		case gifImage:
			if pendingGCE != nil {
				if err := rw.write(pendingGCE); err != nil {
					return err
				}
				pendingGCE = nil
			}
			var desc [10]byte // introducer, position, size, flags
			desc[0] = gifImage
			if _, err := io.ReadFull(r, desc[1:]); err != nil {
				return truncated("GIF", err)
			}
			if err := rw.write(desc[:]); err != nil {
				return err
			}
			if flags := desc[9]; flags&0x80 != 0 {
				if err := rw.copy(r, colorTableSize(flags)); err != nil {
					return err
				}
			}
			if err := rw.copy(r, 1); err != nil { // LZW minimum code size
				return err
			}
			if err := copySubBlocks(r, rw); err != nil {
				return err
			}
		case gifExtension:
			label, err := r.ReadByte()
			if err != nil {
				return truncated("GIF", err)
			}
			switch label {
			case gifGraphicControl:
				var b blockBuffer
				b.add(gifExtension, label)
				if err := b.readSubBlocks(r); err != nil {
					return err
				}
				pendingGCE = b.data
			case gifApplication:
				// The first sub-block is the application's identifier and
				// authentication code; only a loop count is kept.
				n, err := r.ReadByte()
				if err != nil {
					return truncated("GIF", err)
				}
				id := make([]byte, n)
				if _, err := io.ReadFull(r, id); err != nil {
					return truncated("GIF", err)
				}
				if n == 0 {
					continue // an empty extension
				}
				if s := string(id); s != "NETSCAPE2.0" && s != "ANIMEXTS1.0" {
					if err := skipSubBlocks(r); err != nil {
						return err
					}
					continue
				}
				var b blockBuffer
				b.add(gifExtension, label, n)
				b.add(id...)
				if err := b.readSubBlocks(r); err != nil {
					return err
				}
				if err := rw.write(b.data); err != nil {
					return err
				}
			case gifPlainText:
				// Text drawn over the picture: dropped with the graphic
				// control extension that applied to it.
				pendingGCE = nil
				if err := skipSubBlocks(r); err != nil {
					return err
				}
			default: // comments and unknown extensions
				if err := skipSubBlocks(r); err != nil {
					return err
				}
			}
		default:
			return invalid(nil, "the GIF image is corrupt")
		}
	}
}

// colorTableSize returns the size in bytes of the colour table that the
// flags of a screen or image descriptor announce.
func colorTableSize(flags byte) int64 {
	return 3 << (int(flags&0x07) + 1)
}

// copySubBlocks copies data sub-blocks, up to and including the empty
// block that ends them.
func copySubBlocks(r *bufio.Reader, rw *rewriter) error {
	var buf [256]byte
	for {
		n, err := r.ReadByte()
		if err != nil {
			return truncated("GIF", err)
		}
		buf[0] = n
		if _, err := io.ReadFull(r, buf[1:1+int(n)]); err != nil {
			return truncated("GIF", err)
		}
		if err := rw.write(buf[:1+int(n)]); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}

// skipSubBlocks reads past data sub-blocks and the empty block that ends
// them.
func skipSubBlocks(r *bufio.Reader) error {
	for {
		n, err := r.ReadByte()
		if err != nil {
			return truncated("GIF", err)
		}
		if n == 0 {
			return nil
		}
		if _, err := r.Discard(int(n)); err != nil {
			return truncated("GIF", err)
		}
	}
}

// maxHeldExtension bounds an extension that stripGIF holds in memory:
// graphic control extensions are 8 bytes and loop counts 19.
const maxHeldExtension = 1 << 16

// blockBuffer holds an extension block in memory.
type blockBuffer struct {
	data []byte
}

func (b *blockBuffer) add(p ...byte) { b.data = append(b.data, p...) }

// readSubBlocks appends data sub-blocks and their terminator.
func (b *blockBuffer) readSubBlocks(r *bufio.Reader) error {
	for {
		n, err := r.ReadByte()
		if err != nil {
			return truncated("GIF", err)
		}
		if len(b.data)+1+int(n) > maxHeldExtension {
			return invalid(nil, "the GIF image has an extension block of more than %d bytes", maxHeldExtension)
		}
		start := len(b.data) + 1
		b.data = append(b.data, make([]byte, 1+int(n))...)
		b.data[start-1] = n
		if _, err := io.ReadFull(r, b.data[start:]); err != nil {
			return truncated("GIF", err)
		}
		if n == 0 {
			return nil
		}
	}
}
