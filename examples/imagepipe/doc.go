// Package imagepipe is the example chain of three WebAssembly functions,
// scale → detect → report, deployed as an OpenWhisk sequence: scale
// converts an image to a small grayscale one, detect finds edges and Harris
// corners, report summarizes them. The functions live in scale/, detect/
// and report/; their logic in pipeline/. See README.md in this directory.
package imagepipe
