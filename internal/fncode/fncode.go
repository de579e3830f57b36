// Package fncode is the plaintext of a function's sealed code: what the
// gateway seals under the function version's code key, whose SHA-256 is
// the code digest the KMS signs in the function record, and what the
// enclave runtime opens and checks. It is a WebAssembly module (it starts
// with "\x00asm"), or a JavaScript function: the SHA-256 digest of the
// JavaScript engine module that runs it, the kind, the entry point and the
// function's own code (its source text, or a zip archive), in this layout:
//
//	"\x00cjs"                 magic (4 bytes; not a wasm module, not JavaScript text)
//	0x01                      version
//	engine digest             32 bytes: SHA-256 of the engine's wasm module
//	len(kind)  kind           1-byte length, e.g. "nodejs:20"
//	len(main)  main           1-byte length, the entry point, e.g. "main"
//	code                      the rest: source text or zip archive
//
// So the code digest binds the engine as well as the source: a runtime
// runs a JavaScript function only on the engine it was deployed with (the
// engine is public code kept outside the runtime's binary, and a runtime
// checks its digest before compiling it), and a different engine, kind or
// entry point is a different function version.
//
// It is a leaf of the trusted computing base: standard library only.
package fncode

import (
	"bytes"
	"errors"
	"fmt"
)

// Magic starts a JavaScript function's plaintext.
const Magic = "\x00cjs"

// version is the layout's version.
const version = 1

// DigestSize is the size of an engine digest (SHA-256).
const DigestSize = 32

// maxNameBytes bounds the kind and the entry point (1-byte lengths).
const maxNameBytes = 255

// wasmMagic starts every WebAssembly module.
var wasmMagic = []byte("\x00asm")

// ErrMalformed: the plaintext is neither a wasm module nor a well-formed
// JavaScript function.
var ErrMalformed = errors.New("fncode: malformed function code")

// JS is a JavaScript function.
type JS struct {
	Engine [DigestSize]byte // SHA-256 of the engine module
	Kind   string           // e.g. "nodejs:20"
	Main   string           // entry point; "" is "main"
	Code   []byte           // the source text, or a zip archive
}

// Encode returns the plaintext of a JavaScript function.
func (js *JS) Encode() ([]byte, error) {
	if js.Kind == "" || len(js.Kind) > maxNameBytes || len(js.Main) > maxNameBytes {
		return nil, fmt.Errorf("%w: kind and entry point must be 1..%d and 0..%d bytes", ErrMalformed, maxNameBytes, maxNameBytes)
	}
	out := make([]byte, 0, len(Magic)+1+DigestSize+2+len(js.Kind)+len(js.Main)+len(js.Code))
	out = append(out, Magic...)
	out = append(out, version)
	out = append(out, js.Engine[:]...)
	out = append(out, byte(len(js.Kind)))
	out = append(out, js.Kind...)
	out = append(out, byte(len(js.Main)))
	out = append(out, js.Main...)
	return append(out, js.Code...), nil
}

// IsJS reports whether plain is a JavaScript function's plaintext.
func IsJS(plain []byte) bool { return bytes.HasPrefix(plain, []byte(Magic)) }

// IsWasm reports whether plain is a WebAssembly module.
func IsWasm(plain []byte) bool { return bytes.HasPrefix(plain, wasmMagic) }

// ParseJS parses a JavaScript function's plaintext. Code aliases plain.
func ParseJS(plain []byte) (*JS, error) {
	if !IsJS(plain) {
		return nil, fmt.Errorf("%w: no JavaScript function magic", ErrMalformed)
	}
	b := plain[len(Magic):]
	if len(b) < 1+DigestSize+2 || b[0] != version {
		return nil, fmt.Errorf("%w: truncated or unknown version", ErrMalformed)
	}
	js := &JS{}
	copy(js.Engine[:], b[1:1+DigestSize])
	b = b[1+DigestSize:]
	field := func() (string, bool) {
		if len(b) < 1 || len(b) < 1+int(b[0]) {
			return "", false
		}
		s := string(b[1 : 1+int(b[0])])
		b = b[1+int(b[0]):]
		return s, true
	}
	var ok bool
	if js.Kind, ok = field(); !ok || js.Kind == "" {
		return nil, fmt.Errorf("%w: truncated kind", ErrMalformed)
	}
	if js.Main, ok = field(); !ok {
		return nil, fmt.Errorf("%w: truncated entry point", ErrMalformed)
	}
	js.Code = b
	return js, nil
}
