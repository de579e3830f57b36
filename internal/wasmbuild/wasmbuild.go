// Package wasmbuild compiles Go packages of this module to WebAssembly
// (GOOS=wasip1 GOARCH=wasm) for tests. It shells out to the go command, so it
// is for tests and tools only, never for the services.
package wasmbuild

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// builds caches one build per package for the life of the process.
var builds sync.Map // string -> *build

type build struct {
	once sync.Once
	wasm []byte
	err  error
}

// Build compiles the Go package pkg with GOOS=wasip1 GOARCH=wasm and returns
// the wasm bytes. pkg is an import path of this module (like
// "github.com/clemmys/clemmys/examples/hello") or a path relative to the
// module root (like "examples/hello" or "./examples/hello").
//
// Results, including failures, are cached per process; concurrent calls for
// the same package build it once. The build runs in a temporary directory
// with the module root located from this source file, so Build works from
// any package's tests. The returned slice is shared: do not modify it.
func Build(pkg string) ([]byte, error) { return buildAs(pkg, false) }

// BuildReactor is Build as a WASI reactor (-buildmode=c-shared): package
// sdk's Handle serves its activations (the reactor convention).
func BuildReactor(pkg string) ([]byte, error) { return buildAs(pkg, true) }

// MustBuildReactor is BuildReactor for tests: it fails t on error.
func MustBuildReactor(t testing.TB, pkg string) []byte {
	t.Helper()
	wasm, err := BuildReactor(pkg)
	if err != nil {
		t.Fatal(err)
	}
	return wasm
}

func buildAs(pkg string, reactor bool) ([]byte, error) {
	key := pkg
	if reactor {
		key += "\x00reactor"
	}
	v, _ := builds.LoadOrStore(key, new(build))
	b := v.(*build)
	b.once.Do(func() { b.wasm, b.err = compile(pkg, reactor) })
	return b.wasm, b.err
}

// MustBuild is Build for tests: it fails t if the build fails.
func MustBuild(t testing.TB, pkg string) []byte {
	t.Helper()
	wasm, err := Build(pkg)
	if err != nil {
		t.Fatal(err)
	}
	return wasm
}

func compile(pkg string, reactor bool) ([]byte, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	if pkg == "" {
		return nil, errors.New("wasmbuild: empty package path")
	}
	target := pkg
	if rel := filepath.FromSlash(strings.TrimPrefix(pkg, "./")); filepath.IsLocal(rel) {
		if st, err := os.Stat(filepath.Join(root, rel)); err == nil && st.IsDir() {
			target = "./" + filepath.ToSlash(rel)
		}
	}

	goTool, err := exec.LookPath("go")
	if err != nil {
		if goTool, err = exec.LookPath(filepath.Join(runtime.GOROOT(), "bin", "go")); err != nil {
			return nil, fmt.Errorf("wasmbuild: go command not found: %w", err)
		}
	}

	dir, err := os.MkdirTemp("", "clemmys-wasmbuild-")
	if err != nil {
		return nil, fmt.Errorf("wasmbuild: %w", err)
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "out.wasm")

	args := []string{"build", "-trimpath", "-o", out}
	if reactor {
		args = append(args, "-buildmode=c-shared")
	}
	cmd := exec.Command(goTool, append(args, target)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("wasmbuild: go build %s: %w\n%s", pkg, err, output.Bytes())
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("wasmbuild: %w", err)
	}
	return wasm, nil
}

// moduleRoot is the directory of go.mod, two levels above this file.
func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("wasmbuild: cannot locate source file")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("wasmbuild: module root not found (built with -trimpath?): %w", err)
	}
	return root, nil
}
