package mediaproc

import (
	"context"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"

	"golang.org/x/image/draw"
	"golang.org/x/image/webp"
)

// Encoding qualities.
const (
	cleanJPEGQuality = 90
	thumbJPEGQuality = 80
)

// formatName is the name of an image format in messages to the uploader.
func formatName(mimeType string) string {
	switch mimeType {
	case "image/jpeg":
		return "JPEG"
	case "image/png":
		return "PNG"
	case "image/gif":
		return "GIF"
	case "image/webp":
		return "WebP"
	}
	return mimeType
}

// processImage checks, cleans and thumbnails the image in src, whose type
// info.MIMEType was found from its content.
func (p *Processor) processImage(ctx context.Context, src *imageSource, info *Info, outs *Outputs, cleanOut, thumbOut io.Writer) error {
	name := formatName(info.MIMEType)
	var decodeConfig func(io.Reader) (image.Config, error)
	switch info.MIMEType {
	case "image/jpeg":
		decodeConfig = jpeg.DecodeConfig
	case "image/png":
		decodeConfig = png.DecodeConfig
	case "image/gif":
		decodeConfig = gif.DecodeConfig
	case "image/webp":
		decodeConfig = webp.DecodeConfig
	default:
		return fmt.Errorf("mediaproc: no image decoder for %s", info.MIMEType)
	}
	cfg, err := decodeConfig(src.reader())
	if err != nil {
		return invalid(err, "the %s image is corrupt", name)
	}
	if err := p.checkSize(name, cfg.Width, cfg.Height); err != nil {
		return err
	}
	info.Width, info.Height = cfg.Width, cfg.Height
	switch info.MIMEType {
	case "image/jpeg":
		return p.processJPEG(ctx, src, info, outs, cleanOut, thumbOut)
	case "image/png":
		return p.processPNG(ctx, src, info, outs, cleanOut, thumbOut)
	case "image/gif":
		return p.processGIF(ctx, src, info, outs, cleanOut, thumbOut)
	default:
		return p.processWebP(ctx, src, info, outs, cleanOut, thumbOut)
	}
}

// checkSize refuses an image whose header claims a size that must not be
// decoded.
func (p *Processor) checkSize(name string, w, h int) error {
	switch {
	case w <= 0 || h <= 0:
		return invalid(nil, "the %s image has no pixels (%d×%d)", name, w, h)
	case w > maxSide || h > maxSide:
		return invalid(nil, "the %s image is %d×%d pixels; a side may be at most %d", name, w, h, maxSide)
	case int64(w)*int64(h) > p.maxPixels:
		return invalid(nil, "the %s image is %d×%d pixels, more than the %d pixels allowed", name, w, h, p.maxPixels)
	}
	return nil
}

func (p *Processor) processJPEG(ctx context.Context, src *imageSource, info *Info, outs *Outputs, cleanOut, thumbOut io.Writer) error {
	o := jpegOrientation(src.reader())
	img, err := jpeg.Decode(src.reader())
	if err != nil {
		return invalid(err, "the JPEG image is corrupt")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	img = orient(img, o)
	b := img.Bounds()
	info.Width, info.Height = b.Dx(), b.Dy()
	err = writeOutput(cleanOut, &outs.Clean, info.MIMEType, b.Dx(), b.Dy(), func(w io.Writer) error {
		if err := jpeg.Encode(w, img, &jpeg.Options{Quality: cleanJPEGQuality}); err != nil {
			return fmt.Errorf("mediaproc: write clean JPEG: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return p.writeThumbnail(thumbOut, &outs.Thumbnail, img, image.Point{}, b.Dx(), b.Dy())
}

func (p *Processor) processPNG(ctx context.Context, src *imageSource, info *Info, outs *Outputs, cleanOut, thumbOut io.Writer) error {
	animated, o, err := scanPNG(src.reader())
	if err != nil {
		return err
	}
	img, err := png.Decode(src.reader())
	if err != nil {
		return invalid(err, "the PNG image is corrupt")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if animated {
		// The standard library cannot write an APNG: copy its image and
		// animation chunks as they are, and leave the orientation alone.
		b := img.Bounds()
		err = writeOutput(cleanOut, &outs.Clean, info.MIMEType, b.Dx(), b.Dy(), func(w io.Writer) error {
			return filterPNG(src.reader(), w)
		})
	} else {
		img = orient(img, o)
		b := img.Bounds()
		info.Width, info.Height = b.Dx(), b.Dy()
		err = writeOutput(cleanOut, &outs.Clean, info.MIMEType, b.Dx(), b.Dy(), func(w io.Writer) error {
			if err := png.Encode(w, img); err != nil {
				return fmt.Errorf("mediaproc: write clean PNG: %w", err)
			}
			return nil
		})
	}
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b := img.Bounds()
	return p.writeThumbnail(thumbOut, &outs.Thumbnail, img, image.Point{}, b.Dx(), b.Dy())
}

func (p *Processor) processGIF(ctx context.Context, src *imageSource, info *Info, outs *Outputs, cleanOut, thumbOut io.Writer) error {
	// gif.Decode decodes the first frame only and checks that it lies
	// within the logical screen checked above.
	first, err := gif.Decode(src.reader())
	if err != nil {
		return invalid(err, "the GIF image is corrupt")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err = writeOutput(cleanOut, &outs.Clean, info.MIMEType, info.Width, info.Height, func(w io.Writer) error {
		return stripGIF(src.reader(), w)
	})
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return p.writeThumbnail(thumbOut, &outs.Thumbnail, first, first.Bounds().Min, info.Width, info.Height)
}

func (p *Processor) processWebP(ctx context.Context, src *imageSource, info *Info, outs *Outputs, cleanOut, thumbOut io.Writer) error {
	c, err := parseWebP(src.f, src.size)
	if err != nil {
		return err
	}
	var first image.Image
	var at image.Point
	if c.firstFrame != nil {
		at = image.Pt(c.firstFrame.x, c.firstFrame.y)
		first, err = p.decodeWebPFrame(src, c.firstFrame, info.Width, info.Height)
	} else {
		first, err = webp.Decode(src.reader())
		if err != nil {
			err = invalid(err, "the WebP image is corrupt")
		}
	}
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err = writeOutput(cleanOut, &outs.Clean, info.MIMEType, info.Width, info.Height, func(w io.Writer) error {
		return c.write(src.f, w)
	})
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return p.writeThumbnail(thumbOut, &outs.Thumbnail, first, at, info.Width, info.Height)
}

// thumbnailSize returns the size of the thumbnail of a w×h picture: at most
// limit on its long side, never larger than the picture, at least 1×1.
func thumbnailSize(w, h, limit int) (int, int) {
	if w <= limit && h <= limit {
		return w, h
	}
	if w >= h {
		return limit, max(1, int((int64(h)*int64(limit)+int64(w)/2)/int64(w)))
	}
	return max(1, int((int64(w)*int64(limit)+int64(h)/2)/int64(h))), limit
}

// writeThumbnail scales frame to a thumbnail of a canvasW×canvasH picture
// and writes it to w as a JPEG, or a PNG when it is not opaque. The frame's
// top-left corner is at `at` on the canvas: an animation's first frame may
// cover part of it.
func (p *Processor) writeThumbnail(w io.Writer, out *Output, frame image.Image, at image.Point, canvasW, canvasH int) error {
	if w == nil {
		return nil
	}
	tw, th := thumbnailSize(canvasW, canvasH, p.thumbMax)
	dst := image.NewRGBA(image.Rect(0, 0, tw, th))
	fb := frame.Bounds()
	// The part of the frame on the canvas, in canvas and in frame
	// coordinates.
	onCanvas := image.Rectangle{Min: at, Max: at.Add(fb.Size())}.Intersect(image.Rect(0, 0, canvasW, canvasH))
	if !onCanvas.Empty() {
		sr := onCanvas.Add(fb.Min.Sub(at))
		scale := func(v, from, to int) int { return int(int64(v) * int64(to) / int64(from)) }
		dr := image.Rect(
			scale(onCanvas.Min.X, canvasW, tw), scale(onCanvas.Min.Y, canvasH, th),
			scale(onCanvas.Max.X, canvasW, tw), scale(onCanvas.Max.Y, canvasH, th),
		)
		// A frame too small to show in the thumbnail still gets a pixel.
		if dr.Dx() == 0 {
			if dr.Max.X < tw {
				dr.Max.X++
			} else {
				dr.Min.X--
			}
		}
		if dr.Dy() == 0 {
			if dr.Max.Y < th {
				dr.Max.Y++
			} else {
				dr.Min.Y--
			}
		}
		draw.CatmullRom.Scale(dst, dr, frame, sr, draw.Src, nil)
	}
	if dst.Opaque() {
		return writeOutput(w, out, "image/jpeg", tw, th, func(w io.Writer) error {
			if err := jpeg.Encode(w, dst, &jpeg.Options{Quality: thumbJPEGQuality}); err != nil {
				return fmt.Errorf("mediaproc: write JPEG thumbnail: %w", err)
			}
			return nil
		})
	}
	return writeOutput(w, out, "image/png", tw, th, func(w io.Writer) error {
		if err := png.Encode(w, dst); err != nil {
			return fmt.Errorf("mediaproc: write PNG thumbnail: %w", err)
		}
		return nil
	})
}
