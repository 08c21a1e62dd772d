package mediaproc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/image/webp"

	"github.com/parley-chat/parley"
)

func TestJPEGMetadataStrippedAndUpright(t *testing.T) {
	p := New(noVideo(Options{}))
	// The corners of the stored 64×32 picture are R G / B W; each row is
	// what the upright picture shows: top left, top right, bottom left,
	// bottom right.
	red := color.RGBA{255, 0, 0, 255}
	green := color.RGBA{0, 255, 0, 255}
	blue := color.RGBA{0, 0, 255, 255}
	white := color.RGBA{255, 255, 255, 255}
	tests := []struct {
		orientation int
		corners     [4]color.Color
	}{
		{0, [4]color.Color{red, green, blue, white}}, // no Orientation tag
		{1, [4]color.Color{red, green, blue, white}},
		{2, [4]color.Color{green, red, white, blue}},
		{3, [4]color.Color{white, blue, green, red}},
		{4, [4]color.Color{blue, white, red, green}},
		{5, [4]color.Color{red, blue, green, white}},
		{6, [4]color.Color{blue, red, white, green}},
		{7, [4]color.Color{white, green, blue, red}},
		{8, [4]color.Color{green, white, red, blue}},
	}
	for _, order := range []byteOrder{binary.LittleEndian, binary.BigEndian} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%v/orientation=%d", order, tt.orientation), func(t *testing.T) {
				xmp := segment(0xE1, []byte("http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>SECRET-XMP</x:xmpmeta>"))
				iptc := segment(0xED, []byte("Photoshop 3.0\x008BIM\x04\x04SECRET-IPTC"))
				orig := withSegments(encodeJPEG(t, quadrants(64, 32)), xmp, exifSegment(order, tt.orientation), iptc)
				r := process(t, p, "photo.png", orig) // the name lies
				if r.err != nil {
					t.Fatal(r.err)
				}
				if r.info.MIMEType != "image/jpeg" || r.info.Kind != Image {
					t.Fatalf("type %s, kind %s; want image/jpeg, image", r.info.MIMEType, r.info.Kind)
				}
				if !bytes.Contains(orig, latitudeBytes(order)) || !bytes.Contains(orig, []byte("Exif")) {
					t.Fatal("the test JPEG has no GPS EXIF")
				}
				for _, secret := range [][]byte{[]byte("Exif"), latitudeBytes(order), []byte("SpyCam"), []byte("SECRET"), []byte("http://ns.adobe.com")} {
					if bytes.Contains(r.clean, secret) {
						t.Errorf("clean copy still holds %q", secret)
					}
				}
				wantW, wantH := 64, 32
				if tt.orientation >= 5 {
					wantW, wantH = 32, 64
				}
				if r.info.Width != wantW || r.info.Height != wantH {
					t.Errorf("info size %d×%d, want %d×%d", r.info.Width, r.info.Height, wantW, wantH)
				}
				want := Output{Written: true, MIMEType: "image/jpeg", Size: int64(len(r.clean)), Width: wantW, Height: wantH}
				if r.outs.Clean != want {
					t.Errorf("clean output %+v, want %+v", r.outs.Clean, want)
				}
				img, err := jpeg.Decode(bytes.NewReader(r.clean))
				if err != nil {
					t.Fatal(err)
				}
				if b := img.Bounds(); b.Dx() != wantW || b.Dy() != wantH {
					t.Fatalf("clean image is %v, want %d×%d", b, wantW, wantH)
				}
				points := [4]image.Point{
					{wantW / 4, wantH / 4}, {3 * wantW / 4, wantH / 4},
					{wantW / 4, 3 * wantH / 4}, {3 * wantW / 4, 3 * wantH / 4},
				}
				for i, pt := range points {
					if got := img.At(pt.X, pt.Y); !near(got, tt.corners[i], 40) {
						t.Errorf("corner %d at %v is %v, want %v", i, pt, got, tt.corners[i])
					}
				}
				// The thumbnail is upright too, and smaller than the limit.
				th, err := jpeg.Decode(bytes.NewReader(r.thumb))
				if err != nil {
					t.Fatal(err)
				}
				if b := th.Bounds(); b.Dx() != wantW || b.Dy() != wantH {
					t.Errorf("thumbnail is %v, want %d×%d (never scaled up)", b, wantW, wantH)
				}
				if got := th.At(points[0].X, points[0].Y); !near(got, tt.corners[0], 40) {
					t.Errorf("thumbnail top left is %v, want %v", got, tt.corners[0])
				}
			})
		}
	}
}

func TestPNGMetadataStripped(t *testing.T) {
	p := New(noVideo(Options{}))
	src := quadrants(40, 20)
	itxt := append([]byte("XML:com.adobe.xmp\x00\x00\x00\x00\x00"), "SECRET-XMP"...)
	orig := withPNGChunks(encodePNG(t, src),
		pngChunk("tEXt", []byte("Comment\x00SECRET-TEXT")),
		pngChunk("zTXt", []byte("Author\x00\x00x\x9c\x0b\x76\x75\x0e\x72\x0d\x01\x00\x05\x6b\x01\xa8")),
		pngChunk("iTXt", itxt),
		pngChunk("tIME", []byte{0x07, 0xE9, 1, 2, 3, 4, 5}),
		pngChunk("eXIf", testTIFF(binary.BigEndian, 6)),
	)
	r := process(t, p, "x.jpg", orig)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.info.MIMEType != "image/png" || r.info.Kind != Image {
		t.Fatalf("type %s, kind %s", r.info.MIMEType, r.info.Kind)
	}
	types, _ := pngChunks(t, r.clean)
	for _, typ := range types {
		switch typ {
		case "IHDR", "IDAT", "IEND", "PLTE", "tRNS":
		default:
			t.Errorf("clean PNG has a %s chunk", typ)
		}
	}
	for _, secret := range []string{"SECRET", "SpyCam", "Comment", "Author"} {
		if bytes.Contains(r.clean, []byte(secret)) {
			t.Errorf("clean PNG holds %q", secret)
		}
	}
	// eXIf orientation 6 turns it upright: 20×40, blue at the top left.
	img, err := png.Decode(bytes.NewReader(r.clean))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 20 || b.Dy() != 40 || r.info.Width != 20 || r.info.Height != 40 {
		t.Fatalf("clean PNG is %v, info %d×%d; want 20×40", b, r.info.Width, r.info.Height)
	}
	if got := img.At(0, 0); !near(got, color.RGBA{0, 0, 255, 255}, 0) {
		t.Errorf("top left is %v, want blue", got)
	}
	if r.outs.Thumbnail.MIMEType != "image/jpeg" {
		t.Errorf("thumbnail of an opaque PNG is %s, want image/jpeg", r.outs.Thumbnail.MIMEType)
	}
}

// apng returns a two-frame animated PNG with a tEXt chunk between its
// frames.
func apng(t *testing.T) []byte {
	t.Helper()
	_, d1 := pngChunks(t, encodePNG(t, quadrants(16, 16)))
	types2, d2 := pngChunks(t, encodePNG(t, image.NewNRGBA(image.Rect(0, 0, 16, 16))))
	if types2[1] != "IDAT" {
		t.Fatalf("chunks %v", types2)
	}
	fctl := func(seq uint32) []byte {
		b := binary.BigEndian.AppendUint32(nil, seq)
		b = binary.BigEndian.AppendUint32(b, 16)
		b = binary.BigEndian.AppendUint32(b, 16)
		b = binary.BigEndian.AppendUint32(b, 0)
		b = binary.BigEndian.AppendUint32(b, 0)
		return append(b, 0, 1, 0, 10, 0, 0) // delay 1/10, no dispose, source
	}
	var b []byte
	b = append(b, pngSignature...)
	b = append(b, pngChunk("IHDR", d1[0])...)
	b = append(b, pngChunk("acTL", []byte{0, 0, 0, 2, 0, 0, 0, 0})...)
	b = append(b, pngChunk("tEXt", []byte("Comment\x00SECRET-TEXT"))...)
	b = append(b, pngChunk("fcTL", fctl(0))...)
	b = append(b, pngChunk("IDAT", d1[1])...)
	b = append(b, pngChunk("fcTL", fctl(1))...)
	b = append(b, pngChunk("fdAT", append(binary.BigEndian.AppendUint32(nil, 2), d2[1]...))...)
	b = append(b, pngChunk("iTXt", []byte("XML:com.adobe.xmp\x00\x00\x00\x00\x00SECRET-XMP"))...)
	b = append(b, pngChunk("IEND", nil)...)
	return b
}

func TestAPNGKeepsAnimation(t *testing.T) {
	p := New(noVideo(Options{}))
	orig := apng(t)
	r := process(t, p, "a.png", orig)
	if r.err != nil {
		t.Fatal(r.err)
	}
	types, data := pngChunks(t, r.clean)
	want := []string{"IHDR", "acTL", "fcTL", "IDAT", "fcTL", "fdAT", "IEND"}
	if fmt.Sprint(types) != fmt.Sprint(want) {
		t.Fatalf("clean APNG chunks %v, want %v", types, want)
	}
	_, origData := pngChunks(t, orig)
	if !bytes.Equal(data[3], origData[4]) { // the IDAT
		t.Error("the IDAT chunk changed")
	}
	if bytes.Contains(r.clean, []byte("SECRET")) {
		t.Error("clean APNG holds the text chunks")
	}
	if _, err := png.Decode(bytes.NewReader(r.clean)); err != nil {
		t.Errorf("clean APNG does not decode: %v", err)
	}
	if r.outs.Clean.Size != int64(len(r.clean)) || r.outs.Clean.Width != 16 {
		t.Errorf("clean output %+v", r.outs.Clean)
	}
}

// animatedGIF returns a two-frame looping GIF with a comment and an XMP
// application extension after its global colour table, and a comment
// between the frames.
func animatedGIF(t *testing.T) []byte {
	t.Helper()
	pal := color.Palette{color.Black, color.White, color.RGBA{255, 0, 0, 255}, color.Transparent}
	f1 := image.NewPaletted(image.Rect(0, 0, 30, 20), pal)
	f2 := image.NewPaletted(image.Rect(5, 5, 15, 10), pal)
	for i := range f1.Pix {
		f1.Pix[i] = uint8(i % 3)
	}
	for i := range f2.Pix {
		f2.Pix[i] = 2
	}
	var b bytes.Buffer
	err := gif.EncodeAll(&b, &gif.GIF{
		Image: []*image.Paletted{f1, f2}, Delay: []int{10, 20}, LoopCount: 0,
		Config: image.Config{ColorModel: pal, Width: 30, Height: 20},
	})
	if err != nil {
		t.Fatal(err)
	}
	g := b.Bytes()
	afterCT := 13 + int(colorTableSize(g[10]))
	comment := []byte("\x21\xFE\x0ESECRET-COMMENT\x00")
	xmp := append([]byte("\x21\xFF\x0BXMP DataXMP\x0ASECRET-XMP"), 0)
	out := append([]byte{}, g[:afterCT]...)
	out = append(out, comment...)
	out = append(out, xmp...)
	out = append(out, g[afterCT:]...)
	// A comment before the trailer, where some tools put theirs.
	out = append(out[:len(out)-1], comment...)
	return append(out, 0x3B)
}

func TestGIFExtensionsStripped(t *testing.T) {
	p := New(noVideo(Options{}))
	orig := animatedGIF(t)
	r := process(t, p, "anim.gif", orig)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.info.MIMEType != "image/gif" || r.info.Width != 30 || r.info.Height != 20 {
		t.Fatalf("info %+v", r.info)
	}
	if bytes.Contains(r.clean, []byte("SECRET")) || bytes.Contains(r.clean, []byte("XMP Data")) {
		t.Error("clean GIF holds the comment or XMP")
	}
	if !bytes.Contains(r.clean, []byte("NETSCAPE2.0")) {
		t.Error("clean GIF lost its loop count")
	}
	want, err := gif.DecodeAll(bytes.NewReader(orig))
	if err != nil {
		t.Fatal(err)
	}
	got, err := gif.DecodeAll(bytes.NewReader(r.clean))
	if err != nil {
		t.Fatalf("clean GIF does not decode: %v", err)
	}
	if len(got.Image) != 2 || got.LoopCount != want.LoopCount || fmt.Sprint(got.Delay) != fmt.Sprint(want.Delay) {
		t.Fatalf("clean GIF has %d frames, loop %d, delays %v; want 2, %d, %v",
			len(got.Image), got.LoopCount, got.Delay, want.LoopCount, want.Delay)
	}
	for i := range got.Image {
		if !bytes.Equal(got.Image[i].Pix, want.Image[i].Pix) || got.Image[i].Rect != want.Image[i].Rect {
			t.Errorf("frame %d changed", i)
		}
	}
	if len(r.clean) != len(orig)-2*len("\x21\xFE\x0ESECRET-COMMENT\x00")-len("\x21\xFF\x0BXMP DataXMP\x0ASECRET-XMP\x00") {
		t.Errorf("clean GIF is %d bytes from %d: more than the extensions changed", len(r.clean), len(orig))
	}
}

func TestGIFWithoutTrailer(t *testing.T) {
	p := New(noVideo(Options{}))
	orig := animatedGIF(t)
	r := process(t, p, "a.gif", orig[:len(orig)-1])
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.clean[len(r.clean)-1] != 0x3B {
		t.Error("clean GIF has no trailer")
	}
}

// webpChunkIDs lists the chunk IDs of a WebP, with those inside ANMF
// chunks prefixed by "ANMF/".
func webpChunkIDs(t *testing.T, b []byte) []string {
	t.Helper()
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WEBP" {
		t.Fatalf("not a WebP")
	}
	if n := binary.LittleEndian.Uint32(b[4:8]); int(n) != len(b)-8 {
		t.Fatalf("RIFF size %d, file %d", n, len(b))
	}
	var ids []string
	var walk func(b []byte, prefix string)
	walk = func(b []byte, prefix string) {
		for len(b) >= 8 {
			id, n := string(b[0:4]), int(binary.LittleEndian.Uint32(b[4:8]))
			if 8+n > len(b) {
				t.Fatalf("chunk %s overflows", id)
			}
			ids = append(ids, prefix+id)
			if id == "ANMF" {
				walk(b[8+16:8+n], "ANMF/")
			}
			b = b[min(len(b), 8+n+n&1):]
		}
	}
	walk(b[12:], "")
	return ids
}

// withWebPMetadata turns a still WebP (a single VP8 or VP8L chunk) into an
// extended one with ICCP, EXIF and XMP chunks and their VP8X flags.
func withWebPMetadata(t *testing.T, still []byte, w, h int) []byte {
	t.Helper()
	chunk := func(id string, data []byte) []byte {
		c := append([]byte(id), binary.LittleEndian.AppendUint32(nil, uint32(len(data)))...)
		c = append(c, data...)
		if len(data)%2 == 1 {
			c = append(c, 0)
		}
		return c
	}
	vp8x := []byte{0x20 | 0x08 | 0x04, 0, 0, 0,
		byte(w - 1), byte((w - 1) >> 8), 0, byte(h - 1), byte((h - 1) >> 8), 0}
	body := []byte("WEBP")
	body = append(body, chunk("VP8X", vp8x)...)
	body = append(body, chunk("ICCP", []byte("SECRET-ICC"))...)
	body = append(body, still[12:]...)
	body = append(body, chunk("EXIF", testTIFF(binary.LittleEndian, 6))...)
	body = append(body, chunk("XMP ", []byte("<x:xmpmeta>SECRET-XMP</x:xmpmeta>!"))...)
	return append(append([]byte("RIFF"), binary.LittleEndian.AppendUint32(nil, uint32(len(body)))...), body...)
}

func TestWebPMetadataStripped(t *testing.T) {
	p := New(noVideo(Options{}))
	anim := readTestdata(t, "anim.webp")
	// Metadata after the frames, and an unknown chunk inside the first.
	animMeta := append([]byte{}, anim...)
	animMeta = append(animMeta, "EXIF\x0a\x00\x00\x00SECRET-EXF"...)
	binary.LittleEndian.PutUint32(animMeta[4:], uint32(len(animMeta)-8))
	tests := []struct {
		name      string
		data      []byte
		wantIDs   string
		wantAlpha bool
	}{
		{"lossy", withWebPMetadata(t, readTestdata(t, "still.webp"), 64, 48), "[VP8X VP8 ]", false},
		{"lossless", withWebPMetadata(t, readTestdata(t, "lossless.webp"), 64, 48), "[VP8X VP8L]", false},
		{"alpha", readTestdata(t, "alpha.webp"), "[VP8X ALPH VP8 ]", true},
		{"animated", animMeta, "[VP8X ANIM ANMF ANMF/VP8  ANMF ANMF/VP8  ANMF ANMF/VP8 ]", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := process(t, p, "x.gif", tt.data)
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.info.MIMEType != "image/webp" || r.info.Kind != Image || r.info.Width != 64 || r.info.Height != 48 {
				t.Fatalf("info %+v", r.info)
			}
			if got := fmt.Sprint(webpChunkIDs(t, r.clean)); got != tt.wantIDs {
				t.Errorf("clean chunks %s, want %s", got, tt.wantIDs)
			}
			if bytes.Contains(r.clean, []byte("SECRET")) || bytes.Contains(r.clean, latitudeBytes(binary.LittleEndian)) {
				t.Error("clean WebP holds metadata")
			}
			if flags := r.clean[20]; flags&^webpKeptFlags != 0 {
				t.Errorf("VP8X flags %#x still announce metadata", flags)
			}
			if tt.name != "animated" {
				want, err := webp.Decode(bytes.NewReader(tt.data))
				if err != nil {
					t.Fatal(err)
				}
				got, err := webp.Decode(bytes.NewReader(r.clean))
				if err != nil {
					t.Fatalf("clean WebP does not decode: %v", err)
				}
				if got.Bounds() != want.Bounds() || got.At(10, 10) != want.At(10, 10) || got.At(50, 40) != want.At(50, 40) {
					t.Error("clean WebP shows another picture")
				}
			}
			wantThumb := "image/jpeg"
			if tt.wantAlpha {
				wantThumb = "image/png"
			}
			if r.outs.Thumbnail.MIMEType != wantThumb || r.outs.Thumbnail.Width != 64 || r.outs.Thumbnail.Height != 48 {
				t.Errorf("thumbnail %+v, want a 64×48 %s", r.outs.Thumbnail, wantThumb)
			}
		})
	}
}

func TestThumbnailSizes(t *testing.T) {
	opaque := func(w, h int) []byte { return encodePNG(t, quadrants(w, h)) }
	transparent := func(w, h int) []byte {
		m := quadrants(w, h)
		m.SetNRGBA(0, 0, color.NRGBA{})
		for i := 3; i < len(m.Pix); i += 4 * 7 {
			m.Pix[i] = 0x80
		}
		return encodePNG(t, m)
	}
	tests := []struct {
		name         string
		data         []byte
		max          int
		wantW, wantH int
		wantMIME     string
	}{
		{"wide", opaque(1000, 500), 0, 320, 160, "image/jpeg"},
		{"tall", opaque(500, 1000), 0, 160, 320, "image/jpeg"},
		{"small", opaque(100, 50), 0, 100, 50, "image/jpeg"},
		{"exact", opaque(320, 320), 0, 320, 320, "image/jpeg"},
		{"strip", opaque(5000, 2), 0, 320, 1, "image/jpeg"},
		{"custom max", opaque(300, 200), 64, 64, 43, "image/jpeg"},
		{"alpha", transparent(640, 480), 0, 320, 240, "image/png"},
		{"jpeg", encodeJPEG(t, quadrants(999, 333)), 0, 320, 107, "image/jpeg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(noVideo(Options{ThumbnailMax: tt.max}))
			r := process(t, p, "img", tt.data)
			if r.err != nil {
				t.Fatal(r.err)
			}
			th := r.outs.Thumbnail
			if !th.Written || th.Width != tt.wantW || th.Height != tt.wantH || th.MIMEType != tt.wantMIME || th.Size != int64(len(r.thumb)) {
				t.Fatalf("thumbnail %+v (%d bytes), want %d×%d %s", th, len(r.thumb), tt.wantW, tt.wantH, tt.wantMIME)
			}
			cfg, format, err := image.DecodeConfig(bytes.NewReader(r.thumb))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Width != tt.wantW || cfg.Height != tt.wantH || "image/"+format != tt.wantMIME {
				t.Errorf("thumbnail file is %d×%d %s", cfg.Width, cfg.Height, format)
			}
		})
	}
}

func TestThumbnailOfAnimationFrame(t *testing.T) {
	// A GIF whose first frame covers only the right half of its screen:
	// the thumbnail shows it there, over transparency.
	pal := color.Palette{color.Transparent, color.RGBA{255, 0, 0, 255}}
	f := image.NewPaletted(image.Rect(200, 0, 400, 100), pal)
	for i := range f.Pix {
		f.Pix[i] = 1
	}
	var b bytes.Buffer
	if err := gif.EncodeAll(&b, &gif.GIF{Image: []*image.Paletted{f}, Delay: []int{0},
		Config: image.Config{ColorModel: pal, Width: 400, Height: 100}}); err != nil {
		t.Fatal(err)
	}
	r := process(t, New(noVideo(Options{ThumbnailMax: 40})), "g", b.Bytes())
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.outs.Thumbnail.MIMEType != "image/png" {
		t.Fatalf("thumbnail %+v, want a PNG", r.outs.Thumbnail)
	}
	th, err := png.Decode(bytes.NewReader(r.thumb))
	if err != nil {
		t.Fatal(err)
	}
	if th.Bounds().Dx() != 40 || th.Bounds().Dy() != 10 {
		t.Fatalf("thumbnail %v", th.Bounds())
	}
	if _, _, _, a := th.At(5, 5).RGBA(); a != 0 {
		t.Errorf("left half is not transparent")
	}
	if !near(th.At(35, 5), color.RGBA{255, 0, 0, 255}, 8) {
		t.Errorf("right half is %v, want red", th.At(35, 5))
	}
}

// pngHeader returns a PNG signature, an IHDR claiming w×h RGBA pixels, a
// few bytes of IDAT and an IEND.
func pngHeader(w, h uint32) []byte {
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 6, 0, 0, 0)
	b := append([]byte(pngSignature), pngChunk("IHDR", ihdr)...)
	b = append(b, pngChunk("IDAT", []byte{0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01})...)
	return append(b, pngChunk("IEND", nil)...)
}

// jpegHeader returns a baseline JPEG claiming w×h pixels, with tables and
// a scan of a few bytes.
func jpegHeader(t *testing.T, w, h uint16) []byte {
	small := encodeJPEG(t, image.NewGray(image.Rect(0, 0, 8, 8)))
	// Patch the size in the SOF0 segment: FF C0, length, precision, height, width.
	i := bytes.Index(small, []byte{0xFF, 0xC0})
	out := append([]byte{}, small...)
	binary.BigEndian.PutUint16(out[i+5:], h)
	binary.BigEndian.PutUint16(out[i+7:], w)
	return out
}

func gifHeader(w, h uint16) []byte {
	b := []byte("GIF89a")
	b = binary.LittleEndian.AppendUint16(b, w)
	b = binary.LittleEndian.AppendUint16(b, h)
	b = append(b, 0x80, 0, 0, 0, 0, 0, 255, 255, 255) // 2-colour table
	b = append(b, 0x2C, 0, 0, 0, 0)
	b = binary.LittleEndian.AppendUint16(b, w)
	b = binary.LittleEndian.AppendUint16(b, h)
	b = append(b, 0, 2, 2, 0x4C, 0x01, 0, 0x3B)
	return b
}

func webpHeader(w, h uint32) []byte {
	vp8x := []byte{0, 0, 0, 0, byte(w - 1), byte((w - 1) >> 8), byte((w - 1) >> 16), byte(h - 1), byte((h - 1) >> 8), byte((h - 1) >> 16)}
	body := append([]byte("WEBPVP8X\x0a\x00\x00\x00"), vp8x...)
	body = append(body, "VP8L\x05\x00\x00\x00\x2f\xff\xff\xff\x0f\x00"...)
	return append(append([]byte("RIFF"), binary.LittleEndian.AppendUint32(nil, uint32(len(body)))...), body...)
}

func TestDecompressionBombRefused(t *testing.T) {
	p := New(noVideo(Options{}))
	tests := []struct {
		name string
		data []byte
	}{
		{"png 100000x100000", pngHeader(100000, 100000)},
		{"png 60000x60000", pngHeader(60000, 60000)},
		{"png 1x4000000000", pngHeader(1, 4000000000)},
		{"png 0x10", pngHeader(0, 10)},
		{"jpeg 65000x65000", jpegHeader(t, 65000, 65000)},
		{"jpeg 10000x6000", jpegHeader(t, 10000, 6000)},
		{"gif 65535x65535", gifHeader(65535, 65535)},
		{"webp 16384x16384", webpHeader(16384, 16384)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			r := process(t, p, "bomb", tt.data)
			runtime.ReadMemStats(&after)
			if parley.ErrorCode(r.err) != parley.CodeInvalidArgument {
				t.Fatalf("error %v, want invalid_argument", r.err)
			}
			var pe *parley.Error
			if !errors.As(r.err, &pe) {
				t.Fatalf("error %T is not a *parley.Error", r.err)
			}
			if grown := after.TotalAlloc - before.TotalAlloc; grown > 32<<20 {
				t.Errorf("refusing it allocated %d MB", grown>>20)
			}
			if len(r.clean) != 0 || len(r.thumb) != 0 || r.outs.Clean.Written || r.outs.Thumbnail.Written {
				t.Error("something was written")
			}
		})
	}
}

func TestMaxImagePixels(t *testing.T) {
	p := New(noVideo(Options{MaxImagePixels: 399}))
	r := process(t, p, "a.png", encodePNG(t, quadrants(20, 20)))
	if parley.ErrorCode(r.err) != parley.CodeInvalidArgument {
		t.Fatalf("error %v, want invalid_argument", r.err)
	}
	p = New(noVideo(Options{MaxImagePixels: 400}))
	if r := process(t, p, "a.png", encodePNG(t, quadrants(20, 20))); r.err != nil {
		t.Fatalf("a 400-pixel image at a 400-pixel limit: %v", r.err)
	}
}

func TestCorruptImages(t *testing.T) {
	jpg := encodeJPEG(t, quadrants(64, 64))
	pngData := encodePNG(t, quadrants(64, 64))
	g := animatedGIF(t)
	still := readTestdata(t, "still.webp")
	anim := readTestdata(t, "anim.webp")
	badIDAT := withPNGChunks(pngHeader(4, 4)[:8+25], pngChunk("IDAT", []byte("not zlib at all")), pngChunk("IEND", nil))
	badAnmf := append([]byte{}, anim...)
	badAnmf[0x2C+8+8] = 0xFF // the first frame claims a width past the canvas
	tests := []struct {
		name string
		data []byte
	}{
		{"jpeg half", jpg[:len(jpg)/2]},
		{"jpeg header only", jpg[:200]},
		{"jpeg soi garbage", append([]byte{0xFF, 0xD8, 0xFF}, bytes.Repeat([]byte{0x42}, 600)...)},
		{"png half", pngData[:len(pngData)/2]},
		{"png signature only", []byte(pngSignature)},
		{"png bad idat", badIDAT},
		{"gif half", g[:len(g)/2]},
		{"gif header only", g[:13]},
		{"webp half", still[:len(still)/2]},
		{"webp riff only", []byte("RIFF\x04\x00\x00\x00WEBP")},
		{"webp animated truncated", anim[:len(anim)-200]},
		{"webp animated bad frame", badAnmf},
		{"webp metadata only", []byte("RIFF\x12\x00\x00\x00WEBPEXIF\x06\x00\x00\x00abcdef")},
	}
	p := New(noVideo(Options{}))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := process(t, p, "x", tt.data)
			if r.info.Kind != Image {
				t.Fatalf("kind %s (%s), want image", r.info.Kind, r.info.MIMEType)
			}
			if parley.ErrorCode(r.err) != parley.CodeInvalidArgument {
				t.Fatalf("error %v, want invalid_argument", r.err)
			}
		})
	}
}

func TestFilesAreNotImages(t *testing.T) {
	rnd := make([]byte, 4096)
	for i := range rnd {
		rnd[i] = byte(i*7919 ^ i>>3*31 ^ 0x9E)
	}
	rnd[0] = 0x00
	heic := append([]byte("\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"), bytes.Repeat([]byte{1}, 100)...)
	tests := []struct {
		name     string
		data     []byte
		wantMIME string
	}{
		{"x.jpg", []byte("<!DOCTYPE html><html><body><script>alert(1)</script></body></html>"), "text/html"},
		{"y.png", []byte("  <html><img src=x onerror=alert(1)>"), "text/html"},
		{"logo.svg", []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`), "image/svg+xml"},
		{"logo2.png", []byte("<?xml version=\"1.0\"?>\n<!-- hi -->\n<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>"), "image/svg+xml"},
		{"empty.jpg", nil, "application/octet-stream"},
		{"random.gif", rnd, "application/octet-stream"},
		{"IMG_0001.HEIC", heic, "image/heic"},
		{"doc.pdf.jpg", []byte("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj"), "application/pdf"},
		{"notes.txt", []byte("just some text\n"), "text/plain"},
		{"archive", []byte("PK\x03\x04\x14\x00\x00\x00\x08\x00"), "application/zip"},
		{"scan.tiff", []byte("II*\x00\x08\x00\x00\x00\x00\x00"), "image/tiff"},
	}
	p := New(noVideo(Options{}))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := process(t, p, tt.name, tt.data)
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.info.MIMEType != tt.wantMIME || r.info.Kind != File {
				t.Errorf("type %s, kind %s; want %s, file", r.info.MIMEType, r.info.Kind, tt.wantMIME)
			}
			if r.info.Size != int64(len(tt.data)) {
				t.Errorf("size %d, want %d", r.info.Size, len(tt.data))
			}
			if r.outs != (Outputs{}) || len(r.clean) != 0 || len(r.thumb) != 0 {
				t.Errorf("outputs written for a file: %+v", r.outs)
			}
		})
	}
}

func TestNilWritersSkipOutputs(t *testing.T) {
	p := New(noVideo(Options{}))
	path := filepath.Join(t.TempDir(), "a")
	if err := os.WriteFile(path, encodeJPEG(t, quadrants(500, 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	var thumb bytes.Buffer
	info, outs, err := p.Process(context.Background(), path, nil, &thumb)
	if err != nil {
		t.Fatal(err)
	}
	if info.Width != 500 || outs.Clean.Written || !outs.Thumbnail.Written || thumb.Len() == 0 {
		t.Errorf("info %+v, outputs %+v", info, outs)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriterAndContextErrorsAreInternal(t *testing.T) {
	p := New(noVideo(Options{}))
	dir := t.TempDir()
	files := map[string][]byte{
		"jpeg": encodeJPEG(t, quadrants(64, 64)),
		"png":  encodePNG(t, quadrants(64, 64)),
		"apng": apng(t),
		"gif":  animatedGIF(t),
		"webp": readTestdata(t, "anim.webp"),
	}
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) {
			_, _, err := p.Process(context.Background(), path, failingWriter{}, nil)
			if err == nil || parley.ErrorCode(err) != parley.CodeInternal {
				t.Errorf("failing clean writer: %v, want an internal error", err)
			}
			_, _, err = p.Process(context.Background(), path, nil, failingWriter{})
			if err == nil || parley.ErrorCode(err) != parley.CodeInternal {
				t.Errorf("failing thumbnail writer: %v, want an internal error", err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			_, _, err = p.Process(ctx, path, nil, nil)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled context: %v", err)
			}
		})
	}
	if _, _, err := p.Process(context.Background(), filepath.Join(dir, "missing"), nil, nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, _, err := p.Process(context.Background(), dir, nil, nil); err == nil {
		t.Error("a directory was processed")
	}
}

func TestOrientImageTypes(t *testing.T) {
	src := quadrants(7, 5) // odd sizes catch off-by-one errors
	r := src.Bounds()
	imgs := map[string]image.Image{
		"nrgba":    src,
		"rgba":     image.NewRGBA(r),
		"rgba64":   image.NewRGBA64(r),
		"nrgba64":  image.NewNRGBA64(r),
		"gray":     image.NewGray(r),
		"gray16":   image.NewGray16(r),
		"cmyk":     image.NewCMYK(r),
		"paletted": image.NewPaletted(r, palette.Plan9),
		"alpha":    image.NewAlpha(r), // the generic path
		"ycbcr":    image.NewYCbCr(r, image.YCbCrSubsampleRatio420),
	}
	for name, img := range imgs {
		if d, ok := img.(interface{ Set(x, y int, c color.Color) }); ok {
			for y := range r.Dy() {
				for x := range r.Dx() {
					d.Set(x, y, color.NRGBA{uint8(x * 30), uint8(y * 50), uint8(x * y), uint8(100 + x)})
				}
			}
		}
		if y, ok := img.(*image.YCbCr); ok {
			for i := range y.Y {
				y.Y[i] = uint8(i * 9)
			}
			for i := range y.Cb {
				y.Cb[i], y.Cr[i] = uint8(i*40), uint8(255-i*40)
			}
		}
		for o := orientNormal; o <= orientRotate270; o++ {
			t.Run(fmt.Sprintf("%s/%d", name, o), func(t *testing.T) {
				got := orient(img, o)
				w, h := orientedSize(7, 5, o)
				if got.Bounds() != image.Rect(0, 0, w, h) {
					t.Fatalf("bounds %v, want %d×%d", got.Bounds(), w, h)
				}
				for y := range h {
					for x := range w {
						sx, sy := sourcePoint(o, 7, 5, x, y)
						wr, wg, wb, wa := img.At(sx, sy).RGBA()
						gr, gg, gb, ga := got.At(x, y).RGBA()
						if wr>>8 != gr>>8 || wg>>8 != gg>>8 || wb>>8 != gb>>8 || wa>>8 != ga>>8 {
							t.Fatalf("(%d,%d) is %v, want %v from (%d,%d)", x, y, got.At(x, y), img.At(sx, sy), sx, sy)
						}
					}
				}
			})
		}
	}
}

func TestTIFFOrientation(t *testing.T) {
	le, be := binary.LittleEndian, binary.BigEndian
	long := testTIFF(be, 0)
	// Rewrite: an IFD0 whose only entry is Orientation as a LONG.
	long = append(long[:8], 0, 1, 0x01, 0x12, 0, 4, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 0)
	tests := []struct {
		name string
		b    []byte
		want int
	}{
		{"le 6", testTIFF(le, 6), 6},
		{"be 8", testTIFF(be, 8), 8},
		{"none", testTIFF(le, 0), 1},
		{"out of range", testTIFF(le, 9), 1},
		{"zero", []byte("II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00\x00\x00\x00\x00"), 1},
		{"long", long, 8},
		{"truncated ifd", testTIFF(le, 6)[:20], 1},
		{"ifd offset past end", []byte("II*\x00\xff\xff\xff\xff"), 1},
		{"short", []byte("II*"), 1},
		{"bad magic", []byte("XX*\x00\x08\x00\x00\x00\x00\x00"), 1},
		{"huge count", []byte("II*\x00\x08\x00\x00\x00\xff\xff"), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tiffOrientation(tt.b); got != tt.want {
				t.Errorf("orientation %d, want %d", got, tt.want)
			}
		})
	}
}

func TestJPEGOrientationScan(t *testing.T) {
	jpg := encodeJPEG(t, quadrants(8, 8))
	xmp := segment(0xE1, []byte("http://ns.adobe.com/xap/1.0/\x00<x/>"))
	tests := []struct {
		name string
		b    []byte
		want int
	}{
		{"plain", jpg, 1},
		{"exif", withSegments(jpg, exifSegment(binary.LittleEndian, 3)), 3},
		{"after xmp and fill bytes", withSegments(jpg, xmp, []byte{0xFF}, exifSegment(binary.BigEndian, 6)), 6},
		{"after the scan", append(jpg[:len(jpg)-2], exifSegment(binary.BigEndian, 6)...), 1},
		{"truncated segment", withSegments(jpg[:2], exifSegment(binary.BigEndian, 6)[:20]), 1},
		{"not a jpeg", []byte("GIF89a"), 1},
		{"bad length", []byte{0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x01}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := jpegOrientation(bytes.NewReader(tt.b)); got != tt.want {
				t.Errorf("orientation %d, want %d", got, tt.want)
			}
		})
	}
}
