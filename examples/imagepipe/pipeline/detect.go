package pipeline

import (
	"errors"
	"fmt"
	"image"
	"io"
	"slices"
)

// Parameters of detect.
const (
	// DefaultEdgeThreshold is the default threshold on the normalized
	// Sobel gradient magnitude (see Detect): a step of a quarter of the
	// full black-to-white range.
	DefaultEdgeThreshold = 0.25
	// DefaultMaxCorners is how many corners Detect keeps by default.
	DefaultMaxCorners = 50
	// MaxCornersLimit bounds the maxCorners option.
	MaxCornersLimit = 1000

	harrisK   = 0.04 // R = det(M) - k·trace(M)²
	nmsRadius = 2    // a corner is the maximum of its 5×5 neighbourhood
	// A corner's response must exceed minCornerFraction of the strongest
	// one and minCornerResponse. A sharp black/white right-angle corner
	// scores about 5e-3 and R grows as contrast⁴, so the floor is a corner
	// between areas about 12% of the full range apart.
	minCornerFraction = 0.01
	minCornerResponse = 1e-6
)

// DetectOptions tunes Detect. Zero fields take the defaults.
type DetectOptions struct {
	EdgeThreshold float64 // in (0, √2); 0 = DefaultEdgeThreshold
	MaxCorners    int     // 0 = DefaultMaxCorners
}

// Features is what Detect finds in an image.
type Features struct {
	Edges         Edges
	Corners       []Corner // strongest first, never nil
	MeanIntensity float64  // mean pixel value, 0 to 255
}

// Detect finds features in g, with intensities taken as values in [0, 1]
// and pixels outside the image replicating the nearest border pixel:
//
//   - Edges: the Sobel gradient (gx, gy) at each pixel; the pixel is an edge
//     if √(gx²+gy²)/4 > EdgeThreshold. The /4 normalizes so that a sharp
//     black-to-white step scores 1 on the two pixels beside it.
//   - Corners (Harris): the structure tensor M = [Ix² IxIy; IxIy Iy²],
//     with Ix, Iy the Sobel derivatives /8, smoothed by a 5×5 binomial
//     (≈ Gaussian σ=1) window; the response R = det M − 0.04·(trace M)².
//     Corners are the pixels whose R exceeds 1% of the strongest response
//     and a small absolute floor, and is the maximum of its 5×5
//     neighbourhood (ties go to the first in raster order); the MaxCorners
//     strongest are kept, ordered by score (rounded to 6 significant
//     digits), then y, then x.
//   - MeanIntensity: the mean pixel value, 0 to 255.
func Detect(g *image.Gray, opts DetectOptions) Features {
	if opts.EdgeThreshold == 0 {
		opts.EdgeThreshold = DefaultEdgeThreshold
	}
	if opts.MaxCorners <= 0 {
		opts.MaxCorners = DefaultMaxCorners
	}
	w, h := g.Rect.Dx(), g.Rect.Dy()
	f := Features{Edges: Edges{Threshold: opts.EdgeThreshold}, Corners: []Corner{}}
	if w == 0 || h == 0 {
		return f
	}
	n := w * h

	in := make([]float64, n)
	var sum uint64
	for y := range h {
		row := g.Pix[g.PixOffset(g.Rect.Min.X, g.Rect.Min.Y+y):][:w]
		for x, v := range row {
			in[y*w+x] = float64(v) / 255
			sum += uint64(v)
		}
	}
	f.MeanIntensity = roundTo(float64(sum)/float64(n), 2)

	at := func(x, y int) float64 {
		return in[min(max(y, 0), h-1)*w+min(max(x, 0), w-1)]
	}
	a := make([]float64, n) // Ix²
	b := make([]float64, n) // Iy²
	c := make([]float64, n) // Ix·Iy
	edges := 0
	t4 := opts.EdgeThreshold * 4
	for y := range h {
		for x := range w {
			gx := at(x+1, y-1) + 2*at(x+1, y) + at(x+1, y+1) - at(x-1, y-1) - 2*at(x-1, y) - at(x-1, y+1)
			gy := at(x-1, y+1) + 2*at(x, y+1) + at(x+1, y+1) - at(x-1, y-1) - 2*at(x, y-1) - at(x+1, y-1)
			if gx*gx+gy*gy > t4*t4 {
				edges++
			}
			ix, iy := gx/8, gy/8
			i := y*w + x
			a[i], b[i], c[i] = ix*ix, iy*iy, ix*iy
		}
	}
	f.Edges.Ratio = roundTo(float64(edges)/float64(n), 4)

	tmp := make([]float64, n)
	for _, p := range [][]float64{a, b, c} {
		binomial5(p, tmp, w, h)
	}
	r := in // reuse: R overwrites the intensities, no longer needed
	maxR := 0.0
	for i := range r {
		det, tr := a[i]*b[i]-c[i]*c[i], a[i]+b[i]
		r[i] = det - harrisK*tr*tr
		maxR = max(maxR, r[i])
	}
	thresh := max(minCornerResponse, minCornerFraction*maxR)
	for y := range h {
		for x := range w {
			if v := r[y*w+x]; v > thresh && isLocalMax(r, w, h, x, y) {
				f.Corners = append(f.Corners, Corner{X: x, Y: y, Score: round6(v)})
			}
		}
	}
	slices.SortStableFunc(f.Corners, func(p, q Corner) int {
		switch {
		case p.Score > q.Score:
			return -1
		case p.Score < q.Score:
			return 1
		}
		return 0 // stable: raster order, i.e. by y then x
	})
	if len(f.Corners) > opts.MaxCorners {
		f.Corners = f.Corners[:opts.MaxCorners]
	}
	return f
}

// isLocalMax reports whether r at (x, y) is the maximum of the
// (2·nmsRadius+1)² neighbourhood; among equal values the first in raster
// order wins, so a plateau yields one corner.
func isLocalMax(r []float64, w, h, x, y int) bool {
	i := y*w + x
	v := r[i]
	for qy := max(0, y-nmsRadius); qy <= min(h-1, y+nmsRadius); qy++ {
		for qx := max(0, x-nmsRadius); qx <= min(w-1, x+nmsRadius); qx++ {
			j := qy*w + qx
			if r[j] > v || (r[j] == v && j < i) {
				return false
			}
		}
	}
	return true
}

// binomial5 smooths p (w×h) in place with the separable kernel
// [1 4 6 4 1]/16, replicating border pixels; tmp is scratch of the same size.
func binomial5(p, tmp []float64, w, h int) {
	k := [5]float64{1.0 / 16, 4.0 / 16, 6.0 / 16, 4.0 / 16, 1.0 / 16}
	for y := range h {
		row := p[y*w : (y+1)*w]
		for x := range w {
			s := 0.0
			for d := -2; d <= 2; d++ {
				s += k[d+2] * row[min(max(x+d, 0), w-1)]
			}
			tmp[y*w+x] = s
		}
	}
	for y := range h {
		for x := range w {
			s := 0.0
			for d := -2; d <= 2; d++ {
				s += k[d+2] * tmp[min(max(y+d, 0), h-1)*w+x]
			}
			p[y*w+x] = s
		}
	}
}

// detectInput is detect's input: ScaleOutput plus optional tuning
// parameters (which can be bound to the action as default parameters).
type detectInput struct {
	Gray          string    `json:"gray"`
	Width         int       `json:"width"`
	Height        int       `json:"height"`
	Original      *Original `json:"original"`
	EdgeThreshold *float64  `json:"edgeThreshold"`
	MaxCorners    *int      `json:"maxCorners"`
}

// DetectStep is the detect function: ScaleOutput (as a map) to DetectOutput
// (as a map), without the grayscale image. It writes one log line to log.
//
// The optional parameters "edgeThreshold" (in (0, 1.5)) and "maxCorners"
// (1 to MaxCornersLimit) override the defaults. The "width" and "height"
// parameters, if present, must match the image; a missing "original" is
// taken to be the grayscale PNG itself.
func DetectStep(params map[string]any, log io.Writer) (map[string]any, error) {
	var in detectInput
	if err := fromMap(params, &in); err != nil {
		return nil, err
	}
	if in.Gray == "" {
		return nil, errors.New(`missing "gray" parameter (the base64 PNG made by scale)`)
	}
	var opts DetectOptions
	if in.EdgeThreshold != nil {
		if t := *in.EdgeThreshold; !(t > 0 && t < 1.5) {
			return nil, fmt.Errorf(`"edgeThreshold" must be in (0, 1.5), got %v`, t)
		}
		opts.EdgeThreshold = *in.EdgeThreshold
	}
	if in.MaxCorners != nil {
		if n := *in.MaxCorners; n < 1 || n > MaxCornersLimit {
			return nil, fmt.Errorf(`"maxCorners" must be between 1 and %d, got %d`, MaxCornersLimit, n)
		}
		opts.MaxCorners = *in.MaxCorners
	}
	if len(in.Gray) > MaxImageBase64 {
		return nil, fmt.Errorf(`%w: "gray" is %d bytes of base64, the limit is %d`, ErrTooLarge, len(in.Gray), MaxImageBase64)
	}
	data, err := decodeBase64(in.Gray)
	if err != nil {
		return nil, fmt.Errorf(`"gray" is not valid base64: %v`, err)
	}
	img, format, err := decodeLimited(data, MaxMaxSize, MaxMaxSize*MaxMaxSize)
	if err != nil {
		return nil, fmt.Errorf(`"gray": %w`, err)
	}
	g, ok := img.(*image.Gray)
	if !ok { // any PNG or JPEG will do, in grayscale
		g = ScaleImage(img, MaxMaxSize)
	}
	w, h := g.Rect.Dx(), g.Rect.Dy()
	if (in.Width != 0 && in.Width != w) || (in.Height != 0 && in.Height != h) {
		return nil, fmt.Errorf(`"width" and "height" say %dx%d but the image is %dx%d`, in.Width, in.Height, w, h)
	}
	orig := format
	if in.Original != nil {
		orig = *in.Original
	}

	f := Detect(g, opts)
	out := DetectOutput{
		Width:         w,
		Height:        h,
		Original:      orig,
		Edges:         f.Edges,
		Corners:       f.Corners,
		MeanIntensity: f.MeanIntensity,
	}
	fmt.Fprintf(log, "detect: %dx%d gray: edges %.1f%% (threshold %g), %d corners, mean intensity %.1f\n",
		w, h, 100*f.Edges.Ratio, f.Edges.Threshold, len(f.Corners), f.MeanIntensity)
	return toMap(out)
}
