package platform_test

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/bench"
	"github.com/clemmys/clemmys/internal/platform"
	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// BenchmarkInvoke measures invocations of examples/hello through the
// gateway over HTTPS (loopback, one connection), blocking with result=true:
//
//	go test -run XXX -bench Invoke -benchtime 200x ./internal/platform/
//
// warm: the function is loaded in its runtime (keys released, module
// compiled); cold: every iteration deploys a new version (not timed) and
// times its first invocation, sent as soon as the deploy is answered, so it
// pays (or waits for the deploy's prewarm to finish) key release, code
// fetch and compilation (of a module the runtime has compiled before:
// wazero's in-memory cache hits); prewarmed: a module never compiled
// before, invoked once the deploy's prewarm has loaded it.
func BenchmarkInvoke(b *testing.B) {
	e := startBench(b)
	g := e.guest()
	hello := wasmbuild.MustBuild(b, "examples/hello")
	invoke := func(name string) {
		var res map[string]any
		if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/"+name+"?blocking=true&result=true", map[string]any{"name": "bench"}, &res); st != 200 {
			b.Fatalf("invoke: %d %v", st, res)
		}
	}
	b.Run("warm", func(b *testing.B) {
		e.deploy(g, "hello", hello, nil)
		invoke("hello")
		b.ResetTimer()
		for b.Loop() {
			invoke("hello")
		}
	})
	// warm-parallel is warm with 16 clients at once (as `clemmys bench`
	// at 16 connections), for profiles of the loaded in-process services:
	//
	//	go test -run XXX -bench 'Invoke/warm-parallel' -benchtime 5s -cpuprofile cpu.out ./internal/platform/
	b.Run("warm-parallel", func(b *testing.B) {
		e.deploy(g, "hello", hello, nil)
		invoke("hello")
		b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
		b.ResetTimer()
		cpu := startCPU(b)
		defer cpu.report(b)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				var res map[string]any
				if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/hello?blocking=true&result=true", map[string]any{"name": "bench"}, &res); st != 200 {
					b.Errorf("invoke: %d %v", st, res)
					return
				}
			}
		})
	})
	b.Run("warm-xwing", func(b *testing.B) {
		e.deploySuite(g, "hellopq", hello, "xwing")
		invoke("hellopq")
		b.ResetTimer()
		for b.Loop() {
			invoke("hellopq")
		}
	})
	b.Run("cold", func(b *testing.B) {
		i := 0
		for b.Loop() {
			b.StopTimer()
			name := fmt.Sprintf("cold%d", i)
			i++
			e.deploy(g, name, hello, nil)
			b.StartTimer()
			invoke(name)
		}
	})
	b.Run("prewarmed", func(b *testing.B) {
		i := 0
		for b.Loop() {
			b.StopTimer()
			name := fmt.Sprintf("prewarmed%d", i)
			i++
			n := e.p.Invoker.Prewarmed()
			e.deploy(g, name, withCustomSection(hello, name), nil) // never compiled before
			e.waitPrewarmed(n + 1)
			b.StartTimer()
			invoke(name)
		}
	})
}

// BenchmarkDeployToFirstResult times deploy → first result for a module the
// runtime has never compiled (each iteration appends a unique custom section,
// so the digest and wazero's in-memory compilation cache key differ). It
// also reports the two halves: the deploy's answer, and the invocation sent
// right after it (which waits for the deploy's prewarm):
//
//	go test -run XXX -bench DeployToFirstResult -benchtime 5x ./internal/platform/
func BenchmarkDeployToFirstResult(b *testing.B) {
	e := startBench(b)
	g := e.guest()
	hello := wasmbuild.MustBuild(b, "examples/hello")
	i := 0
	var deploy, invoke time.Duration
	for b.Loop() {
		name := fmt.Sprintf("fresh%d", i)
		i++
		t0 := time.Now()
		e.deploy(g, name, withCustomSection(hello, name), nil)
		t1 := time.Now()
		var res map[string]any
		if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/"+name+"?blocking=true&result=true", nil, &res); st != 200 {
			b.Fatalf("invoke: %d %v", st, res)
		}
		deploy += t1.Sub(t0)
		invoke += time.Since(t1)
	}
	b.ReportMetric(float64(len(hello))/(1<<20), "module-MiB")
	b.ReportMetric(float64(deploy.Microseconds())/1000/float64(i), "deploy-ms/op")
	b.ReportMetric(float64(invoke.Microseconds())/1000/float64(i), "invoke-ms/op")
}

// withCustomSection appends a custom section named name to a wasm module.
func withCustomSection(wasm []byte, name string) []byte {
	payload := append(append([]byte{byte(len(name))}, name...), 0) // wazero refuses an empty custom payload
	out := append([]byte(nil), wasm...)
	out = append(out, 0, byte(len(payload)))
	return append(out, payload...)
}

// BenchmarkSequenceStep measures the warm latency a sequence step adds:
// each iteration invokes the echo action alone, a 1-step and a 3-step
// sequence of it (blocking, result=true, over HTTPS) and reports them,
// the difference of the sequences per added step (added-ms/step), and
// that of the 3-step sequence and the action alone (over-action-ms/step:
// the action takes the warm path, a sequence the controller's):
//
//	go test -run XXX -bench SequenceStep -benchtime 200x ./internal/platform/
func BenchmarkSequenceStep(b *testing.B) {
	e := startBench(b)
	g := e.guest()
	echo := wasmbuild.MustBuild(b, "internal/testfuncs/echo")
	for _, n := range []string{"e1", "e2", "e3"} {
		e.deploy(g, n, echo, nil)
	}
	e.deploySequence(g, "seq3", "/_/e1", "/_/e2", "/_/e3")
	e.deploySequence(g, "seq1", "/_/e1")
	invoke := func(name string) time.Duration {
		t0 := time.Now()
		var res map[string]any
		if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/"+name+"?blocking=true&result=true", map[string]any{"x": 1}, &res); st != 200 {
			b.Fatalf("invoke %s: %d %v", name, st, res)
		}
		return time.Since(t0)
	}
	invoke("e1")
	invoke("seq1")
	invoke("seq3")
	var one, single, three []time.Duration
	for b.Loop() {
		one = append(one, invoke("e1"))
		single = append(single, invoke("seq1"))
		three = append(three, invoke("seq3"))
	}
	m1, s1, m3 := median(one), median(single), median(three)
	b.ReportMetric(float64(m1.Microseconds())/1000, "action-p50-ms")
	b.ReportMetric(float64(s1.Microseconds())/1000, "seq1-p50-ms")
	b.ReportMetric(float64(m3.Microseconds())/1000, "seq3-p50-ms")
	b.ReportMetric(float64((m3-s1).Microseconds())/2000, "added-ms/step")
	b.ReportMetric(float64((m3-m1).Microseconds())/2000, "over-action-ms/step")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// startBench starts a platform without the gateway's per-namespace
// throttles, which would cut long benchmark runs short (429).
func startBench(b *testing.B) *env {
	return startWith(b, b.TempDir(), func(c *platform.Config) {
		c.InvocationsPerMinute, c.ConcurrentInvocations = -1, -1
	})
}

// BenchmarkWarmPath compares the warm path (gateway → invoker and back,
// wire.DirectRequest) with the same warm invocations of examples/hello sent
// through the controller (`clemmys up --direct=false`), each on a platform
// of its own, one client and 16 at once:
//
//	go test -run XXX -bench WarmPath -benchtime 3s -benchmem ./internal/platform/
func BenchmarkWarmPath(b *testing.B) {
	hello := wasmbuild.MustBuild(b, "examples/hello")
	for _, path := range []struct {
		name     string
		noDirect bool
	}{{"direct", false}, {"controller", true}} {
		b.Run(path.name, func(b *testing.B) {
			e := startWith(b, b.TempDir(), func(c *platform.Config) {
				c.InvocationsPerMinute, c.ConcurrentInvocations = -1, -1
				c.NoDirect = path.noDirect
			})
			g := e.guest()
			e.deploy(g, "hello", hello, nil)
			invoke := func() bool {
				var res map[string]any
				st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/hello?blocking=true&result=true", map[string]any{"name": "bench"}, &res)
				if st != 200 {
					b.Errorf("invoke: %d %v", st, res)
				}
				return st == 200
			}
			invoke()
			b.Run("serial", func(b *testing.B) {
				cpu := startCPU(b)
				defer cpu.report(b)
				for b.Loop() {
					if !invoke() {
						return
					}
				}
			})
			b.Run("parallel", func(b *testing.B) {
				b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
				cpu := startCPU(b)
				defer cpu.report(b)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if !invoke() {
							return
						}
					}
				})
			})
		})
	}
}

// cpuClock is the CPU time (user and system) of this process, and that of
// its child processes (the enclave runtimes), at a benchmark's start. Its
// report, cpu-µs/op and runtimes-cpu-µs/op, is what decides throughput on
// a loaded machine, where ns/op follows the neighbours' load: cpu-µs/op
// counts the gateway, controller, invoker, NATS server and the benchmark's
// client; runtimes-cpu-µs/op the runtimes alive at the end
// (bench.DescendantsCPU: /proc, in clock ticks, meaningful over thousands
// of operations; not reported where /proc cannot be read).
type cpuClock struct{ self, children time.Duration }

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU(b *testing.B) cpuClock {
	return cpuClock{self: processCPU(b), children: bench.DescendantsCPU(os.Getpid())}
}

func (c cpuClock) report(b *testing.B) {
	if b.N == 0 {
		return
	}
	used := processCPU(b) - c.self
	b.ReportMetric(float64(used.Microseconds())/float64(b.N), "cpu-µs/op")
	if kids := bench.DescendantsCPU(os.Getpid()) - c.children; kids > 0 {
		b.ReportMetric(float64(kids.Microseconds())/float64(b.N), "runtimes-cpu-µs/op")
	}
}
