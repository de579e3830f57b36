// Command detect is the second step of the imagepipe example, a pipeline of
// three clemmys functions chained as an OpenWhisk sequence
//
//	scale → detect → report
//
// in which each step's JSON output object is the next step's input.
//
// detect takes scale's output, decodes its grayscale PNG and finds, with the
// standard library only, the share of edge pixels (Sobel gradient
// magnitude over a threshold), the 50 strongest Harris corners (after
// non-maximum suppression) and the mean intensity. It passes width, height
// and original through and drops the image, to keep messages small:
//
//	in:  {"gray": "<base64 grayscale PNG>", "width": 64, "height": 48,
//	      "original": {"width": 640, "height": 480, "format": "jpeg"}}
//	out: {"width": 64, "height": 48, "original": {...},
//	      "edges": {"ratio": 0.1234, "threshold": 0.25},
//	      "corners": [{"x": 10, "y": 12, "score": 0.00508666}, ...],
//	      "meanIntensity": 127.5}
//
// The optional parameters "edgeThreshold" and "maxCorners" (which can be
// bound to the action) override the defaults 0.25 and 50. The logic lives
// in package github.com/clemmys/clemmys/examples/imagepipe/pipeline.
//
// Build the three functions with
//
//	GOOS=wasip1 GOARCH=wasm go build -o scale.wasm ./examples/imagepipe/scale
//	GOOS=wasip1 GOARCH=wasm go build -o detect.wasm ./examples/imagepipe/detect
//	GOOS=wasip1 GOARCH=wasm go build -o report.wasm ./examples/imagepipe/report
package main

import (
	"os"

	"github.com/clemmys/clemmys/examples/imagepipe/pipeline"
	"github.com/clemmys/clemmys/sdk"
)

func main() { sdk.Run(detect) }

func detect(params map[string]any) (map[string]any, error) {
	return pipeline.DetectStep(params, os.Stderr)
}
