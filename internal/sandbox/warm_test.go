package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// count runs counter-like module m with params and returns its count, or 0
// if the result has none.
func count(t *testing.T, m *Module, params string, lim Limits) (int, *Result, error) {
	t.Helper()
	res, err := m.Run(context.Background(), []byte(params), lim)
	if res == nil {
		return 0, nil, err
	}
	var out struct {
		Count int `json:"count"`
	}
	_ = json.Unmarshal(res.Output, &out)
	return out.Count, res, err
}

// idleOf returns how many idle instances m's compiled module has.
func idleOf(m *Module) int {
	m.e.poolMu.Lock()
	defer m.e.poolMu.Unlock()
	return m.b.idle
}

// liveOf returns how many instances of m's compiled module exist.
func liveOf(m *Module) int {
	m.e.poolMu.Lock()
	defer m.e.poolMu.Unlock()
	return m.c.live
}

// eventually waits up to 10 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// newEngine returns an Engine closed at the end of the test, after checking
// that it left no instance behind.
func newEngine(t *testing.T, cfg Config) *Engine {
	e := NewEngineWithConfig(cfg)
	t.Cleanup(func() {
		if err := e.Close(context.Background()); err != nil {
			t.Error(err)
		}
		if n := len(e.live); n != 0 {
			t.Errorf("%d instances left after Engine.Close", n)
		}
		if e.Runaway() {
			t.Error("Engine reports a runaway guest")
		}
	})
	return e
}

func compileIn(t *testing.T, e *Engine, pkg string) *Module {
	t.Helper()
	m, err := e.Compile(context.Background(), wasmbuild.MustBuild(t, pkg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

// A warm instance serves activation after activation and keeps the
// function's global state; its logs are split exactly per activation.
func TestWarmReuse(t *testing.T) {
	m := compileIn(t, newEngine(t, Config{}), pkgCounter)
	for i := 1; i <= 4; i++ {
		n, res, err := count(t, m, fmt.Sprintf(`{"log":"activation %d"}`, i), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if n != i || res.Warm != (i > 1) {
			t.Errorf("activation %d: count %d, warm %v", i, n, res.Warm)
		}
		if want := fmt.Sprintf("activation %d\n", i); string(res.Logs) != want {
			t.Errorf("activation %d: logs %q, want %q", i, res.Logs, want)
		}
	}
	if idleOf(m) != 1 || liveOf(m) != 1 {
		t.Errorf("idle %d, live %d; want 1, 1", idleOf(m), liveOf(m))
	}
}

// An instance is reused after a clean application error, and discarded
// after anything else: the next activation starts from a fresh instance.
func TestWarmDiscard(t *testing.T) {
	m := compileIn(t, newEngine(t, Config{}), pkgCounter)
	warmUp := func() {
		t.Helper()
		if n, _, err := count(t, m, `{}`, Limits{}); err != nil || n != 1 {
			t.Fatalf("first activation: count %d, %v", n, err)
		}
	}
	tests := []struct {
		name    string
		params  string
		lim     Limits
		wantErr error
		next    int // count of the next activation: 1 in a new instance
	}{
		{"application error", `{"fail":1}`, Limits{}, nil, 3},
		{"bad params", `[1]`, Limits{}, nil, 2}, // the function did not run
		{"panic", `{"panic":1}`, Limits{}, ErrExit, 1},
		{"exit 0", `{"exit":0}`, Limits{}, nil, 1},
		{"exit 3", `{"exit":3}`, Limits{}, ErrExit, 1},
		{"timeout", `{"spin":1}`, Limits{Timeout: 200 * time.Millisecond}, ErrTimeout, 1},
		{"output cap", `{"raw":"` + strings.Repeat("x", 2000) + `"}`, Limits{MaxOutputBytes: 1000}, ErrOutputTooLarge, 1},
		{"two result lines", `{"raw":"{}\n"}`, Limits{}, nil, 1},
		{"garbage on the result line", `{"raw":"x"}`, Limits{}, nil, 3}, // one line: in step, if not JSON
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m.e.drainIdle(m.c, nil)
			eventually(t, "old instances to exit", func() bool { return liveOf(m) == 0 })
			warmUp()
			_, res, err := count(t, m, tt.params, tt.lim)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("error %v, want %v (logs %q)", err, tt.wantErr, logsOf(res))
			}
			if res == nil || !res.Warm {
				t.Fatal("the activation did not run in the warm instance")
			}
			n, res, err := count(t, m, `{}`, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if n != tt.next || res.Warm != (tt.next > 1) {
				t.Errorf("next activation: count %d, warm %v; want %d, %v", n, res.Warm, tt.next, tt.next > 1)
			}
		})
	}
}

// A module built with sdk/fresh gets a fresh instance per activation, taken
// from pre-initialized ones.
func TestFreshInstances(t *testing.T) {
	m := compileIn(t, newEngine(t, Config{}), pkgFresh)
	if !m.c.fresh || !m.c.loop {
		t.Fatalf("fresh %v, loop %v", m.c.fresh, m.c.loop)
	}
	for i := 1; i <= 4; i++ {
		if i > 1 {
			eventually(t, "a pre-initialized instance", func() bool { return idleOf(m) == 1 })
		}
		n, res, err := count(t, m, `{}`, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 || res.Warm != (i > 1) {
			t.Errorf("activation %d: count %d, warm %v; want 1, %v", i, n, res.Warm, i > 1)
		}
	}
	// A different memory limit does not use the instance made for another.
	if n, res, err := count(t, m, `{}`, Limits{MemoryBytes: 100 << 20}); err != nil || n != 1 || res.Warm {
		t.Errorf("other limit: count %d, warm %v, %v", n, res != nil && res.Warm, err)
	}
}

// Prestart < 0 disables pre-initialized instances; a fresh module then
// starts an instance per activation, never reused.
func TestFreshWithoutPrestart(t *testing.T) {
	m := compileIn(t, newEngine(t, Config{Prestart: -1}), pkgFresh)
	for range 3 {
		n, res, err := count(t, m, `{}`, Limits{})
		if err != nil || n != 1 || res.Warm {
			t.Fatalf("count %d, warm %v, %v", n, res != nil && res.Warm, err)
		}
	}
	if idleOf(m) != 0 {
		t.Errorf("%d idle instances", idleOf(m))
	}
}

// TestPoolBounds checks put's bounds. Concurrent activations each take an
// instance out of the pool and put it back; the test takes and puts them
// itself, so that all of them are out at once however the machine schedules
// goroutines (concurrent Runs of a fast guest may well reuse one instance).
func TestPoolBounds(t *testing.T) {
	e := newEngine(t, Config{MaxIdlePerModule: 2, MaxIdle: 3})
	a, b := compileIn(t, e, pkgCounter), compileIn(t, e, pkgEcho)
	run := func(m *Module, concurrent int) {
		var out []*instance
		for range concurrent {
			in, warm, err := m.acquire(DefaultMemoryBytes)
			if err != nil || warm {
				t.Fatalf("acquire: warm %v, %v", warm, err)
			}
			out = append(out, in)
		}
		for _, in := range out {
			e.put(in)
		}
		if _, err := m.Run(context.Background(), []byte(`{}`), Limits{}); err != nil {
			t.Error(err)
		}
	}
	run(a, 4)
	if n := idleOf(a); n != 2 {
		t.Errorf("idle instances of a module after 4 concurrent runs: %d, want 2 (MaxIdlePerModule)", n)
	}
	run(b, 2)
	e.poolMu.Lock()
	total := len(e.idle)
	e.poolMu.Unlock()
	if total != 3 || idleOf(b) != 2 || idleOf(a) != 1 {
		t.Errorf("idle: %d in all, a %d, b %d; want 3 (MaxIdle), 1, 2 (least recently used evicted)", total, idleOf(a), idleOf(b))
	}
	eventually(t, "evicted instances to exit", func() bool { return liveOf(a) == 1 })
}

// Idle instances are bounded by their memory too.
func TestPoolMemoryBound(t *testing.T) {
	// An idle hello instance has a little over 3 MiB of linear memory.
	e := newEngine(t, Config{MaxIdleBytes: 5 << 20})
	a, b := compileIn(t, e, pkgCounter), compileIn(t, e, pkgEcho)
	for _, m := range []*Module{a, b} {
		if _, err := m.Run(context.Background(), nil, Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	if idleOf(a) != 0 || idleOf(b) != 1 {
		t.Errorf("idle a %d, b %d; want 0, 1 (the older evicted for memory)", idleOf(a), idleOf(b))
	}
	e.poolMu.Lock()
	used := e.idleBytes
	e.poolMu.Unlock()
	if used == 0 || used > 5<<20 {
		t.Errorf("idle bytes %d", used)
	}

	small := newEngine(t, Config{MaxIdleBytes: 1 << 20})
	m := compileIn(t, small, pkgCounter)
	if _, err := m.Run(context.Background(), nil, Limits{}); err != nil {
		t.Fatal(err)
	}
	if idleOf(m) != 0 {
		t.Error("an instance larger than MaxIdleBytes was kept")
	}
}

func TestIdleTimeout(t *testing.T) {
	m := compileIn(t, newEngine(t, Config{IdleTimeout: 100 * time.Millisecond}), pkgCounter)
	if _, err := m.Run(context.Background(), nil, Limits{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the idle instance to expire", func() bool { return liveOf(m) == 0 && idleOf(m) == 0 })
	if n, res, err := count(t, m, `{}`, Limits{}); err != nil || n != 1 || res.Warm {
		t.Errorf("after expiry: count %d, %v", n, err)
	}
}

// Closing the last Module of a compiled module closes its idle instances;
// closing the Engine closes the rest.
func TestCloseIdle(t *testing.T) {
	e := newEngine(t, Config{})
	m := compileIn(t, e, pkgCounter)
	if _, err := m.Run(context.Background(), nil, Limits{}); err != nil {
		t.Fatal(err)
	}
	other, err := e.Compile(context.Background(), wasmbuild.MustBuild(t, pkgCounter))
	if err != nil {
		t.Fatal(err)
	}
	_ = other.Close(context.Background())
	if idleOf(m) != 1 {
		t.Fatal("closing another Module of the same code closed the pool")
	}
	c := m.c
	_ = m.Close(context.Background())
	eventually(t, "instances to exit", func() bool {
		e.poolMu.Lock()
		defer e.poolMu.Unlock()
		return c.live == 0 && c.freed
	})

	m2 := compileIn(t, e, pkgEcho)
	if _, err := m2.Run(context.Background(), nil, Limits{}); err != nil {
		t.Fatal(err)
	}
	// newEngine's cleanup checks that Close leaves nothing behind.
}

// A warm instance is never shared by concurrent activations.
func TestWarmConcurrent(t *testing.T) {
	m := compileIn(t, newEngine(t, Config{}), pkgCounter)
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			last := 0
			for r := range 10 {
				msg := fmt.Sprintf("g%d r%d", g, r)
				n, res, err := count(t, m, `{"log":"`+msg+`"}`, Limits{})
				if err != nil {
					t.Error(err)
					return
				}
				if string(res.Logs) != msg+"\n" {
					t.Errorf("%s: logs %q", msg, res.Logs)
				}
				if n < 1 {
					t.Errorf("%s: count %d", msg, n)
				}
				last = n
			}
			_ = last
		})
	}
	wg.Wait()
}

func TestLoopLine(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{``, "\n"},
		{" \n\t ", "\n"},
		{`{"a":1}`, "{\"a\":1}\n"},
		{" {\"a\": 1} \n", "{\"a\": 1}\n"},
		{"{\n \"a\": [1,\n 2]\n}", "{\"a\":[1,2]}\n"},
		{"{\"a\": \"x\ny\"}", "{\"a\": \"x\x00y\"}\n"},
		{"[1]\n[2]", "[1]\x00[2]\n"},
	} {
		if got := string(loopLine([]byte(tt.in))); got != tt.want {
			t.Errorf("loopLine(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	for _, s := range []string{"{}\n", "x\n"} {
		if !oneLine([]byte(s)) {
			t.Errorf("oneLine(%q) = false", s)
		}
	}
	for _, s := range []string{"", "{}", "{}\n{}\n", "\n\n"} {
		if oneLine([]byte(s)) {
			t.Errorf("oneLine(%q) = true", s)
		}
	}
}

// A timer of an activation that has ended (it fired as the activation
// completed) does not halt the instance, which may serve another by then.
func TestStaleTimeoutDoesNotHalt(t *testing.T) {
	m := compileIn(t, newEngine(t, Config{}), pkgCounter)
	if _, err := m.Run(context.Background(), nil, Limits{}); err != nil {
		t.Fatal(err)
	}
	m.e.poolMu.Lock()
	in := m.e.idle[0]
	m.e.poolMu.Unlock()
	in.haltActivation(1, ErrTimeout) // the first activation's timer, late
	in.mu.Lock()
	halted := in.halted
	in.mu.Unlock()
	if halted != nil {
		t.Fatalf("a stale timer halted the instance: %v", halted)
	}
	if n, res, err := count(t, m, `{}`, Limits{}); err != nil || n != 2 || !res.Warm {
		t.Fatalf("count %d, %v", n, err)
	}
}
