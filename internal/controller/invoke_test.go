package controller

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

func TestInvokeBlocking(t *testing.T) {
	e := newEnv(t)
	p := actionPut(t, "guest", "hello", "f1")
	p.Action.Limits.TimeoutMs = 5000
	p.Action.Limits.MemoryMB = 128
	e.put(p)
	inv := e.startInvoker("inv0", succeed(e))

	req := invokeReq("guest", "hello")
	start := e.clock.Now().UnixMilli()
	a := mustCall[wire.Activation](e, wire.SubjectInvoke, req)
	if a.ActivationID != req.ActivationID || a.Namespace != "guest" || a.Name != "hello" ||
		a.Version != firstVersion || a.Subject != "alice" {
		t.Fatalf("record metadata %+v", a)
	}
	if a.Status != wire.StatusSuccess || a.ErrorCode != "" || a.Start != start || a.End != start {
		t.Fatalf("record outcome %+v", a)
	}
	if string(a.Result) != "sealed result" || string(a.Logs) != "sealed logs" || a.Envelope != nil {
		t.Fatalf("record payload %+v", a)
	}
	if w, ok := annotation(a.Annotations, "waitTime"); !ok || fmt.Sprint(w) != "25" {
		t.Fatalf("waitTime = %v (%v), want 25", w, ok)
	}
	if _, ok := annotation(a.Annotations, "initTime"); ok {
		t.Fatal("initTime on a warm step")
	}
	if p, _ := annotation(a.Annotations, "path"); p != "guest/hello" {
		t.Fatalf("path annotation %v", p)
	}
	if got := timeoutOf(a.Annotations); got != 5000 {
		t.Fatalf("timeout annotation %d", got)
	}

	// What the invoker was asked to run.
	reqs := inv.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d run requests", len(reqs))
	}
	r := reqs[0]
	if r.ActivationID != req.ActivationID || r.Namespace != "guest" || r.Action != "hello" ||
		!bytes.Equal(r.FunctionID, fidOf("f1")) || string(r.Envelope) != "sealed envelope" || r.TimeoutMs != 5000 {
		t.Fatalf("run request %+v", r)
	}

	// The stored record is the one returned, and activation.get finds it.
	got := mustCall[wire.Activation](e, wire.SubjectActivationGet, wire.ActivationRef{Namespace: "guest", ActivationID: req.ActivationID})
	if got.End != a.End || got.Status != a.Status || !bytes.Equal(got.Result, a.Result) {
		t.Fatalf("stored %+v, returned %+v", got, a)
	}
}

func TestInvokeRequestOverrides(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "hello", "f1"))
	inv := e.startInvoker("inv0", succeed(e))

	req := invokeReq("guest", "hello")
	req.FunctionID = fidOf("pinned")
	req.Version = "0.0.7"
	req.Limits = wire.Limits{TimeoutMs: 1234}
	a := mustCall[wire.Activation](e, wire.SubjectInvoke, req)
	if a.Version != "0.0.7" || timeoutOf(a.Annotations) != 1234 {
		t.Fatalf("record %+v", a)
	}
	r := inv.requests()[0]
	if !bytes.Equal(r.FunctionID, fidOf("pinned")) || r.TimeoutMs != 1234 {
		t.Fatalf("run request %+v", r)
	}
}

func TestInvokeStatusMapping(t *testing.T) {
	long := strings.Repeat("x", maxErrorFieldLen+10)
	tests := []struct {
		name       string
		res        wire.RunResult
		wantStatus string
		wantCode   string
		wantMsg    string
		wantInit   bool
		keepsEnv   bool // no sealed result: the record keeps the request envelope
	}{
		{"success", wire.RunResult{Status: wire.StatusSuccess, Envelope: []byte("r")}, wire.StatusSuccess, "", "", false, false},
		{"application error", wire.RunResult{Status: wire.StatusApplicationError, Envelope: []byte("r")}, wire.StatusApplicationError, "", "", false, false},
		{"developer error", wire.RunResult{Status: wire.StatusDeveloperError, ErrorCode: "invalid_module", InitMs: 7}, wire.StatusDeveloperError, "invalid_module", "", true, true},
		{"refused envelope", wire.RunResult{Status: wire.StatusInternalError, ErrorCode: "expired", ErrorMessage: "the envelope expired"}, wire.StatusInternalError, "expired", "the envelope expired", false, true},
		{"unknown status", wire.RunResult{Status: "great success", Envelope: []byte("r")}, wire.StatusInternalError, "", "", false, false},
		{"empty status", wire.RunResult{}, wire.StatusInternalError, "", "", false, true},
		{"long error fields", wire.RunResult{Status: wire.StatusInternalError, ErrorCode: long, ErrorMessage: long}, wire.StatusInternalError, long[:maxErrorFieldLen], long[:maxErrorFieldLen], false, true},
		{"truncated inside a rune", wire.RunResult{Status: wire.StatusInternalError, ErrorMessage: strings.Repeat("x", maxErrorFieldLen-1) + "é"}, wire.StatusInternalError, "", strings.Repeat("x", maxErrorFieldLen-1), false, true},
	}
	e := newEnv(t)
	e.put(actionPut(t, "guest", "hello", "f1"))
	var res wire.RunResult
	e.startInvoker("inv0", func(ctx context.Context, req *wire.RunRequest) (*wire.RunResult, error) {
		r := res
		return &r, nil
	})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res = tc.res
			req := invokeReq("guest", "hello")
			a := mustCall[wire.Activation](e, wire.SubjectInvoke, req)
			if a.Status != tc.wantStatus || a.ErrorCode != tc.wantCode || a.ErrorMessage != tc.wantMsg {
				t.Fatalf("status %q code %q msg %q", a.Status, a.ErrorCode, a.ErrorMessage)
			}
			if _, ok := annotation(a.Annotations, "initTime"); ok != tc.wantInit {
				t.Fatalf("initTime annotation: %v", ok)
			}
			if _, ok := annotation(a.Annotations, "waitTime"); ok {
				t.Fatal("waitTime without a step start")
			}
			if got := a.Envelope != nil; got != tc.keepsEnv {
				t.Fatalf("envelope kept: %v", got)
			}
			if s := e.stored("guest", req.ActivationID); s == nil || s.Status != tc.wantStatus || s.End == 0 {
				t.Fatalf("stored %+v", s)
			}
		})
	}
}

func TestInvokeNonBlocking(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "hello", "f1"))
	g := newGate()
	e.startInvoker("inv0", g.run)

	req := invokeReq("guest", "hello")
	req.Blocking = false
	a := mustCall[wire.Activation](e, wire.SubjectInvoke, req)
	if a.ActivationID != req.ActivationID || a.End != 0 || a.Status != "" || a.Start != e.clock.Now().UnixMilli() {
		t.Fatalf("immediate reply %+v", a)
	}
	g.waitStarted(t)

	// Running: the record exists with End 0, but (like OpenWhisk) it is not
	// found or listed until it completes.
	if s := e.stored("guest", req.ActivationID); s == nil || s.End != 0 || s.Status != "" || s.Name != "hello" {
		t.Fatalf("running record %+v", s)
	}
	ref := wire.ActivationRef{Namespace: "guest", ActivationID: req.ActivationID}
	_, err := call[wire.Activation](e, wire.SubjectActivationGet, ref)
	wantCode(t, err, wire.CodeNotFound)
	if l := mustCall[wire.ActivationList](e, wire.SubjectActivationList, wire.ListRequest{Namespace: "guest"}); len(l.Activations) != 0 {
		t.Fatalf("running activation listed: %+v", l.Activations)
	}

	e.clock.Advance(30 * time.Millisecond)
	close(g.release)
	done := e.waitDone("guest", req.ActivationID)
	if done.Status != wire.StatusSuccess || string(done.Result) != "late result" || done.End-done.Start != 30 {
		t.Fatalf("completed record %+v", done)
	}
	if got := mustCall[wire.Activation](e, wire.SubjectActivationGet, ref); got.End != done.End {
		t.Fatalf("get %+v", got)
	}
}

func TestInvokeDuplicateID(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "hello", "f1"))
	g := newGate()
	inv := e.startInvoker("inv0", g.run)

	// While the first activation runs.
	req := invokeReq("guest", "hello")
	req.Blocking = false
	mustCall[wire.Activation](e, wire.SubjectInvoke, req)
	g.waitStarted(t)
	for _, blocking := range []bool{false, true} {
		dup := req
		dup.Blocking = blocking
		_, err := call[wire.Activation](e, wire.SubjectInvoke, dup)
		wantCode(t, err, wire.CodeConflict)
	}
	close(g.release)
	first := e.waitDone("guest", req.ActivationID)

	// And after it completed: the record is not overwritten.
	dup := req
	dup.Blocking = true
	_, err := call[wire.Activation](e, wire.SubjectInvoke, dup)
	wantCode(t, err, wire.CodeConflict)
	if s := e.stored("guest", req.ActivationID); s.End != first.End || string(s.Result) != "late result" {
		t.Fatalf("record changed: %+v", s)
	}
	if n := inv.calls.Load(); n != 1 {
		t.Fatalf("the invoker ran %d steps", n)
	}

	// The same id in another namespace is another activation.
	e.put(actionPut(t, "other", "hello", "f2"))
	other := req
	other.Namespace = "other"
	other.Blocking = true
	if a := mustCall[wire.Activation](e, wire.SubjectInvoke, other); a.Status != wire.StatusSuccess {
		t.Fatalf("other namespace: %+v", a)
	}
}

// TestInvokeWaitsForAnInvoker: an activation that arrives before any
// invoker announced itself (a platform starting) waits for one, within
// InvokerWait, instead of failing at once as no_invoker.
func TestInvokeWaitsForAnInvoker(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.InvokerWait = time.Minute })
	e.put(actionPut(t, "guest", "hello", "f1"))
	req := invokeReq("guest", "hello")
	done := make(chan *wire.Activation, 1)
	go func() {
		a, err := call[wire.Activation](e, wire.SubjectInvoke, req)
		if err != nil {
			t.Error(err)
		}
		done <- a
	}()
	waitFor(t, "the activation to wait for an invoker", func() bool {
		return e.ctl.sched.waiting.Load() > 0
	})
	e.startInvoker("inv0", succeed(e))
	if a := <-done; a == nil || a.Status != wire.StatusSuccess {
		t.Fatalf("record %+v", a)
	}
}

// TestInvokePlacedByAnotherReplica: a request designating a runtime this
// controller has not seen (another replica placed it a moment ago) is
// accepted once the invoker's next heartbeat lists it, and refused as
// misplaced if that heartbeat does not.
func TestInvokePlacedByAnotherReplica(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "hello", "f1"))
	inv := e.startInvoker("inv0", succeed(e))
	waiting := func() bool {
		e.ctl.sched.mu.Lock()
		defer e.ctl.sched.mu.Unlock()
		return e.ctl.sched.invokers["inv0"].beat != nil
	}
	send := func() (<-chan *wire.Activation, <-chan error) {
		req := invokeReq("guest", "hello")
		req.Invoker, req.Runtime = "inv0", fakeRuntime("inv0", "guest")
		acts, errs := make(chan *wire.Activation, 1), make(chan error, 1)
		go func() {
			a, err := call[wire.Activation](e, wire.SubjectInvoke, req)
			acts <- a
			errs <- err
		}()
		return acts, errs
	}

	// The next heartbeat does not list it: misplaced.
	acts, errs := send()
	waitFor(t, "the controller to wait for a heartbeat", waiting)
	inv.publishBeat()
	if err := <-errs; err == nil {
		t.Fatalf("accepted a runtime the heartbeat does not list: %+v", <-acts)
	} else {
		wantCode(t, err, wire.CodeMisplaced)
	}

	// It does: accepted and run.
	acts, errs = send()
	waitFor(t, "the controller to wait for a heartbeat", waiting)
	inv.mu.Lock()
	inv.namespaces = append(inv.namespaces, "guest")
	inv.mu.Unlock()
	inv.publishBeat()
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if a := <-acts; a == nil || a.Status != wire.StatusSuccess {
		t.Fatalf("record %+v", a)
	}
}

// TestInvokeNoInvoker: with no healthy invoker nothing can be placed, and
// a request designating an invoker that stopped heart-beating is refused
// as misplaced before anything is reserved (the gateway places it again).
func TestInvokeNoInvoker(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.HeartbeatTimeout = time.Second })
	e.put(actionPut(t, "guest", "hello", "f1"))

	// No invoker ever announced itself.
	_, err := call[wire.PlaceReply](e, wire.SubjectPlace, &wire.PlaceRequest{Namespace: "guest", Actions: []string{"hello"}})
	wantCode(t, err, wire.CodeUnavailable)
	req := invokeReq("guest", "hello")
	_, err = call[wire.Activation](e, wire.SubjectInvoke, req)
	wantCode(t, err, wire.CodeMisplaced)
	if e.storedNow("guest", req.ActivationID) != nil {
		t.Fatal("a misplaced request reserved its id")
	}

	// An invoker whose heartbeats stopped.
	inv := e.startInvoker("inv0", succeed(e))
	req = invokeReq("guest", "hello")
	req.Invoker, req.Runtime = "inv0", fakeRuntime("inv0", "guest")
	mustCall[wire.PlaceReply](e, wire.SubjectPlace, &wire.PlaceRequest{Namespace: "guest", Actions: []string{"hello"}})
	waitFor(t, "the heartbeat listing the placed runtime", func() bool {
		e.ctl.sched.mu.Lock()
		defer e.ctl.sched.mu.Unlock()
		return e.ctl.sched.invokers["inv0"].runtimes["guest"] != nil
	})
	e.clock.Advance(time.Second + time.Millisecond)
	_, err = call[wire.Activation](e, wire.SubjectInvoke, req)
	wantCode(t, err, wire.CodeMisplaced)
	if n := inv.calls.Load(); n != 0 {
		t.Fatalf("an unhealthy invoker got %d steps", n)
	}
	// Its next heartbeat brings it back.
	inv.beat()
	if a := mustCall[wire.Activation](e, wire.SubjectInvoke, req); a.Status != wire.StatusSuccess {
		t.Fatalf("record %+v", a)
	}
}

// TestInvokeDeadInvoker: an invoker that heart-beats but does not answer
// is marked down: a placement moves to another one, and a step designated
// to it fails as unavailable (it never started).
func TestInvokeDeadInvoker(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "hello", "f1"))
	const ns = "guest"
	dead, live := "inv-a", "inv-b"
	if homeOf(ns+"/hello", dead, live) != dead {
		dead, live = live, dead
	}
	e.startInvoker(dead, nil) // heartbeats, then dies: no responder
	li := e.startInvoker(live, succeed(e))

	a := mustCall[wire.Activation](e, wire.SubjectInvoke, invokeReq(ns, "hello"))
	if a.Status != wire.StatusSuccess {
		t.Fatalf("record %+v", a)
	}
	if n := li.calls.Load(); n != 1 {
		t.Fatalf("live invoker ran %d steps", n)
	}
	if e.healthy(dead) {
		t.Fatal("the dead invoker is still considered healthy")
	}

	// A step designated to it (it announced the runtime, then died).
	e.ctl.sched.heartbeat(wire.Heartbeat{InvokerID: dead, Capacity: 4, Runtimes: []wire.RuntimeInfo{{Namespace: ns, ID: fakeRuntime(dead, ns)}}})
	req := invokeReq(ns, "hello")
	req.Invoker, req.Runtime = dead, fakeRuntime(dead, ns)
	a = mustCall[wire.Activation](e, wire.SubjectInvoke, req)
	if a.Status != wire.StatusInternalError || a.ErrorCode != ErrInvokerUnavailable || string(a.Envelope) != "sealed envelope" {
		t.Fatalf("record %+v", a)
	}
	if e.healthy(dead) {
		t.Fatal("the dead invoker is still considered healthy")
	}
	if n := li.calls.Load(); n != 1 {
		t.Fatalf("a step designated to another invoker went to the live one (%d steps)", n)
	}
}

// TestInvokeInvokerLost: an invoker that stops heart-beating while a step
// runs there loses the step: within a sweep it is finished as a developer
// error, invoker_lost (OpenWhisk's status), never left pending.
func TestInvokeInvokerLost(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.HeartbeatTimeout = time.Second })
	e.put(actionPut(t, "guest", "hello", "f1"))
	g := newGate()
	e.startInvoker("inv0", g.run)
	req := invokeReq("guest", "hello")
	req.Blocking = false
	mustCall[wire.Activation](e, wire.SubjectInvoke, req)
	g.waitStarted(t)
	e.clock.Advance(time.Second + time.Millisecond) // no heartbeat since
	a := e.waitDone("guest", req.ActivationID)
	if a.Status != wire.StatusDeveloperError || a.ErrorCode != ErrInvokerLost || a.ErrorMessage != msgInvokerLost {
		t.Fatalf("record %+v", a)
	}
	if got := gather(t, e)["clemmys_controller_lost_invoker_steps_total"]; got != 1 {
		t.Fatalf("lost invoker steps: %v", got)
	}
}

// TestInvokeStepLostOnTheBus: an invoker that heart-beats but does not
// hold a step it was sent (its request or its answer was lost on the bus)
// has the step finished as an internal error after two such heartbeats
// past the grace, not at the step's deadline.
func TestInvokeStepLostOnTheBus(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.HeartbeatTimeout = time.Second })
	e.put(actionPut(t, "guest", "hello", "f1"))
	g := newGate() // takes the request and never answers: as if its answer were lost
	inv := e.startInvoker("inv0", g.run)
	req := invokeReq("guest", "hello")
	req.Blocking = false
	mustCall[wire.Activation](e, wire.SubjectInvoke, req)
	g.waitStarted(t)
	beat := func(held ...string) {
		b, err := bus.Marshal(wire.Heartbeat{InvokerID: inv.id, Capacity: 4, Received: held, ReportsReceived: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := inv.nc.Publish(wire.SubjectInvokerHeartbeat, b); err != nil {
			t.Fatal(err)
		}
		if err := inv.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// Held: nothing happens however long it runs.
	e.clock.Advance(900 * time.Millisecond)
	beat(req.ActivationID)
	e.clock.Advance(900 * time.Millisecond)
	beat(req.ActivationID)
	beat(req.ActivationID)
	waitFor(t, "the heartbeats", func() bool {
		e.ctl.sched.mu.Lock()
		defer e.ctl.sched.mu.Unlock()
		return e.ctl.sched.invokers[inv.id].lastSeen.Equal(e.clock.Now())
	})
	if a := e.storedNow("guest", req.ActivationID); a != nil && a.End != 0 {
		t.Fatalf("a held step ended: %+v", a)
	}
	// No longer held: lost at the second such heartbeat.
	beat()
	e.clock.Advance(100 * time.Millisecond)
	beat()
	a := e.waitDone("guest", req.ActivationID)
	if a.Status != wire.StatusInternalError || a.ErrorCode != ErrInvokerFailed || a.ErrorMessage != msgStepLost {
		t.Fatalf("record %+v", a)
	}
}

func TestInvokeInvokerFails(t *testing.T) {
	tests := []struct {
		name    string
		run     func(g *gate) runFunc
		wantMsg string
	}{
		{"timeout", func(g *gate) runFunc { return g.run }, msgInvokerTimout},
		{"error reply", func(g *gate) runFunc {
			return func(ctx context.Context, req *wire.RunRequest) (*wire.RunResult, error) {
				return nil, wire.Errorf(wire.CodeBadRequest, "incomplete run request")
			}
		}, msgInvokerFailed},
		{"internal error reply", func(g *gate) runFunc {
			return func(ctx context.Context, req *wire.RunRequest) (*wire.RunResult, error) {
				return nil, fmt.Errorf("boom")
			}
		}, msgInvokerFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.ColdStartGrace = 200 * time.Millisecond })
			p := actionPut(t, "guest", "hello", "f1")
			p.Action.Limits.TimeoutMs = 100
			e.put(p)
			g := newGate()
			first, second := "inv-a", "inv-b"
			if homeOf("guest/hello", first, second) != first {
				first, second = second, first
			}
			fi := e.startInvoker(first, tc.run(g))
			si := e.startInvoker(second, succeed(e))

			began := time.Now()
			a := mustCall[wire.Activation](e, wire.SubjectInvoke, invokeReq("guest", "hello"))
			if a.Status != wire.StatusInternalError || a.ErrorCode != ErrInvokerFailed || a.ErrorMessage != tc.wantMsg ||
				string(a.Envelope) != "sealed envelope" {
				t.Fatalf("record %+v", a)
			}
			if tc.name == "timeout" {
				if d := time.Since(began); d < 300*time.Millisecond || d > 5*time.Second {
					t.Fatalf("the call to the invoker took %v, want about 300ms", d)
				}
			}
			// A step the invoker may have received is never sent twice.
			if fi.calls.Load() != 1 || si.calls.Load() != 0 {
				t.Fatalf("calls: first %d, second %d", fi.calls.Load(), si.calls.Load())
			}
			if !e.healthy(first) {
				t.Fatal("a slow or failing invoker was marked down")
			}
		})
	}
}

func TestInvokeInvalid(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "hello", "f1"))
	inv := e.startInvoker("inv0", succeed(e))
	tests := []struct {
		name   string
		mutate func(*wire.InvokeRequest)
		code   string
	}{
		{"no activation id", func(r *wire.InvokeRequest) { r.ActivationID = "" }, wire.CodeBadRequest},
		{"short activation id", func(r *wire.InvokeRequest) { r.ActivationID = "abc" }, wire.CodeBadRequest},
		{"upper-case activation id", func(r *wire.InvokeRequest) { r.ActivationID = strings.Repeat("A", 32) }, wire.CodeBadRequest},
		{"activation id with wildcard", func(r *wire.InvokeRequest) { r.ActivationID = strings.Repeat("a", 31) + ">" }, wire.CodeBadRequest},
		{"no namespace", func(r *wire.InvokeRequest) { r.Namespace = "" }, wire.CodeBadRequest},
		{"bad action", func(r *wire.InvokeRequest) { r.Action = "a b " }, wire.CodeBadRequest},
		{"no envelope", func(r *wire.InvokeRequest) { r.Envelope = nil }, wire.CodeBadRequest},
		{"function id too long", func(r *wire.InvokeRequest) { r.FunctionID = make([]byte, maxFunctionIDLen+1) }, wire.CodeBadRequest},
		{"version too long", func(r *wire.InvokeRequest) { r.Version = strings.Repeat("1", maxVersionLen+1) }, wire.CodeBadRequest},
		{"subject too long", func(r *wire.InvokeRequest) { r.Subject = strings.Repeat("s", maxSubjectLen+1) }, wire.CodeBadRequest},
		{"timeout too long", func(r *wire.InvokeRequest) { r.Limits.TimeoutMs = maxTimeoutMs + 1 }, wire.CodeBadRequest},
		{"memory too large", func(r *wire.InvokeRequest) { r.Limits.MemoryMB = maxMemoryMB + 1 }, wire.CodeBadRequest},
		{"missing action", func(r *wire.InvokeRequest) { r.Action = "nope" }, wire.CodeNotFound},
		{"missing namespace", func(r *wire.InvokeRequest) { r.Namespace = "nope" }, wire.CodeNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, blocking := range []bool{true, false} {
				req := invokeReq("guest", "hello")
				req.Blocking = blocking
				tc.mutate(&req)
				_, err := call[wire.Activation](e, wire.SubjectInvoke, req)
				wantCode(t, err, tc.code)
				if validActivationID(req.ActivationID) && checkNamespace(req.Namespace) == nil && e.stored(req.Namespace, req.ActivationID) != nil {
					t.Fatal("a refused invocation left a record")
				}
			}
		})
	}
	if n := inv.calls.Load(); n != 0 {
		t.Fatalf("refused invocations ran %d steps", n)
	}
}

func TestStopWaitsForBackground(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "hello", "f1"))
	g := newGate()
	e.startInvoker("inv0", g.run)

	req := invokeReq("guest", "hello")
	req.Blocking = false
	mustCall[wire.Activation](e, wire.SubjectInvoke, req)
	g.waitStarted(t)

	stopped := e.stopWaiting(t, "an activation was running")
	// Stopping: no new background work is accepted.
	req2 := invokeReq("guest", "hello")
	req2.Blocking = false
	_, err := e.ctl.handleInvoke(context.Background(), encode(t, e.placed(context.Background(), req2)))
	wantCode(t, err, wire.CodeUnavailable)
	if e.stored("guest", req2.ActivationID) != nil {
		t.Fatal("a refused invocation left a record")
	}

	close(g.release)
	waitStopped(t, stopped)
	if a := e.stored("guest", req.ActivationID); a == nil || a.End == 0 || a.Status != wire.StatusSuccess {
		t.Fatalf("record after Stop: %+v", a)
	}
	e.ctl.Stop() // idempotent
	if err := e.ctl.Start(context.Background()); err == nil {
		t.Fatal("Start after Stop succeeded")
	}
}

func TestStopGraceCancels(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.StopGrace = 100 * time.Millisecond })
	e.put(actionPut(t, "guest", "hello", "f1"))
	g := newGate() // never released
	e.startInvoker("inv0", g.run)

	bg := invokeReq("guest", "hello")
	bg.Blocking = false
	mustCall[wire.Activation](e, wire.SubjectInvoke, bg)
	g.waitStarted(t)

	fg := invokeReq("guest", "hello")
	reply := make(chan *wire.Activation, 1)
	go func() {
		a, err := call[wire.Activation](e, wire.SubjectInvoke, fg)
		if err != nil {
			t.Error(err)
		}
		reply <- a
	}()
	g.waitStarted(t)

	began := time.Now()
	e.ctl.Stop()
	if d := time.Since(began); d > 5*time.Second {
		t.Fatalf("Stop took %v", d)
	}
	for _, id := range []string{bg.ActivationID, fg.ActivationID} {
		a := e.stored("guest", id)
		if a == nil || a.End == 0 || a.Status != wire.StatusInternalError || a.ErrorCode != ErrInvokerFailed || a.ErrorMessage != msgStopping {
			t.Fatalf("record of %s after Stop: %+v", id, a)
		}
	}
	// The blocking caller got its record before the controller stopped
	// serving.
	if a := <-reply; a == nil || a.ErrorMessage != msgStopping {
		t.Fatalf("blocking reply %+v", a)
	}
}

// TestInvokeRevision: reads name the entity's store revision, and an
// invocation sealed for another revision of the action, or of a sequence
// component, is refused as stale before anything runs or is recorded.
func TestInvokeRevision(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "hello", "f1"))
	inv := e.startInvoker("inv0", succeed(e))
	ref := wire.ActionRef{Namespace: "guest", Name: "hello"}
	v1 := mustCall[wire.Action](e, wire.SubjectActionGet, ref)
	if v1.Revision == 0 {
		t.Fatal("no revision on a read")
	}

	req := invokeReq("guest", "hello")
	req.Revision = v1.Revision
	if a := mustCall[wire.Activation](e, wire.SubjectInvoke, req); a.Status != wire.StatusSuccess {
		t.Fatalf("current revision: %+v", a)
	}

	p := actionPut(t, "guest", "hello", "f2")
	p.Overwrite = true
	e.put(p)
	v2 := mustCall[wire.Action](e, wire.SubjectActionGet, ref)
	if v2.Revision <= v1.Revision {
		t.Fatalf("revision %d after %d", v2.Revision, v1.Revision)
	}
	stale := invokeReq("guest", "hello")
	stale.Revision = v1.Revision
	_, err := call[wire.Activation](e, wire.SubjectInvoke, stale)
	wantCode(t, err, wire.CodeStale)
	if s := e.stored("guest", stale.ActivationID); s != nil {
		t.Fatalf("stale invocation recorded: %+v", s)
	}

	// Sequence components.
	e.put(actionPut(t, "guest", "a", "fa"))
	e.put(sequencePut("guest", "seq", "/guest/a", "/guest/hello"))
	a := mustCall[wire.Action](e, wire.SubjectActionGet, wire.ActionRef{Namespace: "guest", Name: "a"})
	ra, rh := route("guest", "a"), route("guest", "hello")
	ra.Revision = a.Revision
	for _, tc := range []struct {
		name string
		rev  uint64
		code string
	}{
		{"current", v2.Revision, ""},
		{"changed", v1.Revision, wire.CodeStale},
	} {
		rh.Revision = tc.rev
		req := sequenceReq("guest", "seq", ra, rh)
		_, err := call[wire.Activation](e, wire.SubjectInvoke, req)
		if tc.code == "" {
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			continue
		}
		wantCode(t, err, tc.code)
	}
	// A deleted component.
	mustCall[wire.Action](e, wire.SubjectActionDelete, wire.ActionRef{Namespace: "guest", Name: "a"})
	rh.Revision = v2.Revision
	_, err = call[wire.Activation](e, wire.SubjectInvoke, sequenceReq("guest", "seq", ra, rh))
	wantCode(t, err, wire.CodeStale)
	if n := inv.calls.Load(); n != 3 { // hello once, then a and hello of the current sequence
		t.Fatalf("the invoker ran %d steps", n)
	}
}

// A blocking invocation (an action or a sequence) is answered while its
// complete records (a sequence's and its components') are being written;
// until the writes land, reads of the records (get and list) find them in
// the controller, and Stop waits for the writes.
func TestInvokeAnsweredBeforeStored(t *testing.T) {
	for _, seq := range []bool{false, true} {
		t.Run(fmt.Sprintf("sequence=%v", seq), func(t *testing.T) {
			e := newEnv(t)
			e.put(actionPut(t, "guest", "hello", "f1"))
			req := invokeReq("guest", "hello")
			if seq {
				e.put(sequencePut("guest", "seq", "/guest/hello", "/guest/hello"))
				req = sequenceReq("guest", "seq", route("guest", "hello"), route("guest", "hello"))
				e.startInvoker("inv0", newChain(e).run)
			} else {
				e.startInvoker("inv0", succeed(e))
			}
			held := make(chan struct{})
			release := sync.OnceFunc(func() { close(held) })
			t.Cleanup(release) // before the controller's cleanup, should the test fail
			// The sequence's last component's record is held too (the
			// earlier ones were queued before the last step's running
			// record, whose creation the answer waits for).
			last := func(rec *wire.Activation) bool { return rec.Cause == req.ActivationID && rec.Step == 1 }
			hold := func(rec *wire.Activation) {
				if rec.ActivationID == req.ActivationID || last(rec) {
					<-held
				}
			}
			e.ctl.beforeStore.Store(&hold)

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var a wire.Activation
			if err := bus.Call(ctx, e.nc, wire.SubjectInvoke, e.placed(ctx, req), &a); err != nil {
				t.Fatalf("the answer waited for the record write: %v", err)
			}
			if a.Status != wire.StatusSuccess || a.End == 0 || len(a.Components) != map[bool]int{false: 0, true: 2}[seq] {
				t.Fatalf("answer %+v", a)
			}
			if s := e.storedNow("guest", req.ActivationID); s == nil || s.End != 0 {
				t.Fatalf("stored record while the write is held: %+v, want the running one", s)
			}
			got := mustCall[wire.Activation](e, wire.SubjectActivationGet, wire.ActivationRef{Namespace: "guest", ActivationID: req.ActivationID})
			if got.End != a.End || got.Status != a.Status || !bytes.Equal(got.Result, a.Result) {
				t.Fatalf("get while the write is held: %+v, answered %+v", got, a)
			}
			l := mustCall[wire.ActivationList](e, wire.SubjectActivationList, wire.ListRequest{Namespace: "guest", Name: req.Action})
			if len(l.Activations) != 1 || l.Activations[0].ActivationID != req.ActivationID || l.Activations[0].End != a.End {
				t.Fatalf("list while the write is held: %+v", l.Activations)
			}
			for _, id := range a.Components {
				c := mustCall[wire.Activation](e, wire.SubjectActivationGet, wire.ActivationRef{Namespace: "guest", ActivationID: id})
				if c.End == 0 || c.Status != wire.StatusSuccess || c.Cause != req.ActivationID {
					t.Fatalf("component %s while its write is held: %+v", id, c)
				}
				if s := e.storedNow("guest", id); last(c) && s != nil && s.End != 0 {
					t.Fatalf("component %s was written while held", id)
				}
			}

			stopped := e.stopWaiting(t, "a record write was held")
			release()
			waitStopped(t, stopped)
			if s := e.stored("guest", req.ActivationID); s == nil || s.End != a.End || s.Status != wire.StatusSuccess {
				t.Fatalf("stored record after Stop: %+v", s)
			}
			for _, id := range append(a.Components, req.ActivationID) {
				if _, ok := e.ctl.answered.Load(store.Key("guest", id)); ok {
					t.Fatalf("the written record %s is still held in memory", id)
				}
				if s := e.storedNow("guest", id); s == nil || s.End == 0 {
					t.Fatalf("record %s after Stop: %+v", id, s)
				}
			}
		})
	}
}
