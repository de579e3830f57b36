package cli

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestExecFromFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	wasm := []byte("\x00asm\x01\x00\x00\x00")
	zipped := []byte("PK\x03\x04rest")
	js := []byte("function main() { return {} }")
	b64 := base64.StdEncoding.EncodeToString
	tests := []struct {
		file       string
		data       []byte
		kind, main string
		want       map[string]any
		guessed    bool
		err        string
	}{
		{file: "a.wasm", data: wasm, want: map[string]any{"kind": "wasm", "code": b64(wasm), "binary": true}},
		{file: "noext", data: wasm, want: map[string]any{"kind": "wasm", "code": b64(wasm), "binary": true}},
		{file: "a.js", data: js, want: map[string]any{"kind": "nodejs:default", "code": string(js)}},
		{file: "a.js", data: js, kind: "nodejs:22", main: "handler", want: map[string]any{"kind": "nodejs:22", "code": string(js), "main": "handler"}},
		{file: "a.zip", data: zipped, want: map[string]any{"kind": "nodejs:default", "code": b64(zipped), "binary": true}},
		{file: "zipnoext", data: zipped, main: "m", want: map[string]any{"kind": "nodejs:default", "code": b64(zipped), "binary": true, "main": "m"}},
		{file: "script", data: js, kind: "nodejs:20", want: map[string]any{"kind": "nodejs:20", "code": string(js)}},
		{file: "script", data: js, want: map[string]any{"kind": "wasm", "code": b64(js), "binary": true}, guessed: true},
		{file: "a.js", data: js, kind: "python:3", err: `unknown --kind "python:3"`},
		{file: "a.wasm", data: wasm, main: "x", err: "--main is for JavaScript"},
	}
	for _, tt := range tests {
		got, guessed, err := execFromFile(write(tt.file, tt.data), tt.kind, tt.main)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s kind %q: err %v, want %q", tt.file, tt.kind, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) || guessed != tt.guessed {
			t.Errorf("%s kind %q main %q: %v %v, want %v", tt.file, tt.kind, tt.main, got, err, tt.want)
		}
	}
	if _, _, err := execFromFile(dir, "", ""); err == nil || !strings.Contains(err.Error(), "is a directory: zip it") {
		t.Errorf("a directory: %v", err)
	}
	if _, _, err := execFromFile(filepath.Join(dir, "missing.js"), "", ""); err == nil {
		t.Error("a missing file accepted")
	}
}

func TestWebAnnotations(t *testing.T) {
	tests := []struct {
		web, secure string
		want        []keyValue
		err         bool
	}{
		{"", "", nil, false},
		{"true", "", []keyValue{{"web-export", true}, {"raw-http", false}, {"final", true}}, false},
		{"raw", "s3cret", []keyValue{{"web-export", true}, {"raw-http", true}, {"final", true}, {"require-whisk-auth", "s3cret"}}, false},
		{"false", "", []keyValue{{"web-export", false}, {"raw-http", false}}, false},
		{"true", "true", []keyValue{{"web-export", true}, {"raw-http", false}, {"final", true}, {"require-whisk-auth", true}}, false},
		{"maybe", "", nil, true},
	}
	for _, tt := range tests {
		got, err := webAnnotations(tt.web, tt.secure)
		if (err != nil) != tt.err || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("webAnnotations(%q, %q) = %v, %v; want %v", tt.web, tt.secure, got, err, tt.want)
		}
	}
}

func TestWebURL(t *testing.T) {
	for _, tt := range []struct{ host, ns, name, want string }{
		{"https://127.0.0.1:3233", "guest", "hello", "https://127.0.0.1:3233/api/v1/web/guest/default/hello"},
		{"https://h/", "alice/pkg", "a b", "https://h/api/v1/web/alice/pkg/a%20b"},
	} {
		if got := webURL(tt.host, tt.ns, tt.name); got != tt.want {
			t.Errorf("webURL(%q, %q, %q) = %q, want %q", tt.host, tt.ns, tt.name, got, tt.want)
		}
	}
}

func TestSavedCode(t *testing.T) {
	tests := []struct {
		answer string
		code   string
		ext    string
		err    string
	}{
		{`{"exec":{"kind":"nodejs:20","code":"function main(){}"}}`, "function main(){}", ".js", ""},
		{`{"exec":{"kind":"nodejs:20","code":"UEsDBA==","binary":true}}`, "PK\x03\x04", ".zip", ""},
		{`{"exec":{"kind":"wasm","code":"AGFzbQ==","binary":true}}`, "\x00asm", ".wasm", ""},
		{`{"exec":{"kind":"sequence","components":["/_/a"]}}`, "", "", "a sequence has no code"},
		{`{"exec":{"kind":"wasm"}}`, "", "", "no code"},
		{`{"exec":{"kind":"wasm","code":"!!","binary":true}}`, "", "", "not valid base64"},
		{`[`, "", "", "unexpected answer"},
	}
	for _, tt := range tests {
		code, ext, err := savedCode(json.RawMessage(tt.answer))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: err %v, want %q", tt.answer, err, tt.err)
			}
			continue
		}
		if err != nil || string(code) != tt.code || ext != tt.ext {
			t.Errorf("%s: %q %q %v", tt.answer, code, ext, err)
		}
	}
}

func FuzzSavedCode(f *testing.F) {
	f.Add([]byte(`{"exec":{"kind":"wasm","code":"AGFzbQ==","binary":true}}`))
	f.Add([]byte(`{"exec":{"kind":"nodejs:20","code":"x"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		code, ext, err := savedCode(b)
		if err == nil && ext != ".wasm" && ext != ".zip" && ext != ".js" {
			t.Fatalf("extension %q", ext)
		}
		if err != nil && code != nil {
			t.Fatal("code with an error")
		}
	})
}
