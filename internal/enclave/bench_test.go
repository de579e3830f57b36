package enclave

import (
	"context"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/ipc"
	"github.com/clemmys/clemmys/internal/sandbox"
	"github.com/clemmys/clemmys/internal/wasmbuild"
	"github.com/clemmys/clemmys/internal/wire"
)

// BenchmarkRunHello is one step of the hello example through the whole
// runtime: open the envelope, run, seal the result and logs (the gateway's
// sealing and opening are outside the timing).
//
//   - cold: no warm instances kept, so every activation starts a new
//     instance (the Go runtime inside the guest starts each time), as every
//     activation did before warm instances;
//   - warm: the default, an idle instance reused.
func BenchmarkRunHello(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  sandbox.Config
	}{
		{"cold", sandbox.Config{MaxIdlePerModule: -1, MaxIdle: -1}},
		{"warm", sandbox.Config{}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := newFixture(b, func(c *Config) { c.Sandbox = bc.cfg })
			fn, err := f.load(b, "hello", "alice", wasmbuild.MustBuild(b, "./examples/hello"))
			if err != nil {
				b.Fatal(err)
			}
			var lats []time.Duration
			run := func() {
				env, _ := f.seal(b, fn, `{"name":"bench"}`, time.Minute, defaultLimits)
				req := &ipc.RunRequest{FunctionID: fn.rec.FunctionID, Envelope: marshal(b, env)}
				b.StartTimer()
				t0 := time.Now()
				rep := f.rt.Run(context.Background(), req)
				lat := time.Since(t0)
				b.StopTimer()
				if rep.Status != wire.StatusSuccess {
					b.Fatalf("status %q (%s)", rep.Status, rep.ErrorMessage)
				}
				lats = append(lats, lat)
			}
			lats = lats[:0]
			run() // the first activation starts an instance either way
			lats = lats[:0]
			b.ResetTimer()
			b.StopTimer()
			for range b.N {
				run()
			}
			slices.Sort(lats)
			b.ReportMetric(float64(lats[len(lats)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(lats[len(lats)*99/100].Nanoseconds()), "p99-ns")
		})
	}
}

// BenchmarkRunHelloParallel is warm RunHello with 16 requests in the
// runtime at once (as under `clemmys bench` at 16 connections), sealed
// beforehand; receipts/sig is how many receipts a signature covered
// (receiptSigner's batching).
func BenchmarkRunHelloParallel(b *testing.B) {
	f := newFixture(b)
	fn, err := f.load(b, "hello", "alice", wasmbuild.MustBuild(b, "./examples/hello"))
	if err != nil {
		b.Fatal(err)
	}
	reqs := make([]*ipc.RunRequest, b.N+1)
	for i := range reqs {
		env, _ := f.seal(b, fn, `{"name":"bench"}`, time.Minute, defaultLimits)
		reqs[i] = &ipc.RunRequest{FunctionID: fn.rec.FunctionID, Envelope: marshal(b, env)}
	}
	if rep := f.rt.Run(context.Background(), reqs[b.N]); rep.Status != wire.StatusSuccess {
		b.Fatalf("status %q (%s)", rep.Status, rep.ErrorMessage)
	}
	sigs, receipts := f.rt.signer.signatures.Load(), f.rt.signer.receipts.Load()
	var next atomic.Int64
	b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rep := f.rt.Run(context.Background(), reqs[next.Add(1)-1])
			if rep.Status != wire.StatusSuccess {
				b.Errorf("status %q (%s)", rep.Status, rep.ErrorMessage)
				return
			}
		}
	})
	b.StopTimer()
	if n := f.rt.signer.signatures.Load() - sigs; n > 0 {
		b.ReportMetric(float64(f.rt.signer.receipts.Load()-receipts)/float64(n), "receipts/sig")
	}
}

// BenchmarkRunChain is a warm 3-step chain of echo functions through the
// runtime (RunChain: each later step run on the previous step's sealed
// output) against one echo step, so that added-µs/step is what the
// runtime itself adds per chained step. Capsules are sealed under cached
// sessions, as the gateway does.
func BenchmarkRunChain(b *testing.B) {
	f := newFixture(b)
	sessions := envelope.NewSessions(envelope.SessionConfig{})
	echo := wasmbuild.MustBuild(b, "./internal/testfuncs/echo")
	var fns []*loadedFn
	for _, name := range []string{"a", "b", "c"} {
		fn, err := f.load(b, name, "alice", echo)
		if err != nil {
			b.Fatal(err)
		}
		fns = append(fns, fn)
	}
	p50 := func(chain []*loadedFn) time.Duration {
		var then [][]byte
		for _, fn := range chain[1:] {
			then = append(then, fn.rec.FunctionID)
		}
		var lats []time.Duration
		for i := range b.N + 1 {
			env, _ := f.sealChainWith(b, sessions, chain, `{"name":"bench"}`, time.Minute, defaultLimits)
			req := &ipc.RunRequest{FunctionID: chain[0].rec.FunctionID, Envelope: marshal(b, env), Then: then}
			b.StartTimer()
			t0 := time.Now()
			rep := f.rt.RunChain(context.Background(), req)
			lat := time.Since(t0)
			b.StopTimer()
			if rep.Status != wire.StatusSuccess || len(rep.More) != len(then) {
				b.Fatalf("status %q (%s), %d more", rep.Status, rep.ErrorMessage, len(rep.More))
			}
			if i > 0 { // the first warms the instances
				lats = append(lats, lat)
			}
		}
		slices.Sort(lats)
		return lats[len(lats)/2]
	}
	b.ResetTimer()
	b.StopTimer()
	one, three := p50(fns[:1]), p50(fns)
	b.ReportMetric(float64(one.Microseconds()), "one-p50-µs")
	b.ReportMetric(float64(three.Microseconds()), "three-p50-µs")
	b.ReportMetric(float64((three-one).Microseconds())/2, "added-µs/step")
}
