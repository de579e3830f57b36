package controller

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// deferredReq is a blocking invocation whose gateway confirms the record
// before answering 202, so the controller may defer its running record.
func deferredReq(ns, name string) wire.InvokeRequest {
	req := invokeReq(ns, name)
	req.WaitMs = 60_000
	return req
}

// inBucket returns the entry at ns/id in kv, or nil.
func (e *env) inBucket(kv jetstream.KeyValue, ns, id string) *wire.Activation {
	e.t.Helper()
	ent, err := kv.Get(testCtx(e.t), store.Key(ns, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	var a wire.Activation
	if err := bus.Unmarshal(ent.Value(), &a); err != nil {
		e.t.Fatal(err)
	}
	return &a
}

// TestDeferredRecordWrittenOnce: a blocking single action that completes
// before its running record is needed gets one record write, its complete
// record as its first; get and list find it as any other.
func TestDeferredRecordWrittenOnce(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "hello", "f1"))
	e.startInvoker("inv0", succeed(e))
	req := deferredReq("guest", "hello")
	a := mustCall[wire.Activation](e, wire.SubjectInvoke, req)
	if a.Status != wire.StatusSuccess || a.End == 0 {
		t.Fatalf("answer %+v", a)
	}
	e.stored("guest", req.ActivationID) // the write has landed
	first := e.inBucket(e.ctl.activations, "guest", req.ActivationID)
	if first == nil || first.End != a.End || first.Status != wire.StatusSuccess || string(first.Result) != "sealed result" {
		t.Fatalf("first record %+v, want the complete one", first)
	}
	if r := e.inBucket(e.ctl.records, "guest", req.ActivationID); r != nil {
		t.Fatalf("a second record was written: %+v", r)
	}
	got := mustCall[wire.Activation](e, wire.SubjectActivationGet, wire.ActivationRef{Namespace: "guest", ActivationID: req.ActivationID})
	if got.End != a.End || got.Status != a.Status {
		t.Fatalf("get %+v", got)
	}
	l := mustCall[wire.ActivationList](e, wire.SubjectActivationList, wire.ListRequest{Namespace: "guest", Name: "hello"})
	if len(l.Activations) != 1 || l.Activations[0].ActivationID != req.ActivationID || l.Activations[0].End != a.End {
		t.Fatalf("list %+v", l.Activations)
	}
	// A replayed request: the record is not overwritten (the runtime
	// would refuse the copy; this fake invoker runs it).
	_ = mustCall[wire.Activation](e, wire.SubjectInvoke, req)
	e.stored("guest", req.ActivationID)
	if again := e.inBucket(e.ctl.activations, "guest", req.ActivationID); again.End != first.End || string(again.Result) != string(first.Result) {
		t.Fatalf("record changed by a copy of the request: %+v", again)
	}
}

// TestDeferredRecordReservedWhenLong: a step that outlives DeferReserveMs
// gets its running record (found with ActivationRef.Running, as the
// gateway checks before a 202; not by a plain get), then its complete one.
func TestDeferredRecordReservedWhenLong(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "hello", "f1"))
	g := newGate()
	e.startInvoker("inv0", g.run)
	req := deferredReq("guest", "hello")
	answered := make(chan *wire.Activation, 1)
	go func() {
		a, err := call[wire.Activation](e, wire.SubjectInvoke, req)
		if err != nil {
			t.Error(err)
		}
		answered <- a
	}()
	g.waitStarted(t)
	waitFor(t, "the running record", func() bool { return e.inBucket(e.ctl.activations, "guest", req.ActivationID) != nil })
	if r := e.inBucket(e.ctl.activations, "guest", req.ActivationID); r.End != 0 {
		t.Fatalf("running record %+v", r)
	}
	if _, err := call[wire.Activation](e, wire.SubjectActivationGet, wire.ActivationRef{Namespace: "guest", ActivationID: req.ActivationID}); err == nil {
		t.Fatal("a plain get found the running activation")
	}
	r := mustCall[wire.Activation](e, wire.SubjectActivationGet, wire.ActivationRef{Namespace: "guest", ActivationID: req.ActivationID, Running: true})
	if r.ActivationID != req.ActivationID || r.End != 0 {
		t.Fatalf("running get %+v", r)
	}
	close(g.release)
	a := <-answered
	if a == nil || a.Status != wire.StatusSuccess {
		t.Fatalf("answer %+v", a)
	}
	if s := e.stored("guest", req.ActivationID); s.End != a.End || string(s.Result) != "late result" {
		t.Fatalf("complete record %+v", s)
	}
	if r := e.inBucket(e.ctl.records, "guest", req.ActivationID); r == nil || r.End != a.End {
		t.Fatalf("complete record in clemmys_records %+v", r)
	}
}

// TestDeferredRecordNotOverwritten: an id another activation holds keeps
// its record whether the reservation or the single write finds it used.
func TestDeferredRecordNotOverwritten(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "hello", "f1"))
	g := newGate()
	e.startInvoker("inv0", g.run)
	req := deferredReq("guest", "hello")
	// A record of now: one from 1970 is past any retention, and the
	// controller's sweep may delete it while the test runs.
	now := time.Now().UnixMilli()
	held := &wire.Activation{ActivationID: req.ActivationID, Namespace: "guest", Name: "other", Start: now, End: now + 1, Status: wire.StatusSuccess}
	v, err := bus.Marshal(held)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ctl.activations.Create(testCtx(t), store.Key("guest", req.ActivationID), v); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = call[wire.Activation](e, wire.SubjectInvoke, req)
	}()
	g.waitStarted(t)
	close(g.release)
	<-done
	e.stored("guest", req.ActivationID)
	if s := e.inBucket(e.ctl.activations, "guest", req.ActivationID); s.Name != "other" {
		t.Fatalf("held record overwritten: %+v", s)
	}
	if r := e.inBucket(e.ctl.records, "guest", req.ActivationID); r != nil {
		t.Fatalf("a complete record was filed over the held id: %+v", r)
	}
}

// TestDeferredReplayNotRecorded: a step the runtime refuses as a replay
// (a copy of a request it ran) leaves no record: the id is the original's.
func TestDeferredReplayNotRecorded(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "hello", "f1"))
	e.startInvoker("inv0", func(ctx context.Context, req *wire.RunRequest) (*wire.RunResult, error) {
		return &wire.RunResult{Status: wire.StatusInternalError, ErrorCode: codeReplay, ErrorMessage: "request id already seen"}, nil
	})
	req := deferredReq("guest", "hello")
	if a := mustCall[wire.Activation](e, wire.SubjectInvoke, req); a.ErrorCode != codeReplay {
		t.Fatalf("answer %+v", a)
	}
	e.stored("guest", req.ActivationID)
	if s := e.storedNow("guest", req.ActivationID); s != nil {
		t.Fatalf("a replay was recorded: %+v", s)
	}
}

// TestShortWaitReservesFirst: a gateway that does not confirm records (no
// WaitMs, or a wait too short to defer) gets the running record before
// the step is sent, as before.
func TestShortWaitReservesFirst(t *testing.T) {
	for _, wait := range []uint32{0, wire.MinDeferredWaitMs - 1} {
		e := newEnv(t)
		e.put(actionPut(t, "guest", "hello", "f1"))
		var sawRunning atomic.Bool
		e.startInvoker("inv0", func(ctx context.Context, req *wire.RunRequest) (*wire.RunResult, error) {
			sawRunning.Store(e.inBucket(e.ctl.activations, "guest", req.ActivationID) != nil)
			return &wire.RunResult{Status: wire.StatusSuccess, Envelope: []byte("r")}, nil
		})
		req := invokeReq("guest", "hello")
		req.WaitMs = wait
		mustCall[wire.Activation](e, wire.SubjectInvoke, req)
		if !sawRunning.Load() {
			t.Errorf("wait %d: the step was sent before its running record was stored", wait)
		}
		e.stored("guest", req.ActivationID)
		if r := e.inBucket(e.ctl.records, "guest", req.ActivationID); r == nil {
			t.Errorf("wait %d: no complete record", wait)
		}
	}
}
