package gateway

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/fncode"
	"github.com/clemmys/clemmys/internal/wire"
)

func zipBytes(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for name, content := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write([]byte(content))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestDecodeCode(t *testing.T) {
	engine := sha256.Sum256([]byte("engine"))
	g := &Gateway{cfg: Config{JSEngine: engine[:]}}
	str := func(s string) *string { return &s }
	zipped := base64.StdEncoding.EncodeToString(zipBytes(t, map[string]string{"index.js": "exports.main = () => ({})", "lib/a.js": "1"}))
	tests := []struct {
		name     string
		exec     *execBody
		wantKind string
		wantMsg  string // prefix; "" for success
	}{
		{"source", &execBody{Kind: "nodejs:default", Code: str("function main() { return {} }")}, wire.KindNodeJS20, ""},
		{"nodejs:22 with main", &execBody{Kind: "nodejs:22", Code: str("function hi() {}"), Main: "hi"}, wire.KindNodeJS22, ""},
		{"top-level return parses", &execBody{Kind: "nodejs:20", Code: str("return 1")}, wire.KindNodeJS20, ""},
		{"zip", &execBody{Kind: "nodejs:20", Code: &zipped, Binary: true}, wire.KindNodeJS20, ""},
		{"zip without binary (inferred)", &execBody{Kind: "nodejs:20", Code: &zipped}, wire.KindNodeJS20, ""},
		{"syntax error", &execBody{Kind: "nodejs:20", Code: str("function main( {")}, "", "The action code is not valid JavaScript"},
		{"no code", &execBody{Kind: "nodejs:20"}, "", "exec.code is required"},
		{"bad main", &execBody{Kind: "nodejs:20", Code: str("x"), Main: "a.b"}, "", "exec.main must be"},
		{"binary not base64", &execBody{Kind: "nodejs:20", Code: str("%%%"), Binary: true}, "", "exec.code is not valid base64"},
		{"binary not zip", &execBody{Kind: "nodejs:20", Code: str(base64.StdEncoding.EncodeToString([]byte("hello"))), Binary: true}, "", "With \"binary\": true"},
		{"zip without main", &execBody{Kind: "nodejs:20", Binary: true, Code: str(base64.StdEncoding.EncodeToString(zipBytes(t, map[string]string{"a/b/index.js": "x"})))}, "", "The action's zip archive has no package.json"},
		{"zip escaping", &execBody{Kind: "nodejs:20", Binary: true, Code: str(base64.StdEncoding.EncodeToString(zipBytes(t, map[string]string{"index.js": "x", "../x.js": "y"})))}, "", "The action's zip archive has a file outside"},
		{"zip as text", &execBody{Kind: "nodejs:20", Code: str("PK\x03\x04rest")}, "", "The action code is a zip archive"},
		{"not utf-8", &execBody{Kind: "nodejs:20", Code: str("\xff")}, "", "The action code is not valid UTF-8"},
		{"other kind", &execBody{Kind: "python:3", Code: str("x")}, "", "Unsupported action kind; clemmys runs kinds \"wasm\" (WebAssembly modules), \"nodejs:default\""},
		{"wasm", &execBody{Kind: "wasm", Code: str(base64.StdEncoding.EncodeToString(wasmHeader))}, kindWasm, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plain, kind, msg := g.decodeCode(tt.exec)
			if tt.wantMsg != "" {
				if !strings.HasPrefix(msg, tt.wantMsg) {
					t.Fatalf("message %q, want %q…", msg, tt.wantMsg)
				}
				return
			}
			if msg != "" || kind != tt.wantKind {
				t.Fatalf("kind %q, message %q", kind, msg)
			}
			if kind == kindWasm {
				return
			}
			js, err := fncode.ParseJS(plain)
			if err != nil || js.Engine != engine || js.Kind != tt.wantKind || js.Main != tt.exec.Main {
				t.Fatalf("sealed %+v, %v", js, err)
			}
			// Decoded once: the check and the seal see the same bytes.
			again, _, _ := g.decodeCode(tt.exec)
			if &again[0] != &plain[0] {
				t.Fatal("decoded twice")
			}
		})
	}

	// Without an engine, the nodejs kinds are refused.
	off := &Gateway{}
	if _, _, msg := off.decodeCode(&execBody{Kind: "nodejs:20", Code: str("function main() {}")}); !strings.Contains(msg, "not enabled") {
		t.Fatalf("without an engine: %q", msg)
	}
	if _, ok := off.runtimes()["nodejs"]; ok {
		t.Fatal("nodejs runtimes listed without an engine")
	}
	if _, ok := g.runtimes()["nodejs"]; !ok {
		t.Fatal("nodejs runtimes not listed")
	}
}

func TestStampedLogLine(t *testing.T) {
	for line, want := range map[string]bool{
		"2024-05-06T07:08:09.123456789Z stdout: hello": true,
		"2024-05-06T07:08:09.123Z stderr: x":           true,
		"2024-05-06T07:08:09Z stdout: ":                true,
		"hello":                                        false,
		"2024-05-06 07:08:09Z stdout: x":               false,
		"2024-05-06T07:08:09.123Z stdin: x":            false,
	} {
		if got := stampedLogLine(line); got != want {
			t.Errorf("%q: %v, want %v", line, got, want)
		}
	}
	got := logLines([]byte("2024-05-06T07:08:09.000000001Z stdout: a\nplain\n"), time.Unix(0, 0))
	if len(got) != 2 || got[0] != "2024-05-06T07:08:09.000000001Z stdout: a" || !strings.HasSuffix(got[1], " stderr: plain") {
		t.Fatalf("lines %q", got)
	}
}

func FuzzCheckZip(f *testing.F) {
	f.Add(zipBytes(f, map[string]string{"index.js": "x"}))
	f.Add([]byte("PK\x03\x04"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if checkZip(b) == "" && !bytes.HasPrefix(b, []byte("PK\x03\x04")) {
			t.Fatal("accepted a non-zip")
		}
	})
}

func FuzzCheckSource(f *testing.F) {
	f.Add("function main() { return {} }")
	f.Add("})(); (function() {")
	f.Add("`${")
	f.Fuzz(func(t *testing.T, src string) {
		_ = checkSource(src) // must not panic or hang
	})
}
