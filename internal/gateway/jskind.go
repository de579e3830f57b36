package gateway

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"fmt"
	"path"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/dop251/goja"

	"github.com/clemmys/clemmys/internal/fncode"
	"github.com/clemmys/clemmys/internal/wire"
)

// JavaScript functions (OpenWhisk's nodejs kinds). The gateway accepts an
// exec of kind nodejs:default, nodejs:20 or nodejs:22 whose code is the
// source text, or the base64 of a zip archive with binary=true, checks it
// (size, UTF-8, syntax: goja parses it here; a zip's structure), and seals
// as the function's code the plaintext of package fncode: the digest of
// the JavaScript engine module this platform runs (Config.JSEngine), the
// kind, the entry point (exec.main) and the code. The KMS signs its
// SHA-256 as the code digest, so the engine is bound to the function
// version like its source is. Without Config.JSEngine the nodejs kinds are
// refused.

// jsKinds maps the accepted nodejs kinds to the kind stored (nodejs:default
// is the default version's, as OpenWhisk resolves it).
var jsKinds = map[string]string{
	"nodejs:default":  wire.KindNodeJS20,
	wire.KindNodeJS20: wire.KindNodeJS20,
	wire.KindNodeJS22: wire.KindNodeJS22,
}

// Bounds of a zipped action, as the engine unpacks it.
const maxZipFiles = 10_000

// validMain is an entry point: a JavaScript identifier (the engine's rule).
var validMain = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]{0,254}$`)

// decodedExec is an exec's code, decoded once per request.
type decodedExec struct {
	plain []byte // what is sealed: a wasm module or an fncode JS function
	kind  string // the stored kind
	msg   string // what is wrong with it, for the client
}

// decodeCode returns the plaintext to seal for an exec, the kind to store
// and, if the exec is not valid, a message for the client. The result is
// kept in e: the deploy calls it to check the body before anything else,
// then again to seal.
func (g *Gateway) decodeCode(e *execBody) (plain []byte, kind, msg string) {
	if e != nil && e.decoded != nil {
		return e.decoded.plain, e.decoded.kind, e.decoded.msg
	}
	d := &decodedExec{}
	if e != nil && jsKinds[e.Kind] != "" {
		d.plain, d.msg = g.decodeJS(e)
		d.kind = jsKinds[e.Kind]
	} else {
		if e != nil && e.Kind != "" && e.Kind != kindWasm {
			d.msg = fmt.Sprintf("Unsupported action kind; clemmys runs kinds %s.", g.kindList())
		} else {
			d.plain, d.msg = decodeModule(e)
			d.kind = kindWasm
		}
	}
	if e != nil {
		e.decoded = d
	}
	return d.plain, d.kind, d.msg
}

// kindList names the kinds this gateway accepts, for messages.
func (g *Gateway) kindList() string {
	if len(g.cfg.JSEngine) == 0 {
		return `"wasm" (WebAssembly modules)`
	}
	return `"wasm" (WebAssembly modules), "nodejs:default", "nodejs:20" and "nodejs:22" (JavaScript)`
}

// decodeJS checks a nodejs exec and returns the fncode plaintext.
func (g *Gateway) decodeJS(e *execBody) ([]byte, string) {
	if len(g.cfg.JSEngine) != fncode.DigestSize {
		return nil, "The nodejs kinds are not enabled on this platform (it has no JavaScript engine); clemmys runs kind \"wasm\"."
	}
	if e.Code == nil || *e.Code == "" {
		return nil, "exec.code is required: the JavaScript source, or the base64 of a zip archive with \"binary\": true."
	}
	main := e.Main
	if main != "" && !validMain.MatchString(main) {
		return nil, "exec.main must be the name of a JavaScript function (an identifier)."
	}
	var code []byte
	if !e.Binary && looksZipped(*e.Code) {
		// OpenWhisk infers binary code from its form: the openwhisk npm
		// client sends a zip (a Buffer) as base64 without "binary".
		e.Binary = true
	}
	if e.Binary {
		s := strings.TrimSpace(*e.Code)
		if base64.StdEncoding.DecodedLen(len(s)) > MaxCodeBytes+3 {
			return nil, msgCodeTooLarge
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			b, err = base64.RawStdEncoding.DecodeString(s)
		}
		if err != nil {
			return nil, "exec.code is not valid base64: with \"binary\": true it must be the base64 of a zip archive."
		}
		if len(b) > MaxCodeBytes {
			return nil, msgCodeTooLarge
		}
		if msg := checkZip(b); msg != "" {
			return nil, msg
		}
		code = b
	} else {
		if len(*e.Code) > MaxCodeBytes {
			return nil, msgCodeTooLarge
		}
		if msg := checkSource(*e.Code); msg != "" {
			return nil, msg
		}
		code = []byte(*e.Code)
	}
	js := fncode.JS{Kind: jsKinds[e.Kind], Main: main, Code: code}
	copy(js.Engine[:], g.cfg.JSEngine)
	plain, err := js.Encode()
	if err != nil {
		return nil, "The action code could not be encoded."
	}
	return plain, ""
}

// looksZipped reports whether code is the base64 of a zip archive.
func looksZipped(code string) bool {
	s := strings.TrimSpace(code)
	if len(s) < 8 || len(s)%4 != 0 || strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '+' || r == '/' || r == '=')
	}) {
		return false
	}
	head, err := base64.StdEncoding.DecodeString(s[:8])
	return err == nil && bytes.HasPrefix(head, []byte("PK\x03\x04"))
}

// checkSource checks that a JavaScript source parses, as the engine will
// run it (a CommonJS module: the wrapper is on its first line, so line
// numbers are the source's).
func checkSource(src string) string {
	if !utf8.ValidString(src) {
		return "The action code is not valid UTF-8 text."
	}
	if strings.HasPrefix(src, "PK\x03\x04") {
		return "The action code is a zip archive: send it base64-encoded with \"binary\": true."
	}
	wrapped := "(function (exports, require, module, __filename, __dirname) {" + src + "\n})"
	if _, err := goja.Parse("action.js", wrapped); err != nil {
		return "The action code is not valid JavaScript: " + firstLine(err.Error())
	}
	return ""
}

// checkZip checks a zipped action's structure: a zip archive with at most
// maxZipFiles entries, all inside it, with a main module (package.json or
// index.js at its root or in its only folder).
func checkZip(b []byte) string {
	if !bytes.HasPrefix(b, []byte("PK\x03\x04")) {
		return "With \"binary\": true, exec.code must be the base64 of a zip archive."
	}
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return "The action's zip archive is malformed."
	}
	if len(zr.File) > maxZipFiles {
		return fmt.Sprintf("The action's zip archive has more than %d files.", maxZipFiles)
	}
	main := false
	for _, f := range zr.File {
		name := strings.ReplaceAll(f.Name, "\\", "/")
		c := path.Clean(name)
		if strings.HasPrefix(name, "/") || c == ".." || strings.HasPrefix(c, "../") {
			return "The action's zip archive has a file outside the archive."
		}
		base := path.Base(c)
		if depth := strings.Count(c, "/"); depth <= 1 && (base == "package.json" || base == "index.js") {
			main = true
		}
	}
	if !main {
		return "The action's zip archive has no package.json and no index.js at its root."
	}
	return ""
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// runtimes is the "runtimes" of GET /api/v1, in OpenWhisk's form.
func (g *Gateway) runtimes() map[string]any {
	rt := map[string]any{
		"wasm": []map[string]any{{"kind": kindWasm, "default": true, "deprecated": false}},
	}
	if len(g.cfg.JSEngine) == fncode.DigestSize {
		rt["nodejs"] = []map[string]any{
			{"kind": "nodejs:default", "default": true, "deprecated": false, "alias": wire.KindNodeJS20},
			{"kind": wire.KindNodeJS20, "default": false, "deprecated": false},
			{"kind": wire.KindNodeJS22, "default": false, "deprecated": false},
		}
	}
	return rt
}

// stampedLine is a log line already in OpenWhisk's form, "TIME stdout: "
// or "TIME stderr: " (the JavaScript engine writes console output so,
// with the time of each call).
var stampedLine = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z std(out|err): `)

// stampedLogLine reports whether a log line is stamped already. A
// function can stamp its own lines as it likes: they are its own logs.
func stampedLogLine(l string) bool { return len(l) >= 29 && l[4] == '-' && stampedLine.MatchString(l) }
