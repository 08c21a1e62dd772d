package mediaproc

import (
	"bufio"
	"encoding/binary"
	"io"
)

const pngSignature = "\x89PNG\r\n\x1a\n"

// maxEXIFChunk bounds the eXIf chunk that scanPNG reads for the
// orientation.
const maxEXIFChunk = 1 << 20

// pngChunkHeader reads the length and type of the next chunk.
func pngChunkHeader(r io.Reader) (length int64, typ string, hdr [8]byte, err error) {
	if _, err = io.ReadFull(r, hdr[:]); err != nil {
		return 0, "", hdr, truncated("PNG", err)
	}
	n := binary.BigEndian.Uint32(hdr[0:4])
	if n > 1<<31-1 {
		return 0, "", hdr, invalid(nil, "the PNG image is corrupt")
	}
	return int64(n), string(hdr[4:8]), hdr, nil
}

// scanPNG reads the chunks of a PNG up to its first IDAT, and reports
// whether it is animated (an APNG, with an acTL chunk) and the orientation
// in its eXIf chunk.
func scanPNG(r *bufio.Reader) (animated bool, orientation int, err error) {
	orientation = orientNormal
	var sig [8]byte
	if _, err := io.ReadFull(r, sig[:]); err != nil || string(sig[:]) != pngSignature {
		return false, orientation, invalid(err, "the PNG image is corrupt")
	}
	for {
		n, typ, _, err := pngChunkHeader(r)
		if err != nil {
			return false, orientation, err
		}
		switch {
		case typ == "IDAT":
			return animated, orientation, nil
		case typ == "acTL":
			animated = true
		case typ == "eXIf" && n <= maxEXIFChunk:
			data := make([]byte, n)
			if _, err := io.ReadFull(r, data); err != nil {
				return false, orientation, truncated("PNG", err)
			}
			orientation = tiffOrientation(data)
			n = 0
		}
		if _, err := r.Discard(int(n) + 4); err != nil { // data and CRC
			return false, orientation, truncated("PNG", err)
		}
	}
}

// pngKeep reports whether filterPNG keeps a chunk of an APNG: the image,
// its colours and its animation. Text, eXIf, iCCP, tIME, pHYs and unknown
// chunks are dropped.
func pngKeep(typ string) bool {
	switch typ {
	case "IHDR", "PLTE", "tRNS", "gAMA", "cHRM", "sRGB", "sBIT", "bKGD",
		"acTL", "fcTL", "IDAT", "fdAT", "IEND":
		return true
	}
	return false
}

// filterPNG copies the PNG in r to w with only the chunks pngKeep keeps, byte
// for byte (CRCs included), up to IEND.
func filterPNG(r *bufio.Reader, w io.Writer) error {
	rw := newRewriter(w, "PNG")
	var sig [8]byte
	if _, err := io.ReadFull(r, sig[:]); err != nil || string(sig[:]) != pngSignature {
		return invalid(err, "the PNG image is corrupt")
	}
	if err := rw.write(sig[:]); err != nil {
		return err
	}
	for {
		n, typ, hdr, err := pngChunkHeader(r)
		if err != nil {
			return err
		}
		if !pngKeep(typ) {
			if _, err := r.Discard(int(n) + 4); err != nil {
				return truncated("PNG", err)
			}
			continue
		}
		if err := rw.write(hdr[:]); err != nil {
			return err
		}
		if err := rw.copy(r, n+4); err != nil {
			return err
		}
		if typ == "IEND" {
			return nil
		}
	}
}
