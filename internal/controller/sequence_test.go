package controller

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/wire"
)

// sequencePut is a valid put of the sequence ns/name.
func sequencePut(ns, name string, components ...string) wire.ActionPut {
	return wire.ActionPut{Action: wire.Action{Namespace: ns, Name: name, Kind: wire.KindSequence, Components: components}}
}

// route is the step route of ns/action whose function id derives from the
// action's name.
func route(ns, action string) wire.StepRoute {
	return wire.StepRoute{Namespace: ns, Action: action, Version: "0.0.3", FunctionID: fidOf(action),
		Limits: wire.Limits{TimeoutMs: 1000}}
}

// sequenceReq is a blocking invocation of the sequence ns/name.
func sequenceReq(ns, name string, steps ...wire.StepRoute) wire.InvokeRequest {
	req := invokeReq(ns, name)
	req.Steps = steps
	req.Limits = wire.Limits{TimeoutMs: 1000}
	return req
}

// chain is a fake invoker answer for sequences: each step takes 10 ms on
// the test clock and returns "out-<action>" as its sealed output, unless
// answers says otherwise for that action.
type chain struct {
	e       *env
	mu      sync.Mutex
	answers map[string]wire.RunResult
}

func newChain(e *env) *chain { return &chain{e: e, answers: map[string]wire.RunResult{}} }

func (ch *chain) set(action string, res wire.RunResult) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.answers[action] = res
}

func (ch *chain) run(ctx context.Context, req *wire.RunRequest) (*wire.RunResult, error) {
	ch.mu.Lock()
	res, ok := ch.answers[req.Action]
	ch.mu.Unlock()
	now := ch.e.clock.Now().UnixMilli()
	ch.e.clock.Advance(10 * time.Millisecond)
	if !ok {
		res = wire.RunResult{Status: wire.StatusSuccess, Executed: true,
			Envelope: []byte("out-" + req.Action), Logs: []byte("logs-" + req.Action)}
	}
	res.Start, res.End = now+2, now+10
	return &res, nil
}

// component loads the stored record of a component.
func (e *env) component(ns, id string) *wire.Activation {
	e.t.Helper()
	a := e.stored(ns, id)
	if a == nil {
		e.t.Fatalf("no record of component %s/%s", ns, id)
	}
	return a
}

func TestSequencePutGetListDelete(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "a", "fa"))
	comps := []string{"/guest/a", "/guest/pkg/b", "/other/a"}
	got := e.put(sequencePut("guest", "seq", comps...))
	want := wire.Action{
		Namespace: "guest", Name: "seq", Version: firstVersion, Kind: wire.KindSequence,
		Limits:     wire.Limits{TimeoutMs: defaultTimeoutMs, MemoryMB: defaultMemoryMB, LogsMB: defaultLogsMB, Concurrency: 1},
		Updated:    e.clock.Now().UnixMilli(),
		Components: comps,
	}
	checkAction(t, got, &want)
	ref := wire.ActionRef{Namespace: "guest", Name: "seq"}
	checkAction(t, mustCall[wire.Action](e, wire.SubjectActionGet, ref), &want)

	// Both kinds are listed.
	l := mustCall[wire.ActionList](e, wire.SubjectActionList, wire.ListRequest{Namespace: "guest"})
	kinds := map[string]string{}
	for _, a := range l.Actions {
		kinds[a.Name] = a.Kind
	}
	if len(kinds) != 2 || kinds["a"] != kindWasm || kinds["seq"] != wire.KindSequence {
		t.Fatalf("list: %v", kinds)
	}

	// Without overwrite: conflict. With it: the version is bumped.
	_, err := call[wire.Action](e, wire.SubjectActionPut, sequencePut("guest", "seq", "/guest/a"))
	wantCode(t, err, wire.CodeConflict)
	e.clock.Advance(time.Second)
	p := sequencePut("guest", "seq", "/guest/a", "/guest/a")
	p.Overwrite = true
	if a := e.put(p); a.Version != "0.0.2" || len(a.Components) != 2 || a.Updated != e.clock.Now().UnixMilli() {
		t.Fatalf("updated sequence %+v", a)
	}

	// Deleting the sequence deletes no code.
	a := mustCall[wire.Action](e, wire.SubjectActionDelete, ref)
	if a.Kind != wire.KindSequence || a.Version != "0.0.2" {
		t.Fatalf("deleted %+v", a)
	}
	_, err = call[wire.Action](e, wire.SubjectActionGet, ref)
	wantCode(t, err, wire.CodeNotFound)
	if e.code(fidOf("fa")) == nil {
		t.Fatal("deleting a sequence deleted a component's code")
	}
	// The wasm action is still there and can be deleted as usual.
	mustCall[wire.Action](e, wire.SubjectActionDelete, wire.ActionRef{Namespace: "guest", Name: "a"})
	if e.code(fidOf("fa")) != nil {
		t.Fatal("code of the deleted action kept")
	}
}

func TestSequenceKindSwitch(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "x", "fx"))

	// wasm → sequence: the old code goes.
	p := sequencePut("guest", "x", "/guest/a")
	p.Overwrite = true
	if a := e.put(p); a.Kind != wire.KindSequence || a.Version != "0.0.2" || len(a.Function.Record) != 0 {
		t.Fatalf("switched to sequence: %+v", a)
	}
	if e.code(fidOf("fx")) != nil {
		t.Fatal("the code of the replaced wasm action was kept")
	}

	// sequence → wasm: the new code is stored.
	w := actionPut(t, "guest", "x", "fx2")
	w.Overwrite = true
	if a := e.put(w); a.Kind != kindWasm || a.Version != "0.0.3" || len(a.Components) != 0 {
		t.Fatalf("switched to wasm: %+v", a)
	}
	if !bytes.Equal(e.code(fidOf("fx2")), w.SealedCode) {
		t.Fatal("code of the new wasm action not stored")
	}

	// sequence → sequence: nothing to delete, nothing breaks.
	p.Overwrite = true
	e.put(p)
	e.put(p)
	if a := mustCall[wire.Action](e, wire.SubjectActionGet, wire.ActionRef{Namespace: "guest", Name: "x"}); a.Version != "0.0.5" {
		t.Fatalf("version %q", a.Version)
	}
	if e.code(fidOf("fx2")) != nil {
		t.Fatal("the code of the replaced wasm action was kept")
	}
}

func TestSequencePutInvalid(t *testing.T) {
	e := newEnv(t)
	tooMany := make([]string, wire.MaxSequenceComponents+1)
	for i := range tooMany {
		tooMany[i] = "/guest/a"
	}
	tests := []struct {
		name   string
		mutate func(*wire.ActionPut)
	}{
		{"no components", func(p *wire.ActionPut) { p.Action.Components = nil }},
		{"too many components", func(p *wire.ActionPut) { p.Action.Components = tooMany }},
		{"relative component", func(p *wire.ActionPut) { p.Action.Components = []string{"guest/a"} }},
		{"component without namespace", func(p *wire.ActionPut) { p.Action.Components = []string{"/a"} }},
		{"component with four segments", func(p *wire.ActionPut) { p.Action.Components = []string{"/a/b/c/d"} }},
		{"component with empty segment", func(p *wire.ActionPut) { p.Action.Components = []string{"/guest//a"} }},
		{"component with trailing slash", func(p *wire.ActionPut) { p.Action.Components = []string{"/guest/a/"} }},
		{"component with bad name", func(p *wire.ActionPut) { p.Action.Components = []string{"/guest/a "} }},
		{"component with wildcard", func(p *wire.ActionPut) { p.Action.Components = []string{"/guest/>"} }},
		{"empty component", func(p *wire.ActionPut) { p.Action.Components = []string{"/guest/a", ""} }},
		{"component name too long", func(p *wire.ActionPut) {
			p.Action.Components = []string{"/guest/" + strings.Repeat("a", maxNameLen+1)}
		}},
		{"itself", func(p *wire.ActionPut) { p.Action.Components = []string{"/guest/a", "/guest/seq"} }},
		{"code", func(p *wire.ActionPut) { p.SealedCode = []byte("code") }},
		{"code size", func(p *wire.ActionPut) { p.Action.CodeSize = 10 }},
		{"function record", func(p *wire.ActionPut) { p.Action.Function = signed(t, fidOf("f")) }},
		{"function signature", func(p *wire.ActionPut) { p.Action.Function.Sig = make([]byte, 64) }},
		{"timeout", func(p *wire.ActionPut) { p.Action.Limits.TimeoutMs = maxTimeoutMs + 1 }},
		{"version", func(p *wire.ActionPut) { p.Action.Version = "1 2" }},
		{"kind", func(p *wire.ActionPut) { p.Action.Kind = "Sequence" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := sequencePut("guest", "seq", "/guest/a")
			tc.mutate(&p)
			_, err := call[wire.Action](e, wire.SubjectActionPut, p)
			wantCode(t, err, wire.CodeBadRequest)
		})
	}
	// A wasm action has no components.
	w := actionPut(t, "guest", "w", "fw")
	w.Action.Components = []string{"/guest/a"}
	_, err := call[wire.Action](e, wire.SubjectActionPut, w)
	wantCode(t, err, wire.CodeBadRequest)
	if e.code(fidOf("fw")) != nil {
		t.Fatal("refused put stored code")
	}
	_, err = call[wire.Action](e, wire.SubjectActionGet, wire.ActionRef{Namespace: "guest", Name: "seq"})
	wantCode(t, err, wire.CodeNotFound)

	// The limits: the maximum number of components, package paths,
	// limits like any action.
	max := make([]string, wire.MaxSequenceComponents)
	for i := range max {
		max[i] = fmt.Sprintf("/ns%d/pkg/a%d", i%3, i)
	}
	p := sequencePut("guest", "seq", max...)
	p.Action.Limits.TimeoutMs = maxTimeoutMs
	if a := e.put(p); len(a.Components) != wire.MaxSequenceComponents || a.Limits.TimeoutMs != maxTimeoutMs {
		t.Fatalf("stored %+v", a)
	}
}

func TestSequenceInvoke(t *testing.T) {
	e := newEnv(t)
	e.put(sequencePut("guest", "abc", "/guest/a", "/guest/pkg/b", "/other/c"))
	ch := newChain(e)
	inv := e.startInvoker("inv0", ch.run)

	steps := []wire.StepRoute{route("guest", "a"), route("guest", "pkg/b"), route("other", "c")}
	steps[1].Limits = wire.Limits{TimeoutMs: 2000, MemoryMB: 128}
	steps[2].Version = "1.0.0"
	req := sequenceReq("guest", "abc", steps...)
	req.Limits = wire.Limits{TimeoutMs: 2000, MemoryMB: 256}
	received := e.clock.Now().UnixMilli()
	seq := mustCall[wire.Activation](e, wire.SubjectInvoke, req)

	// What the invokers were asked to run: step j's route, on step j-1's
	// output.
	runs := inv.requests()
	if len(runs) != 3 {
		t.Fatalf("%d run requests", len(runs))
	}
	inputs := []string{"sealed envelope", "out-a", "out-pkg/b"}
	timeout := func(j int) uint32 { return mergeLimits(steps[j].Limits, wire.Limits{}).TimeoutMs }
	// Each step offers the later steps of its namespace as a chain
	// (RunRequest.Then), with their time; this fake invoker runs only the
	// first step of each request.
	thens := [][][]byte{{steps[1].FunctionID}, nil, nil}
	timeouts := []uint32{timeout(0) + timeout(1), timeout(1), timeout(2)}
	for j, r := range runs {
		st := steps[j]
		if r.Namespace != st.Namespace || r.Action != st.Action || !bytes.Equal(r.FunctionID, st.FunctionID) ||
			string(r.Envelope) != inputs[j] || r.TimeoutMs != timeouts[j] || fmt.Sprint(r.Then) != fmt.Sprint(thens[j]) {
			t.Fatalf("run request %d: %+v", j, r)
		}
		if r.ActivationID == req.ActivationID || !validActivationID(r.ActivationID) || r.ActivationID != seq.Components[j] {
			t.Fatalf("run request %d has activation id %q (components %v)", j, r.ActivationID, seq.Components)
		}
	}

	// The sequence's record.
	if seq.ActivationID != req.ActivationID || seq.Namespace != "guest" || seq.Name != "abc" ||
		seq.Version != firstVersion || seq.Subject != "alice" || seq.Cause != "" || seq.Step != 0 {
		t.Fatalf("sequence metadata %+v", seq)
	}
	if seq.Status != wire.StatusSuccess || seq.ErrorCode != "" || string(seq.Result) != "out-c" ||
		seq.Logs != nil || seq.Envelope != nil || seq.Start != received || seq.End != received+30 {
		t.Fatalf("sequence outcome %+v", seq)
	}
	if len(seq.Components) != 3 || slices.Contains(seq.Components, req.ActivationID) {
		t.Fatalf("components %v", seq.Components)
	}
	wantAnn := map[string]string{
		"path": "guest/abc", "kind": "sequence", "topmost": "true", "waitTime": "0", "duration": "30",
	}
	for k, v := range wantAnn {
		if got, ok := annotation(seq.Annotations, k); !ok || fmt.Sprint(got) != v {
			t.Errorf("sequence annotation %s = %v (%v), want %s", k, got, ok, v)
		}
	}
	for _, k := range []string{"causedBy", annDeadline, "initTime"} {
		if _, ok := annotation(seq.Annotations, k); ok {
			t.Errorf("sequence annotation %s", k)
		}
	}
	if timeoutOf(seq.Annotations) != 2000 {
		t.Errorf("sequence limits %v", seq.Annotations)
	}
	if s := e.stored("guest", req.ActivationID); s == nil || s.End != seq.End || !slices.Equal(s.Components, seq.Components) {
		t.Fatalf("stored sequence %+v", s)
	}
	got := mustCall[wire.Activation](e, wire.SubjectActivationGet, wire.ActivationRef{Namespace: "guest", ActivationID: req.ActivationID})
	if !slices.Equal(got.Components, seq.Components) {
		t.Fatalf("get: %+v", got)
	}

	// The component records, filed with the sequence's (the caller's
	// namespace, as OpenWhisk does); "path" names the component's.
	for j, id := range seq.Components {
		st := steps[j]
		c := e.component("guest", id)
		start := received + 10*int64(j)
		if !slices.ContainsFunc(c.Annotations, func(kv wire.KeyValue) bool { return kv.Key == "path" && kv.Value == st.Namespace+"/"+st.Action }) {
			t.Fatalf("component %d path %v", j, c.Annotations)
		}
		if c.ActivationID != id || c.Namespace != "guest" || c.Name != st.Action || c.Version != st.Version ||
			c.Subject != "alice" || c.Cause != req.ActivationID || c.Step != uint32(j) || len(c.Components) != 0 {
			t.Fatalf("component %d metadata %+v", j, c)
		}
		if c.Status != wire.StatusSuccess || string(c.Result) != "out-"+st.Action || string(c.Logs) != "logs-"+st.Action ||
			c.Envelope != nil || c.Start != start || c.End != start+10 {
			t.Fatalf("component %d outcome %+v", j, c)
		}
		for k, v := range map[string]string{
			"path": st.Namespace + "/" + st.Action, "kind": "wasm", "causedBy": "sequence", "waitTime": "2",
		} {
			if got, ok := annotation(c.Annotations, k); !ok || fmt.Sprint(got) != v {
				t.Errorf("component %d annotation %s = %v (%v), want %s", j, k, got, ok, v)
			}
		}
		if _, ok := annotation(c.Annotations, "topmost"); ok {
			t.Errorf("component %d is topmost", j)
		}
		if timeoutOf(c.Annotations) != int64(mergeLimits(st.Limits, wire.Limits{}).TimeoutMs) {
			t.Errorf("component %d limits %v", j, c.Annotations)
		}
		// Ids are time-ordered: 48 bits of unix ms first.
		b, _ := hex.DecodeString(id)
		if ms := int64(b[0])<<40 | int64(b[1])<<32 | int64(b[2])<<24 | int64(b[3])<<16 | int64(b[4])<<8 | int64(b[5]); ms != start {
			t.Errorf("component %d id time %d, want %d", j, ms, start)
		}
		if a := mustCall[wire.Activation](e, wire.SubjectActivationGet, wire.ActivationRef{Namespace: "guest", ActivationID: id}); a.Cause != req.ActivationID {
			t.Errorf("get component %d: %+v", j, a)
		}
	}
	// Component records are not under the component action's namespace.
	if e.stored("other", seq.Components[2]) != nil {
		t.Error("component of other/c stored under other")
	}

	// A duplicate sequence id is refused, whether blocking or not.
	for _, blocking := range []bool{true, false} {
		dup := req
		dup.Blocking = blocking
		_, err := call[wire.Activation](e, wire.SubjectInvoke, dup)
		wantCode(t, err, wire.CodeConflict)
	}
	if n := inv.calls.Load(); n != 3 {
		t.Fatalf("%d steps run", n)
	}
}

func TestSequenceStops(t *testing.T) {
	long := strings.Repeat("x", maxErrorFieldLen+5)
	tests := []struct {
		name       string
		failAt     int
		res        wire.RunResult
		wantStatus string
		wantCode   string
		wantMsg    string
		wantResult string // of the sequence and the failing component; "" keeps the input envelope
	}{
		{"application error", 1, wire.RunResult{Status: wire.StatusApplicationError, Executed: true, Envelope: []byte("err-b")},
			wire.StatusApplicationError, "", "", "err-b"},
		{"developer error", 1, wire.RunResult{Status: wire.StatusDeveloperError, Executed: true, ErrorCode: "trap"},
			wire.StatusDeveloperError, "trap", "", ""},
		{"refused", 1, wire.RunResult{Status: wire.StatusInternalError, ErrorCode: "replay", ErrorMessage: "replayed"},
			wire.StatusInternalError, "replay", "replayed", ""},
		{"refused first step", 0, wire.RunResult{Status: wire.StatusInternalError, ErrorCode: "expired", ErrorMessage: "the envelope expired"},
			wire.StatusInternalError, "expired", "the envelope expired", ""},
		{"no output", 1, wire.RunResult{Status: wire.StatusSuccess, Executed: true, Logs: []byte("l")},
			wire.StatusInternalError, ErrNoOutput, msgNoOutput, ""},
		{"no output at the end", 2, wire.RunResult{Status: wire.StatusSuccess, Executed: true},
			wire.StatusInternalError, ErrNoOutput, msgNoOutput, ""},
		{"unknown status", 1, wire.RunResult{Status: "fine", Envelope: []byte("r")},
			wire.StatusInternalError, "", "", "r"},
		{"long error", 1, wire.RunResult{Status: wire.StatusInternalError, ErrorCode: long},
			wire.StatusInternalError, long[:maxErrorFieldLen], "", ""},
	}
	e := newEnv(t)
	e.put(sequencePut("guest", "abc", "/guest/a", "/guest/b", "/guest/c"))
	ch := newChain(e)
	inv := e.startInvoker("inv0", ch.run)
	names := []string{"a", "b", "c"}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, n := range names {
				ch.set(n, wire.RunResult{Status: wire.StatusSuccess, Executed: true, Envelope: []byte("out-" + n)})
			}
			ch.set(names[tc.failAt], tc.res)
			before := inv.calls.Load()
			req := sequenceReq("guest", "abc", route("guest", "a"), route("guest", "b"), route("guest", "c"))
			seq := mustCall[wire.Activation](e, wire.SubjectInvoke, req)
			if n := inv.calls.Load() - before; n != int32(tc.failAt+1) {
				t.Fatalf("%d steps dispatched, want %d", n, tc.failAt+1)
			}
			if seq.Status != tc.wantStatus || seq.ErrorCode != tc.wantCode || seq.ErrorMessage != tc.wantMsg ||
				string(seq.Result) != tc.wantResult || len(seq.Components) != tc.failAt+1 {
				t.Fatalf("sequence %+v", seq)
			}
			if tc.wantResult == "" && string(seq.Envelope) != "sealed envelope" || tc.wantResult != "" && seq.Envelope != nil {
				t.Fatalf("sequence envelope %q", seq.Envelope)
			}
			if d, _ := annotation(seq.Annotations, "duration"); fmt.Sprint(d) != fmt.Sprint(10*(tc.failAt+1)) {
				t.Fatalf("duration %v", d)
			}
			for j, id := range seq.Components {
				c := e.component("guest", id)
				if j < tc.failAt {
					if c.Status != wire.StatusSuccess {
						t.Fatalf("component %d: %+v", j, c)
					}
					continue
				}
				// The failing component: its own outcome, and its input
				// envelope when it has no result.
				in := "sealed envelope"
				if j > 0 {
					in = "out-" + names[j-1]
				}
				if c.Status != tc.wantStatus || c.ErrorCode != tc.wantCode || c.ErrorMessage != tc.wantMsg ||
					string(c.Result) != tc.wantResult || c.Step != uint32(j) || c.Cause != req.ActivationID {
					t.Fatalf("failing component %+v", c)
				}
				if tc.wantResult == "" && string(c.Envelope) != in {
					t.Fatalf("failing component envelope %q, want %q", c.Envelope, in)
				}
			}
		})
	}
}

// TestSequenceNoInvoker: a step designated to an invoker that stopped
// heart-beating while an earlier step ran (on another invoker) fails as
// no_invoker, and so does the sequence; nothing is sent to it.
func TestSequenceNoInvoker(t *testing.T) {
	e := newEnv(t)
	e.put(sequencePut("guest", "ab", "/guest/a", "/guest/b"))
	g := newGate()
	e.startInvoker("inv0", g.run)
	i1 := e.startInvoker("inv1", succeed(e))
	req := sequenceReq("guest", "ab", route("guest", "a"), route("guest", "b"))
	mustCall[wire.PlaceReply](e, wire.SubjectPlace, &wire.PlaceRequest{Namespace: "guest", Actions: []string{"x"}}) // binds a runtime on its home
	// The placed invoker beats on placing; that beat must be counted
	// before the clock moves on, or it would count inv1 fresh later.
	waitFor(t, "the placement's heartbeat", func() bool {
		s := e.ctl.sched
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, id := range []string{"inv0", "inv1"} {
			if st, ok := s.invokers[id]; ok && st.runtimes["guest"] != nil {
				return true
			}
		}
		return false
	})
	for j, inv := range []string{"inv0", "inv1"} {
		e.ctl.sched.noteRuntime(inv, "guest", fakeRuntime(inv, "guest"))
		req.Steps[j].Invoker, req.Steps[j].Runtime = inv, fakeRuntime(inv, "guest")
	}
	req.Blocking = false
	mustCall[wire.Activation](e, wire.SubjectInvoke, req)
	g.waitStarted(t)
	i0 := &fakeInvoker{e: e, id: "inv0", nc: e.nc, capacity: 4}
	for range 2 { // inv0 stays healthy, inv1 goes stale
		e.clock.Advance(3 * time.Second)
		i0.beat()
	}
	close(g.release)
	seq := e.waitDone("guest", req.ActivationID)
	if seq.Status != wire.StatusInternalError || seq.ErrorCode != ErrNoInvoker || seq.ErrorMessage != msgNoInvoker ||
		len(seq.Components) != 2 || string(seq.Envelope) != "sealed envelope" {
		t.Fatalf("sequence %+v", seq)
	}
	if c := e.component("guest", seq.Components[1]); c.ErrorCode != ErrNoInvoker || string(c.Envelope) != "late result" {
		t.Fatalf("component %+v", c)
	}
	if n := i1.calls.Load(); n != 0 {
		t.Fatalf("a stale invoker got %d steps", n)
	}
}

func TestSequenceNonBlocking(t *testing.T) {
	e := newEnv(t)
	e.put(sequencePut("guest", "ab", "/guest/a", "/guest/b"))
	g := newGate()
	e.startInvoker("inv0", g.run)

	req := sequenceReq("guest", "ab", route("guest", "a"), route("guest", "b"))
	req.Blocking = false
	received := e.clock.Now()
	a := mustCall[wire.Activation](e, wire.SubjectInvoke, req)
	if a.ActivationID != req.ActivationID || a.Name != "ab" || a.End != 0 || a.Status != "" || a.Start != received.UnixMilli() {
		t.Fatalf("immediate reply %+v", a)
	}
	first := g.waitStarted(t)

	// Running: not found, with a deadline that covers every step.
	ref := wire.ActivationRef{Namespace: "guest", ActivationID: req.ActivationID}
	_, err := call[wire.Activation](e, wire.SubjectActivationGet, ref)
	wantCode(t, err, wire.CodeNotFound)
	s := e.stored("guest", req.ActivationID)
	d, ok := deadlineOf(s.Annotations)
	if want := received.Add(2 * (time.Second + e.ctl.cfg.ColdStartGrace)).UnixMilli(); !ok || d != want || s.End != 0 {
		t.Fatalf("running record %+v: deadline %d, want %d", s, d, want)
	}
	// The component's running record is written in the background, in
	// order, while the step already runs.
	waitFor(t, "the running record of the first component", func() bool { return e.storedNow("guest", first) != nil })
	if c := e.stored("guest", first); c == nil || c.End != 0 || c.Cause != req.ActivationID {
		t.Fatalf("running component %+v", c)
	}

	close(g.release)
	done := e.waitDone("guest", req.ActivationID)
	if done.Status != wire.StatusSuccess || string(done.Result) != "late result" || len(done.Components) != 2 || done.Components[0] != first {
		t.Fatalf("completed %+v", done)
	}
	if _, ok := annotation(done.Annotations, annDeadline); ok {
		t.Fatal("deadline annotation on a complete record")
	}
	mustCall[wire.Activation](e, wire.SubjectActivationGet, ref)
}

// A running sequence outlives the deadline of a single action of its
// limits, but not its own.
func TestSequenceLost(t *testing.T) {
	e := newEnv(t)
	e.put(sequencePut("guest", "abc", "/guest/a", "/guest/b", "/guest/c"))
	g := newGate()
	inv := e.startInvoker("inv0", g.run)
	req := sequenceReq("guest", "abc", route("guest", "a"), route("guest", "b"), route("guest", "c"))
	req.Blocking = false
	mustCall[wire.Activation](e, wire.SubjectInvoke, req)
	g.waitStarted(t)
	ref := wire.ActivationRef{Namespace: "guest", ActivationID: req.ActivationID}

	grace := e.ctl.cfg.ColdStartGrace
	e.clock.Advance(time.Second + grace + staleMargin + time.Millisecond) // a single action would be lost
	_, err := call[wire.Activation](e, wire.SubjectActivationGet, ref)
	wantCode(t, err, wire.CodeNotFound)
	e.clock.Advance(2 * (time.Second + grace)) // past 3 steps' time
	a := mustCall[wire.Activation](e, wire.SubjectActivationGet, ref)
	if a.ErrorCode != ErrLost || a.End == 0 {
		t.Fatalf("lost record %+v", a)
	}
	if _, ok := annotation(a.Annotations, annDeadline); ok {
		t.Fatal("deadline annotation on a lost record")
	}
	inv.beat() // healthy again on the moved clock
	close(g.release)
	// The sequence completes after all and its record replaces the lost one.
	waitFor(t, "the sequence to complete", func() bool {
		s := e.stored("guest", req.ActivationID)
		return s != nil && len(s.Components) == 3
	})
}

func TestSequenceInvokeInvalid(t *testing.T) {
	e := newEnv(t)
	e.put(sequencePut("guest", "seq", "/guest/a"))
	e.put(actionPut(t, "guest", "hello", "f1"))
	inv := e.startInvoker("inv0", succeed(e))
	tooMany := make([]wire.StepRoute, maxChainSteps+1)
	for i := range tooMany {
		tooMany[i] = route("guest", "a")
	}
	tests := []struct {
		name   string
		mutate func(*wire.InvokeRequest)
		code   string
	}{
		{"too many steps", func(r *wire.InvokeRequest) { r.Steps = tooMany }, wire.CodeBadRequest},
		{"function id of the sequence", func(r *wire.InvokeRequest) { r.FunctionID = fidOf("x") }, wire.CodeBadRequest},
		{"step without namespace", func(r *wire.InvokeRequest) { r.Steps[1].Namespace = "" }, wire.CodeBadRequest},
		{"step with bad namespace", func(r *wire.InvokeRequest) { r.Steps[1].Namespace = "a*" }, wire.CodeBadRequest},
		{"step without action", func(r *wire.InvokeRequest) { r.Steps[0].Action = "" }, wire.CodeBadRequest},
		{"step with bad action", func(r *wire.InvokeRequest) { r.Steps[0].Action = "a/b/c" }, wire.CodeBadRequest},
		{"step without function id", func(r *wire.InvokeRequest) { r.Steps[1].FunctionID = nil }, wire.CodeBadRequest},
		{"step function id too long", func(r *wire.InvokeRequest) { r.Steps[1].FunctionID = make([]byte, maxFunctionIDLen+1) }, wire.CodeBadRequest},
		{"step version too long", func(r *wire.InvokeRequest) { r.Steps[1].Version = strings.Repeat("1", maxVersionLen+1) }, wire.CodeBadRequest},
		{"step timeout", func(r *wire.InvokeRequest) { r.Steps[1].Limits.TimeoutMs = maxTimeoutMs + 1 }, wire.CodeBadRequest},
		{"step memory", func(r *wire.InvokeRequest) { r.Steps[0].Limits.MemoryMB = maxMemoryMB + 1 }, wire.CodeBadRequest},
		{"sequence timeout", func(r *wire.InvokeRequest) { r.Limits.TimeoutMs = maxTimeoutMs + 1 }, wire.CodeBadRequest},
		{"no envelope", func(r *wire.InvokeRequest) { r.Envelope = nil }, wire.CodeBadRequest},
		{"steps for a wasm action", func(r *wire.InvokeRequest) { r.Action = "hello" }, wire.CodeBadRequest},
		{"no steps for a sequence", func(r *wire.InvokeRequest) { r.Steps = nil }, wire.CodeBadRequest},
		{"missing sequence", func(r *wire.InvokeRequest) { r.Action = "nope" }, wire.CodeNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, blocking := range []bool{true, false} {
				req := sequenceReq("guest", "seq", route("guest", "a"), route("other", "b"))
				req.Blocking = blocking
				tc.mutate(&req)
				_, err := call[wire.Activation](e, wire.SubjectInvoke, req)
				wantCode(t, err, tc.code)
				if e.stored("guest", req.ActivationID) != nil {
					t.Fatal("a refused invocation left a record")
				}
			}
		})
	}
	if n := inv.calls.Load(); n != 0 {
		t.Fatalf("refused invocations ran %d steps", n)
	}
	// The longest chain is fine.
	req := sequenceReq("guest", "seq", tooMany[:maxChainSteps]...)
	if a := mustCall[wire.Activation](e, wire.SubjectInvoke, req); a.Status != wire.StatusSuccess || len(a.Components) != maxChainSteps {
		t.Fatalf("longest chain: %s, %d components", a.Status, len(a.Components))
	}
}

func TestSequenceStopCancels(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.StopGrace = 100 * time.Millisecond })
	e.put(sequencePut("guest", "ab", "/guest/a", "/guest/b"))
	g := newGate() // never released
	e.startInvoker("inv0", g.run)
	req := sequenceReq("guest", "ab", route("guest", "a"), route("guest", "b"))
	req.Blocking = false
	mustCall[wire.Activation](e, wire.SubjectInvoke, req)
	g.waitStarted(t)
	e.ctl.Stop()
	seq := e.stored("guest", req.ActivationID)
	if seq == nil || seq.End == 0 || seq.ErrorCode != ErrInvokerFailed || seq.ErrorMessage != msgStopping || len(seq.Components) != 1 {
		t.Fatalf("sequence after Stop: %+v", seq)
	}
	if c := e.component("guest", seq.Components[0]); c.End == 0 || c.ErrorMessage != msgStopping {
		t.Fatalf("component after Stop: %+v", c)
	}
}

func TestSequenceMetrics(t *testing.T) {
	e := newEnv(t)
	e.put(sequencePut("guest", "ab", "/guest/a", "/guest/b"))
	ch := newChain(e)
	e.startInvoker("inv0", ch.run)
	mustCall[wire.Activation](e, wire.SubjectInvoke, sequenceReq("guest", "ab", route("guest", "a"), route("guest", "b")))
	ch.set("b", wire.RunResult{Status: wire.StatusApplicationError, Envelope: []byte("e")})
	mustCall[wire.Activation](e, wire.SubjectInvoke, sequenceReq("guest", "ab", route("guest", "a"), route("guest", "b")))
	got := gather(t, e)
	for name, want := range map[string]float64{
		"clemmys_controller_activations_total status=success":              1,
		"clemmys_controller_activations_total status=application error":    1,
		"clemmys_controller_sequence_steps_total status=success":           3,
		"clemmys_controller_sequence_steps_total status=application error": 1,
		"clemmys_controller_dispatch_total result=ok":                      4,
		"clemmys_controller_activation_duration_seconds":                   2,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
}

// gather returns the controller's metrics by name and labels.
func gather(t *testing.T, e *env) map[string]float64 {
	t.Helper()
	fams, err := e.ctl.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range fams {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += " " + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				got[name] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[name] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				got[name] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return got
}

// recorder is an interceptor that records what it sees and lets f decide.
type recorder struct {
	mu   sync.Mutex
	seen []Dispatch
	f    Interceptor
}

func (r *recorder) intercept(ctx context.Context, d Dispatch, send func(context.Context, *wire.RunRequest) (*wire.RunResult, error)) (*wire.RunResult, error) {
	r.mu.Lock()
	run := *d.Run
	d.Run = &run
	r.seen = append(r.seen, d)
	f := r.f
	r.mu.Unlock()
	if f == nil {
		return send(ctx, d.Run)
	}
	return f(ctx, d, send)
}

func (r *recorder) set(f Interceptor) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.f, r.seen = f, nil
}

func (r *recorder) dispatches() []Dispatch {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

func TestInterceptor(t *testing.T) {
	rec := &recorder{}
	e := newEnv(t, func(c *Config) { c.Interceptor = rec.intercept })
	e.put(actionPut(t, "guest", "hello", "f1"))
	e.put(sequencePut("guest", "abc", "/guest/a", "/guest/b", "/guest/c"))
	ch := newChain(e)
	inv := e.startInvoker("inv0", ch.run)
	abc := func() wire.InvokeRequest {
		return sequenceReq("guest", "abc", route("guest", "a"), route("guest", "b"), route("guest", "c"))
	}

	t.Run("pass through: what an honest controller sends", func(t *testing.T) {
		rec.set(nil)
		before := inv.calls.Load()
		req := abc()
		seq := mustCall[wire.Activation](e, wire.SubjectInvoke, req)
		if seq.Status != wire.StatusSuccess || string(seq.Result) != "out-c" {
			t.Fatalf("sequence %+v", seq)
		}
		ds := rec.dispatches()
		runs := inv.requests()[before:]
		if len(ds) != 3 || len(runs) != 3 {
			t.Fatalf("%d dispatches, %d runs", len(ds), len(runs))
		}
		for j, d := range ds {
			if d.Step != j || d.Request.ActivationID != req.ActivationID || len(d.Request.Steps) != 3 {
				t.Fatalf("dispatch %d: step %d request %+v", j, d.Step, d.Request)
			}
			if fmt.Sprint(*d.Run) != fmt.Sprint(*runs[j]) {
				t.Fatalf("dispatch %d: run %+v, invoker got %+v", j, d.Run, runs[j])
			}
		}

		// A single action is step 0 of a request without steps.
		rec.set(nil)
		single := invokeReq("guest", "hello")
		if a := mustCall[wire.Activation](e, wire.SubjectInvoke, single); a.Status != wire.StatusSuccess {
			t.Fatalf("single %+v", a)
		}
		ds = rec.dispatches()
		if len(ds) != 1 || ds[0].Step != 0 || len(ds[0].Request.Steps) != 0 || ds[0].Run.ActivationID != single.ActivationID ||
			!bytes.Equal(ds[0].Run.FunctionID, fidOf("f1")) {
			t.Fatalf("single dispatch %+v", ds)
		}
	})

	t.Run("send a step twice", func(t *testing.T) {
		rec.set(func(ctx context.Context, d Dispatch, send func(context.Context, *wire.RunRequest) (*wire.RunResult, error)) (*wire.RunResult, error) {
			if d.Step == 1 {
				if _, err := send(ctx, d.Run); err != nil {
					return nil, err
				}
			}
			return send(ctx, d.Run)
		})
		before := inv.calls.Load()
		seq := mustCall[wire.Activation](e, wire.SubjectInvoke, abc())
		if n := inv.calls.Load() - before; n != 4 {
			t.Fatalf("%d runs, want 4", n)
		}
		runs := inv.requests()[before:]
		if runs[1].ActivationID != runs[2].ActivationID || string(runs[2].Envelope) != "out-a" {
			t.Fatalf("replayed run %+v", runs[2])
		}
		if seq.Status != wire.StatusSuccess || len(seq.Components) != 3 {
			t.Fatalf("sequence %+v", seq)
		}
	})

	t.Run("rewrite a step", func(t *testing.T) {
		rec.set(func(ctx context.Context, d Dispatch, send func(context.Context, *wire.RunRequest) (*wire.RunResult, error)) (*wire.RunResult, error) {
			if d.Step == 1 {
				r := *d.Run
				r.Action, r.FunctionID, r.Envelope = "c", fidOf("c"), []byte("forged input")
				return send(ctx, &r)
			}
			return send(ctx, d.Run)
		})
		before := inv.calls.Load()
		seq := mustCall[wire.Activation](e, wire.SubjectInvoke, abc())
		runs := inv.requests()[before:]
		if len(runs) != 3 || runs[1].Action != "c" || string(runs[1].Envelope) != "forged input" || string(runs[2].Envelope) != "out-c" {
			t.Fatalf("runs %+v", runs)
		}
		// The controller records what it was told: that is all it knows.
		if c := e.component("guest", seq.Components[1]); c.Name != "b" || string(c.Result) != "out-c" {
			t.Fatalf("component %+v", c)
		}
	})

	t.Run("answer without sending", func(t *testing.T) {
		rec.set(func(ctx context.Context, d Dispatch, send func(context.Context, *wire.RunRequest) (*wire.RunResult, error)) (*wire.RunResult, error) {
			if d.Step == 2 {
				return &wire.RunResult{Status: wire.StatusSuccess, Envelope: []byte("forged result")}, nil
			}
			return send(ctx, d.Run)
		})
		before := inv.calls.Load()
		seq := mustCall[wire.Activation](e, wire.SubjectInvoke, abc())
		if n := inv.calls.Load() - before; n != 2 {
			t.Fatalf("%d runs, want 2", n)
		}
		if seq.Status != wire.StatusSuccess || string(seq.Result) != "forged result" || len(seq.Components) != 3 {
			t.Fatalf("sequence %+v", seq)
		}
	})

	t.Run("drop a step", func(t *testing.T) {
		rec.set(func(ctx context.Context, d Dispatch, send func(context.Context, *wire.RunRequest) (*wire.RunResult, error)) (*wire.RunResult, error) {
			if d.Step == 1 {
				return nil, errors.New("dropped")
			}
			return send(ctx, d.Run)
		})
		before := inv.calls.Load()
		seq := mustCall[wire.Activation](e, wire.SubjectInvoke, abc())
		if n := inv.calls.Load() - before; n != 1 {
			t.Fatalf("%d runs, want 1", n)
		}
		if seq.Status != wire.StatusInternalError || seq.ErrorCode != ErrInvokerFailed || len(seq.Components) != 2 ||
			string(seq.Envelope) != "sealed envelope" {
			t.Fatalf("sequence %+v", seq)
		}
		// A nil answer without an error is a failure too.
		rec.set(func(ctx context.Context, d Dispatch, send func(context.Context, *wire.RunRequest) (*wire.RunResult, error)) (*wire.RunResult, error) {
			return nil, nil
		})
		if a := mustCall[wire.Activation](e, wire.SubjectInvoke, invokeReq("guest", "hello")); a.ErrorCode != ErrInvokerFailed {
			t.Fatalf("record %+v", a)
		}
	})

	t.Run("send's errors classify the step", func(t *testing.T) {
		rec.set(func(ctx context.Context, d Dispatch, send func(context.Context, *wire.RunRequest) (*wire.RunResult, error)) (*wire.RunResult, error) {
			r := *d.Run
			r.Namespace = "elsewhere" // still scheduled: one invoker
			if _, err := send(ctx, nil); err == nil {
				t.Error("sending nothing succeeded")
			}
			return send(ctx, &r)
		})
		a := mustCall[wire.Activation](e, wire.SubjectInvoke, invokeReq("guest", "hello"))
		if a.Status != wire.StatusSuccess {
			t.Fatalf("record %+v", a)
		}
		if r := inv.requests(); r[len(r)-1].Namespace != "elsewhere" {
			t.Fatalf("run %+v", r[len(r)-1])
		}
	})
}

// Sent to an invoker nobody knows, SendTo reports it and the record says so.
func TestInterceptorNoInvoker(t *testing.T) {
	sendErr := make(chan error, 1)
	e := newEnv(t, func(c *Config) {
		c.Interceptor = func(ctx context.Context, d Dispatch, send func(context.Context, *wire.RunRequest) (*wire.RunResult, error)) (*wire.RunResult, error) {
			res, err := d.SendTo(ctx, "nobody", d.Run)
			sendErr <- err
			return res, err
		}
	})
	e.put(actionPut(t, "guest", "hello", "f1"))
	e.startInvoker("inv0", succeed(e))
	a := mustCall[wire.Activation](e, wire.SubjectInvoke, invokeReq("guest", "hello"))
	if err := <-sendErr; a.ErrorCode != ErrNoInvoker || err == nil {
		t.Fatalf("record %+v, send error %v", a, err)
	}
}

func TestNewActivationID(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_123)
	seen := map[string]bool{}
	for range 100 {
		id := newActivationID(now)
		if !validActivationID(id) || seen[id] {
			t.Fatalf("id %q", id)
		}
		seen[id] = true
		if !strings.HasPrefix(id, fmt.Sprintf("%012x", now.UnixMilli())) {
			t.Fatalf("id %q does not start with the time", id)
		}
	}
	if a, b := newActivationID(now), newActivationID(now.Add(time.Millisecond)); a >= b {
		t.Fatalf("ids not time-ordered: %s, %s", a, b)
	}
}

// TestSequenceChained: an invoker that runs later steps with the first
// (wire.RunResult.More) saves their round trips; each still gets its
// component record, timed by the runtime, in order. Steps it did not run
// (here: beyond the first two) are sent alone, and a chained step that
// fails ends the sequence like any step.
func TestSequenceChained(t *testing.T) {
	e := newEnv(t)
	e.put(sequencePut("guest", "abcd", "/guest/a", "/guest/b", "/guest/c", "/guest/d"))
	names := []string{"a", "b", "c", "d"}
	var steps []wire.StepRoute
	for _, n := range names {
		steps = append(steps, route("guest", n))
	}
	var mu sync.Mutex
	var calls []*wire.RunRequest
	failAt := ""
	inv := e.startInvoker("inv0", func(_ context.Context, req *wire.RunRequest) (*wire.RunResult, error) {
		mu.Lock()
		calls = append(calls, req)
		fail := failAt
		mu.Unlock()
		now := e.clock.Now().UnixMilli()
		step := func(action string, k int64) wire.RunResult {
			r := wire.RunResult{Status: wire.StatusSuccess, Executed: true, Start: now + 10*k, End: now + 10*k + 7,
				Envelope: []byte("out-" + action), Logs: []byte("logs-" + action)}
			if action == fail {
				r.Status, r.Envelope = wire.StatusApplicationError, []byte("err-"+action)
			}
			return r
		}
		first := step(req.Action, 0)
		// Runs at most one more step, as a runtime whose later functions
		// are not all loaded would.
		for k, fid := range req.Then[:min(len(req.Then), 1)] {
			name := ""
			for _, st := range steps {
				if bytes.Equal(st.FunctionID, fid) {
					name = st.Action
				}
			}
			first.More = append(first.More, step(name, int64(k+1)))
		}
		e.clock.Advance(50 * time.Millisecond)
		return &first, nil
	})

	for _, tc := range []struct {
		fail      string
		calls     int
		status    string
		result    string
		completed int
	}{
		{"", 2, wire.StatusSuccess, "out-d", 4},           // a+b chained, c+d chained
		{"b", 1, wire.StatusApplicationError, "err-b", 2}, // b fails within the chain
		{"c", 2, wire.StatusApplicationError, "err-c", 3}, // c fails first in its request
	} {
		mu.Lock()
		calls, failAt = nil, tc.fail
		mu.Unlock()
		req := sequenceReq("guest", "abcd", steps...)
		seq := mustCall[wire.Activation](e, wire.SubjectInvoke, req)
		mu.Lock()
		n := len(calls)
		mu.Unlock()
		if n != tc.calls || seq.Status != tc.status || string(seq.Result) != tc.result || len(seq.Components) != tc.completed {
			t.Fatalf("fail at %q: %d calls, sequence %+v", tc.fail, n, seq)
		}
		var prevEnd int64
		for j, id := range seq.Components {
			c := e.component("guest", id)
			if c.Name != names[j] || c.Step != uint32(j) || c.End-c.Start != 7 || c.Start < prevEnd {
				t.Fatalf("fail at %q: component %d %+v", tc.fail, j, c)
			}
			prevEnd = c.End
		}
	}
	if inv.calls.Load() == 0 {
		t.Fatal("no invoker calls")
	}
	// b and d, then b, then b: the steps that came in More.
	if got := gather(t, e)["clemmys_controller_chained_steps_total"]; got != 4 {
		t.Errorf("chained steps counted %v, want 4", got)
	}
}

// A sequence whose steps were cold says so: its record's initTime is the
// sum of its steps' load times (and a warm one has none: TestSequenceInvoke).
func TestSequenceColdSteps(t *testing.T) {
	e := newEnv(t)
	e.put(sequencePut("guest", "ab", "/guest/a", "/guest/b"))
	ch := newChain(e)
	for _, a := range []string{"a", "b"} {
		ch.set(a, wire.RunResult{Status: wire.StatusSuccess, Executed: true, InitMs: 7,
			Envelope: []byte("out-" + a), Logs: []byte("logs-" + a)})
	}
	e.startInvoker("inv0", ch.run)
	seq := mustCall[wire.Activation](e, wire.SubjectInvoke, sequenceReq("guest", "ab", route("guest", "a"), route("guest", "b")))
	if got, ok := annotation(seq.Annotations, "initTime"); !ok || fmt.Sprint(got) != "14" {
		t.Fatalf("sequence initTime %v (%v), want 14", got, ok)
	}
}
