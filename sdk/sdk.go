// Package sdk is the Go SDK for writing clemmys functions.
//
// A clemmys function is a WASI command module that follows the one-shot
// calling convention: it reads its parameters as one JSON object on stdin,
// writes its result as one JSON object on stdout and writes logs to stderr.
// With this package a function is an ordinary Go function:
//
//	package main
//
//	import "github.com/clemmys/clemmys/sdk"
//
//	func main() { sdk.Run(hello) }
//
//	func hello(params map[string]any) (map[string]any, error) {
//		name, _ := params["name"].(string)
//		return map[string]any{"greeting": "Hello " + name + "!"}, nil
//	}
//
// Build it for the platform with
//
//	GOOS=wasip1 GOARCH=wasm go build -o hello.wasm ./examples/hello
//
// The same code compiles natively, so the function can be unit-tested like
// any other Go code.
//
// Exit status (what the platform reports):
//   - 0: success; stdout holds the result object.
//   - 1: application error: fn returned an error; stdout holds
//     {"error": "<message>"} (an OpenWhisk application error).
//   - 2: developer error: the input was not a JSON object, the result could
//     not be encoded, or fn panicked; stdout holds {"error": "<message>"}
//     and stderr the details.
//
// The package uses only the standard library.
package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// MaxInputBytes bounds how much of stdin Run reads. The platform enforces its
// own, usually smaller, payload limit; this is a second line of defence so
// that a function never buffers an unbounded input.
const MaxInputBytes = 16 << 20

// Exit statuses written by Run.
const (
	exitOK             = 0
	exitApplicationErr = 1
	exitDeveloperErr   = 2
)

// Run reads the params JSON object from stdin (at most MaxInputBytes), calls
// fn, writes the result JSON object to stdout and exits.
//
// If fn returns an error, Run writes {"error": "<message>"} to stdout and
// exits with status 1 (an OpenWhisk application error). A nil result is
// written as {}. Empty input is treated as {}.
//
// Logs are anything the function writes to stderr (for example with the log
// package or fmt.Fprintln(os.Stderr, ...)). While fn runs, os.Stdout points to
// stderr too, so a stray fmt.Println becomes a log line instead of corrupting
// the result.
//
// Run does not return.
func Run(fn func(params map[string]any) (map[string]any, error)) {
	stdout := os.Stdout
	os.Stdout = os.Stderr
	os.Exit(run(os.Stdin, stdout, os.Stderr, fn))
}

// run is Run without the process: it returns the exit status.
func run(stdin io.Reader, stdout, stderr io.Writer, fn func(map[string]any) (map[string]any, error)) int {
	params, err := readParams(stdin)
	if err != nil {
		return fail(stdout, stderr, exitDeveloperErr, err.Error())
	}

	result, panicked, err := call(fn, params, stderr)
	if panicked {
		return fail(stdout, stderr, exitDeveloperErr, "function panicked")
	}
	if err != nil {
		return fail(stdout, stderr, exitApplicationErr, err.Error())
	}

	out, err := encode(result)
	if err != nil {
		fmt.Fprintf(stderr, "sdk: cannot encode result: %v\n", err)
		return fail(stdout, stderr, exitDeveloperErr, "function result is not valid JSON")
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintf(stderr, "sdk: cannot write result: %v\n", err)
		return exitDeveloperErr
	}
	return exitOK
}

// readParams reads and decodes the parameter object.
func readParams(stdin io.Reader) (map[string]any, error) {
	in, err := io.ReadAll(io.LimitReader(stdin, MaxInputBytes+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read parameters: %v", err)
	}
	if len(in) > MaxInputBytes {
		return nil, fmt.Errorf("parameters exceed %d bytes", MaxInputBytes)
	}
	in = bytes.TrimSpace(in)
	if len(in) == 0 {
		return map[string]any{}, nil
	}
	if in[0] != '{' {
		return nil, errors.New("parameters must be a JSON object")
	}
	var params map[string]any
	if err := json.Unmarshal(in, &params); err != nil {
		return nil, fmt.Errorf("parameters are not valid JSON: %v", err)
	}
	return params, nil
}

// call runs fn, turning a panic into panicked=true after logging it.
func call(fn func(map[string]any) (map[string]any, error), params map[string]any, stderr io.Writer) (result map[string]any, panicked bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "panic: %v\n\n%s", r, debug.Stack())
			result, panicked, err = nil, true, nil
		}
	}()
	result, err = fn(params)
	return result, false, err
}

// encode marshals v as one line of JSON without HTML escaping.
func encode(v map[string]any) ([]byte, error) {
	if v == nil {
		v = map[string]any{}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// fail writes {"error": msg} to stdout and returns code.
func fail(stdout, stderr io.Writer, code int, msg string) int {
	out, err := encode(map[string]any{"error": msg})
	if err != nil { // cannot happen for a string, but never write nothing
		out = []byte(`{"error":"unknown error"}` + "\n")
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintf(stderr, "sdk: cannot write error result: %v\n", err)
	}
	return code
}
