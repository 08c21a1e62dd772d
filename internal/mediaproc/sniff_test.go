package mediaproc

import (
	"bytes"
	"testing"
)

// ftyp returns an ftyp box with the given major and compatible brands.
func ftyp(major string, compatible ...string) []byte {
	b := []byte{0, 0, 0, byte(16 + 4*len(compatible))}
	b = append(b, "ftyp"+major+"\x00\x00\x02\x00"...)
	for _, c := range compatible {
		b = append(b, c...)
	}
	return append(b, "\x00\x00\x00\x08free"...)
}

func TestDetectType(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want string
		kind Kind
	}{
		{"mp4 isom", ftyp("isom", "isom", "iso2", "avc1", "mp41"), "video/mp4", Video},
		{"mp4 mp42", ftyp("mp42", "mp41"), "video/mp4", Video},
		{"mp4 avc1", ftyp("avc1"), "video/mp4", Video},
		{"m4v", ftyp("M4V ", "M4V ", "M4A ", "mp42", "isom"), "video/mp4", Video},
		{"quicktime", ftyp("qt  ", "qt  "), "video/quicktime", Video},
		{"unknown major, qt compatible", ftyp("xxxx", "qt  "), "video/quicktime", Video},
		{"heic", ftyp("heic", "mif1", "heic"), "image/heic", File},
		{"heix", ftyp("heix", "mif1"), "image/heic", File},
		{"mif1 then heic", ftyp("mif1", "mif1", "heic"), "image/heic", File},
		{"mif1 alone", ftyp("mif1", "mif1", "miaf"), "image/heif", File},
		{"avif", ftyp("avif", "avif", "mif1", "miaf"), "image/avif", File},
		{"3gp", ftyp("3gp4", "isom"), "video/3gpp", File},
		{"m4a", ftyp("M4A ", "M4A ", "mp42", "isom"), "audio/mp4", File},
		{"unknown brands", ftyp("zzzz", "yyyy"), "application/octet-stream", File},
		{"short ftyp", []byte("\x00\x00\x00\x0cftypis"), "application/octet-stream", File},
		{"webm", []byte("\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08\x42\x82\x84webm"), "video/webm", Video},
		{"jpeg", []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00"), "image/jpeg", Image},
		{"png", []byte(pngSignature + "\x00\x00\x00\x0dIHDR"), "image/png", Image},
		{"gif87", []byte("GIF87a\x01\x00\x01\x00"), "image/gif", Image},
		{"webp vp8x", []byte("RIFF\x00\x00\x00\x00WEBPVP8X"), "image/webp", Image},
		{"webp any chunk", []byte("RIFF\x00\x00\x00\x00WEBPEXIF"), "image/webp", Image},
		{"avi", []byte("RIFF\x00\x00\x00\x00AVI LIST"), "video/avi", File},
		{"bmp", []byte("BM\x00\x00\x00\x00\x00\x00\x00\x00"), "image/bmp", File},
		{"tiff be", []byte("MM\x00*\x00\x00\x00\x08"), "image/tiff", File},
		{"html", []byte("\n\n<HTML><body>"), "text/html", File},
		{"svg", []byte("<svg/>"), "image/svg+xml", File},
		{"svg with bom", []byte("\xef\xbb\xbf<SVG onload=alert(1)>"), "image/svg+xml", File},
		{"xml", []byte("<?xml version=\"1.0\"?><note/>"), "text/xml", File},
		{"text mentioning svg", []byte("I like <svg> tags"), "text/plain", File},
		{"empty", nil, "application/octet-stream", File},
		{"nul", []byte{0}, "application/octet-stream", File},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DetectType(tt.data)
			if got != tt.want {
				t.Errorf("DetectType = %q, want %q", got, tt.want)
			}
			if k := KindOf(got); k != tt.kind {
				t.Errorf("KindOf(%q) = %s, want %s", got, k, tt.kind)
			}
		})
	}
}

func TestDetectTypeLooksAt512Bytes(t *testing.T) {
	// The brands of a long ftyp box past 512 bytes are not read.
	long := ftyp("zzzz", string(bytes.Repeat([]byte("yyyy"), 200))+"qt  ")
	if got := DetectType(long); got != "application/octet-stream" {
		t.Errorf("DetectType = %q", got)
	}
}
