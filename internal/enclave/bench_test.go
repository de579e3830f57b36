package enclave

import (
	"context"
	"slices"
	"testing"
	"time"

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
