package wasmbuild

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

var wasmMagic = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

func TestBuild(t *testing.T) {
	for _, pkg := range []string{
		"github.com/clemmys/clemmys/examples/hello",
		"examples/hello",
		"./examples/hello",
	} {
		t.Run(pkg, func(t *testing.T) {
			wasm := MustBuild(t, pkg)
			if !bytes.HasPrefix(wasm, wasmMagic) {
				t.Fatalf("Build(%q) is not a wasm binary: % x", pkg, wasm[:min(len(wasm), 8)])
			}
		})
	}
}

func TestBuildCachedAndConcurrent(t *testing.T) {
	const pkg = "internal/testfuncs/echo"
	var wg sync.WaitGroup
	results := make([][]byte, 4)
	for i := range results {
		wg.Go(func() { results[i] = MustBuild(t, pkg) })
	}
	wg.Wait()
	for _, r := range results[1:] {
		if &r[0] != &results[0][0] {
			t.Fatal("concurrent builds of one package returned different buffers")
		}
	}
}

func TestBuildError(t *testing.T) {
	for _, pkg := range []string{"", "internal/wasmbuild/nonexistent", "github.com/clemmys/clemmys/nope"} {
		if _, err := Build(pkg); err == nil {
			t.Errorf("Build(%q) succeeded", pkg)
		} else if !strings.Contains(err.Error(), "wasmbuild") {
			t.Errorf("Build(%q) error %q lacks package prefix", pkg, err)
		}
	}
}
