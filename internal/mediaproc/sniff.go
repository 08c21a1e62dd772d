package mediaproc

import (
	"bytes"
	"encoding/binary"
	"net/http"
	"strings"
)

// sniffLen is how much of the start of a file DetectType looks at.
const sniffLen = 512

// DetectType returns the media type of a file from its first bytes (at
// least the first 512 when the file is that long), without parameters. It
// uses net/http.DetectContentType, and before it the ISO base media "ftyp"
// brands (MP4, QuickTime, HEIF, AVIF, 3GPP, M4A), WebP and TIFF, which it
// lacks or gets partly; an SVG document is image/svg+xml. An empty file is
// application/octet-stream.
func DetectType(data []byte) string {
	if len(data) > sniffLen {
		data = data[:sniffLen]
	}
	if len(data) == 0 {
		return "application/octet-stream"
	}
	if t := ftypType(data); t != "" {
		return t
	}
	switch {
	case len(data) >= 12 && string(data[0:4]) == "RIFF" && string(data[8:12]) == "WEBP":
		return "image/webp"
	case bytes.HasPrefix(data, []byte("II*\x00")), bytes.HasPrefix(data, []byte("MM\x00*")):
		return "image/tiff"
	}
	t, _, _ := strings.Cut(http.DetectContentType(data), ";")
	t = strings.TrimSpace(t)
	if (t == "text/xml" || t == "text/plain") && isSVG(data) {
		return "image/svg+xml"
	}
	return t
}

// isSVG reports whether text that starts with a tag has an <svg element in
// it.
func isSVG(data []byte) bool {
	data = bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))
	data = bytes.TrimLeft(data, " \t\r\n\f")
	if !bytes.HasPrefix(data, []byte("<")) {
		return false
	}
	return bytes.Contains(bytes.ToLower(data), []byte("<svg"))
}

// KindOf returns the Kind of a media type returned by DetectType: Image for
// the formats Process cleans (JPEG, PNG, GIF, WebP), Video for MP4,
// QuickTime and WebM, File for everything else.
func KindOf(mimeType string) Kind {
	switch mimeType {
	case "image/jpeg", "image/png", "image/gif", "image/webp":
		return Image
	case "video/mp4", "video/quicktime", "video/webm":
		return Video
	}
	return File
}

// ftypType returns the media type of an ISO base media file (MP4,
// QuickTime, HEIF...) from the brands of its leading ftyp box, or "" when
// data does not start with one or no brand is known.
func ftypType(data []byte) string {
	if len(data) < 12 || string(data[4:8]) != "ftyp" {
		return ""
	}
	boxLen := int(binary.BigEndian.Uint32(data[0:4]))
	if boxLen < 12 {
		return ""
	}
	end := min(boxLen, len(data))
	t := brandType(string(data[8:12]))
	if t != "" && t != "image/heif" {
		return t
	}
	// Compatible brands start after the minor version.
	for i := 16; i+4 <= end; i += 4 {
		ct := brandType(string(data[i : i+4]))
		switch {
		case ct == "":
		case t == "":
			return ct
		case t == "image/heif" && ct != t && strings.HasPrefix(ct, "image/"):
			return ct
		}
	}
	return t
}

// brandType maps an ftyp brand to a media type, or "" when unknown.
func brandType(brand string) string {
	switch brand {
	case "qt  ":
		return "video/quicktime"
	case "isom", "iso2", "iso3", "iso4", "iso5", "iso6", "iso7", "iso8", "iso9",
		"mp41", "mp42", "avc1", "M4V ", "M4VH", "M4VP", "dash", "mmp4", "MSNV", "f4v ":
		return "video/mp4"
	case "heic", "heix", "heim", "heis":
		return "image/heic"
	case "hevc", "hevx":
		return "image/heic-sequence"
	case "mif1", "msf1":
		return "image/heif"
	case "avif", "avis":
		return "image/avif"
	case "3gp4", "3gp5", "3gp6", "3gp7", "3ge6", "3ge7", "3gg6":
		return "video/3gpp"
	case "3g2a", "3g2b", "3g2c":
		return "video/3gpp2"
	case "M4A ", "M4B ", "M4P ":
		return "audio/mp4"
	}
	return ""
}
