package invoker

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/actrec"
	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wasmbuild"
	"github.com/clemmys/clemmys/internal/wire"
)

// TestDirect: a step a gateway sends the invoker itself (the warm path) is
// run and answered with its complete record, which is stored before the
// answer: in the first-records bucket for a quick step, after a running
// record for one that outlives DeferReserveMs. A copy of the request,
// a step for another runtime and a malformed request store nothing.
func TestDirect(t *testing.T) {
	hello := wasmbuild.MustBuild(t, "examples/hello")
	sleep := wasmbuild.MustBuild(t, "internal/testfuncs/sleep")
	e := newEnv(t, nil)
	ctx := testCtx(t, 2*time.Minute)
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	// The controller's buckets (it creates them; the invoker only opens).
	first, err := store.KV(ctx, js, store.BucketActivations, 1)
	if err != nil {
		t.Fatal(err)
	}
	complete, err := store.KV(ctx, js, store.BucketRecords, 1)
	if err != nil {
		t.Fatal(err)
	}
	alice := e.deploy("alice", "hello", hello, true)
	slow := e.deploy("alice", "sleep", sleep, true)

	running := func(c *call) wire.Activation {
		s := actrec.Start{ID: c.req.ActivationID, Namespace: "alice", Name: c.req.Action, Kind: "wasm",
			Subject: "alice", Limits: actrec.RunLimits(wire.Limits{}, wire.Limits{}), Time: time.Now()}
		return *s.Running()
	}
	direct := func(c *call, rec wire.Activation) (*wire.Activation, error) {
		var act wire.Activation
		err := bus.Call(ctx, e.nc, wire.SubjectInvokerDirect(e.iv.cfg.ID), &wire.DirectRequest{Run: *c.req, Record: rec}, &act)
		return &act, err
	}
	stored := func(kv jetstream.KeyValue, id string) (*wire.Activation, uint64) {
		t.Helper()
		entry, err := kv.Get(ctx, store.Key("alice", id))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, 0
		}
		if err != nil {
			t.Fatal(err)
		}
		var rec wire.Activation
		if err := bus.Unmarshal(entry.Value(), &rec); err != nil {
			t.Fatal(err)
		}
		return &rec, entry.Revision()
	}
	wantCode := func(what string, err error, code string) {
		t.Helper()
		if we, ok := errors.AsType[*wire.Error](err); !ok || we.Code != code {
			t.Fatalf("%s: %v, want code %s", what, err, code)
		}
	}

	// Cold (the function loads), then warm.
	for _, name := range []string{"cold", "warm"} {
		c := e.seal(alice, `{"name":"`+name+`"}`)
		act, err := direct(c, running(c))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if act.ActivationID != c.req.ActivationID || act.Status != wire.StatusSuccess || act.End == 0 || len(act.Result) == 0 || len(act.Receipts) != 1 {
			t.Fatalf("%s: answered %+v", name, act)
		}
		got, err := envelope.Unmarshal(act.Result)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := c.sent.Header.Digest()
		if plain, err := envelope.OpenResult(got, c.secret, d); err != nil || string(plain) != `{"greeting":"Hello `+name+`!"}` {
			t.Fatalf("%s: result %q, %v", name, plain, err)
		}
		// Quick (within DeferReserveMs): the complete record is the first;
		// else (a cold start on a busy machine) it is beside the running one.
		rec, _ := stored(first, act.ActivationID)
		if rec != nil && rec.End == 0 {
			rec, _ = stored(complete, act.ActivationID)
		} else if rec, _ := stored(complete, act.ActivationID); rec != nil {
			t.Fatalf("%s: a complete first record and another: %+v", name, rec)
		}
		if rec == nil || rec.Status != wire.StatusSuccess || rec.End != act.End || string(rec.Result) != string(act.Result) {
			t.Fatalf("%s: stored %+v", name, rec)
		}

		// A copy of the request off the bus runs nowhere and replaces
		// nothing.
		before := e.iv.Executions()
		_, rev := stored(first, act.ActivationID)
		_, err = direct(c, running(c))
		wantCode(name+" replayed", err, wire.CodeConflict)
		if _, rev2 := stored(first, act.ActivationID); rev2 != rev || e.iv.Executions() != before {
			t.Fatalf("%s: a replayed request ran or changed the record", name)
		}
	}

	// Designated to another runtime: nothing runs, nothing is stored.
	c := e.seal(alice, `{}`)
	c.req.Runtime = envelope.RuntimeID([]byte("another runtime's key"))
	before := e.iv.Executions()
	_, err = direct(c, running(c))
	wantCode("misplaced", err, wire.CodeMisplaced)
	if rec, _ := stored(first, c.req.ActivationID); rec != nil || e.iv.Executions() != before {
		t.Fatalf("misplaced step ran or was recorded: %+v", rec)
	}

	// Malformed requests.
	c = e.seal(alice, `{}`)
	for _, tt := range []struct {
		name string
		edit func(*wire.DirectRequest)
	}{
		{"record of another id", func(r *wire.DirectRequest) { r.Record.ActivationID = strings.Repeat("ab", 16) }},
		{"record already complete", func(r *wire.DirectRequest) { r.Record.Status, r.Record.End = wire.StatusSuccess, 1 }},
		{"record with a result", func(r *wire.DirectRequest) { r.Record.Result = []byte("x") }},
		{"record without namespace", func(r *wire.DirectRequest) { r.Record.Namespace = "" }},
		{"chained steps", func(r *wire.DirectRequest) { r.Run.Then = [][]byte{alice.rec.FunctionID} }},
		{"no runtime", func(r *wire.DirectRequest) { r.Run.Runtime = nil }},
		{"no envelope", func(r *wire.DirectRequest) { r.Run.Envelope = nil }},
	} {
		req := wire.DirectRequest{Run: *c.req, Record: running(c)}
		tt.edit(&req)
		var act wire.Activation
		err := bus.Call(ctx, e.nc, wire.SubjectInvokerDirect(e.iv.cfg.ID), &req, &act)
		wantCode(tt.name, err, wire.CodeBadRequest)
	}
	if rec, _ := stored(first, c.req.ActivationID); rec != nil || e.iv.Executions() != before {
		t.Fatalf("a malformed request ran or was recorded: %+v", rec)
	}

	// A step that outlives DeferReserveMs: its running record is stored
	// while it runs (what a gateway confirms before it answers 202), the
	// complete one beside it.
	c = e.seal(slow, `{"ms":1500}`)
	done := make(chan error, 1)
	var act *wire.Activation
	go func() {
		var err error
		act, err = direct(c, running(c))
		done <- err
	}()
	waitFor(t, "the running record", 30*time.Second, func() bool {
		rec, _ := stored(first, c.req.ActivationID)
		return rec != nil
	})
	if rec, _ := stored(first, c.req.ActivationID); rec.End != 0 || rec.Status != "" {
		t.Fatalf("running record: %+v", rec)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rec, _ := stored(complete, c.req.ActivationID)
	if rec == nil || rec.Status != wire.StatusSuccess || act.Status != wire.StatusSuccess || rec.End != act.End {
		t.Fatalf("complete record %+v, answered %+v", rec, act)
	}
	if rec, _ := stored(first, c.req.ActivationID); rec.End != 0 {
		t.Fatalf("the running record was replaced: %+v", rec)
	}

	// The heartbeats count what was answered, by status.
	waitFor(t, "heartbeat counts", 10*time.Second, func() bool {
		return e.iv.directCounts[0].Load() == 3
	})
}
