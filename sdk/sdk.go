// Package sdk is the Go SDK for writing clemmys functions.
//
// A clemmys function is a WASI module that the platform calls with its
// parameters as one JSON object on stdin; it writes its result as one JSON
// object on stdout and its logs to stderr. With this package a function is
// an ordinary Go function:
//
//	package main
//
//	import "github.com/clemmys/clemmys/sdk"
//
//	func init() { sdk.Handle(hello) }
//	func main() { sdk.Main() }
//
//	func hello(params map[string]any) (map[string]any, error) {
//		name, _ := params["name"].(string)
//		return map[string]any{"greeting": "Hello " + name + "!"}, nil
//	}
//
// Build it for the platform as a WASI reactor, the fastest calling
// convention (the platform calls the function directly for each
// activation; main never runs), with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o hello.wasm ./examples/hello
//
// or, without -buildmode, as a command: Main then serves the function in
// the loop convention, one instance serving many activations by reading
// one line of params JSON per activation and writing one line of result
// JSON for each (see Run). Functions written for older versions of this
// package call Run in main and are commands; they keep working. The same
// code compiles natively, so the function can be unit-tested like any
// other Go code.
//
// Warm instances: between the activations an instance serves, the
// function's global variables keep their values (as in a warm OpenWhisk
// container); a panic ends the instance. A function that must start every
// activation from a fresh instance imports package
// github.com/clemmys/clemmys/sdk/fresh for its side effect.
//
// Exit status in one shot (what the platform reports):
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
	"bufio"
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
// If the environment variable CLEMMYS_LOOP is "1" (the platform sets it for
// modules built with this package, which export the function
// "clemmys.loop.v1" that tells it they can), Run serves activations in a
// loop instead: it reads one line of params (at most MaxInputBytes; an empty
// line is {}), calls fn and writes the result, or {"error": "<message>"}, as
// one line to stdout, until stdin ends, then exits 0. Bad params and errors
// fn returns are reported on their line and the loop goes on; a panic is
// reported the same way, then Run exits with status 2, since the function's
// state may be broken. The platform knows an activation is over when Run
// asks for the next line, so everything written to stderr until then is that
// activation's logs: no marker is needed, and none can be forged.
//
// Run does not return.
func Run(fn func(params map[string]any) (map[string]any, error)) {
	stdout := os.Stdout
	os.Stdout = os.Stderr
	if os.Getenv(LoopEnv) == "1" {
		os.Exit(loop(os.Stdin, stdout, os.Stderr, fn))
	}
	os.Exit(run(os.Stdin, stdout, os.Stderr, fn))
}

// Handle registers fn as the function of this module. Call it in an init
// function:
//
//	func init() { sdk.Handle(hello) }
//	func main() { sdk.Main() }
//
// Built as a WASI reactor (GOOS=wasip1 GOARCH=wasm go build
// -buildmode=c-shared), the module's main never runs: the platform calls
// the module for each activation, on the goroutine that handles it, which
// is the fastest convention (no hand-off between the platform's goroutines
// per activation). Built as a command (without -buildmode), Main serves
// the registered function as Run does. Each activation gets the params on
// stdin and writes one result line; bad params and returned errors are
// reported as in Run's loop, and a panic ends the instance (exit status 2).
func Handle(fn func(params map[string]any) (map[string]any, error)) { handler = fn }

// Main runs the function registered with Handle as Run does (a command
// build of the same source). Main does not return.
func Main() {
	if handler == nil {
		fmt.Fprintln(os.Stderr, "sdk: Main called without a function: call sdk.Handle(fn) in an init function")
		os.Exit(exitDeveloperErr)
	}
	Run(handler)
}

// handler is the function registered with Handle.
var handler func(map[string]any) (map[string]any, error)

// noHandler is the error of a reactor build that registered no function.
const noHandler = "this module was built as a reactor (-buildmode=c-shared), whose main never runs, and registered no function: call sdk.Handle(fn) in an init function"

// react serves one reactor activation without the process: the params are
// what stdin holds until its end. It reports whether the instance must end
// (a panic, or stdout failing).
func react(stdin io.Reader, stdout, stderr io.Writer, fn func(map[string]any) (map[string]any, error)) (fatal bool) {
	if fn == nil {
		fail(stdout, stderr, exitDeveloperErr, noHandler)
		return true
	}
	params, err := readParams(stdin)
	if err != nil {
		fail(stdout, stderr, exitDeveloperErr, err.Error())
		return false
	}
	result, panicked, err := call(fn, params, stderr)
	switch {
	case panicked:
		fail(stdout, stderr, exitDeveloperErr, "function panicked")
		return true
	case err != nil:
		fail(stdout, stderr, exitApplicationErr, err.Error())
		return false
	}
	out, err := encode(result)
	if err != nil {
		fmt.Fprintf(stderr, "sdk: cannot encode result: %v\n", err)
		fail(stdout, stderr, exitDeveloperErr, "function result is not valid JSON")
		return false
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintf(stderr, "sdk: cannot write result: %v\n", err)
		return true
	}
	return false
}

// LoopEnv is the environment variable that selects the loop convention.
const LoopEnv = "CLEMMYS_LOOP"

// loop is Run's loop convention without the process: it returns the exit
// status.
func loop(stdin io.Reader, stdout, stderr io.Writer, fn func(map[string]any) (map[string]any, error)) int {
	br := bufio.NewReaderSize(stdin, 64<<10)
	for {
		line, err := readLine(br)
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return exitOK
		}
		if err != nil && !errors.Is(err, io.EOF) {
			// The stream is out of step: stop.
			return fail(stdout, stderr, exitDeveloperErr, err.Error())
		}
		params, err := parseParams(line)
		if err != nil {
			fail(stdout, stderr, exitDeveloperErr, err.Error())
			continue
		}
		result, panicked, err := call(fn, params, stderr)
		switch {
		case panicked:
			return fail(stdout, stderr, exitDeveloperErr, "function panicked")
		case err != nil:
			fail(stdout, stderr, exitApplicationErr, err.Error())
			continue
		}
		out, err := encode(result)
		if err != nil {
			fmt.Fprintf(stderr, "sdk: cannot encode result: %v\n", err)
			fail(stdout, stderr, exitDeveloperErr, "function result is not valid JSON")
			continue
		}
		if _, err := stdout.Write(out); err != nil {
			fmt.Fprintf(stderr, "sdk: cannot write result: %v\n", err)
			return exitDeveloperErr
		}
	}
}

// readLine reads one line, without its newline, of at most MaxInputBytes.
// At the end of the stream it returns the last, unterminated line with
// io.EOF.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > MaxInputBytes+1 { // +1: the newline
			return nil, fmt.Errorf("parameters exceed %d bytes", MaxInputBytes)
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(line) > MaxInputBytes {
				return nil, fmt.Errorf("parameters exceed %d bytes", MaxInputBytes)
			}
			return line, io.EOF
		default:
			return nil, fmt.Errorf("cannot read parameters: %v", err)
		}
	}
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
	return parseParams(in)
}

// parseParams decodes the parameter object; blank input is {}.
func parseParams(in []byte) (map[string]any, error) {
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
