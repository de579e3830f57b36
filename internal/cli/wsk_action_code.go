package cli

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// The code of an action from a file (action create/update), and back to a
// file (action get --save), as wsk does: the kind comes from --kind or the
// file (.wasm or a module's magic: wasm; .js: nodejs:default, source text;
// .zip or a zip's magic: nodejs:default, base64 with binary: true).

// maxCodeFile bounds the file action create reads (the gateway refuses
// bigger bodies anyway; this keeps a wrong path from filling memory).
const maxCodeFile = 64 << 20

var (
	wasmMagic = []byte("\x00asm")
	zipMagic  = []byte("PK\x03\x04")
)

// codeKinds are the kinds --kind accepts.
var codeKinds = []string{"wasm", "nodejs:default", "nodejs:20", "nodejs:22"}

// execFromFile is the exec of an action whose code is the file path:
// of kind kind ("" to detect it) with entry point main ("" for the
// default). A file whose kind neither its name nor its content tells is
// sent as wasm, as before the JavaScript kinds (the gateway says what is
// wrong with it); guessed reports it.
func execFromFile(path, kind, main string) (exec map[string]any, guessed bool, err error) {
	if kind != "" && !isCodeKind(kind) {
		return nil, false, fmt.Errorf("unknown --kind %q: use one of %s", kind, strings.Join(codeKinds, ", "))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, false, fmt.Errorf("%s is a directory: zip it (cd DIR && zip -r ../action.zip .) and deploy the zip", path)
	}
	code, err := readAtMost(f, maxCodeFile)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", path, err)
	}
	ext := strings.ToLower(filepath.Ext(path))
	isZip := ext == ".zip" || bytes.HasPrefix(code, zipMagic)
	if kind == "" {
		switch {
		case ext == ".wasm" || bytes.HasPrefix(code, wasmMagic):
			kind = "wasm"
		case ext == ".js" || ext == ".mjs" || ext == ".cjs" || isZip:
			kind = "nodejs:default"
		default:
			kind, guessed = "wasm", true
		}
	}
	exec = map[string]any{"kind": kind}
	switch {
	case kind == "wasm":
		if main != "" {
			return nil, false, errors.New("--main is for JavaScript actions (a wasm module's entry point is _start)")
		}
		exec["code"], exec["binary"] = base64.StdEncoding.EncodeToString(code), true
	case isZip:
		exec["code"], exec["binary"] = base64.StdEncoding.EncodeToString(code), true
	default:
		exec["code"] = string(code)
	}
	if main != "" {
		exec["main"] = main
	}
	return exec, guessed, nil
}

func isCodeKind(k string) bool {
	for _, c := range codeKinds {
		if k == c {
			return true
		}
	}
	return false
}

// readAtMost reads all of r, failing if it holds more than limit bytes.
func readAtMost(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d MiB", limit>>20)
	}
	return b, nil
}

// webAnnotations are the annotations of --web true|false|raw and
// --web-secure, as wsk sets them.
func webAnnotations(web, secure string) ([]keyValue, error) {
	var out []keyValue
	switch strings.ToLower(web) {
	case "":
	case "true", "yes":
		out = append(out, keyValue{"web-export", true}, keyValue{"raw-http", false}, keyValue{"final", true})
	case "raw":
		out = append(out, keyValue{"web-export", true}, keyValue{"raw-http", true}, keyValue{"final", true})
	case "false", "no":
		out = append(out, keyValue{"web-export", false}, keyValue{"raw-http", false})
	default:
		return nil, fmt.Errorf("--web takes true, false or raw, not %q", web)
	}
	switch secure {
	case "":
	case "true":
		out = append(out, keyValue{"require-whisk-auth", true})
	case "false":
		out = append(out, keyValue{"require-whisk-auth", false})
	default:
		out = append(out, keyValue{"require-whisk-auth", secure})
	}
	return out, nil
}

// webURL is the address of an action as a web action:
// APIHOST/api/v1/web/NAMESPACE/PACKAGE|default/NAME. ns is the entity's
// namespace field ("alice" or "alice/pkg").
func webURL(apihost, ns, name string) string {
	segs := strings.Split(ns, "/")
	if len(segs) == 1 {
		segs = append(segs, "default")
	}
	segs = append(segs, name)
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.TrimSuffix(apihost, "/") + "/api/v1/web/" + strings.Join(segs, "/")
}

// savedCode is an action's code as a file: its bytes and the extension of
// its kind (.wasm, .zip, .js).
func savedCode(raw json.RawMessage) (code []byte, ext string, err error) {
	var a struct {
		Exec struct {
			Kind   string  `json:"kind"`
			Code   *string `json:"code"`
			Binary bool    `json:"binary"`
		} `json:"exec"`
	}
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, "", fmt.Errorf("unexpected answer: %w", err)
	}
	if a.Exec.Code == nil {
		if a.Exec.Kind == "sequence" {
			return nil, "", errors.New("a sequence has no code to save")
		}
		return nil, "", errors.New("the answer carries no code (only the action's owner gets it)")
	}
	code = []byte(*a.Exec.Code)
	if a.Exec.Binary {
		if code, err = base64.StdEncoding.DecodeString(*a.Exec.Code); err != nil {
			return nil, "", fmt.Errorf("the code is not valid base64: %w", err)
		}
	}
	switch {
	case a.Exec.Kind == "wasm":
		ext = ".wasm"
	case a.Exec.Binary:
		ext = ".zip"
	default:
		ext = ".js"
	}
	return code, ext, nil
}
