// Command scale is the first step of the imagepipe example, a pipeline of
// three clemmys functions chained as an OpenWhisk sequence
//
//	scale → detect → report
//
// in which each step's JSON output object is the next step's input.
//
// scale decodes a base64 PNG or JPEG, converts it to grayscale and shrinks
// it with an area-averaging filter so that its longer side is at most
// maxSize pixels (default 64; it never enlarges):
//
//	in:  {"image": "<base64 PNG or JPEG>", "maxSize": 64}
//	out: {"gray": "<base64 grayscale PNG>", "width": 64, "height": 48,
//	      "original": {"width": 640, "height": 480, "format": "jpeg"}}
//
// Inputs over 4 MiB of base64, or whose header claims more than 4096 pixels
// per side or 16 million pixels, are refused before their pixels are
// decoded. Errors come back as {"error": "..."}. The logic lives in package
// github.com/clemmys/clemmys/examples/imagepipe/pipeline.
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

func main() { sdk.Run(scale) }

func scale(params map[string]any) (map[string]any, error) {
	return pipeline.ScaleStep(params, os.Stderr)
}
