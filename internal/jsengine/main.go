// Command jsengine is the JavaScript engine of clemmys' nodejs kinds
// (nodejs:default, nodejs:20, nodejs:22): a Go program around goja
// (github.com/dop251/goja, a JavaScript interpreter in pure Go), built
// with GOOS=wasip1 GOARCH=wasm and run by the enclave runtime's sandbox
// like any other function, under the same memory and time limits.
//
// It is public code: one build of it serves every JavaScript function of a
// platform, and the function's own code is data. The sandbox gives an
// instance the function's code as the read-only file /action/code (the
// source text, or a zip archive, recognised by its "PK" magic, which is
// unpacked here, inside the sandbox), its entry point in the environment
// (CLEMMYS_JS_MAIN, default "main") and the Node.js version it emulates
// (CLEMMYS_JS_KIND).
//
// It speaks the loop calling convention version 2 (it exports
// "clemmys.loop.v2"; see internal/sandbox): it reads one line per
// activation, {"value": params, "activation_id": …, "namespace": …,
// "action_name": …, "deadline": …}, sets process.env.__OW_ACTIVATION_ID,
// __OW_NAMESPACE, __OW_ACTION_NAME, __OW_DEADLINE from it, as OpenWhisk's
// action loop does, calls the action and writes one line of result JSON.
// The enclave runtime fills them from what it has authenticated: the
// activation id is the request id of the envelope (in a sequence, the
// sequence's activation id: the components' record ids are the untrusted
// controller's), the namespace and the action name are the function's own
// (its owner's, also when another namespace invokes it from a public
// package), the deadline is when the activation's time limit ends (unix
// ms). __OW_API_HOST and __OW_API_KEY are not set: a function has no
// network, and no credential enters the runtime.
// Without CLEMMYS_LOOP=1 it runs one activation with the params on stdin.
//
// OpenWhisk's Node.js semantics: the action is a function main(params)
// (a top-level declaration, exports.main or module.exports.main, or the
// name exec.main gives), returning an object or a Promise of one; a thrown
// error or a rejected promise is an application error {"error": message};
// console output goes to the activation's logs, one line each, stamped
// "TIME stdout: " or "TIME stderr: " as OpenWhisk stamps its logs. A zipped
// action's own files can be required (package.json's main, else index.js;
// node_modules are searched as Node does). The globals a portable function
// needs are there (Buffer, URL, URLSearchParams, TextEncoder, TextDecoder,
// crypto.randomUUID and getRandomValues, atob and btoa, timers, process),
// and the core modules crypto (random values, hashes, HMAC), path, events,
// util, url, buffer, timers, string_decoder and os; fs, net, http, https
// and the other modules that reach outside the function throw a clear
// error, as does fetch: a function has no file system and no network.
// Timers run while the engine waits for the action's promise, within the
// activation; a promise that can never settle (nothing left to run) fails
// the activation at once instead of waiting for its time limit.
//
// An instance serves many activations of one function version: its global
// state persists between them, as in a warm OpenWhisk container.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Where the sandbox puts the function's code, and the environment the
// engine reads.
const (
	codePath = "/action/code"
	envMain  = "CLEMMYS_JS_MAIN"
	envKind  = "CLEMMYS_JS_KIND"
	envLoop  = "CLEMMYS_LOOP"
)

// Bounds of what the engine reads.
const (
	// maxCodeBytes bounds the function's code file (source or zip).
	maxCodeBytes = 48 << 20
	// maxParamsBytes bounds one activation's params, as the Go SDK does.
	maxParamsBytes = 16 << 20
	// maxLineBytes bounds one input line: the params and the metadata.
	maxLineBytes = maxParamsBytes + 64<<10
)

// Exit statuses in one shot, as the Go SDK's.
const (
	exitOK             = 0
	exitApplicationErr = 1
	exitDeveloperErr   = 2
)

func main() {
	os.Exit(run(os.Stdin, os.Stdout, os.Stderr, os.Getenv, readCode))
}

// readCode reads the function's code from the sandbox's file.
func readCode() ([]byte, error) {
	f, err := os.Open(codePath)
	if err != nil {
		return nil, fmt.Errorf("the function's code is missing: %w", err)
	}
	defer f.Close()
	code, err := io.ReadAll(io.LimitReader(f, maxCodeBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the function's code: %w", err)
	}
	if len(code) > maxCodeBytes {
		return nil, fmt.Errorf("the function's code exceeds %d bytes", maxCodeBytes)
	}
	return code, nil
}

// run is the engine without the process: it returns the exit status.
func run(stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string, code func() ([]byte, error)) int {
	e := newEngine(stdout, stderr, getenv(envKind))
	if src, err := code(); err != nil {
		e.initErr = err
	} else {
		e.load(src, getenv(envMain))
	}
	if getenv(envLoop) == "1" {
		return e.loop(stdin)
	}
	return e.once(stdin)
}

// loop serves activations, one line each, until stdin ends.
func (e *engine) loop(stdin io.Reader) int {
	br := bufio.NewReaderSize(stdin, 64<<10)
	for {
		line, err := readLine(br)
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return exitOK
		}
		if err != nil && !errors.Is(err, io.EOF) {
			// The stream is out of step: stop.
			e.writeError(err.Error())
			return exitDeveloperErr
		}
		params, meta, perr := parseActivation(line)
		if perr != nil {
			e.writeError(perr.Error())
			continue
		}
		e.setEnv(meta)
		e.activate(params)
	}
}

// once runs one activation with the params (not wrapped) on stdin.
func (e *engine) once(stdin io.Reader) int {
	in, err := io.ReadAll(io.LimitReader(stdin, maxParamsBytes+1))
	switch {
	case err != nil:
		e.writeError("cannot read parameters: " + err.Error())
		return exitDeveloperErr
	case len(in) > maxParamsBytes:
		e.writeError(fmt.Sprintf("parameters exceed %d bytes", maxParamsBytes))
		return exitDeveloperErr
	}
	params, err := checkParams(in)
	if err != nil {
		e.writeError(err.Error())
		return exitDeveloperErr
	}
	if e.activate(params) {
		return exitApplicationErr
	}
	return exitOK
}

// readLine reads one line, without its newline, of at most maxLineBytes.
// At the end of the stream it returns the last, unterminated line with
// io.EOF.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > maxLineBytes+1 { // +1: the newline
			return nil, fmt.Errorf("parameters exceed %d bytes", maxParamsBytes)
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(line) > maxLineBytes {
				return nil, fmt.Errorf("parameters exceed %d bytes", maxParamsBytes)
			}
			return line, io.EOF
		default:
			return nil, fmt.Errorf("cannot read parameters: %v", err)
		}
	}
}

// metaKeys are the activation metadata of an input line that become
// __OW_ environment values (OpenWhisk's action loop sets every key but
// value; these are the ones clemmys sends).
var metaKeys = []string{"activation_id", "namespace", "action_name", "deadline", "action_version", "transaction_id"}

// parseActivation splits a version-2 input line into the params (JSON of
// an object) and the metadata. A blank line is an activation with {} and
// no metadata.
func parseActivation(line []byte) (params []byte, meta map[string]string, err error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return []byte("{}"), nil, nil
	}
	var msg map[string]json.RawMessage
	if err := json.Unmarshal(line, &msg); err != nil {
		return nil, nil, errors.New("the activation is not valid JSON")
	}
	meta = map[string]string{}
	for _, k := range metaKeys {
		raw, ok := msg[k]
		if !ok {
			continue
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			meta[k] = s
		}
	}
	params, err = checkParams(msg["value"])
	return params, meta, err
}

// checkParams returns the params if they are a JSON object ({} if blank).
func checkParams(p []byte) ([]byte, error) {
	p = bytes.TrimSpace(p)
	if len(p) == 0 || string(p) == "null" {
		return []byte("{}"), nil
	}
	if p[0] != '{' {
		return nil, errors.New("parameters must be a JSON object")
	}
	if !json.Valid(p) {
		return nil, errors.New("parameters are not valid JSON")
	}
	return p, nil
}

// setEnv sets process.env.__OW_* from an activation's metadata.
func (e *engine) setEnv(meta map[string]string) {
	if e.env == nil {
		return
	}
	for _, k := range metaKeys {
		name := "__OW_" + strings.ToUpper(k)
		if v, ok := meta[k]; ok {
			_ = e.env.Set(name, v)
		} else {
			_ = e.env.Delete(name)
		}
	}
}

// writeError writes {"error": msg} as the activation's result line.
func (e *engine) writeError(msg string) {
	b, err := json.Marshal(map[string]string{"error": msg})
	if err != nil {
		b = []byte(`{"error":"unknown error"}`)
	}
	e.writeResult(b)
}

// writeResult writes one result line.
func (e *engine) writeResult(b []byte) {
	out := make([]byte, 0, len(b)+1)
	out = append(append(out, b...), '\n')
	if _, err := e.stdout.Write(out); err != nil {
		e.logLine(true, "engine: cannot write the result: "+err.Error())
	}
}

// logLine writes one console message to the logs, each of its lines
// stamped as OpenWhisk stamps them: "2006-01-02T15:04:05.000000000Z stdout: ".
func (e *engine) logLine(stderr bool, msg string) {
	stream := " stdout: "
	if stderr {
		stream = " stderr: "
	}
	ts := e.now().UTC().Format(logTimeFormat)
	var b strings.Builder
	for line := range strings.SplitSeq(strings.TrimRight(msg, "\n"), "\n") {
		b.WriteString(ts)
		b.WriteString(stream)
		b.WriteString(line)
		b.WriteByte('\n')
	}
	_, _ = io.WriteString(e.logs, b.String())
}

// logTimeFormat is OpenWhisk's log timestamp.
const logTimeFormat = "2006-01-02T15:04:05.000000000Z"

// nowFunc is the clock (a variable for tests).
var nowFunc = time.Now
