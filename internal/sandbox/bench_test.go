package sandbox

import (
	"context"
	"strings"
	"testing"

	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// BenchmarkCompileHello compiles the hello example (3.3 MB of Go wasm).
// "cold" uses a fresh Engine each time (a real compile); "cached" compiles
// the same bytes again in one Engine (an in-memory cache hit).
func BenchmarkCompileHello(b *testing.B) {
	wasm := wasmbuild.MustBuild(b, pkgHello)
	ctx := context.Background()
	b.Run("cold", func(b *testing.B) {
		b.SetBytes(int64(len(wasm)))
		for b.Loop() {
			e := NewEngine()
			m, err := e.Compile(ctx, wasm)
			if err != nil {
				b.Fatal(err)
			}
			_ = m.Close(ctx)
			_ = e.Close(ctx)
		}
	})
	b.Run("cached", func(b *testing.B) {
		e := NewEngine()
		defer e.Close(ctx)
		keep, err := e.Compile(ctx, wasm)
		if err != nil {
			b.Fatal(err)
		}
		defer keep.Close(ctx)
		for b.Loop() {
			m, err := e.Compile(ctx, wasm)
			if err != nil {
				b.Fatal(err)
			}
			_ = m.Close(ctx)
		}
	})
}

func benchmarkRun(b *testing.B, m *Module, input []byte) {
	ctx := context.Background()
	for b.Loop() {
		if _, err := m.Run(ctx, input, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunHello is a cold-instance activation: a fresh instance of a
// compiled Go module per run (the Go runtime starts each time).
func BenchmarkRunHello(b *testing.B) {
	benchmarkRun(b, goModule(b, pkgHello), []byte(`{"name":"bench"}`))
}

// BenchmarkRunEcho is like BenchmarkRunHello with a 4 KiB payload.
func BenchmarkRunEcho(b *testing.B) {
	in := []byte(`{"data":"` + strings.Repeat("x", 4096) + `"}`)
	b.SetBytes(int64(len(in)))
	benchmarkRun(b, goModule(b, pkgEcho), in)
}

// BenchmarkRunTiny is the sandbox's own overhead: a hand-written module that
// writes "{}" (no language runtime to start).
func BenchmarkRunTiny(b *testing.B) {
	m := rawModule(b, tinyWrite)
	benchmarkRun(b, m, nil)
}
