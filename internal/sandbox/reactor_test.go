package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/wasmbuild"
)

const pkgReactor = "internal/testfuncs/reactor"

// reactorModule compiles the reactor build of pkg in its own engine.
func reactorModule(t *testing.T, pkg string) (*Engine, *Module) {
	t.Helper()
	e := NewEngine()
	t.Cleanup(func() { e.Close(context.Background()) })
	m, err := e.Compile(context.Background(), wasmbuild.MustBuildReactor(t, pkg))
	if err != nil {
		t.Fatal(err)
	}
	if !m.c.reactor || m.c.loop {
		t.Fatalf("%s built with -buildmode=c-shared: reactor %v, loop %v", pkg, m.c.reactor, m.c.loop)
	}
	return e, m
}

func counted(t *testing.T, res *Result) float64 {
	t.Helper()
	var out struct{ N float64 }
	if err := json.Unmarshal(res.Output, &out); err != nil {
		t.Fatalf("output %q: %v", res.Output, err)
	}
	return out.N
}

// TestReactor: activations of a reactor module run warm in one instance
// (its state kept), each with exactly its own logs; a misbehaving
// activation ends the instance with the same typed errors as the other
// conventions, and the next one starts a new instance.
func TestReactor(t *testing.T) {
	e, m := reactorModule(t, pkgReactor)
	ctx := context.Background()
	run := func(params string, lim Limits) (*Result, error) {
		t.Helper()
		return m.Run(ctx, []byte(params), lim)
	}
	for i := 1; i <= 3; i++ {
		res, err := run(`{"x":1}`, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if got := counted(t, res); got != float64(i) || res.Warm != (i > 1) {
			t.Fatalf("activation %d: n %v warm %v", i, got, res.Warm)
		}
		if string(res.Logs) != "reactor activation "+string(rune('0'+i))+"\n" {
			t.Fatalf("activation %d logs %q", i, res.Logs)
		}
	}
	// An application error and bad params keep the instance.
	if res, err := run(`{"mode":"error"}`, Limits{}); err != nil || !strings.Contains(string(res.Output), "reactor fails") {
		t.Fatalf("application error: %v %q", err, res.Output)
	}
	if res, err := run(`[1]`, Limits{}); err != nil || !strings.Contains(string(res.Output), "must be a JSON object") {
		t.Fatalf("bad params: %v %q", err, res.Output)
	}
	// A print to stdout is a log line, not the result.
	res, err := run(`{"mode":"print","print":"stray"}`, Limits{})
	if err != nil || !strings.Contains(string(res.Logs), "stray") || strings.Contains(string(res.Output), "stray\n") {
		t.Fatalf("print: %v out %q logs %q", err, res.Output, res.Logs)
	}
	if got := counted(t, res); got != 5 {
		t.Fatalf("n after the warm activations: %v", got)
	}

	for _, tc := range []struct {
		params string
		lim    Limits
		want   error
	}{
		{`{"mode":"spin"}`, Limits{Timeout: 300 * time.Millisecond}, ErrTimeout},
		{`{"mode":"panic"}`, Limits{}, ErrExit},
		{`{"mode":"exit"}`, Limits{}, ErrExit},
		{`{"mode":"grow"}`, Limits{MemoryBytes: 64 << 20}, ErrMemoryLimit},
		{`{"mode":"big"}`, Limits{MaxOutputBytes: 1 << 20}, ErrOutputTooLarge},
	} {
		if _, err := run(`{}`, tc.lim); err != nil { // a warm instance with this limit
			t.Fatal(err)
		}
		res, err := run(tc.params, tc.lim)
		if !errors.Is(err, tc.want) {
			t.Fatalf("%s: %v, want %v", tc.params, err, tc.want)
		}
		if res == nil || !strings.Contains(string(res.Logs), "reactor activation") {
			t.Fatalf("%s: the owner's logs are missing: %+v", tc.params, res)
		}
		// The next activation runs in a new instance.
		res, err = run(`{}`, tc.lim)
		if err != nil || counted(t, res) != 1 || res.Warm {
			t.Fatalf("after %s: %v n %v warm %v", tc.params, err, res, res != nil && res.Warm)
		}
	}
	if e.Runaway() {
		t.Fatal("a halted reactor did not stop")
	}
}

// TestReactorCancel: cancelling the activation's context stops a spinning
// reactor on the activation's own goroutine.
func TestReactorCancel(t *testing.T) {
	e, m := reactorModule(t, pkgReactor)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := m.Run(ctx, []byte(`{"mode":"spin"}`), Limits{})
		done <- err
	}()
	waitFor(t, func() bool { return busyInstance(e) })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a cancelled reactor kept running")
	}
}

// TestReactorEngineClose: closing the engine ends idle reactor instances
// and stops a running one (its Run returns ErrClosed), without runaway.
func TestReactorEngineClose(t *testing.T) {
	e, m := reactorModule(t, pkgReactor)
	if _, err := m.Run(context.Background(), []byte(`{}`), Limits{}); err != nil { // one idle instance
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := m.Run(context.Background(), []byte(`{"mode":"spin"}`), Limits{})
		done <- err
	}()
	waitFor(t, func() bool { return busyInstance(e) })
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("spinning reactor at Close: %v", err)
	}
	if e.Runaway() {
		t.Fatal("runaway")
	}
	e.poolMu.Lock()
	left := len(e.live)
	e.poolMu.Unlock()
	if left != 0 {
		t.Fatalf("%d instances left after Close", left)
	}
}

// TestReactorWithoutHandler: a reactor build of a function that registers
// nothing (main calls sdk.Run, which a reactor never runs) says what to do.
func TestReactorWithoutHandler(t *testing.T) {
	_, m := reactorModule(t, pkgEcho)
	res, err := m.Run(context.Background(), []byte(`{}`), Limits{})
	if !errors.Is(err, ErrExit) || res == nil || !strings.Contains(string(res.Output), "sdk.Handle") {
		t.Fatalf("%v %+v", err, res)
	}
}

// TestReactorCommandBuild: the same source built as a command serves the
// same function through sdk.Main (the loop convention).
func TestReactorCommandBuild(t *testing.T) {
	m := goModule(t, pkgReactor)
	for i := 1; i <= 2; i++ {
		res, err := m.Run(context.Background(), []byte(`{}`), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if counted(t, res) < 1 {
			t.Fatalf("command build: %q", res.Output)
		}
	}
}

// TestCompileReactorShapes: what makes a module a reactor, and what is
// refused.
func TestCompileReactorShapes(t *testing.T) {
	body := func() wasmModule {
		return wasmModule{
			types:   []funcType{{}},
			memory:  &[2]uint32{1, 0},
			funcs:   []wasmFunc{{typ: 0}, {typ: 0}},
			exports: []wasmExport{{"_initialize", 0, 0}, {reactorExport, 0, 1}, {"memory", 2, 0}},
		}
	}
	e := NewEngine()
	defer e.Close(context.Background())
	m, err := e.Compile(context.Background(), body().bytes())
	if err != nil || !m.c.reactor {
		t.Fatalf("minimal reactor: %v", err)
	}
	// It runs (and writes nothing: an empty result, not reused).
	if _, err := m.Run(context.Background(), nil, Limits{}); err != nil {
		t.Fatalf("minimal reactor run: %v", err)
	}
	noEntry := body()
	noEntry.exports = noEntry.exports[:1:1]
	noEntry.exports = append(noEntry.exports, wasmExport{"memory", 2, 0})
	both := body()
	both.exports = append(both.exports, wasmExport{"_start", 0, 1})
	for name, mod := range map[string]wasmModule{"no reactor export": noEntry, "both command and reactor": both} {
		if _, err := e.Compile(context.Background(), mod.bytes()); !errors.Is(err, ErrInvalidModule) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// waitFor polls cond until it holds (30 s at most).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// busyInstance reports whether a reactor instance of e runs code.
func busyInstance(e *Engine) bool {
	e.poolMu.Lock()
	defer e.poolMu.Unlock()
	for in := range e.live {
		in.mu.Lock()
		busy := in.busy
		in.mu.Unlock()
		if busy {
			return true
		}
	}
	return false
}
