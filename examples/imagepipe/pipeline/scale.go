package pipeline

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"strings"
)

// Limits and defaults of scale.
const (
	// MaxImageBase64 bounds the length of the base64 "image" parameter.
	MaxImageBase64 = 4 << 20
	// MaxDimension bounds each side of a decoded image, in pixels.
	MaxDimension = 4096
	// MaxPixels bounds width×height of a decoded image (16 megapixels).
	MaxPixels = 16_000_000
	// DefaultMaxSize is the default bound on the longer side of the output.
	DefaultMaxSize = 64
	// MaxMaxSize is the largest maxSize accepted, and the largest side of
	// an image detect accepts.
	MaxMaxSize = 1024
)

// DecodeImage decodes a PNG or JPEG image after checking, with
// image.DecodeConfig, that its header claims at most MaxDimension pixels
// per side and MaxPixels pixels in all. It never decodes the pixels of an
// image over these limits; the error then wraps ErrTooLarge.
func DecodeImage(data []byte) (image.Image, Original, error) {
	return decodeLimited(data, MaxDimension, MaxPixels)
}

func decodeLimited(data []byte, maxSide, maxPixels int) (image.Image, Original, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		if errors.Is(err, image.ErrFormat) {
			return nil, Original{}, errors.New("image is neither PNG nor JPEG")
		}
		return nil, Original{}, fmt.Errorf("invalid %s image: %v", formatName(format), err)
	}
	orig := Original{Width: cfg.Width, Height: cfg.Height, Format: format}
	var decode func(io.Reader) (image.Image, error)
	switch format {
	case "png":
		decode = png.Decode
	case "jpeg":
		decode = jpeg.Decode
	default: // another package of the binary registered more formats
		return nil, Original{}, fmt.Errorf("unsupported image format %q (want PNG or JPEG)", format)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, Original{}, fmt.Errorf("invalid %s image: empty (%dx%d)", formatName(format), cfg.Width, cfg.Height)
	}
	if cfg.Width > maxSide || cfg.Height > maxSide || int64(cfg.Width)*int64(cfg.Height) > int64(maxPixels) {
		return nil, Original{}, fmt.Errorf("%w: the %s header claims %dx%d pixels, the limit is %d pixels per side and %d in all",
			ErrTooLarge, format, cfg.Width, cfg.Height, maxSide, maxPixels)
	}
	img, err := decode(bytes.NewReader(data))
	if err != nil {
		return nil, Original{}, fmt.Errorf("invalid %s image: %v", formatName(format), err)
	}
	if b := img.Bounds(); b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		// Cannot happen with the standard decoders; never trust it anyway.
		return nil, Original{}, fmt.Errorf("invalid %s image: header says %dx%d, pixels are %dx%d",
			formatName(format), cfg.Width, cfg.Height, b.Dx(), b.Dy())
	}
	return img, orig, nil
}

func formatName(f string) string {
	if f == "" {
		return "image"
	}
	return strings.ToUpper(f)
}

// Scale decodes a PNG or JPEG image (see DecodeImage for the limits) and
// returns it in grayscale, shrunk so that its longer side is at most
// maxSize pixels (see ScaleImage), with the original size and format.
func Scale(data []byte, maxSize int) (*image.Gray, Original, error) {
	if maxSize < 1 || maxSize > MaxMaxSize {
		return nil, Original{}, fmt.Errorf("maxSize must be between 1 and %d, got %d", MaxMaxSize, maxSize)
	}
	img, orig, err := DecodeImage(data)
	if err != nil {
		return nil, Original{}, err
	}
	return ScaleImage(img, maxSize), orig, nil
}

// TargetSize is the size ScaleImage gives a w×h image: unchanged if its
// longer side is at most maxSize, else scaled so that the longer side is
// maxSize, the shorter one rounded and at least 1. It never up-scales.
func TargetSize(w, h, maxSize int) (int, int) {
	if w <= maxSize && h <= maxSize {
		return w, h
	}
	short := func(s, l int) int { // s*maxSize/l, rounded, at least 1
		return max(1, int((int64(s)*int64(maxSize)+int64(l)/2)/int64(l)))
	}
	if w >= h {
		return maxSize, short(h, w)
	}
	return short(w, h), maxSize
}

// ScaleImage converts img to 8-bit grayscale (exactly as color.GrayModel
// does: the luma of the colour composited over black) and
// resizes it to TargetSize with an exact area-averaging (box) filter: each
// output pixel is the mean of the source pixels it covers, weighted by the
// covered area, computed in integers. The whole-image grayscale copy is
// never made: the source is read row by row.
func ScaleImage(img image.Image, maxSize int) *image.Gray {
	b := img.Bounds()
	W, H := b.Dx(), b.Dy()
	w, h := TargetSize(W, H, maxSize)
	dst := image.NewGray(image.Rect(0, 0, w, h))
	if W == 0 || H == 0 {
		return dst
	}
	xs := boxSpans(W, w)
	ys := boxSpans(H, h)

	// Source pixel x covers [x*w, (x+1)*w) of the output row, in units of
	// 1/W output pixels; its weights are the overlaps with output pixels
	// o and o+1, so each output pixel's weights add up to W (H for rows).
	acc := make([]uint64, w*h) // Σ luma × x-overlap × y-overlap ≤ 255·W·H
	row := make([]uint8, W)
	rowAcc := make([]uint64, w)
	var lut *[256]uint8
	for y := range H {
		lut = grayRow(img, b.Min.Y+y, row, lut)
		clear(rowAcc)
		for x, s := range xs {
			v := uint64(row[x])
			rowAcc[s.o] += v * s.w0
			if s.w1 != 0 {
				rowAcc[s.o+1] += v * s.w1
			}
		}
		s := ys[y]
		addRow(acc[s.o*w:(s.o+1)*w], rowAcc, s.w0)
		if s.w1 != 0 {
			addRow(acc[(s.o+1)*w:(s.o+2)*w], rowAcc, s.w1)
		}
	}
	area := uint64(W) * uint64(H)
	for i, v := range acc {
		dst.Pix[i] = uint8(min(255, (v+area/2)/area))
	}
	return dst
}

func addRow(dst, src []uint64, weight uint64) {
	for i, v := range src {
		dst[i] += v * weight
	}
}

// span is how one source pixel splits between output pixels o and o+1.
type span struct {
	o      int
	w0, w1 uint64
}

// boxSpans returns, for each of n source pixels mapped onto m ≤ n output
// pixels, its overlaps with the output pixels in units of 1/n output pixel.
func boxSpans(n, m int) []span {
	spans := make([]span, n)
	for i := range n {
		start, end := int64(i)*int64(m), int64(i+1)*int64(m)
		o := start / int64(n)
		boundary := (o + 1) * int64(n)
		if end <= boundary {
			spans[i] = span{o: int(o), w0: uint64(m)}
		} else {
			spans[i] = span{o: int(o), w0: uint64(boundary - start), w1: uint64(end - boundary)}
		}
	}
	return spans
}

// grayRow writes the 8-bit luma of row y of img to dst (len = width), with
// fast paths for the types the PNG and JPEG decoders return. lut caches the
// grayscale palette of a paletted image between calls; start with nil.
func grayRow(img image.Image, y int, dst []uint8, lut *[256]uint8) *[256]uint8 {
	b := img.Bounds()
	switch m := img.(type) {
	case *image.Gray:
		i := m.PixOffset(b.Min.X, y)
		copy(dst, m.Pix[i:i+len(dst)])
	case *image.YCbCr:
		for x := range dst {
			yi, ci := m.YOffset(b.Min.X+x, y), m.COffset(b.Min.X+x, y)
			r, g, bl, _ := color.YCbCr{m.Y[yi], m.Cb[ci], m.Cr[ci]}.RGBA()
			dst[x] = luma(r, g, bl)
		}
	case *image.RGBA:
		i := m.PixOffset(b.Min.X, y)
		for x := range dst {
			p := m.Pix[i+4*x : i+4*x+3 : i+4*x+3]
			dst[x] = luma(uint32(p[0])*0x101, uint32(p[1])*0x101, uint32(p[2])*0x101)
		}
	case *image.NRGBA:
		i := m.PixOffset(b.Min.X, y)
		for x := range dst {
			p := m.Pix[i+4*x : i+4*x+4 : i+4*x+4]
			r, g, bl, _ := color.NRGBA{p[0], p[1], p[2], p[3]}.RGBA()
			dst[x] = luma(r, g, bl)
		}
	case *image.Gray16:
		i := m.PixOffset(b.Min.X, y)
		for x := range dst {
			dst[x] = m.Pix[i+2*x] // high byte: what color.GrayModel gives
		}
	case *image.Paletted:
		if lut == nil {
			lut = new([256]uint8)
			for j, c := range m.Palette[:min(len(m.Palette), 256)] {
				if c != nil {
					lut[j] = color.GrayModel.Convert(c).(color.Gray).Y
				}
			}
		}
		i := m.PixOffset(b.Min.X, y)
		for x := range dst {
			dst[x] = lut[m.Pix[i+x]] // indexes past the palette read black
		}
	case image.RGBA64Image: // every other standard type: no allocation per pixel
		for x := range dst {
			c := m.RGBA64At(b.Min.X+x, y)
			dst[x] = luma(uint32(c.R), uint32(c.G), uint32(c.B))
		}
	default:
		for x := range dst {
			dst[x] = color.GrayModel.Convert(img.At(b.Min.X+x, y)).(color.Gray).Y
		}
	}
	return lut
}

// luma is color.GrayModel's formula on 16-bit premultiplied channels.
func luma(r, g, b uint32) uint8 {
	return uint8((19595*r + 38470*g + 7471*b + 1<<15) >> 24)
}

// decodeBase64 decodes standard base64, padded or not, after an optional
// "data:...;base64," prefix. Line breaks are ignored.
func decodeBase64(s string) ([]byte, error) {
	if strings.HasPrefix(s, "data:") {
		if i := strings.Index(s, ";base64,"); i >= 0 {
			s = s[i+len(";base64,"):]
		}
	}
	s = strings.TrimSpace(s)
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

// ScaleStep is the scale function: params {"image": base64, "maxSize": n}
// (maxSize optional, default DefaultMaxSize) to ScaleOutput as a map. It
// writes one log line to log.
func ScaleStep(params map[string]any, log io.Writer) (map[string]any, error) {
	raw, present := params["image"]
	if !present || raw == nil {
		return nil, errors.New(`missing "image" parameter (a base64 PNG or JPEG)`)
	}
	s, ok := raw.(string)
	if !ok {
		return nil, fmt.Errorf(`"image" must be a base64 string, got %T`, raw)
	}
	if len(s) > MaxImageBase64 {
		return nil, fmt.Errorf(`%w: "image" is %d bytes of base64, the limit is %d`, ErrTooLarge, len(s), MaxImageBase64)
	}
	if s == "" {
		return nil, errors.New(`"image" is empty`)
	}
	maxSize, ok, err := intParam(params, "maxSize")
	if err != nil {
		return nil, err
	}
	if !ok {
		maxSize = DefaultMaxSize
	}
	if maxSize < 1 || maxSize > MaxMaxSize {
		return nil, fmt.Errorf(`"maxSize" must be between 1 and %d, got %d`, MaxMaxSize, maxSize)
	}
	data, err := decodeBase64(s)
	if err != nil {
		return nil, fmt.Errorf(`"image" is not valid base64: %v`, err)
	}
	g, orig, err := Scale(data, maxSize)
	if err != nil {
		return nil, err
	}
	var gray bytes.Buffer
	if err := png.Encode(&gray, g); err != nil {
		return nil, fmt.Errorf("cannot encode the grayscale image: %v", err)
	}
	out := ScaleOutput{
		Gray:     base64.StdEncoding.EncodeToString(gray.Bytes()),
		Width:    g.Rect.Dx(),
		Height:   g.Rect.Dy(),
		Original: orig,
	}
	fmt.Fprintf(log, "scale: %dx%d %s (%d bytes) -> %dx%d gray (maxSize %d, %d bytes of PNG)\n",
		orig.Width, orig.Height, orig.Format, len(data), out.Width, out.Height, maxSize, gray.Len())
	return toMap(out)
}
