// Package pipeline is the logic of the imagepipe example: three clemmys
// functions chained as an OpenWhisk sequence
//
//	scale → detect → report
//
// in which each step's JSON output object is the next step's input.
//
//   - scale (ScaleStep, Scale) decodes a base64 PNG or JPEG, converts it to
//     8-bit grayscale and shrinks it with an exact area-averaging (box)
//     filter so that its longer side is at most maxSize pixels.
//   - detect (DetectStep, Detect) finds features in the grayscale image:
//     the share of edge pixels (Sobel gradient magnitude over a threshold),
//     Harris corners and the mean intensity.
//   - report (ReportStep, Report) turns the features into a human readable
//     summary and a verdict, "textured" or "smooth" (see Verdict).
//
// The functions themselves, in examples/imagepipe/scale, detect and report,
// are thin wrappers around the Step functions, so everything here is plain
// Go that can be tested natively. The package uses only the standard
// library.
//
// # Messages
//
// scale input:
//
//	{"image": "<base64 PNG or JPEG>", "maxSize": 64}
//
// scale output = detect input (ScaleOutput):
//
//	{"gray": "<base64 PNG>", "width": 64, "height": 48,
//	 "original": {"width": 640, "height": 480, "format": "jpeg"}}
//
// detect output = report input (DetectOutput):
//
//	{"width": 64, "height": 48, "original": {...},
//	 "edges": {"ratio": 0.1234, "threshold": 0.25},
//	 "corners": [{"x": 10, "y": 12, "score": 0.0123}, ...],
//	 "meanIntensity": 127.5}
//
// report output (ReportOutput):
//
//	{"report": "<multi-line text>",
//	 "summary": {"width": 64, "height": 48, "original": {...},
//	             "edgeRatio": 0.1234, "corners": 17, "meanIntensity": 127.5,
//	             "verdict": "textured"}}
//
// # Limits
//
// Untrusted images are checked before they are decoded: the base64 text is
// at most MaxImageBase64 bytes, and the header read by image.DecodeConfig
// must claim at most MaxDimension pixels per side and MaxPixels pixels in
// all, so a small input cannot make the decoder allocate more than a
// bounded amount of memory. detect accepts grayscale images up to
// MaxMaxSize pixels per side only, the largest scale produces.
package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Original describes the image given to scale.
type Original struct {
	Width  int    `json:"width"`
	Height int    `json:"height"`
	Format string `json:"format"` // "png" or "jpeg"
}

// ScaleOutput is scale's output and detect's input.
type ScaleOutput struct {
	Gray     string   `json:"gray"` // base64 of an 8-bit grayscale PNG
	Width    int      `json:"width"`
	Height   int      `json:"height"`
	Original Original `json:"original"`
}

// Edges is the result of the Sobel edge detector.
type Edges struct {
	Ratio     float64 `json:"ratio"`     // share of edge pixels, in [0, 1]
	Threshold float64 `json:"threshold"` // normalized gradient magnitude threshold
}

// Corner is one Harris corner, in the coordinates of the scaled image.
type Corner struct {
	X     int     `json:"x"`
	Y     int     `json:"y"`
	Score float64 `json:"score"` // Harris response, intensities in [0, 1]
}

// DetectOutput is detect's output and report's input.
type DetectOutput struct {
	Width         int      `json:"width"`
	Height        int      `json:"height"`
	Original      Original `json:"original"`
	Edges         Edges    `json:"edges"`
	Corners       []Corner `json:"corners"` // strongest first, never null
	MeanIntensity float64  `json:"meanIntensity"`
}

// Summary is the machine-readable part of report's output.
type Summary struct {
	Width         int      `json:"width"`
	Height        int      `json:"height"`
	Original      Original `json:"original"`
	EdgeRatio     float64  `json:"edgeRatio"`
	Corners       int      `json:"corners"` // number of corners
	MeanIntensity float64  `json:"meanIntensity"`
	Verdict       string   `json:"verdict"` // VerdictTextured or VerdictSmooth
}

// ReportOutput is report's output.
type ReportOutput struct {
	Report  string  `json:"report"`
	Summary Summary `json:"summary"`
}

// ErrTooLarge is wrapped by the errors for inputs over the limits.
var ErrTooLarge = errors.New("image too large")

// toMap converts a message struct to the map the SDK encodes.
func toMap(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// fromMap converts a params map to a message struct, as the JSON decoder
// would have done from the wire. Unknown fields are ignored.
func fromMap(params map[string]any, v any) error {
	b, err := json.Marshal(params)
	if err != nil {
		return fmt.Errorf("invalid input: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("invalid input: %v", err)
	}
	return nil
}

// intParam reads an optional integer parameter; ok is false if it is absent
// or null.
func intParam(params map[string]any, name string) (n int, ok bool, err error) {
	v, present := params[name]
	if !present || v == nil {
		return 0, false, nil
	}
	var f float64
	switch v := v.(type) {
	case float64:
		f = v
	case int:
		return v, true, nil
	case json.Number:
		if f, err = v.Float64(); err != nil {
			return 0, false, fmt.Errorf("%q must be an integer, got %q", name, v)
		}
	default:
		return 0, false, fmt.Errorf("%q must be an integer, got %T", name, v)
	}
	if f != math.Trunc(f) || math.Abs(f) > 1<<30 {
		return 0, false, fmt.Errorf("%q must be an integer, got %v", name, f)
	}
	return int(f), true, nil
}

// round6 rounds f to 6 significant digits, to keep messages readable.
func round6(f float64) float64 {
	r, err := strconv.ParseFloat(strconv.FormatFloat(f, 'g', 6, 64), 64)
	if err != nil {
		return f
	}
	return r
}

// roundTo rounds f to n decimal places.
func roundTo(f float64, n int) float64 {
	p := math.Pow10(n)
	return math.Round(f*p) / p
}
