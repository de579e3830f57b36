package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestProjectName(t *testing.T) {
	for in, want := range map[string]string{
		"hello":                  "hello",
		"My Func":                "my-func",
		"9lives":                 "lives",
		"a.b/c":                  "a-b-c",
		"---":                    "function",
		"émoji-fn":               "moji-fn",
		"snake_case_":            "snake_case",
		strings.Repeat("x", 100): strings.Repeat("x", 64),
	} {
		if got := projectName(in); got != want {
			t.Errorf("projectName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestInitFiles(t *testing.T) {
	files, err := initFiles("go", initData{Name: "fn", GoVersion: sdkGoVersion, Vendored: true, SDKPath: "./clemmys-sdk", Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range files {
		names = append(names, n)
	}
	for _, want := range []string{"go.mod", "main.go", "main_test.go", "build.sh", ".gitignore", "README.md",
		"clemmys-sdk/go.mod", "clemmys-sdk/sdk/sdk.go", "clemmys-sdk/sdk/fresh/fresh.go"} {
		if !slices.Contains(names, want) {
			t.Errorf("go project lacks %s (has %q)", want, names)
		}
	}
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") && strings.HasPrefix(n, "clemmys-sdk/") || n == "clemmys-sdk/sdk/source.go" {
			t.Errorf("the SDK copy holds %s", n)
		}
	}
	if files["build.sh"].mode != 0o755 || !bytes.Contains(files["build.sh"].data, []byte("GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o fn.wasm .")) {
		t.Errorf("build.sh: %o %s", files["build.sh"].mode, files["build.sh"].data)
	}
	if !bytes.Contains(files["go.mod"].data, []byte("module fn\n\ngo "+sdkGoVersion+"\n")) {
		t.Errorf("go.mod: %s", files["go.mod"].data)
	}

	files, err = initFiles("go", initData{Name: "fn", GoVersion: sdkGoVersion, SDKPath: "/src/clemmys"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := files["clemmys-sdk/go.mod"]; ok || !bytes.Contains(files["go.mod"].data, []byte("=> /src/clemmys\n")) {
		t.Errorf("with a checkout: %s", files["go.mod"].data)
	}

	files, err = initFiles("js", initData{Name: "fn"})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 5 || !bytes.Contains(files["package.json"].data, []byte(`"name": "fn"`)) || !bytes.Contains(files["index.js"].data, []byte("exports.main = main")) {
		t.Errorf("js project: %d files, package.json %s", len(files), files["package.json"].data)
	}
}

func TestWriteNewRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := writeNew(dir, map[string]initFile{"a/b.txt": {[]byte("x"), 0o644}, "main.go": {[]byte("theirs"), 0o644}})
	if err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("writeNew over a file: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "main.go")); string(b) != "mine" {
		t.Fatalf("main.go overwritten: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); err == nil {
		t.Fatal("wrote some files before refusing")
	}
}
