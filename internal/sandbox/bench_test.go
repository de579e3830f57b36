package sandbox

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

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
	lat := make([]time.Duration, 0, 1024)
	for b.Loop() {
		t0 := time.Now()
		if _, err := m.Run(ctx, input, Limits{}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	reportPercentiles(b, lat)
}

// reportPercentiles adds the median and 99th percentile of per-operation
// latencies to the benchmark's output.
func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkRunHello is one activation of the hello example:
//
//   - cold: a new instance per activation (the one-shot convention, as
//     every activation was run before warm instances): the Go runtime
//     inside the guest starts each time;
//   - warm: the loop convention, an idle instance reused;
//   - warm-reactor: the reactor convention (hello built with
//     -buildmode=c-shared), an idle instance called on the benchmark's
//     goroutine;
//   - fresh: the loop convention with a fresh instance per activation
//     (sdk/fresh), taken from pre-initialized ones started in the
//     background (the counterfresh test function, as small as hello).
//     Back to back, the next one is often still starting;
//   - fresh-paced: the same, each activation once the pre-initialized
//     instance is ready (the wait is not timed).
func BenchmarkRunHello(b *testing.B) {
	in := []byte(`{"name":"bench"}`)
	b.Run("cold", func(b *testing.B) { benchmarkRun(b, oneShotModule(b, pkgHello), in) })
	b.Run("warm", func(b *testing.B) { benchmarkRun(b, goModule(b, pkgHello), in) })
	b.Run("warm-reactor", func(b *testing.B) {
		m, err := sharedEngine().Compile(context.Background(), wasmbuild.MustBuildReactor(b, pkgHello))
		if err != nil {
			b.Fatal(err)
		}
		benchmarkRun(b, m, in)
	})
	b.Run("fresh", func(b *testing.B) { benchmarkRun(b, goModule(b, pkgFresh), in) })
	b.Run("fresh-paced", func(b *testing.B) {
		m := goModule(b, pkgFresh)
		if _, err := m.Run(context.Background(), in, Limits{}); err != nil { // starts the pre-initializing
			b.Fatal(err)
		}
		lat := make([]time.Duration, 0, 1024)
		for b.Loop() {
			b.StopTimer()
			for !preinitialized(m) {
				time.Sleep(100 * time.Microsecond)
			}
			b.StartTimer()
			t0 := time.Now()
			res, err := m.Run(context.Background(), in, Limits{})
			if err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
			if !res.Warm {
				b.Fatal("not a pre-initialized instance")
			}
		}
		reportPercentiles(b, lat)
	})
}

// preinitialized reports whether an idle instance of m has started and
// waits for its first activation.
func preinitialized(m *Module) bool {
	m.e.poolMu.Lock()
	defer m.e.poolMu.Unlock()
	for _, in := range m.e.idle {
		if in.c == m.c {
			in.mu.Lock()
			ready := closed(in.waiting)
			in.mu.Unlock()
			if ready {
				return true
			}
		}
	}
	return false
}

// BenchmarkRunEcho is a warm activation with a 4 KiB payload.
func BenchmarkRunEcho(b *testing.B) {
	in := []byte(`{"data":"` + strings.Repeat("x", 4096) + `"}`)
	b.SetBytes(int64(len(in)))
	benchmarkRun(b, goModule(b, pkgEcho), in)
}

// BenchmarkRunTiny is the sandbox's own overhead: a hand-written module that
// writes "{}" (no language runtime to start), a new instance per run.
func BenchmarkRunTiny(b *testing.B) {
	m := rawModule(b, tinyWrite)
	benchmarkRun(b, m, nil)
}

// BenchmarkGuestSpeed runs CPU-bound Go code (the compute test function:
// a tight integer loop, SHA-256, sorting) under three ways of making a
// guest stoppable, with wazero directly, one fresh instance per operation
// (the ~4 ms start of the Go runtime included):
//
//   - closeOnDone: RuntimeConfig.WithCloseOnContextDone, an exit to Go at
//     every loop back-edge (how the sandbox worked before);
//   - unchecked: no checks at all: full speed, but nothing can stop the
//     guest and it freezes the process at the next garbage collection;
//   - instrumented: what the sandbox does now (instrument.go).
//
// cpu-ns/op is the process's CPU time per operation, steadier than wall
// time on a busy machine.
func BenchmarkGuestSpeed(b *testing.B) {
	wasm := wasmbuild.MustBuild(b, pkgCompute)
	inst, err := instrument(wasm)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	variants := []struct {
		name        string
		closeOnDone bool
		wasm        []byte
	}{{"closeOnDone", true, wasm}, {"unchecked", false, wasm}, {"instrumented", false, inst}}
	for _, work := range []struct{ name, params string }{
		{"loop", `{"kind":"loop","n":10000000}`},
		{"sha256", `{"kind":"sha256","n":1000}`},
		{"sort", `{"kind":"sort","n":100000}`},
	} {
		for _, v := range variants {
			b.Run(work.name+"/"+v.name, func(b *testing.B) {
				rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(v.closeOnDone))
				defer rt.Close(ctx)
				wasi_snapshot_preview1.MustInstantiate(ctx, rt)
				cm, err := rt.CompileModule(ctx, v.wasm)
				if err != nil {
					b.Fatal(err)
				}
				lat := make([]time.Duration, 0, 64)
				cpu0 := cpuTime()
				for b.Loop() {
					t0 := time.Now()
					var out bytes.Buffer
					mod, err := rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("").
						WithStdin(strings.NewReader(work.params)).WithStdout(&out))
					if err != nil {
						b.Fatal(err)
					}
					_ = mod.Close(ctx)
					lat = append(lat, time.Since(t0))
					if !bytes.Contains(out.Bytes(), []byte(`"x"`)) {
						b.Fatalf("output %q", out.Bytes())
					}
				}
				b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
				reportPercentiles(b, lat)
			})
		}
	}
}

// cpuTime is the process's CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHalt is how long a timeout takes to stop a spinning guest: the
// Run's duration beyond its 50 ms time limit (the guest starts, then spins
// in its loop until it is halted).
func BenchmarkHalt(b *testing.B) {
	const limit = 50 * time.Millisecond
	m := goModule(b, pkgLoop)
	lat := make([]time.Duration, 0, 256)
	for b.Loop() {
		res, err := m.Run(context.Background(), nil, Limits{Timeout: limit})
		if !errors.Is(err, ErrTimeout) {
			b.Fatal(err)
		}
		lat = append(lat, res.Duration-limit)
	}
	reportPercentiles(b, lat)
}

// BenchmarkValidateHello: what a deploy of the hello module pays in the
// gateway for Validate (precheck, instrumentation, interpreter validation).
func BenchmarkValidateHello(b *testing.B) {
	wasm := wasmbuild.MustBuild(b, pkgHello)
	b.SetBytes(int64(len(wasm)))
	for b.Loop() {
		if err := Validate(context.Background(), wasm); err != nil {
			b.Fatal(err)
		}
	}
}
