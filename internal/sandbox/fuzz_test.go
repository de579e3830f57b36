package sandbox

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzCompile feeds arbitrary bytes to Compile: it must never panic (not even
// a panic Compile recovers from) and must either succeed or return
// ErrInvalidModule. Modules that compile must also run without crashing.
//
//	go test -run '^$' -fuzz FuzzCompile -fuzztime 20s ./internal/sandbox
func FuzzCompile(f *testing.F) {
	for _, seed := range [][]byte{
		tinyNop, tinyWrite, tinyTrap, tinyLoop, tinyExit(3), tinyGrow(2, true),
		wasmModule{}.bytes(), kitchenSink, manyLocals(2, 3),
		nil,
		[]byte("\x00asm"),
		[]byte("\x00asm\x01\x00\x00\x00\x01\xff\xff\xff\xff\x0f"),
		[]byte("garbage garbage garbage"),
	} {
		f.Add(seed)
	}
	e := NewEngine()
	f.Cleanup(func() { _ = e.Close(context.Background()) })
	f.Fuzz(func(t *testing.T, wasm []byte) {
		ctx := context.Background()
		m, err := e.Compile(ctx, wasm)
		if err != nil {
			if !errors.Is(err, ErrInvalidModule) {
				t.Fatalf("Compile error %v does not wrap ErrInvalidModule", err)
			}
			if strings.Contains(err.Error(), internalCompilerError) {
				t.Fatalf("compiler panicked: %v", err)
			}
			return
		}
		defer m.Close(ctx)
		// Whatever it does, a module that compiled runs to a result or a
		// typed error within its limits.
		_, err = m.Run(ctx, nil, Limits{Timeout: 50 * time.Millisecond, MemoryBytes: 1 << 20, MaxOutputBytes: 1 << 10, MaxLogBytes: 1 << 10})
		for _, want := range []error{nil, ErrTimeout, ErrMemoryLimit, ErrOutputTooLarge, ErrExit, ErrTrap, ErrInvalidModule} {
			if errors.Is(err, want) {
				return
			}
		}
		t.Fatalf("Run: untyped error %v", err)
	})
}
