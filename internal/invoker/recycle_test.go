package invoker

import (
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// A runtime that asks to be recycled (RunReply.Recycle) is retired: it
// exits, and the next step runs in a fresh runtime.
func TestRecycle(t *testing.T) {
	e := newEnv(t, nil)
	f := e.deploy("alice", "echo", wasmbuild.MustBuild(t, "internal/testfuncs/echo"), true)
	wantSuccess(t, e.run(f, `{"x":"1"}`), "x", "1")
	t0 := time.Now()
	wantSuccess(t, e.run(f, `{"x":"1"}`), "x", "1")
	warm := time.Since(t0)
	p, pid := e.proc("alice"), e.pid("alice")
	e.iv.recycle(p)
	e.iv.recycle(p) // once is enough
	if p.alive() {
		t.Fatal("a recycled runtime still takes steps")
	}
	waitFor(t, "the recycled runtime to exit", 10*time.Second, func() bool { return exited(pid) })
	t0 = time.Now()
	wantSuccess(t, e.run(f, `{"x":"2"}`), "x", "2")
	// What recycling costs the next step: a runtime process, attestation,
	// key release and compiling the function again.
	t.Logf("step after recycling: %v (a warm step: %v)", time.Since(t0), warm)
	if e.pid("alice") == pid {
		t.Fatal("the step ran in the recycled runtime")
	}
}
