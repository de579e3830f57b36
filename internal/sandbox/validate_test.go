package sandbox

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// TestValidate: Validate accepts what Compile accepts and refuses, with
// ErrInvalidModule and the same reason, what Compile refuses
// (TestCompileInvalid's table is checked against both).
func TestValidate(t *testing.T) {
	for _, pkg := range []string{pkgHello, pkgEcho} {
		if err := Validate(context.Background(), wasmbuild.MustBuild(t, pkg)); err != nil {
			t.Errorf("Validate(%s) = %v", pkg, err)
		}
	}
	for name, wasm := range map[string][]byte{"tinyNop": tinyNop, "tinyLoop": tinyLoop, "kitchenSink": kitchenSink} {
		_, cerr := sharedEngine().Compile(context.Background(), wasm)
		verr := Validate(context.Background(), wasm)
		if (cerr == nil) != (verr == nil) {
			t.Errorf("%s: Compile error %v, Validate error %v", name, cerr, verr)
		}
	}
	secret := func() []byte {
		m := command(nil)
		m.types = append(m.types, funcType{})
		m.imports = []wasmImport{{module: "SECRETMOD", name: "SECRETFN", kind: 0, desc: uleb(1)}}
		m.exports[0].idx = 1
		return m.bytes()
	}()
	err := Validate(context.Background(), secret)
	if !errors.Is(err, ErrInvalidModule) || !strings.Contains(err.Error(), "SECRETMOD") {
		t.Errorf("Validate of a module importing SECRETMOD.SECRETFN = %v, want ErrInvalidModule naming the import (for its owner)", err)
	}
}

// FuzzValidate: Validate never panics, refuses only with ErrInvalidModule,
// and agrees with Compile.
//
//	go test -run '^$' -fuzz FuzzValidate -fuzztime 20s ./internal/sandbox
func FuzzValidate(f *testing.F) {
	for _, seed := range [][]byte{
		tinyNop, tinyWrite, tinyTrap, tinyLoop, tinyExit(3), wasmModule{}.bytes(), kitchenSink, nil,
		[]byte("\x00asm\x01\x00\x00\x00\x01\xff\xff\xff\xff\x0f"),
	} {
		f.Add(seed)
	}
	e := NewEngine()
	f.Cleanup(func() { _ = e.Close(context.Background()) })
	f.Fuzz(func(t *testing.T, wasm []byte) {
		ctx := context.Background()
		verr := Validate(ctx, wasm)
		if verr != nil && !errors.Is(verr, ErrInvalidModule) {
			t.Fatalf("Validate error %v does not wrap ErrInvalidModule", verr)
		}
		m, cerr := e.Compile(ctx, wasm)
		if cerr == nil {
			_ = m.Close(ctx)
		}
		if (verr == nil) != (cerr == nil) {
			t.Fatalf("Validate error %v but Compile error %v", verr, cerr)
		}
	})
}
