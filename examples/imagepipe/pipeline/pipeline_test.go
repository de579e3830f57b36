package pipeline_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/clemmys/clemmys/examples/imagepipe/pipeline"
)

var update = flag.Bool("update", false, "rewrite testdata/sample.png")

// ---- synthetic images ----

// checkerboard is a w×h black/white board of cell×cell squares.
func checkerboard(w, h, cell int) *image.Gray {
	g := image.NewGray(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			if (x/cell+y/cell)%2 == 0 {
				g.Pix[y*w+x] = 255
			}
		}
	}
	return g
}

// flat is a w×h image of one gray level.
func flat(w, h int, v uint8) *image.Gray {
	g := image.NewGray(image.Rect(0, 0, w, h))
	for i := range g.Pix {
		g.Pix[i] = v
	}
	return g
}

// square is an n×n black image with a white square [lo, hi)².
func square(n, lo, hi int) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, n, n))
	for y := range n {
		for x := range n {
			c := color.RGBA{0, 0, 0, 255}
			if x >= lo && x < hi && y >= lo && y < hi {
				c = color.RGBA{255, 255, 255, 255}
			}
			m.SetRGBA(x, y, c)
		}
	}
	return m
}

// sampleImage is testdata/sample.png: a 48×48 colour picture with a flat
// square, a disc and a small checkerboard on a dark blue background.
func sampleImage() *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, 48, 48))
	for y := range 48 {
		for x := range 48 {
			c := color.NRGBA{20, 30, 70, 255}
			switch {
			case x >= 5 && x < 21 && y >= 5 && y < 21:
				c = color.NRGBA{230, 200, 40, 255}
			case (x-35)*(x-35)+(y-12)*(y-12) <= 49:
				c = color.NRGBA{200, 40, 40, 255}
			case x >= 8 && x < 40 && y >= 28 && y < 44:
				if ((x-8)/4+(y-28)/4)%2 == 0 {
					c = color.NRGBA{250, 250, 250, 255}
				} else {
					c = color.NRGBA{10, 10, 10, 255}
				}
			}
			m.SetNRGBA(x, y, c)
		}
	}
	return m
}

func encodePNG(t testing.TB, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeJPEG(t testing.TB, m image.Image, quality int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: quality}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pngClaiming returns a valid 1×1 PNG whose IHDR (with a correct CRC)
// claims w×h pixels.
func pngClaiming(t testing.TB, w, h uint32) []byte {
	t.Helper()
	b := encodePNG(t, image.NewGray(image.Rect(0, 0, 1, 1)))
	// signature (8) | length (4) "IHDR" (4) width (4) height (4) ... | CRC
	if string(b[12:16]) != "IHDR" {
		t.Fatal("no IHDR at offset 12")
	}
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

// jpegClaiming returns a small baseline JPEG whose SOF0 claims w×h pixels.
func jpegClaiming(t testing.TB, w, h uint16) []byte {
	t.Helper()
	b := encodeJPEG(t, flat(8, 8, 128), 75)
	i := bytes.Index(b, []byte{0xff, 0xc0})
	if i < 0 {
		t.Fatal("no SOF0 marker")
	}
	// FFC0 length (2) precision (1) height (2) width (2)
	binary.BigEndian.PutUint16(b[i+5:], h)
	binary.BigEndian.PutUint16(b[i+7:], w)
	return b
}

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// roundTrip is what the platform does between two steps of a sequence.
func roundTrip(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// ---- scaling ----

func TestTargetSize(t *testing.T) {
	tests := []struct{ w, h, max, wantW, wantH int }{
		{48, 48, 64, 48, 48}, // never up-scales
		{64, 64, 64, 64, 64},
		{65, 64, 64, 64, 63},
		{640, 480, 64, 64, 48},
		{480, 640, 64, 48, 64},
		{4096, 16, 64, 64, 1}, // the short side is at least 1
		{1, 4096, 64, 1, 64},
		{100, 33, 10, 10, 3},
		{100, 35, 10, 10, 4}, // rounded
	}
	for _, tt := range tests {
		w, h := pipeline.TargetSize(tt.w, tt.h, tt.max)
		if w != tt.wantW || h != tt.wantH {
			t.Errorf("TargetSize(%d, %d, %d) = %dx%d, want %dx%d", tt.w, tt.h, tt.max, w, h, tt.wantW, tt.wantH)
		}
	}
}

func TestScaleImageAreaAveraging(t *testing.T) {
	tests := []struct {
		name    string
		w, h    int
		pix     []uint8
		maxSize int
		want    []uint8
	}{
		{"2x2 blocks", 4, 4, []uint8{
			0, 100, 10, 10,
			200, 100, 20, 30,
			255, 255, 0, 0,
			255, 255, 0, 1,
		}, 2, []uint8{100, 18, 255, 0}}, // 17.5 rounds up to 18; 0.25 to 0
		// 3 → 2: output 0 covers pixel 0 and half of pixel 1.
		{"fractional", 3, 1, []uint8{0, 90, 180}, 2, []uint8{30, 150}},
		{"identity", 3, 2, []uint8{1, 2, 3, 4, 5, 6}, 64, []uint8{1, 2, 3, 4, 5, 6}},
		{"to one pixel", 5, 3, []uint8{
			10, 10, 10, 10, 10,
			20, 20, 20, 20, 20,
			30, 30, 30, 30, 30,
		}, 1, []uint8{20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &image.Gray{Pix: tt.pix, Stride: tt.w, Rect: image.Rect(0, 0, tt.w, tt.h)}
			got := pipeline.ScaleImage(src, tt.maxSize)
			if !bytes.Equal(got.Pix, tt.want) {
				t.Errorf("ScaleImage = %v (%v), want %v", got.Pix, got.Rect, tt.want)
			}
		})
	}
}

// opaque hides an image's concrete type, forcing the generic path.
type opaque struct{ image.Image }

func TestScaleImageColourModels(t *testing.T) {
	rgba := image.NewRGBA(image.Rect(3, 5, 40, 30)) // non-zero origin
	for y := rgba.Rect.Min.Y; y < rgba.Rect.Max.Y; y++ {
		for x := rgba.Rect.Min.X; x < rgba.Rect.Max.X; x++ {
			a := uint8(255 - 3*x)
			rgba.SetRGBA(x, y, color.RGBA{uint8(7*x+y) & a, uint8(13*y) & a, uint8(x*y) & a, a})
		}
	}
	nrgba := image.NewNRGBA(rgba.Rect)
	gray16 := image.NewGray16(rgba.Rect)
	cmyk := image.NewCMYK(rgba.Rect)
	nrgba64 := image.NewNRGBA64(rgba.Rect)
	pal := image.NewPaletted(rgba.Rect, color.Palette{color.Black, color.White, color.RGBA{200, 10, 10, 255}, color.NRGBA{0, 0, 255, 128}})
	for y := rgba.Rect.Min.Y; y < rgba.Rect.Max.Y; y++ {
		for x := rgba.Rect.Min.X; x < rgba.Rect.Max.X; x++ {
			c := rgba.At(x, y)
			nrgba.Set(x, y, c)
			gray16.Set(x, y, c)
			cmyk.Set(x, y, c)
			nrgba64.Set(x, y, c)
			pal.Set(x, y, c)
		}
	}
	// A YCbCr image, as a JPEG decodes, through a round trip.
	ycc, err := jpeg.Decode(bytes.NewReader(encodeJPEG(t, rgba, 90)))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ycc.(*image.YCbCr); !ok {
		t.Fatalf("jpeg decoded to %T", ycc)
	}

	tests := []struct {
		name string
		img  image.Image
	}{
		{"RGBA", rgba}, {"NRGBA", nrgba}, {"Gray16", gray16},
		{"CMYK", cmyk}, {"NRGBA64", nrgba64}, {"Paletted", pal}, {"YCbCr", ycc}, {"Gray", checkerboard(30, 20, 3)},
	}
	for _, tt := range tests {
		for _, maxSize := range []int{64, 16} {
			got := pipeline.ScaleImage(tt.img, maxSize)
			want := pipeline.ScaleImage(opaque{tt.img}, maxSize)
			if got.Rect != want.Rect {
				t.Fatalf("%s: size %v, want %v", tt.name, got.Rect, want.Rect)
			}
			if !bytes.Equal(got.Pix, want.Pix) {
				t.Errorf("%s maxSize %d: fast path %v, generic path %v", tt.name, maxSize, got.Pix, want.Pix)
			}
		}
	}
}

// ---- refusals ----

func TestScaleRefusesLargeImages(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		wantErr error // nil: accepted
	}{
		{"png 4097x1", pngClaiming(t, 4097, 1), pipeline.ErrTooLarge},
		{"png 1x4097", pngClaiming(t, 1, 4097), pipeline.ErrTooLarge},
		{"png 4096x4096 (16.7 MPixel)", pngClaiming(t, 4096, 4096), pipeline.ErrTooLarge},
		{"png 4000x4001", pngClaiming(t, 4000, 4001), pipeline.ErrTooLarge},
		{"png 2^31-1 square", pngClaiming(t, 1<<31-1, 1<<31-1), errAny}, // refused by png.DecodeConfig
		{"png 1<<24 wide", pngClaiming(t, 1<<24, 1), pipeline.ErrTooLarge},
		{"jpeg 65535x65535", jpegClaiming(t, 65535, 65535), pipeline.ErrTooLarge},
		{"jpeg 4097x8", jpegClaiming(t, 4097, 8), pipeline.ErrTooLarge},
		{"jpeg 4000x4001", jpegClaiming(t, 4000, 4001), pipeline.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			alloc := allocated(func() { _, _, err = pipeline.Scale(tt.data, 64) })
			if err == nil || (tt.wantErr != errAny && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("Scale: err = %v, want %v", err, tt.wantErr)
			}
			if alloc > 1<<20 {
				t.Errorf("Scale allocated %d bytes to refuse the image", alloc)
			}
		})
	}

	// A header within the limits but no pixels behind it: decoded, and
	// refused by the decoder.
	if _, _, err := pipeline.Scale(pngClaiming(t, 100, 100), 64); err == nil || errors.Is(err, pipeline.ErrTooLarge) {
		t.Errorf("1x1 PNG claiming 100x100: err = %v, want a decoding error", err)
	}

	// Real images at the limits, cheap to make: long and thin.
	for _, size := range []image.Point{{4096, 16}, {16, 4096}} {
		data := encodePNG(t, checkerboard(size.X, size.Y, 4))
		g, orig, err := pipeline.Scale(data, 64)
		if err != nil {
			t.Fatalf("Scale(%v PNG): %v", size, err)
		}
		wantW, wantH := pipeline.TargetSize(size.X, size.Y, 64)
		if orig != (pipeline.Original{Width: size.X, Height: size.Y, Format: "png"}) || g.Rect.Dx() != wantW || g.Rect.Dy() != wantH {
			t.Errorf("Scale(%v PNG) = %v, %+v", size, g.Rect, orig)
		}
	}
	tooWide := encodePNG(t, image.NewGray(image.Rect(0, 0, 4097, 1)))
	if _, _, err := pipeline.Scale(tooWide, 64); !errors.Is(err, pipeline.ErrTooLarge) {
		t.Errorf("real 4097x1 PNG: err = %v, want ErrTooLarge", err)
	}

	// Base64 over 4 MiB is refused before it is decoded.
	huge := strings.Repeat("A", pipeline.MaxImageBase64+1)
	if _, err := pipeline.ScaleStep(map[string]any{"image": huge}, nopWriter{}); !errors.Is(err, pipeline.ErrTooLarge) {
		t.Errorf("ScaleStep(%d bytes of base64): err = %v, want ErrTooLarge", len(huge), err)
	}
}

// errAny stands for any error in tables.
var errAny = errors.New("any error")

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

func TestStepErrors(t *testing.T) {
	sample := base64.StdEncoding.EncodeToString(encodePNG(t, sampleImage()))
	gif := base64.StdEncoding.EncodeToString([]byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"))
	tests := []struct {
		name   string
		step   func(map[string]any, interface{ Write([]byte) (int, error) }) (map[string]any, error)
		params map[string]any
		want   string // substring of the error
	}{
		{"scale no image", scaleStep, map[string]any{}, `missing "image"`},
		{"scale null image", scaleStep, map[string]any{"image": nil}, `missing "image"`},
		{"scale empty image", scaleStep, map[string]any{"image": ""}, `empty`},
		{"scale number image", scaleStep, map[string]any{"image": 42.0}, `must be a base64 string`},
		{"scale bad base64", scaleStep, map[string]any{"image": "!!!!"}, `not valid base64`},
		{"scale not an image", scaleStep, map[string]any{"image": "aGVsbG8gd29ybGQ="}, `neither PNG nor JPEG`},
		{"scale gif", scaleStep, map[string]any{"image": gif}, `neither PNG nor JPEG`},
		{"scale truncated png", scaleStep, map[string]any{"image": sample[:len(sample)/2]}, `invalid PNG image`},
		{"scale maxSize 0", scaleStep, map[string]any{"image": sample, "maxSize": 0.0}, `"maxSize" must be between 1 and 1024`},
		{"scale maxSize 2000", scaleStep, map[string]any{"image": sample, "maxSize": 2000.0}, `between 1 and 1024`},
		{"scale maxSize 1.5", scaleStep, map[string]any{"image": sample, "maxSize": 1.5}, `must be an integer`},
		{"scale maxSize string", scaleStep, map[string]any{"image": sample, "maxSize": "64"}, `must be an integer`},
		{"detect no gray", detectStep, map[string]any{"width": 3.0}, `missing "gray"`},
		{"detect bad width", detectStep, map[string]any{"gray": sample, "width": "wide"}, `invalid input`},
		{"detect size mismatch", detectStep, map[string]any{"gray": sample, "width": 47.0, "height": 48.0}, `say 47x48 but the image is 48x48`},
		{"detect too large", detectStep, map[string]any{"gray": base64.StdEncoding.EncodeToString(pngClaiming(t, 1025, 1))}, `image too large`},
		{"detect threshold", detectStep, map[string]any{"gray": sample, "edgeThreshold": 0.0}, `"edgeThreshold" must be in (0, 1.5)`},
		{"detect maxCorners", detectStep, map[string]any{"gray": sample, "maxCorners": 0.0}, `"maxCorners" must be between 1 and 1000`},
		{"report empty", reportStep, map[string]any{}, `missing "width" and "height", "original", "edges", "corners", "meanIntensity"`},
		{"report bad ratio", reportStep, map[string]any{
			"width": 1.0, "height": 1.0, "original": map[string]any{}, "edges": map[string]any{"ratio": 2.0},
			"corners": []any{}, "meanIntensity": 0.0,
		}, `"edges.ratio" must be in [0, 1]`},
		{"report corners not a list", reportStep, map[string]any{"corners": "many"}, `invalid input`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			out, err := tt.step(tt.params, &log)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v (out %v), want one containing %q", err, out, tt.want)
			}
		})
	}
}

func scaleStep(p map[string]any, w interface{ Write([]byte) (int, error) }) (map[string]any, error) {
	return pipeline.ScaleStep(p, w)
}

func detectStep(p map[string]any, w interface{ Write([]byte) (int, error) }) (map[string]any, error) {
	return pipeline.DetectStep(p, w)
}

func reportStep(p map[string]any, w interface{ Write([]byte) (int, error) }) (map[string]any, error) {
	return pipeline.ReportStep(p, w)
}

// ---- detection and the whole pipeline ----

func TestDetect(t *testing.T) {
	tests := []struct {
		name                string
		img                 *image.Gray
		wantCorners         int
		wantRatioLo, wantHi float64
		wantMean            float64
	}{
		{"checkerboard", checkerboard(64, 64, 8), 49, 0.38, 0.40, 127.5},
		{"flat", flat(64, 32, 128), 0, 0, 0, 128},
		{"dark square", func() *image.Gray {
			g := flat(64, 64, 0)
			for y := 16; y < 48; y++ {
				for x := 16; x < 48; x++ {
					g.Pix[y*64+x] = 20 // contrast under the corner floor and the edge threshold
				}
			}
			return g
		}(), 0, 0, 0, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := pipeline.Detect(tt.img, pipeline.DetectOptions{MaxCorners: 100})
			if len(f.Corners) != tt.wantCorners || f.Edges.Ratio < tt.wantRatioLo || f.Edges.Ratio > tt.wantHi || f.MeanIntensity != tt.wantMean {
				t.Errorf("Detect = %d corners, edges %+v, mean %v; want %d corners, ratio in [%v, %v], mean %v",
					len(f.Corners), f.Edges, f.MeanIntensity, tt.wantCorners, tt.wantRatioLo, tt.wantHi, tt.wantMean)
			}
			if f.Corners == nil {
				t.Error("Corners is nil, want an empty list")
			}
			for i := 1; i < len(f.Corners); i++ {
				if f.Corners[i].Score > f.Corners[i-1].Score {
					t.Fatalf("corners not sorted by score: %v", f.Corners)
				}
			}
		})
	}

	// maxCorners keeps the strongest.
	f := pipeline.Detect(checkerboard(64, 64, 8), pipeline.DetectOptions{MaxCorners: 5})
	if len(f.Corners) != 5 {
		t.Errorf("MaxCorners 5: %d corners", len(f.Corners))
	}
	// An empty image has no features.
	f = pipeline.Detect(image.NewGray(image.Rect(0, 0, 0, 0)), pipeline.DetectOptions{})
	if len(f.Corners) != 0 || f.Edges.Ratio != 0 || f.Edges.Threshold != pipeline.DefaultEdgeThreshold {
		t.Errorf("empty image: %+v", f)
	}
}

// runPipeline chains the three steps through JSON, as an OpenWhisk
// sequence does, and checks each step logs one line.
func runPipeline(t *testing.T, params map[string]any) (scaled, detected, reported map[string]any) {
	t.Helper()
	var msgs [3]map[string]any
	in := roundTrip(t, params)
	for i, step := range []func(map[string]any, interface{ Write([]byte) (int, error) }) (map[string]any, error){scaleStep, detectStep, reportStep} {
		var log bytes.Buffer
		out, err := step(in, &log)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if n := strings.Count(log.String(), "\n"); n != 1 || !strings.HasSuffix(log.String(), "\n") {
			t.Errorf("step %d logged %d lines: %q", i, n, log.String())
		}
		msgs[i] = roundTrip(t, out)
		in = msgs[i]
	}
	return msgs[0], msgs[1], msgs[2]
}

func keys(m map[string]any) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slicesSort(ks)
	return strings.Join(ks, ",")
}

func slicesSort(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestPipeline(t *testing.T) {
	type pt struct{ x, y int }
	tests := []struct {
		name         string
		data         []byte
		maxSize      any // nil: default
		wantW, wantH int
		wantOrig     pipeline.Original
		wantVerdict  string
		minC, maxC   int  // corner count range
		wantAt       []pt // if set, one corner within 1 pixel of each
	}{
		{"checkerboard png", encodePNG(t, checkerboard(256, 256, 32)), nil, 64, 64,
			pipeline.Original{Width: 256, Height: 256, Format: "png"}, "textured", 49, 49, nil},
		{"checkerboard jpeg", encodeJPEG(t, checkerboard(200, 120, 20), 90), 50.0, 50, 30,
			pipeline.Original{Width: 200, Height: 120, Format: "jpeg"}, "textured", 30, 50, nil},
		{"flat gray png", encodePNG(t, flat(300, 100, 128)), nil, 64, 21,
			pipeline.Original{Width: 300, Height: 100, Format: "png"}, "smooth", 0, 0, nil},
		{"flat gray jpeg", encodeJPEG(t, flat(50, 80, 200), 75), nil, 40, 64,
			pipeline.Original{Width: 50, Height: 80, Format: "jpeg"}, "smooth", 0, 0, nil},
		{"white square png", encodePNG(t, square(128, 32, 96)), nil, 64, 64,
			pipeline.Original{Width: 128, Height: 128, Format: "png"}, "smooth", 4, 4,
			[]pt{{16, 16}, {47, 16}, {16, 47}, {47, 47}}},
		{"white square jpeg small", encodeJPEG(t, square(40, 10, 30), 95), 64.0, 40, 40,
			pipeline.Original{Width: 40, Height: 40, Format: "jpeg"}, "smooth", 4, 4,
			[]pt{{10, 10}, {29, 10}, {10, 29}, {29, 29}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			params := map[string]any{"image": base64.StdEncoding.EncodeToString(tt.data)}
			if tt.maxSize != nil {
				params["maxSize"] = tt.maxSize
			}
			scaled, detected, reported := runPipeline(t, params)

			if k := keys(scaled); k != "gray,height,original,width" {
				t.Errorf("scale output keys %s", k)
			}
			if k := keys(detected); k != "corners,edges,height,meanIntensity,original,width" {
				t.Errorf("detect output keys %s", k)
			}
			if k := keys(reported); k != "report,summary" {
				t.Errorf("report output keys %s", k)
			}

			var s pipeline.ScaleOutput
			var d pipeline.DetectOutput
			var r pipeline.ReportOutput
			for _, c := range []struct {
				m map[string]any
				v any
			}{{scaled, &s}, {detected, &d}, {reported, &r}} {
				b, _ := json.Marshal(c.m)
				if err := json.Unmarshal(b, c.v); err != nil {
					t.Fatal(err)
				}
			}
			if s.Width != tt.wantW || s.Height != tt.wantH || s.Original != tt.wantOrig {
				t.Errorf("scale: %dx%d %+v, want %dx%d %+v", s.Width, s.Height, s.Original, tt.wantW, tt.wantH, tt.wantOrig)
			}
			gray, err := base64.StdEncoding.DecodeString(s.Gray)
			if err != nil {
				t.Fatal(err)
			}
			g, err := png.Decode(bytes.NewReader(gray))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := g.(*image.Gray); !ok || g.Bounds() != image.Rect(0, 0, tt.wantW, tt.wantH) {
				t.Errorf("gray is a %T of %v", g, g.Bounds())
			}
			if d.Width != s.Width || d.Height != s.Height || d.Original != s.Original {
				t.Errorf("detect did not pass through the sizes: %+v", d)
			}
			if n := len(d.Corners); n < tt.minC || n > tt.maxC {
				t.Errorf("%d corners, want %d to %d: %v", n, tt.minC, tt.maxC, d.Corners)
			}
			for _, p := range tt.wantAt {
				found := false
				for _, c := range d.Corners {
					found = found || (abs(c.X-p.x) <= 1 && abs(c.Y-p.y) <= 1)
				}
				if !found {
					t.Errorf("no corner near %v: %v", p, d.Corners)
				}
			}
			want := pipeline.Summary{
				Width: s.Width, Height: s.Height, Original: s.Original,
				EdgeRatio: d.Edges.Ratio, Corners: len(d.Corners), MeanIntensity: d.MeanIntensity,
				Verdict: tt.wantVerdict,
			}
			if r.Summary != want {
				t.Errorf("summary %+v, want %+v", r.Summary, want)
			}
			if !strings.Contains(r.Report, "Verdict: "+tt.wantVerdict) || strings.Count(r.Report, "\n") < 4 {
				t.Errorf("report:\n%s", r.Report)
			}
		})
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func TestVerdict(t *testing.T) {
	tests := []struct {
		ratio   float64
		corners int
		want    string
	}{
		{0, 0, "smooth"},
		{0.1499, 24, "smooth"},
		{0.15, 0, "textured"},
		{0, 25, "textured"},
		{0.5, 50, "textured"},
	}
	for _, tt := range tests {
		if got := pipeline.Verdict(tt.ratio, tt.corners); got != tt.want {
			t.Errorf("Verdict(%v, %d) = %q, want %q", tt.ratio, tt.corners, got, tt.want)
		}
	}
}

func TestScaleStepInputForms(t *testing.T) {
	data := encodePNG(t, sampleImage())
	std := base64.StdEncoding.EncodeToString(data)
	for name, img := range map[string]string{
		"padded":   std,
		"unpadded": strings.TrimRight(std, "="),
		"data URL": "data:image/png;base64," + std,
		"wrapped":  std[:40] + "\n" + std[40:] + "\n",
	} {
		out, err := pipeline.ScaleStep(map[string]any{"image": img, "maxSize": 24}, nopWriter{})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if out["width"] != 24.0 || out["height"] != 24.0 {
			t.Errorf("%s: %v", name, out)
		}
	}
}

func TestDetectStepAcceptsColourPNG(t *testing.T) {
	// detect is usually fed scale's grayscale PNG, but any small PNG works,
	// and a missing "original" describes the image itself.
	img := base64.StdEncoding.EncodeToString(encodePNG(t, square(40, 10, 30)))
	out, err := pipeline.DetectStep(map[string]any{"gray": img}, nopWriter{})
	if err != nil {
		t.Fatal(err)
	}
	out = roundTrip(t, out)
	if n := len(out["corners"].([]any)); n != 4 {
		t.Errorf("%d corners, want 4", n)
	}
	orig := out["original"].(map[string]any)
	if orig["width"] != 40.0 || orig["height"] != 40.0 || orig["format"] != "png" {
		t.Errorf("original %v", orig)
	}
}

// ---- the sample image ----

func TestSampleImage(t *testing.T) {
	path := filepath.Join("..", "testdata", "sample.png")
	want := sampleImage()
	if *update {
		if err := os.WriteFile(path, encodePNG(t, want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestSampleImage -update to create it)", err)
	}
	if len(data) >= 4<<10 {
		t.Errorf("sample.png is %d bytes, want < 4 KiB", len(data))
	}
	got, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if got.Bounds() != want.Bounds() {
		t.Fatalf("sample.png is %v, want %v", got.Bounds(), want.Bounds())
	}
	for y := range 48 {
		for x := range 48 {
			r1, g1, b1, a1 := got.At(x, y).RGBA()
			r2, g2, b2, a2 := want.At(x, y).RGBA()
			if r1 != r2 || g1 != g2 || b1 != b2 || a1 != a2 {
				t.Fatalf("sample.png differs from sampleImage at (%d, %d) (run with -update)", x, y)
			}
		}
	}

	_, detected, reported := runPipeline(t, map[string]any{"image": base64.StdEncoding.EncodeToString(data)})
	summary := reported["summary"].(map[string]any)
	t.Logf("sample: %d corners, edges %v\n%s", len(detected["corners"].([]any)), detected["edges"], reported["report"])
	// The README shows this report: 21 checkerboard crossings, the
	// square's 4 corners, none on the disc.
	if summary["verdict"] != "textured" || summary["width"] != 48.0 || summary["corners"] != 25.0 || summary["edgeRatio"] != 0.2396 {
		t.Errorf("sample summary %v", summary)
	}
}

// ---- fuzzing ----

// FuzzScale feeds arbitrary bytes to Scale, the decoding entry point: it
// must never panic, must refuse anything over the limits without decoding
// it, and must allocate no more than the header's claimed size allows.
func FuzzScale(f *testing.F) {
	f.Add(encodePNG(f, sampleImage()))
	f.Add(encodePNG(f, checkerboard(20, 10, 3)))
	f.Add(encodePNG(f, image.NewPaletted(image.Rect(0, 0, 5, 5), color.Palette{color.White})))
	f.Add(encodePNG(f, image.NewRGBA64(image.Rect(0, 0, 3, 7))))
	f.Add(encodeJPEG(f, sampleImage(), 50))
	f.Add(encodeJPEG(f, image.NewGray(image.Rect(0, 0, 9, 9)), 90))
	f.Add(pngClaiming(f, 4097, 4097))
	f.Add(pngClaiming(f, 3000, 3000))
	f.Add(jpegClaiming(f, 4000, 4000))
	f.Add([]byte("\x89PNG\r\n\x1a\n"))
	f.Add([]byte{0xff, 0xd8, 0xff})
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, _, cfgErr := image.DecodeConfig(bytes.NewReader(data))
		var (
			g    *image.Gray
			orig pipeline.Original
			err  error
		)
		alloc := allocated(func() { g, orig, err = pipeline.Scale(data, 64) })

		// What the header allows: a few bytes per claimed pixel (a
		// progressive 4-component JPEG keeps 16 bytes of coefficients per
		// pixel besides the image), but nothing if it is over the limits.
		limit := uint64(1<<20 + 4*len(data))
		claimed := int64(cfg.Width) * int64(cfg.Height)
		if cfgErr == nil && cfg.Width <= pipeline.MaxDimension && cfg.Height <= pipeline.MaxDimension && claimed <= pipeline.MaxPixels {
			limit += uint64(64 * claimed)
		}
		if alloc > limit {
			t.Errorf("Scale allocated %d bytes, limit %d (header %dx%d, %v)", alloc, limit, cfg.Width, cfg.Height, cfgErr)
		}
		if err != nil {
			if g != nil {
				t.Error("Scale returned an image and an error")
			}
			return
		}
		if orig.Width > pipeline.MaxDimension || orig.Height > pipeline.MaxDimension ||
			int64(orig.Width)*int64(orig.Height) > pipeline.MaxPixels || orig.Width < 1 || orig.Height < 1 {
			t.Fatalf("accepted a %dx%d image", orig.Width, orig.Height)
		}
		if orig.Format != "png" && orig.Format != "jpeg" {
			t.Fatalf("format %q", orig.Format)
		}
		w, h := pipeline.TargetSize(orig.Width, orig.Height, 64)
		if g.Rect != image.Rect(0, 0, w, h) || max(w, h) > 64 {
			t.Fatalf("scaled %dx%d to %v", orig.Width, orig.Height, g.Rect)
		}
		if f := pipeline.Detect(g, pipeline.DetectOptions{}); len(f.Corners) > pipeline.DefaultMaxCorners ||
			math.IsNaN(f.Edges.Ratio) || f.MeanIntensity < 0 || f.MeanIntensity > 255 {
			t.Fatalf("Detect = %+v", f)
		}
	})
}
