package platform_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wasmbuild"
	"github.com/clemmys/clemmys/internal/wire"
)

// TestTargetCache: warm invocations seal from the gateway's cached action
// entities (no read from the controller), and any change of the stored
// entity (here the operator rewriting it in place, which gives it a new
// revision, or deleting it) is seen by the next invocation: the
// controller refuses the stale request and the gateway reads again.
func TestTargetCache(t *testing.T) {
	e := start(t, t.TempDir())
	g := e.guest()
	echo := wasmbuild.MustBuild(t, "internal/testfuncs/echo")
	e.deploy(g, "e", echo, nil)
	e.deploySequence(g, "s", "/guest/e", "/guest/e")

	// Count the controller's action reads, as a bystander on the bus.
	nc, err := e.p.Bus.Connect("spy")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var reads atomic.Int64
	sub, err := nc.Subscribe(wire.SubjectActionGet, func(*nats.Msg) { reads.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	invoke := func(name string, want int) {
		t.Helper()
		var res map[string]any
		st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/"+name+"?blocking=true&result=true", map[string]any{"x": "y"}, &res)
		if st != want {
			t.Fatalf("invoke %s: %d %v, want %d", name, st, res, want)
		}
		if want == 200 && res["x"] != "y" {
			t.Fatalf("invoke %s: result %v", name, res)
		}
	}
	readsDuring := func(f func()) int64 {
		t.Helper()
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		n := reads.Load()
		f()
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		return reads.Load() - n
	}

	// And the controller's reads of action entities in the store: none,
	// once it has read them: it knows the current revisions from its
	// watch of the bucket and keeps the entities it read.
	var storeReads atomic.Int64
	ssub, err := nc.Subscribe("$JS.API.DIRECT.GET.KV_"+store.BucketActions+".>", func(*nats.Msg) { storeReads.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer ssub.Unsubscribe()

	invoke("e", 200) // may read: the deploy's answer is not cached
	invoke("s", 200)
	storeBefore := storeReads.Load()
	if n := readsDuring(func() { invoke("e", 200); invoke("s", 200) }); n != 0 {
		t.Fatalf("%d action reads on warm invocations", n)
	}
	if n := storeReads.Load() - storeBefore; n != 0 {
		t.Fatalf("%d store reads of action entities on warm invocations of an action and a 2-step sequence", n)
	}

	// The operator rewrites the component's entity in place: same
	// content, new revision. The sequence and the action are read again
	// (the stale request is refused before anything runs), then cached.
	kv := e.actionsKV(t)
	key := store.Key("guest", "e")
	rev, err := kv.Put(context.Background(), key, e.entityBytes(t, "e"))
	if err != nil {
		t.Fatal(err)
	}
	e.controllerSees(t, "e", rev)
	before := e.p.Invoker.Executions()
	if n := readsDuring(func() { invoke("s", 200) }); n == 0 {
		t.Fatal("no read after the entity changed")
	}
	if n := e.p.Invoker.Executions() - before; n != 2 {
		t.Fatalf("%d steps ran for a 2-step sequence", n)
	}
	if n := readsDuring(func() { invoke("e", 200); invoke("s", 200) }); n != 0 {
		t.Fatalf("%d action reads once cached again", n)
	}

	// Deleted behind the gateway's back: not found, not run.
	if err := kv.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	e.controllerSees(t, "e", 0)
	before = e.p.Invoker.Executions()
	invoke("e", 404)
	invoke("s", 400) // a component is missing
	if n := e.p.Invoker.Executions() - before; n != 0 {
		t.Fatalf("%d steps ran after the delete", n)
	}
}

// TestSequenceRunsInOneRequest: once its functions are loaded, a warm
// sequence's steps run inside the runtime one after the other, from one
// run request to the invoker; every step still has its component record
// with its own sealed result.
func TestSequenceRunsInOneRequest(t *testing.T) {
	e := start(t, t.TempDir())
	g := e.guest()
	echo := wasmbuild.MustBuild(t, "internal/testfuncs/echo")
	for _, n := range []string{"e1", "e2", "e3"} {
		e.deploy(g, n, echo, nil)
	}
	e.deploySequence(g, "seq", "/_/e1", "/_/e2", "/_/e3")
	e.runSequence(g, "seq", map[string]any{"warm": "up"}) // loads anything not loaded yet

	nc, err := e.p.Bus.Connect("spy")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var runs atomic.Int64
	sub, err := nc.Subscribe(wire.SubjectInvokerRun("*"), func(*nats.Msg) { runs.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	before := e.p.Invoker.Executions()
	act := e.runSequence(g, "seq", map[string]any{"x": "y"})
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	res := act["response"].(map[string]any)
	if res["success"] != true || res["result"].(map[string]any)["x"] != "y" {
		t.Fatalf("sequence: %v", act)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("%d run requests for a warm 3-step sequence, want 1", n)
	}
	if n := e.p.Invoker.Executions() - before; n != 3 {
		t.Errorf("%d steps executed", n)
	}
	comps, _ := act["logs"].([]any)
	if len(comps) != 3 {
		t.Fatalf("components %v", act["logs"])
	}
	for i, id := range comps {
		c := e.waitActivation(g, id.(string))
		r := c["response"].(map[string]any)
		if r["success"] != true || r["result"].(map[string]any)["x"] != "y" || c["name"] != fmt.Sprintf("e%d", i+1) {
			t.Errorf("component %d: %v", i, c)
		}
	}
}
