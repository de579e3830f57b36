package invoker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wasmbuild"
	"github.com/clemmys/clemmys/internal/wire"
)

// spares returns the pids of the pool's spare runtimes.
func (e *env) spares() []int {
	e.iv.mu.Lock()
	defer e.iv.mu.Unlock()
	var pids []int
	for _, p := range e.iv.pool {
		pids = append(pids, p.cmd.Process.Pid)
	}
	return pids
}

func (e *env) waitSpares(n int) []int {
	e.t.Helper()
	var pids []int
	waitFor(e.t, fmt.Sprintf("%d spare runtimes", n), 20*time.Second, func() bool {
		pids = e.spares()
		return len(pids) == n
	})
	return pids
}

// prewarmOverBus sends a prewarm as the controller does.
func (e *env) prewarmOverBus(f *fn) (*wire.PrewarmReply, error) {
	var rep wire.PrewarmReply
	err := bus.Call(testCtx(e.t, 10*time.Second), e.nc, wire.SubjectInvokerPrewarm(e.iv.cfg.ID),
		&wire.Prewarm{Namespace: f.rec.Namespace, Action: f.rec.Action, FunctionID: f.rec.FunctionID}, &rep)
	return &rep, err
}

func TestPool(t *testing.T) {
	hello := wasmbuild.MustBuild(t, "examples/hello")
	e := newEnv(t, nil) // the default pool of 2
	if e.iv.cfg.PoolSize != DefaultPoolSize || DefaultPoolSize != 2 {
		t.Fatalf("pool size %d, want the default 2", e.iv.cfg.PoolSize)
	}
	spares := e.waitSpares(2)
	if got := childEnclaves(t); len(got) != 2 {
		t.Fatalf("runtime processes %v, want the 2 spares %v", got, spares)
	}

	// A namespace's first step is served by a spare, bound to it.
	alice := e.deploy("alice", "hello", hello, true)
	wantSuccess(t, e.run(alice, `{"name":"pool"}`), "greeting", "Hello pool!")
	pid := e.pid("alice")
	if !slices.Contains(spares, pid) {
		t.Fatalf("alice's runtime %d is not one of the spares %v", pid, spares)
	}
	// The pool refills, without the runtime given away.
	refilled := e.waitSpares(2)
	if slices.Contains(refilled, pid) {
		t.Fatalf("alice's runtime %d is still a spare (%v)", pid, refilled)
	}
	// Another namespace gets another spare: runtimes are not shared.
	bob := e.deploy("bob", "hello", hello, true)
	wantSuccess(t, e.run(bob, `{"name":"bob"}`), "greeting", "Hello bob!")
	if p := e.pid("bob"); p == pid || !slices.Contains(refilled, p) {
		t.Fatalf("bob's runtime %d: want a spare of %v other than alice's %d", p, refilled, pid)
	}
	// A spare that dies idle is replaced.
	spares = e.waitSpares(2)
	if err := syscall.Kill(spares[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the dead spare to be replaced", 20*time.Second, func() bool {
		now := e.spares()
		return len(now) == 2 && !slices.Contains(now, spares[0])
	})
	// A step arriving after a spare died (not yet noticed) still works.
	carol := e.deploy("carol", "hello", hello, true)
	spares = e.waitSpares(2)
	for _, p := range spares {
		if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range spares {
		waitFor(t, "the spare to die", 5*time.Second, func() bool { return exited(p) })
	}
	// If the invoker had not yet noticed the deaths when the step was
	// placed, the step designates a dead runtime: it is refused as
	// misplaced, having run nothing, and placed again — what the gateway
	// does (gateway/place.go) — it runs.
	o := e.run(carol, `{"name":"carol"}`)
	if o.res.ErrorCode == "misplaced" {
		wantRefused(t, o, "misplaced")
		o = e.run(carol, `{"name":"carol"}`)
	}
	wantSuccess(t, o, "greeting", "Hello carol!")

	// Stop kills the spares along with the bound runtimes.
	spares = e.waitSpares(2)
	all := append([]int{e.pid("alice"), e.pid("bob"), e.pid("carol")}, spares...)
	e.iv.Stop()
	for _, pid := range all {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("runtime %d still exists after Stop (kill 0: %v)", pid, err)
		}
	}
	if left := childEnclaves(t); len(left) != 0 {
		t.Errorf("enclave runtimes left after Stop: %v", left)
	}
}

func TestNoPool(t *testing.T) {
	hello := wasmbuild.MustBuild(t, "examples/hello")
	e := newEnv(t, func(c *Config) { c.PoolSize = -1 })
	alice := e.deploy("alice", "hello", hello, true)
	wantSuccess(t, e.run(alice, `{"name":"Ada"}`), "greeting", "Hello Ada!")
	time.Sleep(100 * time.Millisecond)
	if n := len(e.spares()); n != 0 {
		t.Fatalf("%d spares without a pool", n)
	}
	if got := childEnclaves(t); len(got) != 1 {
		t.Fatalf("runtime processes %v, want alice's only", got)
	}
}

func TestPrewarm(t *testing.T) {
	hello := wasmbuild.MustBuild(t, "examples/hello")
	e := newEnv(t, nil)
	alice := e.deploy("alice", "hello", hello, true)

	rep, err := e.prewarmOverBus(alice)
	if err != nil || rep.InvokerID != e.iv.cfg.ID || rep.Loaded {
		t.Fatalf("prewarm: %v %+v", err, rep)
	}
	waitFor(t, "the prewarm", 30*time.Second, func() bool { return e.iv.Prewarmed() == 1 })
	if !loadedIn(e.proc("alice"), alice) || e.releases.Load() != 1 {
		t.Fatalf("after the prewarm: loaded %v, %d key releases", loadedIn(e.proc("alice"), alice), e.releases.Load())
	}
	// The first step finds the function loaded: no init time, no release.
	o := e.run(alice, `{"name":"warm"}`)
	wantSuccess(t, o, "greeting", "Hello warm!")
	if o.res.InitMs != 0 || e.releases.Load() != 1 {
		t.Errorf("first step after a prewarm: init %d ms, %d key releases; want 0 and 1", o.res.InitMs, e.releases.Load())
	}
	t.Logf("first RunRequest after a prewarm: %v (run %d ms)", o.latency, o.res.End-o.res.Start)
	// A second prewarm has nothing to do.
	if rep, err := e.prewarmOverBus(alice); err != nil || !rep.Loaded {
		t.Fatalf("second prewarm: %v %+v, want already loaded", err, rep)
	}

	t.Run("step during a prewarm waits for its load", func(t *testing.T) {
		bob := e.deploy("bob", "hello", hello, true)
		before := e.releases.Load()
		if _, err := e.prewarmOverBus(bob); err != nil {
			t.Fatal(err)
		}
		o := e.run(bob, `{"name":"bob"}`)
		wantSuccess(t, o, "greeting", "Hello bob!")
		if n := e.releases.Load() - before; n != 1 {
			t.Errorf("%d key releases for a prewarm and a step, want 1", n)
		}
		t.Logf("step sent right after the prewarm: init %d ms", o.res.InitMs)
	})

	t.Run("failure is not fatal", func(t *testing.T) {
		missing := e.deploy("alice", "missing", hello, false)
		before := e.iv.Prewarmed()
		if _, err := e.prewarmOverBus(missing); err != nil {
			t.Fatalf("prewarm accepted: %v", err)
		}
		waitFor(t, "the failed prewarm to end", 20*time.Second, func() bool { return e.iv.prewarmsPending.Load() == 0 })
		if e.iv.Prewarmed() != before {
			t.Error("a failed prewarm was counted")
		}
		wantRefused(t, e.run(missing, `{}`), "code_missing")
		wantSuccess(t, e.run(alice, `{"name":"still"}`), "greeting", "Hello still!")
	})

	t.Run("bad requests", func(t *testing.T) {
		for _, req := range []any{
			&wire.Prewarm{FunctionID: alice.rec.FunctionID},
			&wire.Prewarm{Namespace: "alice"},
			&wire.Prewarm{Namespace: "alice", FunctionID: make([]byte, maxFunctionIDLen+1)},
			[]string{"x"},
		} {
			err := bus.Call(testCtx(t, 5*time.Second), e.nc, wire.SubjectInvokerPrewarm(e.iv.cfg.ID), req, &wire.PrewarmReply{})
			var we *wire.Error
			if !errors.As(err, &we) || we.Code != wire.CodeBadRequest {
				t.Errorf("%+v: err %v, want %s", req, err, wire.CodeBadRequest)
			}
		}
	})
}

// TestConcurrentFirstSteps: concurrent first steps of one function share
// one load (one key release, one compilation), and every one of them
// reports the time it waited for it.
func TestConcurrentFirstSteps(t *testing.T) {
	hello := wasmbuild.MustBuild(t, "examples/hello")
	e := newEnv(t, nil)
	alice := e.deploy("alice", "hello", hello, true)
	const n = 4 // the env's capacity
	calls := make([]*call, n)
	for i := range calls {
		calls[i] = e.seal(alice, fmt.Sprintf(`{"name":"c%d"}`, i))
	}
	results := make([]*outcome, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			o, err := e.send(calls[i])
			if err != nil {
				t.Error(err)
				return
			}
			results[i] = o
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i, o := range results {
		wantSuccess(t, o, "greeting", fmt.Sprintf("Hello c%d!", i))
		if o.res.InitMs <= 0 {
			t.Errorf("step %d: init %d ms, want the wait for the load", i, o.res.InitMs)
		}
	}
	if got := e.releases.Load(); got != 1 {
		t.Errorf("%d key releases for %d concurrent first steps, want 1", got, n)
	}
}

// BenchmarkNamespaceColdStart times "no runtime for this namespace" →
// "function loaded" (runtime start or pool take, hello, KMS nonce,
// attestation, key release, code fetch, decryption, compilation) with and
// without the pool, for examples/hello and for an empty module (which
// shows the fixed costs). Each iteration uses a new namespace; the pool has
// time to refill between iterations (not timed).
//
//	go test -run XXX -bench NamespaceColdStart -benchtime 10x ./internal/invoker/
func BenchmarkNamespaceColdStart(b *testing.B) {
	hello := wasmbuild.MustBuild(b, "examples/hello")
	// (module (func (export "_start")) (memory (export "memory") 1))
	empty := []byte("\x00asm\x01\x00\x00\x00" +
		"\x01\x04\x01\x60\x00\x00" + // type: func () -> ()
		"\x03\x02\x01\x00" + // function 0: type 0
		"\x05\x03\x01\x00\x01" + // memory: 1 page
		"\x07\x13\x02\x06_start\x00\x00\x06memory\x02\x00" + // exports
		"\x0a\x04\x01\x02\x00\x0b") // code: empty body
	for _, pool := range []int{-1, 2} {
		for _, mod := range []struct {
			name string
			wasm []byte
		}{{"tiny", empty}, {"hello", hello}} {
			b.Run(fmt.Sprintf("pool=%d/%s", max(pool, 0), mod.name), func(b *testing.B) {
				e := newEnv(b, func(c *Config) { c.PoolSize = pool })
				var acquire, total time.Duration
				i := 0
				for b.Loop() {
					b.StopTimer()
					ns := fmt.Sprintf("ns%d", i)
					i++
					f := e.deploy(ns, "f", mod.wasm, true)
					if pool > 0 {
						waitFor(b, "the pool to refill", 20*time.Second, func() bool { return len(e.spares()) == pool })
					}
					b.StartTimer()
					t0 := time.Now()
					p, err := e.iv.runtime(ns)
					if err != nil {
						b.Fatal(err)
					}
					t1 := time.Now()
					if _, err := e.iv.ensureLoaded(context.Background(), p, f.rec.FunctionID); err != nil {
						b.Fatal(err)
					}
					acquire += t1.Sub(t0)
					total += time.Since(t0)
				}
				b.ReportMetric(float64(acquire.Microseconds())/1000/float64(i), "runtime-ms/op")
				b.ReportMetric(float64(total.Microseconds())/1000/float64(i), "loaded-ms/op")
			})
		}
	}
}
