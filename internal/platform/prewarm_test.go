package platform_test

import (
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/platform"
	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// annotations returns an activation record's annotations by key.
func annotations(act map[string]any) map[string]any {
	out := map[string]any{}
	list, _ := act["annotations"].([]any)
	for _, a := range list {
		if kv, ok := a.(map[string]any); ok {
			if k, ok := kv["key"].(string); ok {
				out[k] = kv["value"]
			}
		}
	}
	return out
}

// waitPrewarmed waits until the invoker has completed n prewarms.
func (e *env) waitPrewarmed(n uint64) {
	e.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for e.p.Invoker.Prewarmed() < n {
		if time.Now().After(deadline) {
			e.t.Fatalf("%d prewarms completed, want %d", e.p.Invoker.Prewarmed(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// invokeRecord invokes an action (blocking) and returns its stored record.
func (e *env) invokeRecord(auth, name string, params any) map[string]any {
	e.t.Helper()
	var act map[string]any
	st, hdr := e.call(auth, "POST", "/api/v1/namespaces/_/actions/"+name+"?blocking=true", params, &act)
	if st != 200 {
		e.t.Fatalf("invoke %s: %d %v", name, st, act)
	}
	return e.waitActivation(auth, hdr.Get("x-openwhisk-activation-id"))
}

// TestPrewarmOnDeploy: a deploy has the new function version loaded (keys
// released, code fetched and compiled) on the invoker, so its first
// invocation does not pay for compilation.
func TestPrewarmOnDeploy(t *testing.T) {
	e := start(t, t.TempDir())
	g := e.guest()
	hello := wasmbuild.MustBuild(t, "examples/hello")
	before := e.p.Invoker.Prewarmed()
	t0 := time.Now()
	e.deploy(g, "hello", hello, nil)
	deployed := time.Since(t0)
	e.waitPrewarmed(before + 1)
	t.Logf("deploy answered in %v, function loaded %v after the deploy began", deployed, time.Since(t0))

	act := e.invokeRecord(g, "hello", map[string]any{"name": "prewarm"})
	res := act["response"].(map[string]any)
	if res["success"] != true || res["result"].(map[string]any)["greeting"] != "Hello prewarm!" {
		t.Fatalf("first invocation: %v", act)
	}
	if init, ok := annotations(act)["initTime"]; ok {
		t.Errorf("the first invocation after a deploy paid %v ms of init time", init)
	}
	t.Logf("first invocation after deploy: duration %v ms", act["duration"])
}

// TestPrewarmSequence: invoking a sequence prewarms its later steps while
// the first one runs. After a restart nothing is loaded: the first
// invocation of a 3-step sequence (three distinct modules) loads steps 2
// and 3 by prewarm, concurrently with step 1.
func TestPrewarmSequence(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir)
	g := e.guest()
	echo := wasmbuild.MustBuild(t, "internal/testfuncs/echo")
	for _, n := range []string{"s1", "s2", "s3"} {
		e.deploy(g, n, withCustomSection(echo, n), nil) // distinct modules: one compilation each
	}
	e.deploySequence(g, "seq", "/_/s1", "/_/s2", "/_/s3")
	e.p.Stop()

	// The gateway asks again for a step's prewarm after an interval: one
	// no run here may reach, however slow the machine.
	e = startWith(t, dir, func(c *platform.Config) { c.StepPrewarmInterval = time.Hour })
	g = e.guest()
	before := e.p.Invoker.Prewarmed()
	act := e.invokeRecord(g, "seq", map[string]any{"x": 1})
	if res := act["response"].(map[string]any); res["success"] != true {
		t.Fatalf("sequence: %v", act)
	}
	e.waitPrewarmed(before + 2)
	comps, _ := act["logs"].([]any)
	if len(comps) != 3 {
		t.Fatalf("components: %v", act["logs"])
	}
	for i, id := range comps {
		c := e.waitActivation(g, id.(string))
		t.Logf("step %d: duration %v ms, initTime %v ms", i, c["duration"], annotations(c)["initTime"])
	}
	t.Logf("sequence: duration %v ms (end-start %v ms)", act["duration"], act["end"].(float64)-act["start"].(float64))

	// Warm: the gateway does not ask for the same steps again (within
	// its StepPrewarmInterval), and no step pays for a load. The gateway
	// counts a step prewarm when it decides to ask, before the invocation
	// is sealed: once the invocation is answered, the count is final
	// (no waiting for an asynchronous prewarm to show up).
	asked := func() float64 { return stepPrewarmsAsked(t, e) }
	n := asked()
	if n != 2 {
		t.Fatalf("%v step prewarms asked for the cold invocation, want 2", n)
	}
	act = e.invokeRecord(g, "seq", map[string]any{"x": 2})
	if res := act["response"].(map[string]any); res["success"] != true {
		t.Fatalf("warm sequence: %v", act)
	}
	if got := asked(); got != n {
		t.Errorf("%v step prewarms asked on a warm invocation", got-n)
	}
	for _, id := range act["logs"].([]any) {
		if init, ok := annotations(e.waitActivation(g, id.(string)))["initTime"]; ok {
			t.Errorf("warm step %s: initTime %v", id, init)
		}
	}
}

// stepPrewarmsAsked is the gateway's count of step prewarms it asked for.
func stepPrewarmsAsked(t *testing.T, e *env) float64 {
	t.Helper()
	mfs, err := e.p.Gateway.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "clemmys_gateway_step_prewarms_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no clemmys_gateway_step_prewarms_total")
	return 0
}
