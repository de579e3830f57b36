package controller

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// prewarmInvoker serves wire.SubjectInvokerPrewarm(id) and records what it
// is asked.
type prewarmInvoker struct {
	mu   sync.Mutex
	reqs []wire.Prewarm
}

func (e *env) servePrewarm(id string) *prewarmInvoker {
	e.t.Helper()
	pi := &prewarmInvoker{}
	nc := connect(e.t, e.srv, "prewarm-"+id)
	stop, err := bus.Serve(context.Background(), nc, testLog(e.t), wire.SubjectInvokerPrewarm(id), "", 0,
		func(_ context.Context, data []byte) (any, error) {
			req, err := bus.Decode[wire.Prewarm](data)
			if err != nil {
				return nil, err
			}
			pi.mu.Lock()
			pi.reqs = append(pi.reqs, *req)
			pi.mu.Unlock()
			return &wire.PrewarmReply{InvokerID: id, Loaded: req.Action == "loaded"}, nil
		})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(stop)
	if err := nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	return pi
}

func (pi *prewarmInvoker) requests() []wire.Prewarm {
	pi.mu.Lock()
	defer pi.mu.Unlock()
	return append([]wire.Prewarm(nil), pi.reqs...)
}

func TestPrewarm(t *testing.T) {
	e := newEnv(t)
	ids := []string{"inv-a", "inv-b", "inv-c"}
	served := map[string]*prewarmInvoker{}
	for _, id := range ids {
		e.startInvoker(id, succeed(e))
		served[id] = e.servePrewarm(id)
	}

	// Forwarded to the namespace's home invoker, like its steps.
	for _, ns := range []string{"alice", "bob", "carol", "dave"} {
		req := wire.Prewarm{Namespace: ns, Action: "hello", FunctionID: fidOf(ns)}
		rep := mustCall[wire.PrewarmReply](e, wire.SubjectPrewarm, &req)
		home := homeOf(ns+"/hello", ids...)
		if rep.InvokerID != home || rep.Loaded {
			t.Fatalf("%s: reply %+v, want invoker %s", ns, rep, home)
		}
		got := served[home].requests()
		if last := got[len(got)-1]; last.Namespace != ns || last.Action != "hello" || string(last.FunctionID) != string(fidOf(ns)) {
			t.Fatalf("%s: the invoker got %+v", ns, last)
		}
	}
	// A prewarm is not a step: nothing is outstanding afterwards.
	e.ctl.sched.mu.Lock()
	for id, st := range e.ctl.sched.invokers {
		if st.outstanding != 0 {
			t.Errorf("%s: %d outstanding after prewarms", id, st.outstanding)
		}
	}
	e.ctl.sched.mu.Unlock()
	// The invoker's "already loaded" comes back.
	rep := mustCall[wire.PrewarmReply](e, wire.SubjectPrewarm, &wire.Prewarm{Namespace: "alice", Action: "loaded", FunctionID: fidOf("x")})
	if !rep.Loaded {
		t.Errorf("reply %+v, want loaded", rep)
	}

	t.Run("bad requests", func(t *testing.T) {
		for _, req := range []any{
			&wire.Prewarm{Action: "a", FunctionID: fidOf("x")},
			&wire.Prewarm{Namespace: "alice", FunctionID: fidOf("x")},
			&wire.Prewarm{Namespace: "alice", Action: "a"},
			&wire.Prewarm{Namespace: "alice", Action: "a", FunctionID: make([]byte, maxFunctionIDLen+1)},
			&wire.Prewarm{Namespace: strings.Repeat("n", 1000), Action: "a", FunctionID: fidOf("x")},
			[]string{"x"},
		} {
			_, err := call[wire.PrewarmReply](e, wire.SubjectPrewarm, req)
			wantCode(t, err, wire.CodeBadRequest)
		}
	})
}

func TestPrewarmUnavailable(t *testing.T) {
	e := newEnv(t)
	// No invoker at all.
	_, err := call[wire.PrewarmReply](e, wire.SubjectPrewarm, &wire.Prewarm{Namespace: "alice", Action: "a", FunctionID: fidOf("a")})
	wantCode(t, err, wire.CodeUnavailable)
	// An invoker that does not serve prewarms (an older one): unavailable,
	// and it stays healthy for steps.
	e.startInvoker("old", succeed(e))
	_, err = call[wire.PrewarmReply](e, wire.SubjectPrewarm, &wire.Prewarm{Namespace: "alice", Action: "a", FunctionID: fidOf("a")})
	wantCode(t, err, wire.CodeUnavailable)
	if !e.healthy("old") {
		t.Error("an invoker without prewarms was marked down")
	}
}
