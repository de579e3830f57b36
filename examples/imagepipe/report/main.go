// Command report is the last step of the imagepipe example, a pipeline of
// three clemmys functions chained as an OpenWhisk sequence
//
//	scale → detect → report
//
// in which each step's JSON output object is the next step's input.
//
// report takes detect's output and writes a human readable summary and a
// verdict: "textured" if at least 15% of the pixels are edges or there are
// at least 25 corners, else "smooth":
//
//	in:  detect's output
//	out: {"report": "Image: 640x480 JPEG, analysed as 64x48 grayscale\n...",
//	      "summary": {"width": 64, "height": 48, "original": {...},
//	                  "edgeRatio": 0.1234, "corners": 17,
//	                  "meanIntensity": 127.5, "verdict": "textured"}}
//
// The logic lives in package
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

func main() { sdk.Run(report) }

func report(params map[string]any) (map[string]any, error) {
	return pipeline.ReportStep(params, os.Stderr)
}
